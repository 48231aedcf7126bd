"""A missing optional dependency names the ws_diag extra that installs it, the same way everywhere."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ws_diag._optional import MissingExtraError, missing, require

# (what the user imports, the dependency hidden, the extra the message names)
CASES = [
    ("ws_diag.health.probes.postgres", "asyncpg", "postgres"),
    ("ws_diag.health.probes.redis", "redis", "redis"),
    ("ws_diag.health.probes.sqlalchemy", "sqlalchemy", "sqlalchemy"),
    ("ws_diag.health.probes.http", "httpx", "http"),
    ("ws_diag.integrations.prometheus", "prometheus_client", "prometheus"),
    ("ws_diag.integrations.opentelemetry", "opentelemetry", "otel"),
    ("ws_diag.integrations.sentry", "sentry_sdk", "sentry"),
    ("ws_diag.integrations.correlation", "asgi_correlation_id", "correlation"),
    ("ws_diag.logs.formatter", "pythonjsonlogger", "logs"),
    ("ws_diag.demo", "hypercorn", "demo"),
    ("ws_diag.demo", "starlette", "demo"),
]


def hide(monkeypatch: pytest.MonkeyPatch, package: str, *modules: str) -> None:
    """Make ``package`` (and its submodules) unimportable, and forget ``modules`` so they import again."""
    for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)
    for module in modules:
        monkeypatch.delitem(sys.modules, module, raising=False)


@pytest.mark.parametrize(("module", "package", "extra"), CASES)
def test_importing_without_the_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, package: str, extra: str
) -> None:
    """Importing a probe, an integration, the JSON formatter or the demo without its package says which extra."""
    hide(monkeypatch, package, module)
    with pytest.raises(MissingExtraError) as caught:
        importlib.import_module(module)
    assert f"pip install 'ws_diag[{extra}]'" in str(caught.value)
    assert caught.value.extra == extra
    assert isinstance(caught.value, ImportError)


def test_the_json_formatter_names_itself_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """`from ws_diag.logs import JsonFormatter` without python-json-logger says what needs it and which extra."""
    hide(monkeypatch, "pythonjsonlogger", "ws_diag.logs.formatter")
    with pytest.raises(ImportError, match=r"^ws_diag\.logs\.JsonFormatter needs python-json-logger: pip install"):
        from ws_diag.logs import JsonFormatter  # noqa: F401


def test_log_events_need_no_optional_dependency() -> None:
    """`ws_diag.logs.LogEvent` imports without python-json-logger: emitting modules depend on it."""
    code = (
        "import sys; sys.modules['pythonjsonlogger'] = None\n"
        "from ws_diag.logs import LogEvent\n"
        "print(LogEvent.DIAGNOSIS == 'diagnosis')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == "True\n"


def test_probe_from_settings_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DSN in the settings whose probe's package is missing names the extra (through the probe's module)."""
    from ws_diag import DiagSettings
    from ws_diag.health.probes import probes_from_settings

    hide(monkeypatch, "redis", "ws_diag.health.probes.redis")
    with pytest.raises(ImportError, match=r"health\.probes\.redis needs redis: pip install 'ws_diag\[redis\]'"):
        probes_from_settings(DiagSettings(redis_url="redis://localhost:6379/0"))


def test_the_reconnecting_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Iterating `Reconnecting` without websockets says to install the `client` extra."""
    from ws_diag.client import Reconnecting

    hide(monkeypatch, "websockets")
    with pytest.raises(MissingExtraError, match=r"pip install 'ws_diag\[client\]'"):
        Reconnecting("ws://localhost:1/ws").__aiter__()


def test_a_broken_import_inside_an_installed_dependency_is_not_blamed_on_the_extra() -> None:
    """A module the dependency itself cannot import raises its own error: installing the extra would not help."""
    inner = ModuleNotFoundError("No module named 'urllib3'", name="urllib3")
    with pytest.raises(ModuleNotFoundError) as caught:
        missing(inner, "sentry_sdk", extra="sentry", feature="ws_diag.integrations.sentry")
    assert caught.value is inner


def test_require_returns_the_module_when_installed() -> None:
    """`require` is a plain import when the dependency is there."""
    assert require("json", extra="none", feature="the test") is importlib.import_module("json")


def test_cli_demo_without_the_extra_is_one_line_and_exit_2() -> None:
    """`ws-diag demo` without hypercorn prints one line naming the `demo` extra and exits 2, no traceback."""
    code = "import sys; sys.modules['hypercorn'] = None; from ws_diag.cli import main; sys.exit(main(['demo']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr == "ws-diag demo: ws_diag.demo needs hypercorn: pip install 'ws_diag[demo]'\n"
    assert result.stdout == ""
