"""Amazon Cognito pre token generation trigger (event version V2_0) for the Tenant KMS admin API.

Access tokens carry what the admin API reads: claim ``tenant_id`` from the user's
``custom:tenant_id`` attribute, and scope ``tenant-kms/admin`` or ``tenant-kms/operator`` by
membership of a user pool group. ``auth_time`` is a standard claim of Cognito access tokens.
Only V2_0 (or V3_0) events customise access tokens, and they need the Essentials or Plus
feature plan. Deploy it in the user pool's account; it has no dependencies.
"""

ADMIN_GROUP = "tenant-kms-admins"
OPERATOR_GROUP = "tenant-kms-operators"
SCOPE_OF_GROUP = {ADMIN_GROUP: "tenant-kms/admin", OPERATOR_GROUP: "tenant-kms/operator"}


def lambda_handler(event: dict, context: object) -> dict:
    request = event["request"]
    groups = set((request.get("groupConfiguration") or {}).get("groupsToOverride") or [])
    granted = [scope for group, scope in SCOPE_OF_GROUP.items() if group in groups]
    tenant_id = (request.get("userAttributes") or {}).get("custom:tenant_id")
    event["response"]["claimsAndScopeOverrideDetails"] = {
        "accessTokenGeneration": {
            "claimsToAddOrOverride": {"tenant_id": tenant_id} if tenant_id else {},
            "scopesToAdd": granted,
            # Only a group grants these, never a client that asked for them itself.
            "scopesToSuppress": [scope for scope in SCOPE_OF_GROUP.values() if scope not in granted],
        }
    }
    return event
