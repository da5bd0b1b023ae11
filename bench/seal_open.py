"""Sealing and opening records against raw AES-GCM and the AWS Encryption SDK.

One round trip is a write and a read as the data function does them with a key from the
session cache: sealing a record and opening another, stored before. Each round trip is of
other records (thousands of names, taken in turn), so nothing kept per record can help.
It is timed against raw AES-256-GCM with a fixed key object (a fresh nonce, encrypt and
decrypt with the same AAD bytes: the floor), and against the AWS Encryption SDK with a
caching materials manager over a raw AES wrapping key (no KMS call: the cache always hits),
encrypting and decrypting the same plaintext.
The arms alternate; the fastest run of each is printed, as ratios measured in the same run.

    python bench/seal_open.py [--size 1024] [--rounds 5000] [--runs 21]

The Encryption SDK is a dependency of this bench only (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared")]

from tenant_kms.keyring import SessionKey  # noqa: E402
from tenant_kms.sealing import open_record, record_aad, seal_record  # noqa: E402

NAMES = [f"record-{i:06d}" for i in range(4097)]


def per_round(round_trip, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        round_trip()
    return (time.perf_counter() - started) / rounds


def side_by_side(first, second, rounds: int, runs: int) -> tuple[float, float]:
    """The fastest run of each, the two arms alternating so both see the same machine load
    (this machine is shared: the fastest run is the one least disturbed)."""
    firsts, seconds = [], []
    for _ in range(runs):
        firsts.append(per_round(first, rounds))
        seconds.append(per_round(second, rounds))
    return min(firsts), min(seconds)


def raw_round_trip(tmk: bytes, plaintext: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, aad = AESGCM(tmk), record_aad("acme", "db-password", 2)
    names = itertools.cycle(NAMES)

    def round_trip():
        next(names)  # the service arm's pick of records, so both loops do the same bookkeeping
        nonce = os.urandom(12)
        aead.decrypt(nonce, aead.encrypt(nonce, plaintext, aad), aad)

    return round_trip


def service_round_trip(tmk: bytes, plaintext: bytes, names: list[str] = NAMES):
    """Seal a record and open another, stored before (a write and a read): opening the record
    just sealed would find the AAD its seal built."""
    session = SessionKey(tmk=tmk, expires_at=time.time() + 300)
    stored = [
        (f"{name}-stored", seal_record(session.record_key, "acme", f"{name}-stored", 2, plaintext)) for name in names
    ]
    records = itertools.cycle(zip(names, stored, strict=True))

    def round_trip():
        key, (name, (other, blob)) = session.record_key, next(records)
        seal_record(key, "acme", name, 2, plaintext)
        open_record(key, "acme", other, 2, blob)

    return round_trip


def encryption_sdk_round_trip(tmk: bytes, plaintext: bytes):
    import aws_encryption_sdk
    from aws_encryption_sdk.caches.local import LocalCryptoMaterialsCache
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey
    from aws_encryption_sdk.materials_managers.caching import CachingCryptoMaterialsManager

    master_key = RawMasterKey(
        provider_id="bench",
        key_id=b"tenant-master-key",
        wrapping_key=WrappingKey(WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, tmk, EncryptionKeyType.SYMMETRIC),
    )
    cmm = CachingCryptoMaterialsManager(
        master_key_provider=master_key,
        cache=LocalCryptoMaterialsCache(100),
        max_age=300.0,
        max_messages_encrypted=2**32,
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    context = {"tenant_id": "acme", "name": "db-password", "version": "2"}

    def round_trip():
        # The committing suite without a signature: the SDK's fastest that commits to the key.
        sealed, _ = client.encrypt(
            source=plaintext,
            materials_manager=cmm,
            encryption_context=context,
            algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        )
        client.decrypt(source=sealed, materials_manager=cmm)

    return round_trip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    tmk, plaintext = os.urandom(32), os.urandom(args.size)

    raw, ours = side_by_side(raw_round_trip(tmk, plaintext), service_round_trip(tmk, plaintext), args.rounds, args.runs)
    print(f"seal+open of {args.size} B, fastest of {args.runs} runs of {args.rounds}")
    print(f"  raw AES-GCM, fixed key object   {raw * 1e6:8.2f} us   1.00x")
    print(f"  seal_record + open_record       {ours * 1e6:8.2f} us   {ours / raw:.2f}x raw (other records each time)")
    try:
        sdk_round_trip = encryption_sdk_round_trip(tmk, plaintext)
    except ImportError:
        print("  AWS Encryption SDK not installed (pip install -r requirements-dev.txt)")
        return
    ours, sdk = side_by_side(service_round_trip(tmk, plaintext), sdk_round_trip, max(1, args.rounds // 100), args.runs)
    print(f"  Encryption SDK, caching CMM     {sdk * 1e6:8.2f} us   {sdk / ours:.0f}x slower than seal+open")


if __name__ == "__main__":
    main()
