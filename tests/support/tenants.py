"""The test tenants and their API keys (the servers are configured with the hashes)."""

from __future__ import annotations

#: API keys of the tenants the tests use (the servers store only hashes).
TENANT_KEYS = {
    "tenant-a": "key-of-tenant-a",
    "tenant-b": "key-of-tenant-b",
    "tenant-c": "key-of-tenant-c",
    "*": "key-of-a-service",  # a service key: may act for any tenant
}


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TENANT_KEYS[tenant]}"}
