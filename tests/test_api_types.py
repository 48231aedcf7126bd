"""Wrong types given to the public API raise a clear TypeError where they are passed, not a bare 1011 later."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from servers import run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import CLIENT_GONE, Classifier, Component, CustomComponent, DiagnosticsMiddleware, WebSocketComponentError

TIMEOUT = 10


@pytest.mark.parametrize(
    ("arguments", "named", "expected"),
    [
        ({"message": 123}, "message", "a str or None"),
        ({"message": b"bytes"}, "message", "a str or None"),
        ({"user_id": 5}, "user_id", "a str or None"),
        ({"details": [1]}, "details", "a mapping"),
        ({"details": "text"}, "details", "a mapping"),
        ({"retryable": "yes"}, "retryable", "a bool or None"),
        ({"retryable": 1}, "retryable", "a bool or None"),
        ({"root_cause": 42}, "root_cause", "an exception, a str or None"),
    ],
)
def test_error_arguments_of_the_wrong_type(arguments: dict[str, Any], named: str, expected: str) -> None:
    """WebSocketComponentError names the argument and what it expects."""
    with pytest.raises(TypeError, match=f"{named} must be {expected}"):
        WebSocketComponentError(Component.DATABASE, **arguments)


def test_component_given_as_a_string() -> None:
    """A component named by a string (a common slip) is a TypeError saying what a component is."""
    with pytest.raises(TypeError, match="component must be a Component member or a CustomComponent, got str"):
        WebSocketComponentError("database")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory",
    [
        WebSocketComponentError.auth_failure,
        WebSocketComponentError.factory_failure,
        WebSocketComponentError.handler_failure,
        WebSocketComponentError.database_failure,
        WebSocketComponentError.dependency_failure,
        WebSocketComponentError.redis_failure,
        WebSocketComponentError.supervisor_failure,
        WebSocketComponentError.bridge_failure,
        WebSocketComponentError.integration_failure,
    ],
)
def test_factories_check_their_arguments(factory: Any) -> None:
    """Every *_failure factory refuses a wrong message, user_id, details or retryable where it is called."""
    with pytest.raises(TypeError, match="message must be"):
        factory(123)
    with pytest.raises(TypeError, match="user_id must be"):
        factory("ok", user_id=5)
    with pytest.raises(TypeError, match="details must be"):
        factory(details=[1])
    with pytest.raises(TypeError, match="retryable must be"):
        factory(retryable="yes")
    assert factory("fine", user_id="u1", details={"a": 1}, retryable=False).retryable is False


def test_valid_arguments_still_work() -> None:
    """Correct types, None and custom components are accepted as before."""
    billing = CustomComponent("billing", "Billing", 4100)
    error = WebSocketComponentError(billing, None, user_id=None, details=None, root_cause=ValueError("x"))
    assert (error.message, error.retryable) == ("A component failed", True)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("key", 1, "a str"),
        ("display_name", None, "a str"),
        ("code", "4100", "an int"),
        ("code", True, "an int"),
        ("description", b"x", "a str"),
        ("suggestions", "Check the invoices", "a tuple or list of str"),
        ("suggestions", [1, 2], "a tuple or list of str"),
        ("suggestions", None, "a tuple or list of str"),
        ("retryable", "no", "a bool"),
        ("http_status", "503", "an int"),
        ("legacy_code", 4100.0, "an int"),
    ],
)
def test_custom_component_fields_of_the_wrong_type(field: str, value: object, expected: str) -> None:
    """CustomComponent names the field and what it expects."""
    arguments: dict[str, Any] = {"key": "billing", "display_name": "Billing", "code": 4100, field: value}
    with pytest.raises(TypeError, match=f"CustomComponent: {field} must be {expected}"):
        CustomComponent(**arguments)


def test_custom_component_accepts_a_list_of_suggestions() -> None:
    """A list of suggestions is accepted and stored as a tuple."""
    assert CustomComponent("billing", "Billing", 4100, suggestions=["a", "b"]).suggestions == ("a", "b")  # type: ignore[arg-type]


@pytest.mark.parametrize("exc_type", [int, ValueError(), None, 42, ""])
def test_register_refuses_what_is_not_an_exception_type(exc_type: object) -> None:
    """Classifier.register refuses a non-exception class, an instance or an empty name, naming exc_type."""
    with pytest.raises(TypeError, match="exc_type must"):
        Classifier().register(exc_type, Component.DATABASE)  # type: ignore[arg-type]


def test_register_refuses_a_bad_outcome_or_predicate() -> None:
    """An outcome given as a string, or a predicate that is not callable, is refused where it is registered."""
    with pytest.raises(TypeError, match="outcome must be a Component member, a CustomComponent or CLIENT_GONE"):
        Classifier().register(ValueError, "database")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="predicate must be callable"):
        Classifier().register(ValueError, Component.DATABASE, predicate=True)  # type: ignore[arg-type]


def test_register_accepts_classes_names_and_client_gone() -> None:
    """Exception classes, dotted names, custom components and CLIENT_GONE are accepted as before."""
    classifier = Classifier()
    classifier.register(ValueError, CustomComponent("billing", "Billing", 4100))
    classifier.register("some.module.Error", Component.REDIS)
    classifier.register(KeyboardInterrupt, CLIENT_GONE)
    assert classifier.classify(ValueError()) is not None


@pytest.mark.asyncio
async def test_wrong_type_in_the_app_is_diagnosed_as_the_app_bug_it_is() -> None:
    """Under a real server, message=123 raises TypeError at the raise site: a Generic frame, not a silent 1011."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise WebSocketComponentError(Component.DATABASE, message=123)  # type: ignore[arg-type]

    async with (
        run_server(DiagnosticsMiddleware(app, settings={}), "hypercorn") as url,
        connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws,
    ):
        await ws.send("hi")
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert frame["error"]["component"] == "Generic Internal"
    assert ws.close_code == Component.GENERIC.code
