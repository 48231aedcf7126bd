"""The npm package in clients/js: node's own tests (connect() against a real server), npm pack, one source file.

The browser helper lives once, in clients/js/ws-diag.js; ws_diag/static/ws-diag.js is a relative
symlink to it, so the Python package (its wheel, its editable install) serves the same bytes to the demo.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections import Counter
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from servers import run_server
from test_demo import http

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.demo import build_app
from ws_diag.wire.closecodes import CLOSE_SERVICE_RESTART

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "js"
SHIPPED = {"package.json", "README.md", "ws-diag.js", "ws-diag.d.ts"}
NODE, NPM = shutil.which("node"), shutil.which("npm")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (the npm package's tests need Node 20.10+)")
needs_npm = pytest.mark.skipif(NPM is None, reason="npm is not installed (npm pack checks the package's file list)")
BOUND = 60  # seconds for a node or npm run


def _npm_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false", **extra}


def js_test_app() -> DiagnosticsMiddleware:
    """The server connect.test.mjs expects: ?auth=bad, ?fail=N&key=K (Redis errors), ?restart=1&key=K (1012)."""
    seen: Counter[str] = Counter()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        if query.get("auth") == "bad":
            raise WebSocketComponentError.auth_failure("Token expired: sign in again")
        key = query.get("key", "")
        seen[key] += 1
        await send({"type": "websocket.accept"})
        if query.get("restart") == "1" and seen[key] == 1:
            await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART})
            return
        if seen[key] <= int(query.get("fail", "0")):
            raise WebSocketComponentError.redis_failure()
        await send({"type": "websocket.send", "text": "hello"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return DiagnosticsMiddleware(app, settings=DiagSettings(retry_after=0.05))


async def _run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), BOUND)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode()


def _node_version() -> tuple[int, ...]:
    assert NODE is not None
    done = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=BOUND, check=True)
    return tuple(int(part) for part in done.stdout.strip().lstrip("v").split(".")[:2])


@needs_node
@needs_npm
@pytest.mark.asyncio
async def test_node_tests_pass_with_connect_against_a_real_server() -> None:
    """`npm test` in clients/js passes: the shared retry table, explain/parseFrame, and connect() run, none skipped."""
    found = _node_version()
    if found < (20, 10):
        pytest.skip(f"node {found} has no WebSocket; connect() needs Node 20.10+ (--experimental-websocket) or 22+")
    # Node 22+ has a global WebSocket; Node 20.10+ behind a flag.
    flags = {} if found >= (22,) else {"NODE_OPTIONS": "--experimental-websocket"}
    # uvicorn: Node 20's WebSocket (undici) drops hypercorn's compressed first message as 1006
    # (hypercorn negotiates permessage-deflate with client_max_window_bits=15; Chromium reads it).
    async with run_server(js_test_app(), "uvicorn") as url:
        assert NPM is not None
        code, out = await _run(NPM, "test", cwd=PACKAGE, env=_npm_env(WS_DIAG_TEST_URL=f"{url}/ws", **flags))
    assert code == 0, out
    totals = {key: int(value) for key, value in re.findall(r"^# (tests|pass|fail|skipped) (\d+)$", out, re.M)}
    assert totals["fail"] == 0, out
    assert totals["skipped"] == 0, out  # the connect() tests ran against the server
    assert totals["tests"] == totals["pass"] > 100, out
    assert "Service Restart comes back promptly" in out


@needs_npm
def test_npm_pack_lists_only_the_package_files() -> None:
    """`npm pack --dry-run` packs ws-diag at the Python package's version with exactly the module, its types, README."""
    assert NPM is not None
    done = subprocess.run(
        [NPM, "pack", "--dry-run", "--json"], cwd=PACKAGE, env=_npm_env(), capture_output=True, text=True, timeout=BOUND
    )
    assert done.returncode == 0, done.stderr
    (packed,) = json.loads(done.stdout)
    assert (packed["name"], packed["version"]) == ("ws-diag", version("ws_diag"))
    assert {entry["path"] for entry in packed["files"]} == SHIPPED


def test_package_json_points_at_the_module_and_its_types() -> None:
    """package.json: ESM, exports and types name files that exist, MIT, node's own test runner."""
    meta = json.loads((PACKAGE / "package.json").read_text("utf-8"))
    assert meta["type"] == "module"
    assert meta["exports"]["."] == {"types": "./ws-diag.d.ts", "default": "./ws-diag.js"}
    assert meta["types"] == "./ws-diag.d.ts"
    assert all((PACKAGE / name).is_file() for name in meta["files"])
    assert meta["license"] == "MIT"
    assert "--test" in meta["scripts"]["test"]
    assert not meta.get("dependencies")


def test_python_package_serves_the_npm_file() -> None:
    """ws_diag/static/ws-diag.js (and .d.ts) is a link to clients/js, read through by the installed package."""
    for name in ("ws-diag.js", "ws-diag.d.ts"):
        static = ROOT / "ws_diag" / "static" / name
        assert static.is_symlink(), f"{static} must stay a link to clients/js/{name}: one source of truth"
        assert static.resolve() == (PACKAGE / name).resolve()
        assert files("ws_diag").joinpath(f"static/{name}").read_bytes() == (PACKAGE / name).read_bytes()


@pytest.mark.asyncio
async def test_demo_serves_the_npm_file() -> None:
    """The demo's /ws-diag.js is byte for byte clients/js/ws-diag.js."""
    async with run_server(build_app(), "hypercorn") as url:
        status, body = await http(int(url.rsplit(":", 1)[1]), "GET", "/ws-diag.js")
    assert status == 200
    assert body == (PACKAGE / "ws-diag.js").read_bytes()


@pytest.mark.slow
def test_wheel_carries_the_file_not_the_link(tmp_path: Path) -> None:
    """A wheel built from the repo holds clients/js/ws-diag.js's content as a regular file under ws_diag/static."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("ws_diag-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("ws-diag.js", "ws-diag.d.ts"):
            info = archive.getinfo(f"ws_diag/static/{name}")
            assert not stat.S_ISLNK(info.external_attr >> 16), f"{name} is stored as a symlink"
            assert archive.read(info) == (PACKAGE / name).read_bytes()
