"""`callpipe keys create` (API keys) and `callpipe retention sweep`."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.auth import KEYS_SCHEMA, ROLE_RIGHTS, ROLES, KeyStore
from pipeline.config import Settings
from pipeline.database import open_database
from pipeline.errors import CliError
from pipeline.services import ServicesFactory
from recordings.retention import apply_lifecycle, sweep


def register(sub: Any, build_services: ServicesFactory) -> None:
    """Add `keys` and `retention`."""
    keys = sub.add_parser("keys", help="API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser(
        "create",
        help="create a key; prints it alone on stdout",
        description="Create an API key for one tenant and role; the key is printed once"
        " (only its hash is kept). Roles:\n"
        + "\n".join(f"  {role:<8} {ROLE_RIGHTS[role]}" for role in ROLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument("--role", required=True, choices=ROLES, help="what the key may do")
    create.add_argument("--agent-id", default=None, help="the agent an agent key belongs to")
    create.add_argument("--data", type=Path, default=None, help="data dir (default ./data)")
    create.set_defaults(func=cmd_keys_create)

    ret = sub.add_parser("retention", help="retention of recordings and transcripts")
    rsub = ret.add_subparsers(dest="retention_command", required=True)
    sweep = rsub.add_parser("sweep", help="delete what is past retention (held calls stay)")
    sweep.add_argument("--data", type=Path, default=None, help="data dir (default ./data)")
    sweep.set_defaults(func=partial(cmd_retention_sweep, build_services=build_services))


def _settings(args: argparse.Namespace) -> Settings:
    base = Settings()
    if args.data is not None:
        return base.model_copy(update={"data_dir": args.data})
    return base


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create a key (stored hashed) and print the clear key once."""
    settings = _settings(args)
    store = KeyStore(open_database(settings, "keys", KEYS_SCHEMA))
    try:
        key = store.create(args.tenant, args.role, args.agent_id)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    sys.stdout.write(key + "\n")
    return 0


def cmd_retention_sweep(args: argparse.Namespace, build_services: ServicesFactory) -> int:
    """One sweep now; prints what it removed as JSON."""
    services = build_services(_settings(args))
    try:
        lifecycle = apply_lifecycle(services)
        report = sweep(services)
    finally:
        services.close()
    out = {
        "objects_deleted": report.objects_deleted,
        "calls_deleted": report.calls_deleted,
        "utterances_deleted": report.utterances_deleted,
        "held_kept": report.held_kept,
        "prompts_deleted": report.prompts_deleted,
        "tenants": report.tenants,
        "seconds": round(report.seconds, 3),
        "lifecycle_rule": lifecycle,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
