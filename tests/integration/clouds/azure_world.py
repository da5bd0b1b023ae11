"""Key Vault and Entra ID as the deployed functions meet them: the production registry builds
the adapters, which reach ``<vault>.vault.azure.net`` and ``login.microsoftonline.com``
by name over verified TLS (served by the wire fakes on loopback), answer the vault's
bearer challenge and exchange a client assertion for a token. The only stand-in is the
assertion signer (``AssertionSigner``), whose tokens name the tenant as the deployment's
issuer does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fakes.entra_id import AssertionSigner, FakeEntraId
from fakes.key_vault import FakeKeyVault, VaultKey


@dataclass
class AzureCustomer:
    """One customer's Entra tenant, federated application and Key Vault key."""

    tenant_id: str  # ours
    entra_tenant: str
    client_id: str
    key: VaultKey

    @property
    def config(self) -> dict:
        return {
            "key_id": f"https://{self.key.host}/keys/{self.key.name}",
            "tenant_id": self.entra_tenant,
            "client_id": self.client_id,
        }


class AzureWorld:
    def __init__(self, entra: FakeEntraId, vault: FakeKeyVault, signer: AssertionSigner) -> None:
        self.entra, self.vault, self.signer = entra, vault, signer
        self.operator: AzureCustomer | None = None

    def customer(self, tenant_id: str, *, kind: str = "RSA", managed_hsm: bool = False) -> AzureCustomer:
        """A customer who created a key, an app with Crypto User on it, and a federated credential for this tenant."""
        entra_tenant, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        host = f"kv{uuid.uuid4().hex[:10]}." + ("managedhsm.azure.net" if managed_hsm else "vault.azure.net")
        self.vault.create_vault(host, entra_tenant)
        key = self.vault.create_key(host, f"tmk-{uuid.uuid4().hex[:6]}", kind=kind, users=(client_id,))
        self.entra.application(entra_tenant, client_id)
        self.entra.federate(entra_tenant, client_id, self.signer.issuer, self.signer.subject(tenant_id))
        return AzureCustomer(tenant_id, entra_tenant, client_id, key)

    def operator_settings(self) -> dict[str, str]:
        self.operator = self.customer("", kind="RSA")
        return {
            "OPERATOR_AZURE_KEY_ID": self.operator.config["key_id"],
            "OPERATOR_AZURE_TENANT_ID": self.operator.entra_tenant,
            "OPERATOR_AZURE_CLIENT_ID": self.operator.client_id,
        }
