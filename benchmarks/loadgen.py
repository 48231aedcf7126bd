"""The load generator: a separate process, driving servers over loopback.

``python -m benchmarks.loadgen '<json config>'`` prints one JSON object on
stdout. Modes:

* ``echo``: ``clients`` connections to each server in ``urls``, opened once;
  then, one server at a time, a closed-loop window (send a text frame, wait for
  the echo, send the next): ``warmup_s``, then ``duration_s`` counted:
  throughput and round-trip latency percentiles. The hot loop runs on a bare
  epoll selector, several times cheaper per message than the servers.
* ``connect``: ``concurrency`` workers against one server at a time, each
  looping connect, upgrade, close handshake, end of TCP: completed cycles per
  second and handshake latency.
* ``fail``: sequential sessions, round-robin over ``plan`` (``[url, n]``
  pairs): connect, send ``"fail"``, read until the close frame. The app answers
  ``"fail <monotonic_ns>"`` right before it raises, so failure-to-close
  latency is measured across processes on the shared monotonic clock.
* ``storm``: ``sessions`` connections opened first, then ``"fail"`` written to
  all of them at once; per-session failure-to-close latency and codes.
* ``hold``: ``sessions`` connections opened (from ``sources`` loopback
  addresses in turn, so ephemeral ports cannot run short) and held; a line
  ``{"opened": n}`` is printed, then the process waits for a line on stdin
  carrying the ``time.monotonic_ns()`` at which a dependency was stopped, and
  reports every session's close relative to it (codes, diagnostic frames,
  sessions that ended without a close frame or not at all).

``echo`` and ``connect`` run ``rounds`` rounds over ``urls``, A B C ...,
reversed every other round; before each round they wait (within
``quiet_budget_s``) for the machine to be quiet, and a round during which
other processes used CPU anyway is run again. Each window samples this
process's CPU time, the server's (``/proc/<server_pid>/stat``) and everybody
else's (``/proc/stat``), so a run says which side was the bottleneck and
whether it was disturbed. Everything is bounded; it exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .stats import summary
from .wsclient import (
    OP_PING,
    OP_PONG,
    OP_TEXT,
    HandshakeError,
    WSProtocol,
    client_frame,
    close_frame,
    handshake_request,
    parse_url,
    text_frame,
)

__all__ = ["main"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CONNECT_TIMEOUT = 10.0


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs spent busy since boot (everything but idle and iowait), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLK_TCK  # user..steal minus idle, iowait


class _CpuMeter:
    """CPU used between ``start`` and ``stop``, in cores: this process, the server, everything else."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._wall = self._own = 0.0
        self._server: float | None = None
        self._busy: float | None = None
        self.loadgen_cores: float | None = None
        self.server_cores: float | None = None
        self.other_cores: float | None = None

    def start(self) -> None:
        self._wall, self._own = time.perf_counter(), time.process_time()
        self._server, self._busy = _cpu_seconds(self.server_pid), _machine_busy_seconds()

    def stop(self) -> None:
        wall = time.perf_counter() - self._wall
        self.loadgen_cores = round((time.process_time() - self._own) / wall, 3)
        server = _cpu_seconds(self.server_pid)
        if server is not None and self._server is not None:
            self.server_cores = round((server - self._server) / wall, 3)
        busy = _machine_busy_seconds()
        if busy is not None and self._busy is not None and self.server_cores is not None:
            self.other_cores = round(max((busy - self._busy) / wall - self.loadgen_cores - self.server_cores, 0.0), 3)

    def as_dict(self) -> dict[str, float | None]:
        return {"loadgen_cores": self.loadgen_cores, "server_cores": self.server_cores, "other_cores": self.other_cores}


async def _open(url: str, factory: Callable[[bytes], WSProtocol], source: str | None = None) -> WSProtocol:
    host, port, path = parse_url(url)
    request = handshake_request(host, port, path)
    loop = asyncio.get_running_loop()
    local = (source, 0) if source is not None else None
    _, protocol = await asyncio.wait_for(
        loop.create_connection(lambda: factory(request), host, port, local_addr=local), _CONNECT_TIMEOUT
    )
    try:
        await asyncio.wait_for(protocol.opened, _CONNECT_TIMEOUT)
    except BaseException:
        protocol.abort()
        raise
    return protocol


