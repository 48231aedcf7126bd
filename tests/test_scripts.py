"""The README's two commands (scripts/test, scripts/demo), run for real with stub tools: what each one runs.

Each script is copied into a temporary checkout next to a stub ``scripts/_env`` (the real one creates a
venv and installs from the network) and stub ``.venv/bin`` tools, on a ``PATH`` of stubs only, so the
script's own logic (its checks, the order of the steps, the arguments it passes on) runs unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = '#!/bin/bash\necho "${0##*/} $*" >> "$STUB_LOG"\n'


def checkout(tmp_path: Path, script: str, *, uid: int = 1000, system_tools: bool = True) -> tuple[Path, dict[str, str]]:
    """A temporary checkout with ``scripts/<script>`` and stubs; the environment that runs it."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / script, root / "scripts" / script)
    (root / "scripts" / "_env").write_text('echo "_env $*" >> "$STUB_LOG"\n')  # sourced, with the script's arguments
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("ruff", "mypy", "mkdocs", "python", "ws-diag"):
        (venv / tool).write_text(RECORD)
    for tool in ("apt-get", *(("redis-server", "chromium", "promtool") if system_tools else ())):
        (stubs / tool).write_text(RECORD)
    (stubs / "id").write_text(f"#!/bin/bash\necho {uid}\n")
    for tool in ("bash", "dirname"):
        (stubs / tool).symlink_to(shutil.which(tool) or tool)
    for path in [*venv.iterdir(), *stubs.iterdir()]:
        if not path.is_symlink():
            path.chmod(0o755)
    env = {"PATH": str(stubs), "STUB_LOG": str(tmp_path / "log"), "HOME": str(tmp_path)}
    return root, env


def run(root: Path, env: dict[str, str], script: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the copied script from elsewhere (it must find its checkout by itself); the calls the stubs saw."""
    done = subprocess.run(
        [str(root / "scripts" / script), *args], cwd="/", env=env, capture_output=True, text=True, timeout=60
    )
    log = Path(env["STUB_LOG"])
    return done, log.read_text().splitlines() if log.exists() else []


def tracked(root: Path) -> set[Path]:
    """Every file under the checkout but the venv's stubs."""
    return {path for path in root.rglob("*") if path.is_file() and ".venv" not in path.parts}


@pytest.mark.skipif(
    not os.path.exists("/usr/lib/postgresql"), reason="the script looks for PostgreSQL's binaries there"
)
def test_test_command_lints_type_checks_builds_the_docs_then_tests(tmp_path: Path) -> None:
    """scripts/test: dev group, lint, types, strict docs, then pytest with the arguments; it writes no tracked file."""
    root, env = checkout(tmp_path, "test")
    before = tracked(root)
    done, calls = run(root, env, "test", "-k", "e2e")
    assert done.returncode == 0, done.stderr
    assert calls == [
        "_env  dev",
        "ruff check .",
        "ruff format --check .",
        "mypy ws_diag",
        "mkdocs build --strict",
        "python -m pytest tests -k e2e",
    ]
    assert all("--reliability-report" not in call for call in calls)
    assert tracked(root) == before


@pytest.mark.parametrize(("uid", "installs"), [(0, True), (1000, False)])
def test_test_command_installs_missing_system_tools_only_as_root(tmp_path: Path, uid: int, installs: bool) -> None:
    """Without redis-server, chromium or promtool, root gets them from apt; anyone else is told the command."""
    root, env = checkout(tmp_path, "test", uid=uid, system_tools=False)
    done, calls = run(root, env, "test")
    if installs:
        assert done.returncode == 0, done.stderr
        assert calls[:2] == ["apt-get update -qq", "apt-get install -y -qq postgresql redis-server chromium prometheus"]
        assert calls[-1] == "python -m pytest tests"
    else:
        assert done.returncode == 1
        assert "sudo apt-get install -y postgresql redis-server chromium prometheus" in done.stderr
        assert calls == []


def test_demo_command_installs_the_demo_extra_and_serves_the_demo(tmp_path: Path) -> None:
    """scripts/demo: the package with the demo extra, then `ws-diag demo` with the extra arguments."""
    root, env = checkout(tmp_path, "demo")
    done, calls = run(root, env, "demo", "--port", "9000")
    assert done.returncode == 0, done.stderr
    assert calls == ["_env demo", "ws-diag demo --port 9000"]
