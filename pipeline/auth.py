"""API keys and the role/tenant check every route goes through.

A key maps to a tenant, a role (pbx, agent, analyst, admin) and, for agents, an agent id.
Keys are stored as SHA-256 hashes; the clear key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, WebSocket

from pipeline.database import Database, database_of
from pipeline.ids import check_id
from pipeline.services import Services

Role = Literal["pbx", "agent", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("pbx", "agent", "analyst", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: tenant, role and (agents) agent id."""

    tenant: str
    role: Role
    agent_id: str | None = None
    key_id: str | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Migrations of the keys' schema, in order (pipeline/database.py applies the new ones).
KEYS_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS api_keys (hash TEXT PRIMARY KEY, key_id TEXT UNIQUE,"
    " tenant TEXT NOT NULL, role TEXT NOT NULL, agent_id TEXT, created_at TEXT"
    " DEFAULT CURRENT_TIMESTAMP)"
]


class KeyStore:
    """API keys, hashed, in the deployment's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, tenant: str, role: Role, agent_id: str | None = None) -> str:
        """A new key; only its hash is kept."""
        check_id(tenant, "tenant")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise ValueError("an agent key needs --agent-id")
        key_id = secrets.token_hex(4)
        key = f"cp_{key_id}_{secrets.token_urlsafe(24)}"
        self._db.execute(
            "INSERT INTO api_keys (hash, key_id, tenant, role, agent_id) VALUES (?,?,?,?,?)",
            (_hash(key), key_id, tenant, role, agent_id),
        )
        return key

    def lookup(self, key: str) -> Principal | None:
        """The principal of a key, or None for an unknown key."""
        row = self._db.fetchone(
            "SELECT tenant, role, agent_id, key_id FROM api_keys WHERE hash = ?", (_hash(key),)
        )
        if row is None:
            return None
        return Principal(tenant=row[0], role=row[1], agent_id=row[2], key_id=row[3])

    def revoke(self, key_id: str) -> bool:
        """Delete a key by its id; True when one was deleted."""
        return self._db.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,)) > 0

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def keys_of(services: Services) -> KeyStore:
    """The API keys of this deployment, opened on first use."""
    return services.component("keys", lambda: KeyStore(database_of(services, "keys", KEYS_SCHEMA)))


def principal_of(request: Request) -> Principal:
    """Authenticate a request (401 when the key is missing or unknown)."""
    services = request.app.state.services
    settings = services.settings
    if not settings.auth_enabled:
        return Principal(tenant=settings.default_tenant, role="admin")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        services.metrics.inc("auth_failures_total", reason="missing")
        raise HTTPException(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    p: Principal | None = keys_of(services).lookup(token.strip())
    if p is None:
        services.metrics.inc("auth_failures_total", reason="unknown")
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return p


def websocket_principal(services: Services, ws: WebSocket) -> Principal | None:
    """The caller of a WebSocket, from `?key=` (browsers cannot set headers on a
    WebSocket) or `Authorization: Bearer`; None when the key is missing or unknown."""
    key = ws.query_params.get("key", "")
    if not key:
        scheme, _, token = ws.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return principal_of_key(services, key)


def principal_of_key(services: Services, key: str | None) -> Principal | None:
    """The principal of a key however it came (a WebSocket's query or header, a media
    stream's own metadata); None when it is missing or unknown. With auth off, the
    default tenant's admin."""
    settings = services.settings
    if not settings.auth_enabled:
        return Principal(tenant=settings.default_tenant, role="admin")
    if not key:
        return None
    principal: Principal | None = keys_of(services).lookup(key)
    return principal


def require(*roles: Role) -> Callable[[Request], Principal]:
    """FastAPI dependency: the caller must hold one of `roles` (403 otherwise)."""

    def dep(request: Request) -> Principal:
        p = principal_of(request)
        if p.role not in roles:
            request.app.state.services.metrics.inc("auth_failures_total", reason="role")
            raise HTTPException(
                403, f"role {p.role!r} may not do this (needs {' or '.join(roles)})"
            )
        return p

    return dep
