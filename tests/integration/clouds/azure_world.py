"""Key Vault and Entra ID as the deployed functions meet them: the production registry builds
the adapters, which reach ``<vault>.vault.azure.net`` and ``login.microsoftonline.com``
by name over verified TLS (served by the wire fakes on loopback), answer the vault's
bearer challenge and exchange a client assertion for a token: for a tenant, the JWT the
deployment signs with its federation key (kms:Sign on moto, behind a fault proxy)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fakes.aws_sts import FUNCTION_ROLE, FakeSts
from fakes.entra_id import AssertionSigner, FakeEntraId
from fakes.key_vault import FakeKeyVault, VaultKey
from faults import FaultProxy
from gcp_world import WRAPPING_ROLE


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
    def __init__(
        self, entra: FakeEntraId, vault: FakeKeyVault, issuer: str, sts_tokens: AssertionSigner, kms: FaultProxy
    ) -> None:
        self.entra, self.vault, self.issuer = entra, vault, issuer
        self.sts_tokens = sts_tokens  # the operator's assertions
        self.federation_kms = kms
        self.operator: AzureCustomer | None = None
        self.sts: FakeSts | None = None  # issues the operator's assertions (GetWebIdentityToken)

    def trust(self, customer: AzureCustomer, tenant_id: str) -> None:
        """The customer's app trusts ``tenant_id``'s assertions too."""
        self.entra.federate(customer.entra_tenant, customer.client_id, self.issuer, f"tenant:{tenant_id}")

    def customer(self, tenant_id: str, *, kind: str = "RSA", managed_hsm: bool = False) -> AzureCustomer:
        """A customer who created a key, an app with Crypto User on it, and a federated credential for this tenant."""
        entra_tenant, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        host = f"kv{uuid.uuid4().hex[:10]}." + ("managedhsm.azure.net" if managed_hsm else "vault.azure.net")
        self.vault.create_vault(host, entra_tenant)
        key = self.vault.create_key(host, f"tmk-{uuid.uuid4().hex[:6]}", kind=kind, users=(client_id,))
        self.entra.application(entra_tenant, client_id)
        self.entra.federate(entra_tenant, client_id, self.issuer, f"tenant:{tenant_id}")
        return AzureCustomer(tenant_id, entra_tenant, client_id, key)

    def operator_settings(self) -> dict[str, str]:
        self.operator = self.customer("")
        for role in (FUNCTION_ROLE, WRAPPING_ROLE):  # whichever the functions run as
            self.entra.federate(self.operator.entra_tenant, self.operator.client_id, self.sts_tokens.issuer, role)
        return {
            "OPERATOR_AZURE_KEY_ID": self.operator.config["key_id"],
            "OPERATOR_AZURE_TENANT_ID": self.operator.entra_tenant,
            "OPERATOR_AZURE_CLIENT_ID": self.operator.client_id,
        }
