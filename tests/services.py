"""Private PostgreSQL / Redis servers and a black-hole TCP listener for tests.

Each ``PostgresServer`` / ``RedisServer`` owns a child process on its own
port and temp dir (the machine's shared instances on 5432/6379 are never
touched) and can be stopped, killed, frozen (SIGSTOP), thawed and started
again on the same data dir and port.

Notes:

* PostgreSQL refuses to run as root. When ``os.geteuid() == 0`` the data dir
  is chowned to the ``postgres`` system user and ``initdb``/``postgres`` are
  spawned with ``Popen(user=..., group=..., extra_groups=[])``, so the Popen
  pid *is* the postmaster and can be signalled directly.
* PostgreSQL children call ``setsid()``, so each backend is its own process
  group: signalling the postmaster's group does not reach them. ``freeze``,
  ``thaw`` and ``kill`` therefore signal the postmaster and its direct
  children (found through ``/proc``).
* The test process makes itself a "child subreaper" (Linux ``prctl``), so the
  orphans of a SIGKILLed postmaster are re-parented to it and reaped at once
  by ``kill()``, instead of lingering as zombies until PID 1 gets round to
  them (this machine's PID 1 reaps only every few seconds).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import glob
import logging
import os
import pwd
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

__all__ = [
    "APT_HINT",
    "MissingBinaryError",
    "PostgresServer",
    "RedisServer",
    "ServiceError",
    "SilentListener",
    "free_port",
]

log = logging.getLogger(__name__)

APT_HINT = "apt-get install -y postgresql redis-server"
HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service process could not be started, stopped or signalled."""