async def _open_many(
    url: str, count: int, factory: Callable[[bytes], WSProtocol], limit: int, sources: list[str] | None = None
) -> list[WSProtocol]:
    gate = asyncio.Semaphore(limit)

    async def one(index: int) -> WSProtocol:
        async with gate:
            return await _open(url, factory, sources[index % len(sources)] if sources else None)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _close_all(protocols: Iterable[WSProtocol], limit_s: float = 5.0) -> None:
    protocols = list(protocols)
    for protocol in protocols:
        protocol.send_close()
    pending = [p.lost for p in protocols if not p.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=limit_s)
    for protocol in protocols:
        if not protocol.lost.done():
            protocol.abort()
    pending = [p.lost for p in protocols if not p.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=1.0)


# -- echo ----------------------------------------------------------------------
#
# The hot loop runs on a bare epoll selector with blocking-free sockets rather
# than on asyncio protocols: a reply costs one recv and one send and a few
# lines of Python, several times less than the servers spend per message.


def _handshake(url: str) -> socket.socket:
    host, port, path = parse_url(url)
    sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(handshake_request(host, port, path))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("connection closed during the handshake")
            head += chunk
        line, _, _ = head.partition(b"\r\n")
        if not line.startswith(b"HTTP/1.1 101"):
            raise HandshakeError(0, line.decode("latin-1"))
        if head.index(b"\r\n\r\n") + 4 != len(head):
            raise ConnectionError("unexpected data after the handshake")
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _echo_window(  # noqa: C901 - one tight loop, kept in one place
    socks: list[socket.socket], frame: bytes, reply: bytes, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Closed-loop echo on already open ``socks``: warm up, then measure ``duration_s``."""
    selector = selectors.EpollSelector()
    sent_at: dict[int, int] = {}
    buffers: dict[int, bytes] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock.fileno()] = b""
    latencies: list[int] = []
    replies = wrong = 0
    meter = _CpuMeter(cfg.get("server_pid"))
    clock = time.perf_counter_ns
    start_ns = clock() + int(cfg["warmup_s"] * 1e9)
    end_ns = start_ns + int(cfg["duration_s"] * 1e9)
    metered = False
    busy = len(socks)
    try:
        for sock in socks:
            sent_at[sock.fileno()] = clock()
            sock.send(frame)
        while busy:
            events = selector.select(1.0)
            if not events:
                break  # nothing for a second: the server is stuck; report what we have
            for key, _ in events:
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                fd = key.fd
                data = sock.recv(65536)
                if not data:
                    selector.unregister(sock)
                    busy -= 1
                    continue
                now = clock()
                if data != reply:  # split, coalesced, or a ping from the server: parse it properly
                    got, bad, buffers[fd] = _scan(buffers[fd] + data, reply, sock)
                    wrong += bad
                    if not got:
                        continue
                if not metered and now >= start_ns:
                    meter.start()
                    metered = True
                if start_ns <= now <= end_ns:
                    replies += 1
                    began = sent_at[fd]
                    if began >= start_ns:
                        latencies.append(now - began)
                if now < end_ns:
                    sent_at[fd] = clock()
                    sock.send(frame)
                else:
                    selector.unregister(sock)
                    busy -= 1
        if metered:
            meter.stop()
    finally:
        selector.close()
    window = (end_ns - start_ns) / 1e9
    return {
        "window_s": window,
        "replies": replies,
        "throughput": round(replies / window, 1),
        "latency_us": summary(latencies, 1e3),
        "wrong_replies": wrong,
        "stalled_clients": busy,
        **meter.as_dict(),
    }


def _scan(data: bytes, reply: bytes, sock: socket.socket) -> tuple[int, int, bytes]:
    """Complete frames in ``data``: (echo replies, unexpected frames, leftover bytes); answers pings."""
    got = bad = 0
    expected = reply[2:]
    while len(data) >= 2:
        size, pos = data[1] & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                break
            size, pos = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            if len(data) < 10:
                break
            size, pos = int.from_bytes(data[2:10], "big"), 10
        if len(data) < pos + size:
            break
        opcode, payload, data = data[0] & 0x0F, data[pos : pos + size], data[pos + size :]
        if opcode == OP_TEXT and payload == expected:
            got += 1
        elif opcode == OP_PING:
            sock.send(client_frame(OP_PONG, payload))
        else:
            bad += 1
    return got, bad, data


def _close_socks(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(close_frame(1000))
    for sock in socks:
        with contextlib.suppress(OSError):
            while sock.recv(4096):  # the server's close frame, then the end of the connection
                pass
        sock.close()


# -- rounds: A B A B ..., on a quiet machine ------------------------------------------

QUIET_CORES = 0.3  # CPU of everything else above which a round counts as disturbed


def _wait_quiet(budget_s: float, window_s: float = 0.5) -> tuple[float, bool]:
    """Sleep until other processes use under QUIET_CORES, within ``budget_s``; (seconds waited, gave up)."""
    waited = 0.0
    while True:
        before = _machine_busy_seconds()
        time.sleep(window_s)
        after = _machine_busy_seconds()
        waited += window_s
        if before is None or after is None or (after - before) / window_s < QUIET_CORES:
            return waited, False
        if waited >= budget_s:
            return waited, True


async def _rounds(cfg: dict[str, Any], window: Callable[[str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``window(name)`` for every variant, A B A B ... (reversed every other round).

    Before each round it waits (within ``quiet_budget_s`` in all) for the
    machine to be quiet; a round during which other processes still used more
    than QUIET_CORES is thrown away and run again, at most ``rounds // 2`` times.
    """
    names = list(cfg["urls"])
    rounds: int = cfg["rounds"]
    budget: float = cfg.get("quiet_budget_s", 0.0)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    discarded = attempt = gave_up = 0
    waited = 0.0
    while len(runs[names[0]]) < rounds:
        if budget > waited:
            spent, stopped = _wait_quiet(budget - waited)
            waited += spent
            gave_up += stopped
        order = names if attempt % 2 == 0 else list(reversed(names))
        attempt += 1
        fresh = {name: await window(name) for name in order}
        if discarded < rounds // 2 and any((r.get("other_cores") or 0.0) > QUIET_CORES for r in fresh.values()):
            discarded += 1
            continue
        for name in names:
            runs[name].append(fresh[name])
    return {
        "mode": cfg["mode"],
        "runs": runs,
        "discarded_rounds": discarded,
        "waited_for_quiet_s": round(waited, 1),
        "gave_up_waiting": gave_up,
    }


async def _echo(cfg: dict[str, Any]) -> dict[str, Any]:
    text: str = cfg.get("text", "x" * 32)
    payload = text.encode()
    if len(payload) >= 126:
        raise ValueError("echo payloads must be shorter than 126 bytes")
    frame = text_frame(text)
    reply = bytes([0x81, len(payload)]) + payload  # the server's unmasked text frame
    socks: dict[str, list[socket.socket]] = {}
    try:
        for name, url in cfg["urls"].items():
            socks[name] = [_handshake(url) for _ in range(cfg["clients"])]

        async def window(name: str) -> dict[str, Any]:
            return _echo_window(socks[name], frame, reply, cfg)

        return await _rounds(cfg, window)
    finally:
        for opened in socks.values():
            _close_socks(opened)


# -- connect ---------------------------------------------------------------------


class _CycleClient(WSProtocol):
    def on_open(self) -> None:
        self.send_close(1000)


async def _connect_window(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    host, port, path = parse_url(url)
    request = handshake_request(host, port, path)
    loop = asyncio.get_running_loop()
    start_ns = time.perf_counter_ns() + int(cfg["warmup_s"] * 1e9)
    end_ns = start_ns + int(cfg["duration_s"] * 1e9)
    handshakes: list[int] = []
    cycles: list[int] = []
    errors: Counter[str] = Counter()

    async def worker() -> None:
        while (began := time.perf_counter_ns()) < end_ns:
            made: WSProtocol | None = None
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _CycleClient(request), host, port), _CONNECT_TIMEOUT
                )
                made = protocol
                await asyncio.wait_for(protocol.opened, _CONNECT_TIMEOUT)
                opened = time.perf_counter_ns()
                await asyncio.wait_for(protocol.lost, _CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                if made is not None:
                    made.abort()
                continue
            done = time.perf_counter_ns()
            if protocol.close_code != 1000:
                errors[f"close {protocol.close_code}"] += 1
            elif began >= start_ns and done <= end_ns:
                handshakes.append(opened - began)
                cycles.append(done - began)

    meter = _CpuMeter(cfg.get("server_pid"))

    async def sample() -> None:
        await asyncio.sleep(max(start_ns - time.perf_counter_ns(), 0) / 1e9)
        meter.start()
        await asyncio.sleep(max(end_ns - time.perf_counter_ns(), 0) / 1e9)
        meter.stop()

    await asyncio.gather(sample(), *(worker() for _ in range(cfg["concurrency"])))
    window = (end_ns - start_ns) / 1e9
    return {
        "window_s": window,
        "cycles": len(cycles),
        "rate": round(len(cycles) / window, 1),
        "handshake_us": summary(handshakes, 1e3),
        "cycle_us": summary(cycles, 1e3),
        "errors": dict(errors),
        **meter.as_dict(),
    }


async def _connect(cfg: dict[str, Any]) -> dict[str, Any]:
    async def window(name: str) -> dict[str, Any]:
        return await _connect_window(cfg["urls"][name], cfg)

    return await _rounds(cfg, window)


# -- failing sessions ------------------------------------------------------------------


class _FailClient(WSProtocol):
    """Records the app's failure timestamp (its last text) and the diagnostic frame."""

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.failed_at_ns: int | None = None
        self.frame_code: int | None = None
        self.texts = 0

    def on_message(self, opcode: int, payload: bytes) -> None:
        if opcode != OP_TEXT:
            return
        self.texts += 1
        if payload.startswith(b"fail "):
            self.failed_at_ns = int(payload[5:])
        elif payload.startswith(b'{"type":"error"'):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.frame_code = int(json.loads(payload)["error"]["code"])

    def outcome(self, trigger_ns: int | None = None) -> dict[str, Any]:
        closed = self.close_at_ns
        return {
            "code": self.close_code,
            "frame_code": self.frame_code,
            "fail_to_close_ns": closed - self.failed_at_ns if closed and self.failed_at_ns else None,
            "trigger_to_close_ns": closed - trigger_ns if closed and trigger_ns else None,
        }


_FAIL = text_frame("fail")


async def _fail(cfg: dict[str, Any]) -> dict[str, Any]:
    plan: list[tuple[str, int]] = [(url, int(n)) for url, n in cfg["plan"]]
    timeout: float = cfg.get("timeout_s", 10.0)
    results: list[list[dict[str, Any]]] = [[] for _ in plan]
    for round_index in range(max((n for _, n in plan), default=0)):
        for index, (url, sessions) in enumerate(plan):
            if round_index >= sessions:
                continue
            try:
                protocol = await _open(url, _FailClient)
            except (OSError, TimeoutError) as exc:
                results[index].append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            assert isinstance(protocol, _FailClient)
            assert protocol.transport is not None
            protocol.transport.write(_FAIL)
            try:
                await asyncio.wait_for(asyncio.shield(protocol.lost), timeout)
            except TimeoutError:
                protocol.abort()
                results[index].append({"error": f"no close within {timeout} s"})
                continue
            results[index].append(protocol.outcome())
    return {"mode": "fail", "results": results}


async def _storm(cfg: dict[str, Any]) -> dict[str, Any]:
    sessions: int = cfg["sessions"]
    timeout: float = cfg.get("timeout_s", 30.0)
    began = time.perf_counter()
    try:
        protocols = await _open_many(cfg["url"], sessions, _FailClient, cfg.get("connect_concurrency", 64))
    except (HandshakeError, OSError, TimeoutError) as exc:
        return {"mode": "storm", "error": f"could not open {sessions} sessions: {type(exc).__name__}: {exc}"}
    connect_s = time.perf_counter() - began
    trigger_ns = time.monotonic_ns()
    for protocol in protocols:
        assert protocol.transport is not None
        protocol.transport.write(_FAIL)
    pending = [p.lost for p in protocols if not p.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    missing = sum(1 for p in protocols if p.close_code is None or not p.lost.done())
    outcomes = [p.outcome(trigger_ns) for p in protocols if isinstance(p, _FailClient)]
    for protocol in protocols:
        if not protocol.lost.done():
            protocol.abort()
    return {
        "mode": "storm",
        "sessions": sessions,
        "connect_s": round(connect_s, 3),
        "missing": missing,
        "codes": dict(Counter(str(o["code"]) for o in outcomes)),
        "frame_codes": dict(Counter(str(o["frame_code"]) for o in outcomes)),
        "fail_to_close_ms": summary((o["fail_to_close_ns"] for o in outcomes if o["fail_to_close_ns"]), 1e6),
        "trigger_to_close_ms": summary((o["trigger_to_close_ns"] for o in outcomes if o["trigger_to_close_ns"]), 1e6),
        "no_marker": sum(1 for o in outcomes if o["fail_to_close_ns"] is None),
    }


async def _hold(cfg: dict[str, Any]) -> dict[str, Any]:
    sessions: int = cfg["sessions"]
    sources: list[str] = cfg.get("sources") or []
    began = time.perf_counter()
    try:
        protocols = await _open_many(cfg["url"], sessions, _FailClient, cfg.get("connect_concurrency", 64), sources)
    except (HandshakeError, OSError, TimeoutError) as exc:
        print(json.dumps({"opened": 0}), flush=True)
        return {"mode": "hold", "error": f"could not open {sessions} sessions: {type(exc).__name__}: {exc}"}
    connect_s = time.perf_counter() - began
    print(json.dumps({"opened": len(protocols), "connect_s": round(connect_s, 3)}), flush=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), cfg.get("hold_s", 300.0))
    except TimeoutError:
        line = ""
    stopped_ns = int(line) if line.strip().isdigit() else None
    closed_early = sum(  # ended before the stop (the line arrives only once the stop is done: compare clocks)
        1 for p in protocols if p.close_at_ns is not None and (stopped_ns is None or p.close_at_ns < stopped_ns)
    )
    pending = [p.lost for p in protocols if not p.lost.done()]
    if pending and stopped_ns is not None:
        await asyncio.wait(pending, timeout=cfg.get("timeout_s", 60.0))
    never = sum(1 for p in protocols if p.close_code is None or not p.lost.done())
    outcomes = [p for p in protocols if isinstance(p, _FailClient)]
    after = [p.close_at_ns - stopped_ns for p in outcomes if p.close_at_ns is not None and stopped_ns is not None]
    for protocol in protocols:
        if not protocol.lost.done():
            protocol.abort()
    return {
        "mode": "hold",
        "sessions": sessions,
        "connect_s": round(connect_s, 3),
        "stopped_ns": stopped_ns,
        "closed_before_stop": closed_early,
        "never_closed": never,
        "codes": dict(Counter(str(p.close_code) for p in outcomes)),
        "frame_codes": dict(Counter(str(p.frame_code) for p in outcomes)),
        "reasons": dict(Counter(p.close_reason for p in outcomes).most_common(3)),
        "stop_to_close_ms": summary(after, 1e6),
    }


_MODES = {"echo": _echo, "connect": _connect, "fail": _fail, "storm": _storm, "hold": _hold}


async def _main(cfg: dict[str, Any]) -> dict[str, Any]:
    result = await _MODES[cfg["mode"]](cfg)
    result["pid"] = os.getpid()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one load-generator job; the JSON result goes to stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.loadgen '<json config>'", file=sys.stderr)
        return 2
    cfg = json.loads(args[0])
    _raise_fd_limit()
    if cfg.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cfg["cpu"]})
    result = asyncio.run(_main(cfg))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
