"""Smoke tests of the benchmark code: every part runs with tiny sizes and reports the right shape.

Benchmarks are not tests: nothing here asserts a timing, a ratio or a goal.
Only that the code runs end to end and its results have the keys and finite
numbers the README tables are made of, so that the benchmarks cannot rot.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from services import PostgresServer, RedisServer, SilentListener

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.bench import default_variants, echo_app, import_from_string, measure
from ws_diag.cli import main as cli_main
from ws_diag.client import Reconnecting, RetryPolicy
from ws_diag.retry import retry_action

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import herd  # noqa: E402
from benchmarks.common import Services  # noqa: E402
from benchmarks.report import BEGIN, END, render, summary_rows, update_readme  # noqa: E402
from benchmarks.runner import SECTIONS, run_sections  # noqa: E402


def finite(value: Any) -> bool:
    """A real, finite number (not a bool, not None, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.asyncio
async def test_measure_reports_every_variant() -> None:
    report = await measure(default_variants(echo_app, settings=DiagSettings()), messages=50, rounds=2)
    assert report.ok
    assert [v.name for v in report.variants] == ["bare", "ws_diag", "async def send wrapper"]
    for variant in report.variants:
        assert finite(variant.ns_per_message)
        assert finite(variant.added_ns)
        assert finite(variant.ratio)
        assert len(variant.samples_ns) == 2
        assert variant.received == variant.sent == 50
    data = json.loads(json.dumps(report.to_dict()))
    assert {"target", "messages", "rounds", "baseline", "variants", "environment"} <= data.keys()
    assert "ws_diag" in report.table()


@pytest.mark.asyncio
async def test_measure_reports_an_app_that_does_not_accept() -> None:
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1000})

    report = await measure(default_variants(refuses), messages=5, rounds=1)
    assert not report.ok
    assert "did not accept" in (report.variant("bare").error or "")
    assert "ERROR" in report.table()


def test_default_variants_unwrap_an_already_wrapped_app() -> None:
    wrapped = DiagnosticsMiddleware(echo_app, settings=DiagSettings())
    assert default_variants(wrapped)[0].app is echo_app


def test_cli_bench_prints_a_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--messages", "50", "--rounds", "2", "--json", str(out)]) == 0
    assert "ws_diag" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["messages"] == 50
    assert data["rounds"] == 2
    assert [v["name"] for v in data["variants"]] == ["bare", "ws_diag", "async def send wrapper"]
    assert all(finite(v["ns_per_message"]) and finite(v["ratio"]) for v in data["variants"])


USER_APP = """
import contextlib

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hi"}


async def chat(websocket: WebSocket) -> None:
    assert websocket.state.greeting == "hi"
    await websocket.accept()
    try:
        while True:
            await websocket.send_json(await websocket.receive_json())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/chat", chat)], lifespan=lifespan)
"""


def test_cli_bench_on_a_users_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ws_diag_bench_user_app.py").write_text(USER_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # run_cli adds the working directory, like uvicorn
    monkeypatch.delitem(sys.modules, "ws_diag_bench_user_app", raising=False)
    out = tmp_path / "user.json"
    args = ["bench", "ws_diag_bench_user_app:app", "--path", "/chat", "--messages", "20", "--rounds", "2"]
    assert cli_main([*args, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["target"] == "ws_diag_bench_user_app:app"
    assert all(v["received"] == v["sent"] == 20 and v["error"] is None for v in data["variants"])
    assert "ws_diag_bench_user_app:app" in capsys.readouterr().out


def test_cli_bench_refuses_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "no_such_module_for_ws_diag:app"]) == 2
    assert cli_main(["bench", "not-a-target"]) == 2
    assert cli_main(["bench", "json:no_such_attribute"]) == 2
    assert "ws-diag bench:" in capsys.readouterr().err
    assert import_from_string("ws_diag.bench:echo_app") is echo_app


def _check_message_path(result: dict[str, Any]) -> None:
    names = [v["name"] for v in result["variants"]]
    for expected in ("bare", "ws_diag", "ws_diag + probes", "async def send wrapper", "Sentry", "OpenTelemetry"):
        assert expected in names
    for variant in result["variants"]:
        assert variant["error"] is None, variant
        assert finite(variant["ns_per_message"])
        assert finite(variant["ratio"])
    assert isinstance(result["goal"]["met"], bool)


