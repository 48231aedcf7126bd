"""Run the benchmark sections and collect their results."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import connect, diagnosis, herd, memory, message_path, scale, server_path, sessions, storm
from .common import ProbeClients, Services, machine, machine_busy, probe_clients, progress, services

__all__ = ["SECTIONS", "Section", "quiet_logging", "raise_fd_limit", "run_sections"]


@dataclass(frozen=True)
class Section:
    """One benchmark section: its title, configuration class and entry points."""

    title: str
    config: type[Any]
    run: Callable[[Any, ProbeClients | None], Awaitable[dict[str, Any]]]
    render: Callable[[dict[str, Any]], str]
    needs_services: bool


async def _message_path(cfg: Any, _: ProbeClients | None) -> dict[str, Any]:
    return await message_path.run(cfg)


async def _memory(cfg: Any, _: ProbeClients | None) -> dict[str, Any]:
    return await memory.run(cfg)


async def _sessions(cfg: Any, _: ProbeClients | None) -> dict[str, Any]:
    return await sessions.run(cfg)


async def _herd(cfg: Any, _: ProbeClients | None) -> dict[str, Any]:
    return await herd.run(cfg)


async def _scale(cfg: Any, _: ProbeClients | None) -> dict[str, Any]:
    return await scale.run(cfg)  # starts (and stops) a Redis of its own per run


def _with_clients(
    run: Callable[[Any, ProbeClients], Awaitable[dict[str, Any]]],
) -> Callable[[Any, ProbeClients | None], Awaitable[dict[str, Any]]]:
    async def call(cfg: Any, clients: ProbeClients | None) -> dict[str, Any]:
        assert clients is not None, "this section needs PostgreSQL and Redis"
        return await run(cfg, clients)

    return call


SECTIONS: dict[str, Section] = {
    "message_path": Section(
        "1. Message path, in-process",
        message_path.MessagePathConfig,
        _message_path,
        message_path.render,
        False,
    ),
    "server": Section(
        "2. Message path through real servers",
        server_path.ServerPathConfig,
        _with_clients(server_path.run),
        server_path.render,
        True,
    ),
    "connect": Section("3. Connect path", connect.ConnectConfig, _with_clients(connect.run), connect.render, True),
    "diagnosis": Section(
        "4. Diagnosis latency",
        diagnosis.DiagnosisConfig,
        _with_clients(diagnosis.run),
        diagnosis.render,
        True,
    ),
    "storm": Section("5. Failure storm", storm.StormConfig, _with_clients(storm.run), storm.render, True),
    "memory": Section("6. Memory", memory.MemoryConfig, _memory, memory.render, False),
    "sessions": Section(
        "7. Per-session cost of lifecycle listeners", sessions.SessionsConfig, _sessions, sessions.render, False
    ),
    "herd": Section("8. The herd after an outage (simulated)", herd.HerdConfig, _herd, herd.render, False),
    "scale": Section("9. Scale: 10,000 sessions when Redis stops", scale.ScaleConfig, _scale, scale.render, False),
}


async def run_sections(
    names: Sequence[str], *, quick: bool = False, found: Services | None = None, command: str = ""
) -> dict[str, Any]:
    """Run ``names`` in order; PostgreSQL/Redis are started (or ``found`` used) when a section needs them.

    Returns ``{"meta": ..., "sections": {name: result}}``; each result carries
    its configuration, its duration and the time it started.
    """
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        msg = f"unknown sections {unknown}; choose from {list(SECTIONS)}"
        raise ValueError(msg)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients: ProbeClients | None = None
        for name in names:
            section = SECTIONS[name]
            if section.needs_services and clients is None:
                if found is None:
                    progress("starting a private PostgreSQL and Redis")
                    found = await stack.enter_async_context(services())
                clients = await stack.enter_async_context(probe_clients(found))
            cfg = section.config.quick() if quick else section.config()
            progress(f"{section.title} ({'quick' if quick else 'full'})")
            began, busy, ours = time.perf_counter(), machine_busy(), _our_cpu()
            at = datetime.now(UTC).isoformat(timespec="seconds")
            result = await section.run(cfg, clients)
            wall = time.perf_counter() - began
            result["config"] = dataclasses.asdict(cfg)
            result["seconds"] = round(wall, 1)
            busy_after = machine_busy()
            if busy is not None and busy_after is not None:
                # CPU that neither this process nor its load generators used: other people's work.
                result["other_cores"] = round(max((busy_after - busy - (_our_cpu() - ours)) / wall, 0.0), 2)
            result["started_at"] = at
            result["command"] = command
            results[name] = result
    return {
        "meta": {
            "machine": machine(),
            "quick": quick,
            "command": command,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "load_average_after": _load_average(),
        },
        "sections": results,
    }


def _our_cpu() -> float:
    """CPU seconds of this process and of its finished children (the load generators)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load_average() -> list[float] | None:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """Log records (servers' tracebacks, ws_diag's diagnoses) are formatted and written to /dev/null.

    That is what they cost in production, minus the terminal; INFO and above, as
    a server's default configuration would have it.
    """
    root = logging.getLogger()
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def raise_fd_limit() -> None:
    """A storm holds thousands of sockets: lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
