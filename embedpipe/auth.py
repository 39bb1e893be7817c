"""API keys → tenants, shared by every service that authenticates callers.

Keys are configured hashed (sha256, hex), never in the clear:

- `EMBEDPIPE_API_KEYS`: comma-separated `tenant_id:sha256hex` pairs;
- `EMBEDPIPE_API_KEYS_FILE`: a JSON object `{"tenant_id": ["sha256hex", ...], ...}`.

A key of the tenant `*` is a service key: it may act for any tenant (the Ingestion Service
sends every tenant's chunks with one). `python -m embedpipe.auth hash KEY` prints the hash
to put there. With no key configured,
authentication is off (a development set-up); `make up` always configures a dev key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from embedpipe.envconfig import ConfigError

#: gRPC metadata / HTTP headers that may carry a key (lower-case, as gRPC wants).
AUTHORIZATION = "authorization"
X_API_KEY = "x-api-key"
#: The query parameter a WebSocket may carry its key in (browsers cannot set its headers).
API_KEY_QUERY = "api_key"
_HEX = frozenset("0123456789abcdef")
#: The tenant of service keys, which may act for every tenant.
SERVICE_TENANT = "*"
#: What every transport answers to a call without a valid key, and to a service key where
#: a tenant's is needed.
KEY_REQUIRED = "a valid API key is required (Authorization: Bearer <key>, or X-API-Key)"
SERVICE_KEY_REFUSED = "a service key has no tenant; use a tenant's key"


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return "ep_" + secrets.token_urlsafe(24)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key of `Authorization: Bearer <key>` or `X-API-Key: <key>` (names lower-case)."""
    authorization = headers.get(AUTHORIZATION, "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get(X_API_KEY, "").strip()
    return key or None


def _check_hash(value: str, where: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or not set(value) <= _HEX:
        raise ConfigError(f"{where}: {value[:12]!r}... is not a sha256 hex digest")
    return value


@dataclass(frozen=True)
class KeyStore:
    """Which tenant each (hashed) key belongs to."""

    tenants_by_hash: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Without the hashes: settings holding a KeyStore get logged and printed."""
        return f"KeyStore(<{len(self.tenants_by_hash)} keys>)"

    @property
    def enabled(self) -> bool:
        return bool(self.tenants_by_hash)

    def tenant_for(self, key: str | None) -> str | None:
        """The tenant of `key`, or None for a missing or unknown key."""
        if not key:
            return None
        digest = hash_key(key)
        for stored, tenant in self.tenants_by_hash.items():
            if hmac.compare_digest(stored, digest):
                return tenant
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KeyStore:
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in env.get("EMBEDPIPE_API_KEYS", "").split(","))):
            tenant, sep, digest = item.rpartition(":")
            if not sep or not tenant:
                raise ConfigError("EMBEDPIPE_API_KEYS entries must look like tenant_id:sha256hex")
            pairs[_check_hash(digest, "EMBEDPIPE_API_KEYS")] = tenant
        path = env.get("EMBEDPIPE_API_KEYS_FILE", "").strip()
        if path:
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"EMBEDPIPE_API_KEYS_FILE {path}: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"EMBEDPIPE_API_KEYS_FILE {path}: must be a JSON object")
            for tenant, digests in data.items():
                if not isinstance(digests, list):
                    raise ConfigError(f"EMBEDPIPE_API_KEYS_FILE {path}: {tenant} needs a list")
                for digest in digests:
                    pairs[_check_hash(str(digest), f"EMBEDPIPE_API_KEYS_FILE {path}")] = tenant
        return cls(pairs)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "hash":
        print(hash_key(argv[1]))
        return 0
    if argv == ["new"]:
        key = new_key()
        print(f"key:    {key}\nsha256: {hash_key(key)}")
        return 0
    print("usage: python -m embedpipe.auth hash KEY | new", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
