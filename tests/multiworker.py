"""Servers with several worker processes, for tests that kill one: uvicorn --workers, gunicorn + uvicorn workers.

``serving(kind, "module:app", ...)`` starts the server as a subprocess (its own
session, so that every worker is stopped with it) on a free loopback port; the
test finds the workers with :func:`workers_of` and polls with :func:`poll`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from servers import free_port

GUNICORN_CONF = Path(__file__).resolve().parent.parent / "ops" / "gunicorn" / "gunicorn.conf.py"
# uvicorn --workers; gunicorn with no config at all; gunicorn with the documented config
# (ops/gunicorn/gunicorn.conf.py, its child_exit hook).
KINDS = ("uvicorn", "gunicorn", "gunicorn-child_exit")
POLL_TIMEOUT = 30.0  # generous: two cores shared with other suites; each poll ends as soon as it sees the state


def workers_of(parent: int) -> set[int]:
    """The server's worker processes: its children (Linux /proc), multiprocessing's resource tracker left out."""
    found: set[int] = set()
    for path in glob.glob(f"/proc/{parent}/task/*/children"):
        with contextlib.suppress(OSError):
            found |= {int(child) for child in Path(path).read_text().split()}
    return {pid for pid in found if b"resource_tracker" not in _cmdline(pid)}


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def poll(what: str, check: Callable[[], Any], log: Path) -> Any:
    """Call ``check`` until it returns something truthy (and return that), bounded by POLL_TIMEOUT."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)  # the next poll: the state comes from other processes
    pytest.fail(f"never saw {what}; server log:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serving(
    kind: str, app: str, *, app_dir: Path, env: Mapping[str, str], log: Path, workers: int = 2
) -> Iterator[tuple[int, str]]:
    """Run ``app`` under ``kind`` (one of KINDS) with ``workers`` workers; yields (server pid, http URL)."""
    port = free_port()
    if kind == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--workers", str(workers)]
        command += ["--host", "127.0.0.1", "--port", str(port), app]
    else:
        command = [sys.executable, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers)]
        command += ["-b", f"127.0.0.1:{port}", "--pythonpath", str(app_dir), "--graceful-timeout", "5"]
        command += ["-c", str(GUNICORN_CONF) if kind == "gunicorn-child_exit" else "/dev/null", app]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process.pid, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
