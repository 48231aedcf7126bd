"""daphne, in a subprocess: :class:`DaphneServer` and :func:`run_daphne` (``run_server(app, "daphne")``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence

from . import ServerError

__all__ = ["DaphneServer", "run_daphne"]

log = logging.getLogger(__name__)


_LISTENING = r"Listening on TCP address [^\s]+:(\d+)"


class DaphneServer:
    """``python -m daphne`` serving ``app`` (``"module:attribute"``) on an ephemeral port of ``host``.

    daphne runs on Twisted's reactor, which cannot share this process's event loop
    or be restarted, hence a subprocess. Its port is read from its "Listening on"
    log line (daphne binds port 0 itself: no race for a free port). Its stderr
    (daphne's log and the app's) is collected by a thread into :attr:`lines`.

    Args:
        app: the import string daphne serves.
        host: the address to bind.
        env: the subprocess environment (default: this process's). This process's
            ``sys.path`` is prepended to its ``PYTHONPATH``, so ``app`` imports as it
            would here.
        args: extra daphne command-line arguments (``daphne --help``).
        cwd: the working directory (default: this process's).

    The blocking methods (:meth:`start`, :meth:`stop`, :meth:`wait_for`) suit
    synchronous code; from async code use :func:`run_daphne` and :meth:`await_line`.
    """

    def __init__(
        self,
        app: str,
        *,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(app, str) or ":" not in app:
            msg = f"app: expected an import string 'module:attribute', got {app!r}"
            raise TypeError(msg)
        self.app = app
        self.host = host
        self.url = ""
        self.lines: list[str] = []
        self.returncode: int | None = None
        self.died = False  # the process ended before stop() asked it to
        self._changed = threading.Condition()
        self._ended = False
        environment = dict(os.environ if env is None else env)
        inherited = [p for p in sys.path if p and os.path.isdir(p)]
        environment["PYTHONPATH"] = os.pathsep.join([*inherited, *filter(None, [environment.get("PYTHONPATH")])])
        command = [sys.executable, "-m", "daphne", "-b", host, "-p", "0", *args, app]
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command: this interpreter, daphne, caller's args
            command,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the access log
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"daphne-stderr-{self.process.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        try:
            for line in self.process.stderr:
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    @property
    def log(self) -> str:
        """Everything daphne (and the app) wrote to stderr so far."""
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first log line matching the regular expression ``pattern``, waiting at most ``timeout`` seconds.

        Raises:
            ServerError: no such line within ``timeout``, or daphne's stderr ended
                without one; the message carries daphne's log.
        """
        compiled = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for m in map(compiled.search, self.lines) if m][:1]
            return bool(found) or self._ended

        with self._changed:
            self._changed.wait_for(seen, timeout)
        if not found:
            msg = f"daphne never logged {pattern!r} (exit code {self.process.poll()}):\n{self.log}"
            raise ServerError(msg)
        return found[0]

    async def await_line(self, pattern: str, limit_s: float = 10.0) -> re.Match[str]:
        """:meth:`wait_for` (at most ``limit_s`` seconds) without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, limit_s)

    def start(self, timeout: float = 10.0) -> str:
        """Wait until daphne listens (at most ``timeout`` seconds); return and remember its ``ws://`` URL."""
        port = self.wait_for(_LISTENING, timeout).group(1)
        self.url = f"ws://{self.host}:{port}"
        return self.url

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if daphne has not exited within ``timeout`` seconds; always reaped."""
        if self.process.poll() is not None:
            self.died = self.returncode is None
        else:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("daphne (pid %d) did not stop within %s s; killing it", self.process.pid, timeout)
                self.process.kill()
                self.process.wait(timeout)
        self.returncode = self.process.returncode
        self._reader.join(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> DaphneServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def run_daphne(
    app: str,
    *,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[DaphneServer]:
    """Serve the import string ``app`` with daphne; yield the started :class:`DaphneServer` (``.url``, ``.lines``).

    Raises:
        TypeError: ``app`` is not an import string.
        ServerError: daphne did not listen within ``startup_timeout`` seconds, or
            exited on its own before the block ended (raised on exit, with its log).
    """
    server = DaphneServer(app, host=host, env=env, args=args, cwd=cwd)
    try:
        await asyncio.to_thread(server.start, startup_timeout)
        yield server
    finally:
        await asyncio.to_thread(server.stop, shutdown_timeout)
    if server.died:
        msg = f"daphne exited on its own with code {server.returncode}:\n{server.log}"
        raise ServerError(msg)