def _check_memory(result: dict[str, Any]) -> None:
    per_connection = result["per_connection"]
    for key in ("bare_bytes_per_connection", "ws_diag_bytes_per_connection", "added_bytes_per_connection"):
        assert finite(per_connection[key])
    assert all(finite(v) for v in per_connection["tasks"].values())
    for growth in result["growth"].values():
        assert growth["ended_as_expected"] == growth["sessions"]
        assert finite(growth["growth_per_session"])
    assert isinstance(result["goal"]["met"], bool)


@pytest.mark.asyncio
async def test_quick_in_process_sections() -> None:
    results = await run_sections(["message_path", "memory"], quick=True, command="test")
    sections = results["sections"]
    _check_message_path(sections["message_path"])
    _check_memory(sections["memory"])
    assert results["meta"]["machine"]["python"]
    text = render(results)
    assert SECTIONS["message_path"].title in text
    assert SECTIONS["memory"].title in text
    assert len(summary_rows(results)) == 3


def _check_server(result: dict[str, Any]) -> None:
    for kind in result["kinds"].values():
        for variant in ("bare", "ws_diag"):
            assert finite(kind[variant]["throughput"])
            assert finite(kind[variant]["p99_us"])
            assert finite(kind[variant]["server_cores"])
            assert finite(kind[variant]["loadgen_cores"])
            assert kind[variant]["wrong_replies"] == 0
        assert finite(kind["throughput_ratio"])
        assert finite(kind["p99_ratio"])


def _check_connect(result: dict[str, Any]) -> None:
    for kind in result["kinds"].values():
        assert finite(kind["bare"]["rate"])
        assert finite(kind["ws_diag"]["rate"])
        assert finite(kind["ratio"])
    assert finite(result["goal"]["probe_io"])


def _check_diagnosis(result: dict[str, Any]) -> None:
    for scenarios in result["kinds"].values():
        assert set(scenarios) == {
            "bare",
            "classified",
            "cached",
            "healthy, cache warm",
            "cold, pool",
            "cold, fresh connections",
            "black-holed",
        }
        for scenario in scenarios.values():
            assert scenario["errors"] == []
            assert scenario["latency_ms"]["n"] == scenario["sessions"]
            assert finite(scenario["latency_ms"]["p99"])
            assert finite(scenario["wrong_codes"])
    assert set(result["goals"]) == {"cached", "cold_pool", "black_holed"}


def _check_storm(result: dict[str, Any]) -> None:
    for variants in result["kinds"].values():
        assert set(variants) == {
            "bare",
            "database down",
            "database black-holed",
            "database down, cache warm",
            "database stops after a healthy check",
            "all healthy, cache warm",
        }
        for variant in variants.values():
            assert variant["errors"] == []
            assert variant["missing"] == 0
            assert finite(variant["p99_ms"])
            assert finite(variant["wrong_codes"])
        assert set(variants["database down"]["probe_runs_per_storm"]) == {"database", "redis"}


@pytest.mark.asyncio
async def test_quick_sections_on_real_servers(
    postgres: PostgresServer, redis: RedisServer, silent_listener: SilentListener
) -> None:
    found = Services(postgres.dsn, redis.url, silent_listener)
    names = ["server", "connect", "diagnosis", "storm"]
    results = await run_sections(names, quick=True, found=found, command="test")
    sections = results["sections"]
    _check_server(sections["server"])
    _check_connect(sections["connect"])
    _check_diagnosis(sections["diagnosis"])
    _check_storm(sections["storm"])
    for name in names:
        assert isinstance(sections[name]["goal"]["met"], bool)
        assert SECTIONS[name].title in render(results)
    assert summary_rows(results)


