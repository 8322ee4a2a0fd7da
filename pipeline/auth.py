"""API keys and the role/tenant check every route goes through.

A key maps to a tenant, a role (pbx, agent, analyst, admin) and, for agents, an agent id.
Keys are stored as SHA-256 hashes; the clear key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, WebSocket

from pipeline.database import Database, database_of
from pipeline.ids import check_id
from pipeline.services import Services

Role = Literal["pbx", "agent", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("pbx", "agent", "analyst", "admin")

# What each role may do, for people choosing a role (`keys create --help`, the README,
# the OpenAPI description); the routes' `require(...)` is what enforces it.
ROLE_RIGHTS: dict[Role, str] = {
    "pbx": "register live calls and send their media (RTP, Twilio, L16, AudioSocket),"
    " upload recordings and follow their jobs, read transcripts, speak (TTS), run IVR"
    " sessions and voicebot calls",
    "agent": "(one agent, --agent-id) receive that agent's live hints, rate them, read and"
    " follow that agent's calls",
    "analyst": "search and list the tenant's calls, read their transcripts, play their"
    " recordings, export, term statistics",
    "admin": "everything in the tenant: playbooks and knowledge base, IVR menus, voicebot"
    " policy, webhooks, legal hold and deletion, metrics",
}


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

    def sign_link(self, principal: Principal, path: str, ttl_s: int) -> str:
        """A token that lets whoever holds it GET `path` as `principal` until `ttl_s` from
        now: for what a browser fetches by itself (an <audio src> cannot send a header).

        It is signed with the key's stored hash, so every API host can check it and
        revoking the key voids its links; a link is bound to one path."""
        if principal.key_id is None:
            return ""  # auth off: no key, no token needed
        row = self._db.fetchone("SELECT hash FROM api_keys WHERE key_id = ?", (principal.key_id,))
        if row is None:
            return ""
        expires = int(time.time()) + ttl_s
        return f"{principal.key_id}.{expires}.{_link_mac(row[0], path, expires)}"

    def link_principal(self, token: str, path: str) -> Principal | None:
        """The principal a `sign_link` token speaks for on `path`; None when it is
        malformed, expired, for another path or its key was revoked."""
        key_id, _, rest = token.partition(".")
        expires_s, _, mac = rest.partition(".")
        if not expires_s.isdigit() or int(expires_s) < time.time():
            return None
        row = self._db.fetchone(
            "SELECT hash, tenant, role, agent_id FROM api_keys WHERE key_id = ?", (key_id,)
        )
        if row is None or not hmac.compare_digest(mac, _link_mac(row[0], path, int(expires_s))):
            return None
        return Principal(tenant=row[1], role=row[2], agent_id=row[3], key_id=key_id)

    def revoke(self, key_id: str) -> bool:
        """Delete a key by its id; True when one was deleted."""
        return self._db.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,)) > 0

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _link_mac(key_hash: str, path: str, expires: int) -> str:
    message = f"{path}\n{expires}".encode()
    return hmac.new(key_hash.encode(), message, hashlib.sha256).hexdigest()[:32]


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


# The `link` query parameter of the routes that take one, for the OpenAPI.
LINK_HELP = "a token from the call's `links` (GET /v1/calls/{call_id}), instead of the key"


def require(*roles: Role, links: bool = False) -> Callable[[Request], Principal]:
    """FastAPI dependency: the caller must hold one of `roles` (403 otherwise). With
    `links`, a `?link=` token from `KeyStore.sign_link` for this path stands for the key."""

    def dep(request: Request) -> Principal:
        services = request.app.state.services
        token = request.query_params.get("link") if links else None
        if token is None or not services.settings.auth_enabled:
            p = principal_of(request)
        else:
            found = keys_of(services).link_principal(token, request.url.path)
            if found is None:
                services.metrics.inc("auth_failures_total", reason="link")
                raise HTTPException(401, "this link is malformed, expired or revoked")
            p = found
        if p.role not in roles:
            services.metrics.inc("auth_failures_total", reason="role")
            raise HTTPException(
                403, f"role {p.role!r} may not do this (needs {' or '.join(roles)})"
            )
        return p

    return dep
