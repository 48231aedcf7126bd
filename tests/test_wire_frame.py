"""The JSON frame (ws_diag.wire.frame): its schema, its bounds, the close reason, details redacted as sent."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from ws_diag import Component, CustomComponent, WebSocketComponentError
from ws_diag.diagnosis import Diagnosis
from ws_diag.redaction import (
    MAX_COMPONENT_BYTES,
    MAX_DETAILS_BYTES,
    MAX_DETAILS_DEPTH,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_ROOT_CAUSE_BYTES,
    MAX_SUGGESTION_BYTES,
    MAX_SUGGESTIONS,
    MAX_USER_ID_BYTES,
)
from ws_diag.wire.closecodes import MAX_REASON_BYTES
from ws_diag.wire.frame import build_frame, close_reason, frame_json, frame_schema

SECRET = "hunter2-Sup3rSecret"


def validate(frame: dict[str, Any]) -> None:
    """Assert ``frame`` conforms to the published schema."""
    jsonschema.validate(frame, frame_schema(), cls=jsonschema.Draft202012Validator)


def test_schema_is_itself_valid() -> None:
    """The packaged schema is a valid draft 2020-12 schema."""
    jsonschema.Draft202012Validator.check_schema(frame_schema())


@pytest.mark.parametrize("scheme", ["private", "legacy"])
@pytest.mark.parametrize("expose", [False, True])
@pytest.mark.parametrize("component", list(Component))
def test_every_component_frame_matches_schema(component: Component, scheme: str, expose: bool) -> None:
    """Frames for every component, scheme and exposure setting match the schema."""
    diagnosis = Diagnosis.for_component(component, "exception", exc=RuntimeError("x"), details={"a": 1})
    frame = build_frame(diagnosis, code_scheme=scheme, expose_details=expose)  # type: ignore[arg-type]
    validate(frame)
    assert frame["error"]["component"] == component.display_name
    assert frame["error"]["code"] == (component.legacy_code if scheme == "legacy" else component.code)


def test_custom_component_frame_matches_schema() -> None:
    """A custom component's frame matches the schema too."""
    billing = CustomComponent("billing", "Billing", 4100, suggestions=("Check the billing API",))
    frame = WebSocketComponentError(billing, "Billing is down").to_websocket_response()
    validate(frame)
    assert frame["error"]["code"] == 4100
    assert frame["error"]["suggestions"] == ["Check the billing API"]


def test_seed_example_frame() -> None:
    """The seed's database example produces the documented frame."""
    error = WebSocketComponentError.database_failure(
        "Database session factory unavailable", user_id="user123", details={"connection_timeout": 30}
    )
    frame = error.to_websocket_response(expose_details=True)
    validate(frame)
    body = frame["error"]
    assert frame["type"] == "error"
    assert body["code"] == 4005
    assert body["component"] == "Database"
    assert body["message"] == "Database session factory unavailable"
    assert body["user_id"] == "user123"
    assert body["details"] == {"connection_timeout": 30}
    assert body["retryable"] is True
    assert body["suggestions"]


def test_details_and_root_cause_hidden_by_default() -> None:
    """Without expose_details, details and root_cause are null."""
    error = WebSocketComponentError.redis_failure("Cache down", details={"host": "cache-1"}, root_cause="boom")
    body = error.to_websocket_response()["error"]
    assert body["details"] is None
    assert body["root_cause"] is None
    assert body["message"] == "Cache down"


def test_exception_text_never_reaches_the_message() -> None:
    """A diagnosis derived from an arbitrary exception uses the standard description."""
    exc = RuntimeError(f"connect to postgresql://app:{SECRET}@db/prod failed")
    diagnosis = Diagnosis.for_component(Component.DATABASE, "exception", exc=exc)
    for expose in (False, True):
        text = frame_json(diagnosis, code_scheme="private", expose_details=expose)
        assert SECRET not in text
        assert json.loads(text)["error"]["message"] == Component.DATABASE.description


def test_root_cause_is_redacted_when_exposed() -> None:
    """With expose_details the root cause is shown, but credentials in it are masked."""
    exc = ConnectionError(f"redis://default:{SECRET}@cache:6379 refused; password={SECRET}")
    diagnosis = Diagnosis.for_component(Component.REDIS, "exception", exc=exc)
    body = build_frame(diagnosis, code_scheme="private", expose_details=True)["error"]
    assert body["root_cause"].startswith("ConnectionError: redis://default:***@cache:6379")
    assert SECRET not in json.dumps(body)


