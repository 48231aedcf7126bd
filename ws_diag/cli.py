"""The ``ws-diag`` command line: ``check``, ``codes``, ``demo`` and ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import pydantic
from pydantic_settings import SettingsError

from .components import Component
from .health import validate_websocket_component_health
from .settings import DiagSettings, describe_settings_error
from .wire.schemes import wire_code

__all__ = ["main"]

EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a command ended by SIGPIPE (13)


def _settings_or_exit() -> DiagSettings:
    try:
        return DiagSettings()
    except (pydantic.ValidationError, SettingsError) as exc:  # SettingsError: a source that cannot be read
        # One line per invalid setting, naming its variable; never a traceback.
        for line in describe_settings_error(exc):
            print(f"ws-diag: invalid configuration: {line}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def _print_table(report: dict[str, Any]) -> None:
    rows = [("PROBE", "COMPONENT", "STATUS", "CODE", "LATENCY", "ERROR")]
    for name, item in report["component_details"].items():
        code, error = item["error_code"], item["error"]
        latency = f"{item['latency_ms']:.1f} ms"
        rows.append((name, item["component"], item["status"], str(code or ""), latency, error or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    verdict = "healthy" if report["healthy"] else "UNHEALTHY"
    print(f"\n{verdict}: {report['summary']} (took {report['took_ms']:.1f} ms)")


def _check(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from .health.probes import probes_from_settings

    try:
        probes = probes_from_settings(settings)
    except ImportError as exc:
        print(f"ws-diag: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not probes:
        print(
            "ws-diag: nothing to check: set WS_DIAG_POSTGRES_DSN, WS_DIAG_SQLALCHEMY_URL, WS_DIAG_REDIS_URL, "
            "WS_DIAG_HTTP_PROBES or WS_DIAG_REQUIRED_ENV",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    # The table (or JSON) is the answer; the checker's status-change log lines would only repeat it
    # on stderr through logging's last-resort handler.
    logging.getLogger("ws_diag").addHandler(logging.NullHandler())
    try:
        report = asyncio.run(validate_websocket_component_health(probes, settings=settings))
    except ValueError as exc:  # required_probes naming a probe that is not configured, duplicate names
        print(f"ws-diag: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return EXIT_HEALTHY if report["healthy"] else EXIT_UNHEALTHY


def _codes(args: argparse.Namespace) -> int:
    if args.json:
        table = [
            {
                "component": c.display_name,
                "member": c.name,
                "private": c.code,
                "legacy": c.legacy_code,
                "legacy_wire": wire_code(c, "legacy"),
                "http": c.http_status,
                "retryable": c.retryable,
            }
            for c in Component
        ]
        print(json.dumps(table, indent=2))
        return EXIT_HEALTHY
    rows = [("COMPONENT", "MEMBER", "PRIVATE", "LEGACY (frame)", "LEGACY (wire)", "HTTP", "RETRYABLE")]
    for c in Component:
        rows.append(
            (
                c.display_name,
                c.name,
                str(c.code),
                str(c.legacy_code),
                str(wire_code(c, "legacy")),
                str(c.http_status),
                "yes" if c.retryable else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_HEALTHY


def _demo(args: argparse.Namespace) -> int:
    from ._optional import MissingExtraError

    try:
        from .demo import serve
    except MissingExtraError as exc:  # one line naming the extra, not a traceback
        print(f"ws-diag demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return serve(host=args.host, port=args.port)


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_cli

    return run_cli(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="ws-diag", description="WebSocket component diagnostics.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the configured probes once (exit 0 healthy, 1 not, 2 bad config)")
    check.add_argument("--json", action="store_true", help="print the JSON report")
    check.set_defaults(handler=_check)
    codes = commands.add_parser("codes", help="print the component code table for both schemes")
    codes.add_argument("--json", action="store_true", help="print JSON (codes as integers, retryable as a boolean)")
    codes.set_defaults(handler=_codes)
    demo = commands.add_parser("demo", help="serve the demo app (needs the 'demo' extra)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    demo.set_defaults(handler=_demo)
    bench = commands.add_parser("bench", help="measure ws_diag's per-message cost on your ASGI app, in-process")
    bench.add_argument("target", nargs="?", default=None, help="module:attribute of an ASGI app (default: an echo app)")
    bench.add_argument("--messages", type=int, default=20_000, help="messages per round")
    bench.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are reported)")
    bench.add_argument("--path", default="/ws", help="websocket path to call")
    bench.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    bench.set_defaults(handler=_bench)
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is ours to handle
    except BrokenPipeError:
        # The reader left early (``ws-diag codes | head``): stop quietly, as a command killed by
        # SIGPIPE would. Point stdout at /dev/null so the interpreter's own flush at exit cannot
        # raise again (the recipe in the Python docs, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
