"""moto's KMS (5.2) encrypts, decrypts, signs and gives out the public key of a disabled key
or one pending deletion; AWS refuses: ``DisabledException`` for a disabled key,
``KMSInvalidStateException`` for one pending deletion. Inside this context the in-process
moto server refuses the same way, so a test that retires an old key proves nothing still
needs it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from moto.core.exceptions import JsonRESTError
from moto.kms import models


def _refuse_unless_enabled(key: models.Key) -> None:
    if key.key_state == "Disabled":
        raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state == "PendingDeletion":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is pending deletion.")


@contextlib.contextmanager
def key_states_enforced() -> Iterator[None]:
    backend = models.KmsBackend
    real_encrypt, real_decrypt = backend.encrypt, backend.decrypt
    real_sign, real_get_public_key = backend.sign, backend.get_public_key

    def encrypt(self, key_id, plaintext, encryption_context):
        _refuse_unless_enabled(self.keys[self.any_id_to_key_id(key_id)])
        return real_encrypt(self, key_id, plaintext, encryption_context)

    def decrypt(self, ciphertext_blob, encryption_context, key_id=None):
        plaintext, arn = real_decrypt(self, ciphertext_blob, encryption_context, key_id)
        _refuse_unless_enabled(self.keys[self.any_id_to_key_id(arn)])  # the key the ciphertext names
        return plaintext, arn

    def sign(self, key_id, message, signing_algorithm):
        _refuse_unless_enabled(self.keys[self.any_id_to_key_id(key_id)])
        return real_sign(self, key_id, message, signing_algorithm)

    def get_public_key(self, key_id):
        _refuse_unless_enabled(self.keys[self.any_id_to_key_id(key_id)])
        return real_get_public_key(self, key_id)

    backend.encrypt, backend.decrypt = encrypt, decrypt
    backend.sign, backend.get_public_key = sign, get_public_key
    try:
        yield
    finally:
        backend.encrypt, backend.decrypt = real_encrypt, real_decrypt
        backend.sign, backend.get_public_key = real_sign, real_get_public_key
