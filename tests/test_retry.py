"""When to come back: the frame's retry_after_ms and source, and the shared retry table."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest

from ws_diag import Classifier, Component, CustomComponent, DiagSettings, WebSocketComponentError
from ws_diag.attribution import Diagnoser
from ws_diag.client import Explanation, RetryPolicy, explain, retry_delay_ms
from ws_diag.diagnosis import DEFAULT_RETRY_AFTER, Diagnosis
from ws_diag.health import HealthChecker
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.retry import MAX_RETRY_AFTER_MS, RetryAction, retry_action
from ws_diag.wire.frame import build_frame, close_reason, frame_schema

CASES = json.loads((Path(__file__).parent / "retry_cases.json").read_text("utf-8"))


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def validate(frame: dict[str, Any]) -> None:
    """Assert ``frame`` conforms to the published schema."""
    jsonschema.validate(frame, frame_schema(), cls=jsonschema.Draft202012Validator)


def body(diagnosis: Diagnosis, scheme: str = "private") -> dict[str, Any]:
    """The frame's error body, checked against the schema."""
    frame = build_frame(diagnosis, code_scheme=scheme, expose_details=False)  # type: ignore[arg-type]
    validate(frame)
    error: dict[str, Any] = frame["error"]
    return error


async def failing(*_: object) -> None:
    """A probe check that always fails."""
    raise ProbeFailed("down")


# --- the frame -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["private", "legacy"])
@pytest.mark.parametrize("component", list(Component))
def test_every_component_has_retry_fields_in_both_schemes(component: Component, scheme: str) -> None:
    """Each component's frame carries retry_after_ms (null exactly when not retryable) and source, schema-valid."""
    error = body(Diagnosis.for_component(component, "exception", retry_after=2.5), scheme)
    assert error["source"] == "exception"
    assert error["retry_after_ms"] == (2500 if component.retryable else None)


def test_error_sets_its_own_retry_after() -> None:
    """retry_after= on a factory reaches the frame in ms, with source 'app'."""
    frame = WebSocketComponentError.redis_failure("Redis is failing over", retry_after=7.25).to_websocket_response()
    validate(frame)
    assert (frame["error"]["retry_after_ms"], frame["error"]["source"]) == (7250, "app")


def test_not_retryable_error_has_null_retry_after() -> None:
    """An error marked not retryable sends null even when it set retry_after."""
    error = WebSocketComponentError.database_failure("bad schema", retryable=False, retry_after=3)
    frame = error.to_websocket_response()
    validate(frame)
    assert frame["error"]["retry_after_ms"] is None
    assert WebSocketComponentError.auth_failure().to_websocket_response()["error"]["retry_after_ms"] is None


def test_retry_after_is_bounded_to_an_hour() -> None:
    """A huge retry_after is capped at one hour, in the error and in the frame."""
    error = WebSocketComponentError.bridge_failure(retry_after=1e9)
    assert error.retry_after == 3600.0
    assert error.to_websocket_response()["error"]["retry_after_ms"] == MAX_RETRY_AFTER_MS
    diagnosis = Diagnosis.for_component(Component.DATABASE, "default", retry_after=1e12)
    assert body(diagnosis)["retry_after_ms"] == MAX_RETRY_AFTER_MS


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "5", True])
def test_bad_retry_after_is_refused(bad: Any) -> None:
    """A negative, NaN, infinite or non-numeric retry_after raises ValueError naming the field."""
    with pytest.raises(ValueError, match="retry_after"):
        WebSocketComponentError(Component.DATABASE, retry_after=bad)


def test_unset_retry_after_uses_the_built_in_default() -> None:
    """A diagnosis without retry_after (e.g. the responder's deadline fallback) suggests the default."""
    assert body(Diagnosis.for_component(Component.GENERIC, "default"))["retry_after_ms"] == DEFAULT_RETRY_AFTER * 1000


