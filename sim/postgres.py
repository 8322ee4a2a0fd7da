"""A throwaway PostgreSQL server for tests and benchmarks, from Debian's `postgresql`
binaries: a fresh cluster in a temporary directory, on a loopback port, removed on exit.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the
`postgres` user the Debian package creates, in a directory outside root's private temp
dirs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def postgres_server(*options: str, timeout_s: float = 30.0) -> Iterator[str]:
    """A running server (`options`: extra `-c name=value` settings); yields the URL of its
    `postgres` database (superuser `postgres`, trust on loopback)."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="callpipe-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    settings = " ".join([f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", *options])
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log")]
    cmd += ["-o", settings, "-w", "-t", str(int(timeout_s))]
    try:
        subprocess.run(_as_postgres([*cmd, "start"]), check=True, capture_output=True)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([*cmd, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create an empty database on the server; its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
