"""``python -m benchmarks run [--quick] [--only SECTION ...]`` and ``python -m benchmarks report``."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from .common import ROOT
from .report import render, update_readme
from .runner import SECTIONS, quiet_logging, raise_fd_limit, run_sections

RESULTS = ROOT / "benchmarks" / "results.json"
README = ROOT / "benchmarks" / "README.md"


def _merge(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """Sections not run this time are kept from the previous results file."""
    if not path.exists():
        return fresh
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return fresh
    if old.get("meta", {}).get("quick"):
        return fresh
    sections = {**old.get("sections", {}), **fresh["sections"]}
    ordered = {name: sections[name] for name in SECTIONS if name in sections}
    return {"meta": fresh["meta"], "sections": ordered}


def _run(args: argparse.Namespace) -> int:
    names = args.only or list(SECTIONS)
    command = "python -m benchmarks " + shlex.join(sys.argv[1:])
    raise_fd_limit()
    with quiet_logging():
        results = asyncio.run(run_sections(names, quick=args.quick, command=command))
    out: Path | None = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        if out == RESULTS:
            results = _merge(out, results)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    text = render(results)
    print(text)
    if out == RESULTS and not args.no_readme:
        update_readme(README, text)
        print(f"updated {README}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    results = json.loads(args.results.read_text())
    text = render(results)
    print(text)
    if args.update_readme:
        update_readme(README, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="ws_diag's benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmarks (all sections by default)")
    run.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that everything runs, numbers mean nothing"
    )
    run.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION", help=f"from {list(SECTIONS)}")
    run.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS.name}; none with --quick)")
    run.add_argument("--no-readme", action="store_true", help="do not rewrite the tables in benchmarks/README.md")
    run.set_defaults(handler=_run)
    report = commands.add_parser("report", help="print the markdown for a results file")
    report.add_argument("--results", type=Path, default=RESULTS)
    report.add_argument("--update-readme", action="store_true", help="also rewrite the tables in benchmarks/README.md")
    report.set_defaults(handler=_report)
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
