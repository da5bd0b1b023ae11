"""Tenant KMS domain core: tenant master keys, their versions, and the records they seal."""