class MissingBinaryError(ServiceError):
    """A server binary is not installed."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port that was free a moment ago (callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment minus libpq's PG* variables (they would redirect clients)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


_subreaper_done = False


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Linux only; best effort, done once)."""
    global _subreaper_done
    if _subreaper_done or not sys.platform.startswith("linux"):
        return
    _subreaper_done = True
    pr_set_child_subreaper = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper: %s", exc)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc."""
    found: list[int] = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat, "rb") as f:
                data = f.read()
        except OSError:
            continue
        # Format: "pid (comm) state ppid ..."; comm may contain spaces/parens.
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(data.split(b" ", 1)[0]))
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pids: list[int], timeout: float) -> None:
    """Reap ``pids`` once they are (adopted) children of ours; give up after ``timeout``."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (no subreaper) or already reaped
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


_live: weakref.WeakSet[_ServerProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()


class _ServerProcess:
    """A server child process with start/stop/kill/freeze/thaw and a private temp dir."""

    name: ClassVar[str] = "server"
    stop_signal: ClassVar[int] = signal.SIGTERM
    startup_timeout: ClassVar[float] = 30.0

    def __init__(self, port: int | None = None, *, base_dir: str | Path | None = None) -> None:
        self._auto_port = port is None
        self.port: int = port if port is not None else free_port()
        self._own_base = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"ws_diag-{self.name}-") if base_dir is None else base_dir)
        self.log_path = self.base_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._started_once = False

    # -- subclass hooks ---------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs before the first start (e.g. initdb)."""

    def _after_first_start(self) -> None:
        """Runs once, after the first successful start."""

    # -- state ------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The main process is alive (it may be frozen)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def frozen(self) -> bool:
        return self._frozen and self.running

    def _tree(self) -> list[int]:
        """Main pid first, then its direct children."""
        if not self.running:
            return []
        assert self._proc is not None
        return [self._proc.pid, *_children(self._proc.pid)]

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Start the server (no-op if running; thaws it if frozen) and wait until it answers."""
        if self.running:
            self.thaw()
            return
        _become_subreaper()
        if not self._started_once:
            self._prepare()
        attempts = 5 if (self._auto_port and not self._started_once) else 1
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
                break
            except _PortInUse:
                if attempt == attempts:
                    raise ServiceError(f"{self.name}: port {self.port} in use") from None
                self.port = free_port()
        if not self._started_once:
            self._started_once = True
            self._after_first_start()

    def _spawn_and_wait(self) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_kwargs(),
            )
        self._frozen = False
        _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                text = self.log_path.read_bytes()[log_offset:].decode(errors="replace")
                if "Address already in use" in text:
                    raise _PortInUse()
                raise ServiceError(
                    f"{self.name} exited with code {code} while starting on port "
                    f"{self.port}; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._is_ready():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} not ready on port {self.port} within "
                    f"{self.startup_timeout} s; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, grace_s: float = 10.0) -> None:
        """Graceful stop (thawing it if frozen); SIGKILL after ``grace_s`` seconds."""
        if not self.running:
            self._proc = None
            return
        assert self._proc is not None
        _signal(self._proc.pid, self.stop_signal)
        if self._frozen:
            self.thaw()
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %s s; killing it", self.name, grace_s)
            self.kill()
            return
        self._proc = None
        self._frozen = False

    def kill(self) -> None:
        """SIGKILL the server and its children at once (a crash, no cleanup)."""
        if not self.running:
            self._proc = None
            return
        assert self._proc is not None
        pid = self._proc.pid
        _signal(pid, signal.SIGSTOP)  # no new children while we collect them
        children = self._collect_children(pid)
        for child in children:
            _signal(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired as exc:  # pragma: no cover - kernel trouble
            raise ServiceError(f"{self.name} pid {pid} survived SIGKILL") from exc
        _reap(children, timeout=5.0)
        self._proc = None
        self._frozen = False

    def _collect_children(self, pid: int) -> list[int]:
        seen: list[int] = []
        for _ in range(10):  # until no new child shows up
            new = [c for c in _children(pid) if c not in seen]
            if not new:
                break
            seen.extend(new)
        return seen

    def freeze(self) -> None:
        """SIGSTOP the server and its children: connections hang, nothing answers."""
        if not self.running:
            raise ServiceError(f"{self.name} is not running")
        assert self._proc is not None
        pid = self._proc.pid
        _signal(pid, signal.SIGSTOP)
        for child in self._collect_children(pid):
            _signal(child, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT what ``freeze`` stopped (no-op if not frozen or not running)."""
        if not self.running:
            self._frozen = False
            return
        if not self._frozen:
            return
        tree = self._tree()
        for pid in reversed(tree):  # children first, then the main process
            _signal(pid, signal.SIGCONT)
        self._frozen = False

    def ensure_running(self) -> None:
        """Thaw if frozen, start if stopped/killed; then check it answers."""
        if self.running:
            self.thaw()
            if self._is_ready():
                return
            log.warning("%s running but not answering; restarting it", self.name)
            self.kill()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temp dir."""
        try:
            self.stop()
        finally:
            _live.discard(self)
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- async wrappers (do not block the event loop) -----------------------
    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, grace_s: float = 10.0) -> None:
        await asyncio.to_thread(self.stop, grace_s)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    def __enter__(self) -> _ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running" if self.running else "stopped"
        return f"<{type(self).__name__} port={self.port} pid={self.pid} {state}>"


class _PortInUse(Exception):
    pass


# -- PostgreSQL --------------------------------------------------------------

_PG_HBA = """\
# Written by tests/services.py
local   all   all                    trust
host    all   {user}   127.0.0.1/32  scram-sha-256
host    all   all      127.0.0.1/32  trust
"""


def pg_bindir() -> Path:
    """Directory with the PostgreSQL server binaries (postgres, initdb, pg_isready)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else ()

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for cand in candidates:
        if all((cand / exe).is_file() for exe in ("postgres", "initdb", "pg_isready", "psql")):
            return cand
    raise MissingBinaryError(
        "PostgreSQL server binaries (postgres, initdb, pg_isready, psql) not found "
        f"(looked in {[str(c) for c in candidates] or 'pg_config --bindir, /usr/lib/postgresql/*/bin'}). "
        f"Install them with: {APT_HINT}"
    )