def test_run_rewrites_only_the_readmes_results_block(tmp_path: Path) -> None:
    """`python -m benchmarks run` on a copy of benchmarks/README.md replaces its results block, nothing else."""
    readme = tmp_path / "README.md"
    original = (ROOT / "benchmarks" / "README.md").read_text()
    readme.write_text(original)
    update_readme(readme, "| new | results |\n")
    updated = readme.read_text()
    before, _, rest = original.partition(BEGIN)
    _, _, after = rest.partition(END)
    assert updated == f"{before}{BEGIN}\n\n| new | results |\n\n{END}{after}"
    assert "python -m benchmarks run" in updated
    update_readme(readme, "| new | results |\n")
    assert readme.read_text() == updated
    readme.write_text(before + after)
    with pytest.raises(ValueError, match="has no results block"):
        update_readme(readme, "| new | results |\n")


@pytest.mark.asyncio
async def test_quick_herd_section() -> None:
    """The herd simulation runs every policy and accounts for every client."""
    results = await run_sections(["herd"], quick=True, command="test")
    result = results["sections"]["herd"]
    assert result["close"]["code"] == 4007
    assert isinstance(result["close"]["retry_after_ms"], int)
    assert set(result["policies"]) == {herd.SHIPPED, herd.FIXED, herd.PLAIN, herd.PREVIOUS}
    for policy in result["policies"].values():
        assert policy["reconnected"] + policy["gave_up"] == result["clients"]
        assert sum(policy["attempts_per_second"]) == policy["attempts"]
        for key in ("peak_per_s", "peak_after_recovery_per_s", "all_back_after_s", "p99_back_after_s"):
            assert finite(policy[key]), key
    assert all(finite(r["peak"]) and finite(r["peak_after_recovery"]) for r in result["ratios"].values())
    assert isinstance(result["goal"]["met"], bool)
    assert SECTIONS["herd"].title in render(results)
    assert len(summary_rows(results)) == 2


@pytest.mark.asyncio
async def test_herd_plot_is_a_png(tmp_path: Path) -> None:
    """The herd benchmark draws its attempts-per-second plot to the PNG it is given."""
    out = tmp_path / "herd.png"
    result = await herd.run(herd.HerdConfig(clients=50, plot=False), plot_to=out)
    assert result["plot"] == "herd.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.asyncio
async def test_herd_shipped_policy_decides_like_reconnecting() -> None:
    """The simulated shipped client waits and gives up exactly as ws_diag.client.Reconnecting decides."""
    code, frame = await herd.outage_close()
    rands = [(i * 0.37) % 1 for i in range(20)]
    for policy in (RetryPolicy(), RetryPolicy(min_delay=0.1, max_delay=2.0, max_attempts=4)):
        client = Reconnecting("ws://127.0.0.1:9/", policy=policy, rand=iter(rands).__next__)
        real: list[float | None] = []
        while not real or real[-1] is not None:
            real.append(client._decide(retry_action(code, frame), None, None))
        simulated = [herd.shipped_policy(code, frame, policy).next_delay(i, r) for i, r in enumerate(rands)]
        assert simulated[: len(real)] == real


@pytest.mark.asyncio
async def test_quick_scale_section() -> None:
    """The scale section opens sessions, stops its own Redis and accounts for every client's close."""
    results = await run_sections(["scale"], quick=True, command="test")
    result = results["sections"]["scale"]
    sessions = result["sessions"]
    variants = result["kinds"]["uvicorn"]["variants"]
    assert set(variants) == {"bare", "ws_diag", "ws_diag, app error"}
    for name, variant in variants.items():
        assert variant["errors"] == [], name
        assert variant["closed_before_stop"] == 0, name
        assert sum(variant["codes"].values()) == sessions, name
        for key in ("last_close_ms", "p99_close_ms", "rss_open_mb", "peak_rss_mb", "bytes_per_connection"):
            assert finite(variant[key]), (name, key)
    for name in ("ws_diag", "ws_diag, app error"):
        assert finite(variants[name]["added_bytes_per_connection"])
        assert finite(variants[name]["wrong_codes"])
        assert variants[name]["probe_runs"]
        assert all(finite(n) for n in variants[name]["probe_runs"])
    assert isinstance(result["goal"]["met"], bool)
    assert SECTIONS["scale"].title in render(results)
    assert len(summary_rows(results)) == 2