def test_details_are_redacted_by_key_and_value() -> None:
    """Secret-looking keys are masked and DSNs in values lose their password."""
    error = WebSocketComponentError.database_failure(
        details={"password": SECRET, "dsn": "x", "nested": {"url": f"postgres://u:{SECRET}@h/db"}, "n": [1, 2]}
    )
    body = error.to_websocket_response(expose_details=True)["error"]
    assert SECRET not in json.dumps(body)
    assert body["details"]["nested"]["url"] == "postgres://u:***@h/db"
    assert body["details"]["n"] == [1, 2]


def test_huge_details_are_replaced_by_a_marker() -> None:
    """Details larger than the cap are not sent; a marker with their size is."""
    error = WebSocketComponentError.handler_failure(details={"blob": "x" * (MAX_DETAILS_BYTES * 10)})
    details = error.to_websocket_response(expose_details=True)["error"]["details"]
    assert details["truncated"] is True
    assert details["size"] > MAX_DETAILS_BYTES


def test_unserialisable_details_do_not_break_the_frame() -> None:
    """Details that JSON cannot hold are stringified, and a cycle becomes a marker."""
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    error = WebSocketComponentError.handler_failure(details={"when": object(), "cycle": cyclic})
    frame = error.to_websocket_response(expose_details=True)
    validate(frame)
    assert frame["error"]["details"] == {"unserialisable": True}


def test_close_reason_is_short_and_plain() -> None:
    """The close reason names the component and the incident, fits 123 bytes and is not JSON."""
    long_name = CustomComponent("long", "Ä" * 200, 4200)
    for component in (Component.DATABASE, long_name):
        diagnosis = Diagnosis.for_component(component, "default")
        reason = close_reason(diagnosis)
        assert len(reason.encode()) <= MAX_REASON_BYTES
        assert not reason.startswith("{")
    diagnosis = Diagnosis.for_component(Component.DATABASE, "default")
    assert close_reason(diagnosis) == f"Database failure (incident {diagnosis.incident_id})"


def test_non_string_details_are_redacted_as_sent() -> None:
    """Bytes, exceptions and objects in details are redacted as the text they are sent as; pairs too."""

    class Holder:
        def __str__(self) -> str:
            return f"postgresql://u:{SECRET}@h/db"

    error = WebSocketComponentError.integration_failure(
        details={"raw": f"postgresql://u:{SECRET}@h".encode(), "obj": Holder(), "pairs": [("password", SECRET)]}
    )
    body = error.to_websocket_response(expose_details=True)["error"]
    assert SECRET not in json.dumps(body)
    assert body["details"]["pairs"] == [["password", "***"]]


HOSTILE_TEXTS = {
    "ascii": "x" * 1_000_000,
    "astral": "\U0001f600" * 300_000,  # 12 bytes each once JSON-escaped
    "control": "\x00" * 300_000,  # 6 bytes each once JSON-escaped
    "quotes": '"\\' * 300_000,
    "lone-surrogates": "\ud800a\udfff" * 100_000,
    "mixed": ('é\U0001f600\n"\ud83d\x7f' + "y" * 10) * 50_000,
}


def hostile_component(text: str) -> CustomComponent:
    """A custom component whose every text is hostile, with a thousand suggestions."""
    return CustomComponent("hostile", text, 4100, description=text, suggestions=(text,) * 1000)


def deep_details(depth: int) -> dict[str, Any]:
    """Details nested ``depth`` dicts deep."""
    details: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        details = {"a": details}
    return details