class PostgresServer(_ServerProcess):
    """A private PostgreSQL cluster on 127.0.0.1:``port`` with a password role.

    ``dsn`` logs in as ``wsdiag`` with a password that is checked
    (scram-sha-256); ``admin_dsn`` is the ``postgres`` superuser (trust).
    """

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients. SIGTERM
    # ("smart") would wait for every client (e.g. an open pool) to go away.
    stop_signal = signal.SIGINT
    user: ClassVar[str] = "wsdiag"
    password: ClassVar[str] = "s3cr3t-pw"
    database: ClassVar[str] = "postgres"

    def __init__(
        self,
        port: int | None = None,
        *,
        base_dir: str | Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bindir = pg_bindir()  # fail before creating anything
        self._run_as = self._postgres_user() if os.geteuid() == 0 else None
        super().__init__(port, base_dir=base_dir)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.settings: dict[str, str] = {
            "listen_addresses": HOST,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
            **(settings or {}),
        }

    @staticmethod
    def _postgres_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise MissingBinaryError(
                "running as root, PostgreSQL must run as the 'postgres' system user, "
                f"which does not exist. Install PostgreSQL with: {APT_HINT}"
            ) from None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{HOST}:{self.port}/{self.database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cwd": self.base_dir, "env": _clean_env()}
        if self._run_as is not None:
            kwargs.update(
                user=self._run_as.pw_uid,
                group=self._run_as.pw_gid,
                extra_groups=[],
                env=_clean_env(HOME=str(self.base_dir), USER="postgres", LOGNAME="postgres"),
            )
        return kwargs

    def _prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        cmd = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        with open(self.log_path, "ab") as logf:
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                    **self._popen_kwargs(),
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(f"initdb timed out; log {self.log_path}") from exc
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}); log {self.log_path}:\n{_tail(self.log_path)}")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(_PG_HBA.format(user=self.user))  # keeps owner and mode

    def _command(self) -> list[str]:
        cmd = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
        ]  # fmt: skip
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _is_ready(self) -> bool:
        try:
            result = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
                 "-U", "postgres", "-d", self.database, "-t", "1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=3,
                env=_clean_env(),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def _after_first_start(self) -> None:
        self.psql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{self.user}') "
            f"THEN CREATE ROLE {self.user} LOGIN SUPERUSER PASSWORD '{self.password}'; "
            "END IF; END $$;"
        )

    def psql(self, sql: str, timeout: float = 30.0) -> str:
        """Run ``sql`` as the superuser over the private Unix socket; return stdout."""
        cmd = [
            str(self.bindir / "psql"),
            "-h", str(self.socket_dir),
            "-p", str(self.port),
            "-U", "postgres",
            "-d", self.database,
            "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-c", sql,
        ]  # fmt: skip
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_clean_env(PGCONNECT_TIMEOUT="5"),
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"psql timed out after {timeout} s: {sql}") from exc
        if result.returncode != 0:
            raise ServiceError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout


# -- Redis -------------------------------------------------------------------


def _redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise MissingBinaryError(f"redis-server not found on PATH. Install it with: {APT_HINT}")
    return path


class RedisServer(_ServerProcess):
    """A private, non-persistent redis-server on 127.0.0.1:``port``."""

    name = "redis"
    stop_signal = signal.SIGTERM
    startup_timeout = 30.0

    def __init__(self, port: int | None = None, *, base_dir: str | Path | None = None) -> None:
        self.binary = _redis_binary()
        super().__init__(port, base_dir=base_dir)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.base_dir),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"cwd": self.base_dir}

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = b""
                while not reply.endswith(b"\r\n"):
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
        except OSError:  # refused, reset, timed out
            return False
        return reply == b"+PONG\r\n"


# -- Silent listener -----------------------------------------------------------


class SilentListener:
    """A TCP black hole: accepts connections on 127.0.0.1, never reads or writes.

    Clients connect fine, then every read waits forever: the shape of a
    server that is up at the TCP level but hung.
    """

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"silent-listener:{self.port}", daemon=True)
        self._closed = False
        self._thread.start()

    @property
    def accepted(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return len(self._conns)

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def postgres_dsn(self) -> str:
        user, password = PostgresServer.user, PostgresServer.password
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/postgres"

    @property
    def redis_url(self) -> str:
        return self.url("redis", "/0")

    @property
    def ws_url(self) -> str:
        return self.url("ws")

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    with self._lock:
                        self._conns.append(conn)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
