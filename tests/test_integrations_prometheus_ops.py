"""The shipped Prometheus rules and Grafana dashboard: valid, tested, and naming only metrics ws_diag exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ws_diag.integrations.prometheus import METRIC_NAMES, PrometheusMetrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "ws_diag.rules.yml"
RULES_TESTS = ROOT / "ops" / "prometheus" / "ws_diag.rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "ws_diag.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package 'prometheus'; scripts/test installs it)",
)

# Grafana's variables, replaced by what they stand for so that Prometheus can parse the query.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": ".*"}
# Histogram series a scrape shows for a histogram's base name.
_SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def exported_names() -> set[str]:
    """Every metric name a fresh PrometheusMetrics registers, as queries name them (counters with _total)."""
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    return {f"{m.name}_total" if m.type == "counter" else m.name for m in registry.collect()}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard's panels, Grafana variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries: list[str] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"panel {panel['title']!r}: unknown Grafana variable in {expr!r}"
            queries.append(expr)
    return queries


def metric_names_in(expr: str) -> set[str]:
    """The ws_diag metric names a query uses, histogram suffixes removed."""
    names = set(re.findall(r"\bws_diag_[a-z0-9_]+", expr))
    return {next((n.removesuffix(s) for s in _SERIES_SUFFIXES if n.endswith(s)), n) for n in names}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run promtool, bounded."""
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_metric_names_follow_prometheus_conventions() -> None:
    """snake_case names and labels, counters end in _total, histograms in _seconds; METRIC_NAMES is exact."""
    assert exported_names() == {f"ws_diag_{name}" for name in METRIC_NAMES}
    for name in METRIC_NAMES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    for metric in registry.collect():
        if metric.type == "counter":
            assert f"{metric.name}_total".removeprefix("ws_diag_") in METRIC_NAMES
        if metric.type == "histogram":
            assert metric.name.endswith("_seconds"), metric.name
        for sample in metric.samples:
            assert all(re.fullmatch(r"[a-z][a-z_]*", label) for label in sample.labels), sample


def test_dashboard_names_only_exported_metrics() -> None:
    """Every metric a dashboard query or variable uses is one PrometheusMetrics exports."""
    exported = exported_names()
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for expr in dashboard_queries():
        used |= metric_names_in(expr)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            used |= metric_names_in(variable["definition"])
    assert used, "the dashboard queries no ws_diag metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert used == exported, f"no panel shows {sorted(exported - used)}"


def test_dashboard_is_importable_json() -> None:
    """The dashboard has a uid, unique panel ids and a Prometheus datasource variable its panels use."""
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_rules_name_only_exported_metrics() -> None:
    """Every metric the alert rules use is one PrometheusMetrics exports."""
    used = metric_names_in(RULES.read_text())
    assert used
    assert used <= exported_names(), f"not exported: {sorted(used - exported_names())}"


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    """promtool check rules accepts ws_diag.rules.yml."""
    done = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


@needs_promtool
def test_promtool_rule_tests_pass() -> None:
    """The rules' unit tests pass: the first failure after a restart fires, stale readings do not page."""
    done = promtool("test", "rules", RULES_TESTS.name, cwd=RULES_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_rule_tests_can_fail(tmp_path: Path) -> None:
    """Without the zero from start-up (the series appears at 1), the failure alert does not fire."""
    tests = RULES_TESTS.read_text().replace('values: "3 3 0 0 1 1 1"', 'values: "_ _ _ _ 1 1 1"', 1)
    (tmp_path / RULES.name).write_text(RULES.read_text())
    (tmp_path / RULES_TESTS.name).write_text(tests)
    done = promtool("test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert "WsDiagSessionFailures" in done.stdout + done.stderr


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every dashboard query parses as PromQL (promtool check rules on them as recording rules)."""
    queries = dashboard_queries()
    groups: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"ws_diag:dashboard_query_{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps(groups))  # JSON is YAML
    done = promtool("check", "rules", path.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout
    bad = tmp_path / "bad.rules.yml"
    bad.write_text(json.dumps({"groups": [{"name": "x", "rules": [{"record": "x", "expr": "sum(rate(x[5m])"}]}]}))
    assert promtool("check", "rules", bad.name, cwd=tmp_path).returncode != 0  # the check can fail
