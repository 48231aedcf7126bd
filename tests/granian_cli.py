"""granian's own command line (``python -m granian``) in a subprocess, for what only a real process shows.

The runner's ``granian`` kind embeds granian's server in the test's event loop; its ``stop()``
leaves open sessions hanging. What users meet on a deploy (SIGINT or SIGTERM to the main
process, which stops its worker) needs the real command. ``run_granian("module:app")`` serves
the import string on a free loopback port (``--interface asgi``: lifespan on), collects the
process's output (granian's log and the app's ``print``) and yields a :class:`GranianProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from servers import free_port

__all__ = ["GranianProcess", "run_granian"]

TESTS = Path(__file__).resolve().parent


class GranianProcess:
    """One ``python -m granian`` process; its combined output lands in :attr:`lines`."""

    def __init__(self, app: str, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}"
        self.port = port
        self.lines: list[str] = []
        self._changed = threading.Condition()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *[p for p in sys.path if p and os.path.isdir(p)]])
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", "1", app]
        self.process = subprocess.Popen(
            command,
            cwd=TESTS,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its worker is stopped with it
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        with self._changed:
            return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        """The lines so far that match the regular expression ``pattern``."""
        with self._changed:
            return [line for line in self.lines if re.search(pattern, line)]

    def _wait_for(self, pattern: str, timeout: float) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines if re.search(pattern, line)][:1]
            return bool(found)

        with self._changed:
            self._changed.wait_for(seen, timeout)
        if not found:
            msg = f"granian never wrote {pattern!r} (exit code {self.process.poll()}):\n{self.log}"
            raise AssertionError(msg)
        return found[0]

    async def await_line(self, pattern: str, limit_s: float = 10.0) -> str:
        """The first output line matching ``pattern``, waiting at most ``limit_s`` seconds."""
        return await asyncio.to_thread(self._wait_for, pattern, limit_s)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the main process, as a process manager would."""
        self.process.send_signal(sig)

    async def wait_exit(self, limit_s: float = 10.0) -> int:
        """The exit code, once the process ended (within ``limit_s`` seconds)."""
        return await asyncio.to_thread(self.process.wait, limit_s)

    def kill(self) -> None:
        """Stop the process group for good and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def _listening(process: GranianProcess, limit_s: float) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            if process.process.poll() is not None:
                msg = f"granian exited before it listened:\n{process.log}"
                raise AssertionError(msg)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", process.port)
            except OSError:
                await asyncio.sleep(0.05)  # the next connect attempt: granian is starting
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def run_granian(app: str, startup_timeout: float = 20.0) -> AsyncIterator[GranianProcess]:
    """Serve the import string ``app`` (a module under ``tests/``) with ``python -m granian``."""
    process = GranianProcess(app, free_port())
    try:
        await _listening(process, startup_timeout)
        yield process
    finally:
        await asyncio.to_thread(process.kill)
