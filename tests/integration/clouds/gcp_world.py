"""Cloud KMS and Google's token services as the deployed functions meet them: the production
registry builds the adapters; the token exchange and impersonation reach
``sts.googleapis.com`` and ``iamcredentials.googleapis.com`` by name over verified TLS, and
Cloud KMS is reached at Google's endpoint over TLS with call credentials, as deployed.
Each tenant federates as its own session of the key-wrapping role (KEY_WRAPPING_ROLE_ARN,
assumed in moto by the production session provider), whose signed GetCallerIdentity the
STS fake replays against moto."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from fakes.aws_sts import create_role
from fakes.cloud_kms import FakeCloudKms
from fakes.connect_proxy import ConnectProxy
from fakes.google_iam import FakeGoogleIam, ServiceAccount, WorkloadProvider

AWS_ACCOUNT = "123456789012"
WRAPPING_ROLE = f"arn:aws:iam::{AWS_ACCOUNT}:role/tenant-kms-key-wrapping"


def session_name(tenant_id: str) -> str:
    return tenant_id if len(tenant_id) >= 2 else "=" + tenant_id


def tenant_arn(tenant_id: str) -> str:
    return f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/tenant-kms-key-wrapping/{session_name(tenant_id)}"


@dataclass
class GcpCustomer:
    """One customer's pool provider (its condition naming our tenant), key and optional service account."""

    tenant_id: str
    provider: WorkloadProvider
    key_name: str
    member: str  # who is bound on the key
    service_account: ServiceAccount | None

    @property
    def config(self) -> dict:
        config = {"key_name": self.key_name, "workload_identity_provider": self.provider.audience}
        if self.service_account:
            config["service_account_email"] = self.service_account.email
        return config


class GcpWorld:
    def __init__(self, iam: FakeGoogleIam, kms: FakeCloudKms, moto_endpoint: str) -> None:
        self.iam, self.kms = iam, kms
        self.proxy: ConnectProxy | None = None  # how gRPC reaches Cloud KMS's host name
        create_role(moto_endpoint, WRAPPING_ROLE)

    @staticmethod
    def _audience() -> str:
        project = str(secrets.randbelow(9 * 10**11) + 10**11)
        return (
            f"//iam.googleapis.com/projects/{project}/locations/global/"
            f"workloadIdentityPools/pool-{uuid.uuid4().hex[:8]}/providers/aws-saas"
        )

    def customer(self, tenant_id: str, *, impersonate: bool = False) -> GcpCustomer:
        """A customer whose pool admits exactly this tenant's ARN and whose key trusts it (or its service account)."""
        audience = self._audience()
        arn = tenant_arn(tenant_id)
        provider = self.iam.create_provider(audience, aws_account=AWS_ACCOUNT, condition=f"assertion.arn == '{arn}'")
        principal = self.iam.principal(audience, arn)
        account = None
        member = principal
        if impersonate:
            email = f"tmk-{uuid.uuid4().hex[:6]}@acme-prod.iam.gserviceaccount.com"
            account = self.iam.create_service_account(email, principal)
            member = f"serviceAccount:{email}"
        key_name = f"projects/acme-prod/locations/europe-west1/keyRings/saas/cryptoKeys/tmk-{uuid.uuid4().hex[:8]}"
        self.kms.create_key(key_name, member)
        return GcpCustomer(tenant_id, provider, key_name, member, account)

    def operator_settings(self) -> dict[str, str]:
        """The operator's pool trusts the deployment's account; its key, every identity of that pool."""
        audience = self._audience()
        self.iam.create_provider(audience, aws_account=AWS_ACCOUNT)
        key_name = f"projects/operator/locations/global/keyRings/tenant-kms/cryptoKeys/op-{uuid.uuid4().hex[:6]}"
        self.kms.create_key(key_name, self.iam.principal_set(audience))
        return {
            "OPERATOR_GCP_KEY_NAME": key_name,
            "OPERATOR_GCP_WORKLOAD_IDENTITY_PROVIDER": audience,
            "KEY_WRAPPING_ROLE_ARN": WRAPPING_ROLE,
        }