@pytest.mark.parametrize("scheme", ["private", "legacy"])
@pytest.mark.parametrize("expose", [False, True])
@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_values_give_a_bounded_valid_frame(name: str, scheme: str, expose: bool) -> None:
    """Huge message, user_id, component name, suggestions, details and root_cause: the frame stays within bounds."""
    text = HOSTILE_TEXTS[name]
    error = WebSocketComponentError(
        hostile_component(text), text, user_id=text, details={"a": text, "deep": deep_details(50)}, root_cause=text
    )
    encoded = frame_json(Diagnosis.from_component_error(error), code_scheme=scheme, expose_details=expose).encode()
    assert len(encoded) <= MAX_FRAME_BYTES
    frame = json.loads(encoded)
    validate(frame)
    body = frame["error"]
    texts = [body["component"], body["message"], body["user_id"], *body["suggestions"]]
    if expose:
        texts.append(body["root_cause"])
    for value in texts:
        value.encode("utf-8")  # valid UTF-8: no lone surrogate survives
    assert len(body["suggestions"]) == MAX_SUGGESTIONS
    assert len(json.dumps(body["message"])) <= MAX_MESSAGE_BYTES
    assert len(json.dumps(body["user_id"])) <= MAX_USER_ID_BYTES
    assert len(json.dumps(body["component"])) <= MAX_COMPONENT_BYTES
    assert all(len(json.dumps(s)) <= MAX_SUGGESTION_BYTES for s in body["suggestions"])
    if expose:
        assert len(json.dumps(body["root_cause"])) <= MAX_ROOT_CAUSE_BYTES


def test_hostile_exception_text_as_root_cause_is_bounded() -> None:
    """An exception whose text is megabytes of escaped characters gives a bounded root_cause."""
    diagnosis = Diagnosis.for_component(Component.DATABASE, "exception", exc=RuntimeError("\x01\U0001f600" * 500_000))
    encoded = frame_json(diagnosis, code_scheme="private", expose_details=True).encode()
    assert len(encoded) <= MAX_FRAME_BYTES
    assert json.loads(encoded)["error"]["root_cause"].endswith("…")


def test_deep_details_are_cut_at_the_depth_limit() -> None:
    """Details nested deeper than MAX_DETAILS_DEPTH keep their top and end in a marker (no RecursionError)."""
    error = WebSocketComponentError.handler_failure(details=deep_details(100))
    details = error.to_websocket_response(expose_details=True)["error"]["details"]
    depth = 0
    while isinstance(details, dict):
        details, depth = details["a"], depth + 1
    assert details == "…"
    assert depth == MAX_DETAILS_DEPTH + 1


def test_details_near_the_recursion_limit_do_not_break_the_frame() -> None:
    """Lists nested about as deep as the interpreter allows give a marker, not a RecursionError."""
    for depth in (900, 990, 1000, 5000):
        nested: list[Any] = []
        for _ in range(depth):
            nested = [nested]
        error = WebSocketComponentError.handler_failure(details={"x": nested})
        frame = error.to_websocket_response(expose_details=True)
        assert len(json.dumps(frame)) <= MAX_FRAME_BYTES


def test_details_lengthened_by_masking_stay_within_the_cap() -> None:
    """Masking can lengthen details ({"token1": 1} -> "***"): the cap is checked again after redaction."""
    details: dict[str, Any] = {}
    while len(json.dumps({**details, f"token{len(details)}": 1})) <= MAX_DETAILS_BYTES:
        details[f"token{len(details)}"] = 1
    sent = WebSocketComponentError.handler_failure(details=details).to_websocket_response(expose_details=True)
    body = sent["error"]["details"]
    assert body["truncated"] is True
    assert len(json.dumps(body)) <= MAX_DETAILS_BYTES


def test_nan_in_details_is_not_sent_as_invalid_json() -> None:
    """NaN and Infinity are not JSON (a browser's JSON.parse refuses them): such details become a marker."""
    error = WebSocketComponentError.handler_failure(details={"ratio": float("nan"), "limit": float("inf")})
    text = frame_json(Diagnosis.from_component_error(error), code_scheme="private", expose_details=True)

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    assert json.loads(text, parse_constant=refuse)["error"]["details"] == {"unserialisable": True}


class LooseComponent:
    """A component implementing the protocol carelessly: non-string name, a generator of suggestions."""

    key = "loose"
    display_name = 12345
    code = 4150
    legacy_code = 4150
    description = "Loose failed"
    suggestions = (s for s in ["never", "listed"])
    retryable = True
    http_status = 503


def test_careless_protocol_component_still_gives_a_valid_frame() -> None:
    """A ComponentLike with odd field types still yields a schema-valid frame (never a bare 1011)."""
    diagnosis = Diagnosis.for_component(LooseComponent(), "default")  # type: ignore[arg-type]
    frame = json.loads(frame_json(diagnosis, code_scheme="private", expose_details=False))
    validate(frame)
    assert (frame["error"]["component"], frame["error"]["suggestions"]) == ("12345", [])
