"""The ws-diag command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from services import PostgresServer, RedisServer, SilentListener

from ws_diag import Component
from ws_diag.wire.closecodes import is_sendable_close_code

TIMEOUT = 60


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ws_diag`` with only the given WS_DIAG_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WS_DIAG_")}
    return subprocess.run(
        [sys.executable, "-m", "ws_diag", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_check_healthy(postgres: PostgresServer, redis: RedisServer) -> None:
    """check against running services prints a table and exits 0."""
    result = run("check", WS_DIAG_POSTGRES_DSN=postgres.dsn, WS_DIAG_REDIS_URL=redis.url)
    assert result.returncode == 0, result.stderr
    assert "database" in result.stdout
    assert "healthy: 0 of 2 probes failed" in result.stdout


def test_check_names_redis_when_it_is_down(postgres: PostgresServer, redis: RedisServer) -> None:
    """With Redis stopped, check --json names redis, exits 0 (Redis is degraded, not required) and leaks nothing."""
    redis.kill()
    result = run("check", "--json", WS_DIAG_POSTGRES_DSN=postgres.dsn, WS_DIAG_REDIS_URL=redis.url)
    report = json.loads(result.stdout)
    assert report["degraded_components"] == ["redis"]
    assert report["component_details"]["redis"]["error_code"] == 4007
    assert result.returncode == 0
    assert PostgresServer.password not in result.stdout + result.stderr


def test_check_unhealthy_exit_1(silent_listener: SilentListener) -> None:
    """A black-holed database fails within the deadline and exits 1, without printing the password."""
    result = run("check", WS_DIAG_POSTGRES_DSN=silent_listener.postgres_dsn, WS_DIAG_PROBE_TIMEOUT="0.3")
    assert result.returncode == 1
    assert "UNHEALTHY: 1 of 1 probes failed" in result.stdout
    assert "TimeoutError" in result.stdout
    assert PostgresServer.password not in result.stdout + result.stderr


def test_check_bad_configuration_exit_2() -> None:
    """Invalid settings exit 2 with a message naming the variable."""
    result = run("check", WS_DIAG_PROBE_TIMEOUT="soon")
    assert result.returncode == 2
    assert "WS_DIAG_PROBE_TIMEOUT" in result.stderr


def test_check_unparsable_configuration_exit_2() -> None:
    """A list setting that is not JSON exits 2 naming the field, not with a traceback."""
    result = run("check", WS_DIAG_REQUIRED_ENV="[not json")
    assert result.returncode == 2
    assert "required_env" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_list_setting_not_json_says_a_json_list_is_expected() -> None:
    """WS_DIAG_REQUIRED_ENV=A exits 2 with one line naming the variable and showing a JSON list."""
    result = run("check", WS_DIAG_REQUIRED_ENV="A")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "WS_DIAG_REQUIRED_ENV" in line
    assert "a JSON list is expected" in line
    assert """'["A","B"]'""" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WS_DIAG_REDIS_URL", "localhost:6379"),
        ("WS_DIAG_REDIS_URL", ":Pa55-cli-secret@localhost:6379"),
        ("WS_DIAG_POSTGRES_DSN", "host=localhost password=Pa55-cli-secret"),
        ("WS_DIAG_SQLALCHEMY_URL", "app:Pa55-cli-secret@localhost/app"),
        ("WS_DIAG_HTTP_PROBES", '["search.example:Pa55-cli-secret@8080/health"]'),
    ],
)
def test_check_unparsable_url_exit_2_with_one_line(variable: str, value: str) -> None:
    """A DSN or URL its probe cannot parse exits 2 with one stderr line naming it: no probe run, no password."""
    result = run("check", **{variable: value})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"ws-diag: invalid configuration: {variable} (")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no report: before this change it said "degraded ... ValueError" and exited 0
    assert "Pa55-cli-secret" not in result.stderr


def test_check_warns_about_a_misspelt_variable() -> None:
    """WS_DIAG_REDIS_URLS is named on stderr with the variable it was probably meant to be."""
    result = run("check", WS_DIAG_REDIS_URLS="redis://127.0.0.1:1/0", WS_DIAG_REQUIRED_ENV='["PATH"]')
    assert result.returncode == 0, result.stderr
    assert "WS_DIAG_REDIS_URLS is no ws_diag setting and is ignored; did you mean WS_DIAG_REDIS_URL?" in result.stderr
    assert result.stderr.count("WS_DIAG_REDIS_URLS") == 1


@pytest.mark.parametrize("token", ["", "   "])
def test_check_blank_health_token_exit_2(token: str) -> None:
    """An empty or blank WS_DIAG_HEALTH_TOKEN exits 2 with one line naming it, without a traceback."""
    result = run("check", WS_DIAG_HEALTH_TOKEN=token, WS_DIAG_REQUIRED_ENV='["PATH"]')
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "WS_DIAG_HEALTH_TOKEN (health_token)" in line
    assert "must not be empty or blank" in line


def test_check_nothing_configured_exit_2() -> None:
    """With no probe configured, check says what to set and exits 2."""
    result = run("check")
    assert result.returncode == 2
    assert "WS_DIAG_POSTGRES_DSN" in result.stderr


def test_missing_env_is_named() -> None:
    """A missing required variable makes check fail naming it."""
    result = run("check", WS_DIAG_REQUIRED_ENV='["WS_DIAG_TEST_SURELY_MISSING"]')
    assert result.returncode == 1
    assert "WS_DIAG_TEST_SURELY_MISSING" in result.stdout


def test_codes_table() -> None:
    """codes prints both schemes, including the legacy wire mapping."""
    result = run("codes")
    assert result.returncode == 0
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["Database"][-5:] == ["4005", "1005", "4005", "503", "yes"]
    assert lines["Redis"][-5:] == ["4007", "1007", "1007", "503", "yes"]
    assert lines["Authentication"][-1] == "no"


def test_codes_json_is_every_component_with_deliverable_wire_codes() -> None:
    """codes --json has one row per built-in component, integer codes and retryable, and wire codes a server
    delivers: where the legacy frame code cannot go on the wire (1004-1006), the private code goes instead."""
    result = run("codes", "--json")
    assert result.returncode == 0
    as_json = json.loads(result.stdout)
    assert [row["member"] for row in as_json] == [member.name for member in Component]
    assert all(type(row["private"]) is int and type(row["retryable"]) is bool for row in as_json)
    for row in as_json:
        assert is_sendable_close_code(row["legacy_wire"])
        if is_sendable_close_code(row["legacy"]):
            assert row["legacy_wire"] == row["legacy"]
        else:
            assert row["legacy_wire"] == row["private"]


def test_codes_into_a_closed_pipe_is_quiet() -> None:
    """ws-diag codes into a pipe whose reader already left (| head) exits 141 without a BrokenPipeError."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails with EPIPE
    try:
        for args in (("codes",), ("codes", "--json")):
            result = subprocess.run(
                [sys.executable, "-m", "ws_diag", *args],
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            assert result.stderr == ""
            assert result.returncode == 141  # 128 + SIGPIPE, as a shell reports a command the pipe ended
    finally:
        os.close(write_end)