def test_schema_refuses_inconsistent_retry_fields() -> None:
    """The schema refuses a retry_after_ms with retryable false, a missing one, and an unknown source."""
    good = WebSocketComponentError.database_failure().to_websocket_response()
    validate(good)
    for change in ({"retryable": False}, {"retry_after_ms": -1}, {"retry_after_ms": 3_600_001}, {"source": "error"}):
        bad = {**good, "error": {**good["error"], **change}}
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)
    missing = {**good, "error": {k: v for k, v in good["error"].items() if k != "source"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(missing)


# --- the derivation rule (Diagnoser) ---------------------------------------------------------


@pytest.mark.asyncio
async def test_source_and_retry_after_for_each_source() -> None:
    """app: the error's own value; exception: the component default; probe: the cache time left; default: default."""
    clock = Clock()
    probe = CallableProbe("database", Component.DATABASE, failing)
    checker = HealthChecker([probe], cache_ttl=10.0, clock=clock)
    classifier = Classifier()
    classifier.register(ConnectionResetError, Component.REDIS)
    diagnoser = Diagnoser(classifier, checker, retry_after=0.5, retry_after_by_component={"redis": 4.0})

    app = await diagnoser.diagnose(WebSocketComponentError.database_failure(retry_after=9))
    assert app is not None
    assert (app.source, app.retry_after) == ("app", 9)
    app_default = await diagnoser.diagnose(WebSocketComponentError.redis_failure())
    assert app_default is not None
    assert (app_default.source, app_default.retry_after) == ("app", 4.0)

    typed = await diagnoser.diagnose(ConnectionResetError())
    assert typed is not None
    assert (typed.source, typed.retry_after) == ("exception", 4.0)

    probed = await diagnoser.diagnose(TimeoutError())
    assert probed is not None
    assert (probed.source, probed.component) == ("probe", Component.DATABASE)
    assert probed.retry_after == 10.0  # the whole cache window is left: the probe cannot change before
    clock.now += 7.5
    later = await diagnoser.diagnose(TimeoutError())
    assert later is not None
    assert later.retry_after == pytest.approx(2.5)
    clock.now += 2.4
    floor = await diagnoser.diagnose(TimeoutError())
    assert floor is not None
    assert floor.retry_after == 0.5
    await checker.aclose()

    plain = await Diagnoser(classifier, None, retry_after=0.25).diagnose(TimeoutError())
    assert plain is not None
    assert (plain.source, plain.retry_after) == ("default", 0.25)
    assert body(plain)["source"] == "default"


@pytest.mark.asyncio
async def test_a_healthy_report_from_before_the_failure_does_not_make_it_generic() -> None:
    """The database went down after /health cached "up": the failure is the database's, by probe, at once."""
    clock = Clock()
    down = False

    async def database() -> None:
        if down:
            raise ConnectionRefusedError(111, "Connection refused")

    checker = HealthChecker([CallableProbe("database", Component.DATABASE, database)], cache_ttl=60, clock=clock)
    diagnoser = Diagnoser(Classifier(), checker)
    assert (await checker.check()).healthy
    down = True
    clock.now += 0.1
    diagnosis = await diagnoser.diagnose(TimeoutError())
    assert (diagnosis.component, diagnosis.source, diagnosis.probe) == (Component.DATABASE, "probe", "database")
    await checker.aclose()


@pytest.mark.asyncio
async def test_time_to_change_follows_the_background_refresh() -> None:
    """With a background refresh due before the cache expires, the probe result can change at the refresh."""
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        return False

    reported = asyncio.Event()
    checker = HealthChecker(
        [CallableProbe("database", Component.DATABASE, check)],
        cache_ttl=3600,
        refresh_interval=30,
        on_report=[lambda _: reported.set()],
    )
    checker.start()
    try:
        async with asyncio.timeout(5):
            await reported.wait()
        report = await checker.check()  # the refresher's report, once cached
        assert 0 < checker.time_to_change(report) <= 30
        stale = await checker.check(fresh=True)
        assert checker.time_to_change(stale) <= 30
    finally:
        await checker.aclose()
    other = HealthChecker([CallableProbe("database", Component.DATABASE, check)], cache_ttl=0)
    assert other.time_to_change(await other.check()) == 0.0  # nothing cached: the next check runs the probes


def test_settings_retry_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """retry_after and retry_after_by_component come from the environment (JSON) and are validated."""
    assert (DiagSettings().retry_after, DiagSettings().retry_after_by_component) == (1.0, {})
    monkeypatch.setenv("WS_DIAG_RETRY_AFTER", "2.5")
    monkeypatch.setenv("WS_DIAG_RETRY_AFTER_BY_COMPONENT", '{"database": 5, "billing": 0.5}')
    settings = DiagSettings()
    assert (settings.retry_after, settings.retry_after_by_component) == (2.5, {"database": 5.0, "billing": 0.5})
    monkeypatch.setenv("WS_DIAG_RETRY_AFTER_BY_COMPONENT", '{"database": -1}')
    with pytest.raises(pydantic.ValidationError, match="retry_after_by_component"):
        DiagSettings()
    with pytest.raises(pydantic.ValidationError, match="retry_after"):
        DiagSettings(retry_after=7200)


def test_custom_component_default() -> None:
    """A custom component's key selects its per-component default."""
    billing = CustomComponent("billing", "Billing", 4100)
    diagnoser = Diagnoser(Classifier(), None, retry_after=1, retry_after_by_component={"billing": 30})
    assert diagnoser.default_retry_after(billing) == 30
    assert diagnoser.default_retry_after(Component.REDIS) == 1


# --- the shared table ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["actions"], ids=lambda c: f"{c['code']}-{c['scheme']}-{bool(c['frame'])}")
def test_retry_action_cases(case: dict[str, Any]) -> None:
    """retry_action follows the shared table (the browser helper is tested on the same cases)."""
    action = retry_action(case["code"], case["frame"], case["scheme"])
    assert [action.kind, action.retry_after_ms] == case["expect"]
    assert action.why
    assert case.get("why_has", "") in action.why


@pytest.mark.parametrize("case", CASES["delays"])
def test_retry_delay_cases(case: dict[str, Any]) -> None:
    """retry_delay_ms gives the shared table's delays; RetryPolicy.delay is the same in seconds."""
    kind, hint = case["action"]
    action = RetryAction(kind, hint, "")
    got = retry_delay_ms(action, case["attempt"], case["random"], case["min_ms"], case["max_ms"])
    assert got == case["expect_ms"]
    policy = RetryPolicy(min_delay=case["min_ms"] / 1000, max_delay=case["max_ms"] / 1000)
    assert policy.delay(action, case["attempt"], case["random"]) == pytest.approx(got / 1000, abs=0.002)


def test_stop_has_no_delay_and_bad_policies_are_refused() -> None:
    """A stop action has no delay; a RetryPolicy with bad values names the field."""
    with pytest.raises(ValueError, match="stop"):
        retry_delay_ms(RetryAction("stop", None, ""), 0, 0.5, 500, 30000)
    for kwargs, field in [({"min_delay": 0}, "min_delay"), ({"max_delay": math.inf}, "max_delay")]:
        with pytest.raises(ValueError, match=field):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_delay"):
        RetryPolicy(min_delay=5, max_delay=1)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# --- explain ---------------------------------------------------------------------------------


def test_explain_decodes_retry_fields() -> None:
    """explain() reads retry_after_ms and source from the frame."""
    frame = WebSocketComponentError.database_failure(retry_after=1.5).to_websocket_response()
    result = explain(4005, "", json.dumps(frame))
    assert (result.retry_after_ms, result.source, result.retryable) == (1500, "app", True)
    assert result.as_dict()["retryAfterMs"] == 1500
    auth = explain(4002, "", json.dumps(WebSocketComponentError.auth_failure().to_websocket_response()))
    assert (auth.retry_after_ms, auth.source, auth.retryable) == (None, "app", False)


def test_explain_reads_the_incident_from_the_reason_when_the_frame_is_lost() -> None:
    """Without a frame, the incident id comes from ws_diag's close reason."""
    diagnosis = Diagnosis.for_component(Component.DATABASE, "probe")
    result = explain(4005, close_reason(diagnosis), None)
    assert result == Explanation(
        4005, "Database", close_reason(diagnosis), (), True, diagnosis.incident_id, None, None, None
    )
    assert explain(4005, "Database failure (incident nothex)", None).incident_id is None


def test_explain_retryable_follows_the_table_without_a_frame() -> None:
    """Without a frame explain's retryable agrees with retry_action for every code."""
    for scheme in ("private", "legacy"):
        for code in [*range(1000, 1016), *range(2999, 3002), *range(3999, 4016), 4100, 4999]:
            expected = retry_action(code, None, scheme).kind != "stop"  # type: ignore[arg-type]
            assert explain(code, "", None, scheme=scheme).retryable is expected, (code, scheme)  # type: ignore[arg-type]


def test_own_private_codes_are_the_ones_custom_components_cannot_use() -> None:
    """The retry table's own block (4001-4014, as in ws-diag.js) is exactly what custom components may not use."""
    refused = set()
    for code in range(4000, 4600):
        try:
            CustomComponent("custom", "Custom", code)
        except ValueError:
            refused.add(code)
    assert refused == set(range(4001, 4015))
