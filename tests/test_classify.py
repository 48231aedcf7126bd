"""Classifying exceptions by type (ws_diag.classify): built-in and user rules, the chain walk, the data rule."""

from __future__ import annotations

import errno
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pydantic
import pytest
import redis.exceptions
import starlette.websockets
import ujson

from ws_diag import CLIENT_GONE, Classifier, Component, CustomComponent
from ws_diag.attribution import Diagnoser
from ws_diag.classify import exception_chain
from ws_diag.wire.frame import build_frame


def test_builtin_rules_cover_asyncpg_and_redis() -> None:
    """asyncpg and redis exceptions, subclasses included, point at their components."""
    classifier = Classifier()
    assert classifier.classify(asyncpg.exceptions.TooManyConnectionsError()) is Component.DATABASE
    assert classifier.classify(asyncpg.exceptions.ConnectionDoesNotExistError()) is Component.DATABASE
    assert classifier.classify(asyncpg.InterfaceError("pool closed")) is Component.DATABASE
    assert classifier.classify(redis.exceptions.ConnectionError()) is Component.REDIS
    assert classifier.classify(redis.exceptions.TimeoutError()) is Component.REDIS


def test_disconnects_mean_client_gone() -> None:
    """Starlette's WebSocketDisconnect means the client left, not a component failure."""
    assert Classifier().classify(starlette.websockets.WebSocketDisconnect(1011)) is CLIENT_GONE


@pytest.mark.parametrize("exc", [OSError(), TimeoutError(), ConnectionRefusedError(), ValueError("x")])
def test_ambiguous_exceptions_stay_unclassified(exc: Exception) -> None:
    """OSError, timeouts and plain errors say nothing about which component failed."""
    assert Classifier().classify(exc) is None


def test_user_rules_by_type_and_by_name() -> None:
    """Users register rules by class or dotted name; later rules win for the same type."""

    class SupervisorDown(Exception):
        pass

    billing = CustomComponent("billing", "Billing", 4100)
    classifier = Classifier()
    classifier.register(SupervisorDown, Component.SUPERVISOR)
    classifier.register(KeyError, Component.HANDLER)
    classifier.register("builtins.LookupError", billing)
    assert classifier.classify(SupervisorDown()) is Component.SUPERVISOR
    assert classifier.classify(KeyError("k")) is Component.HANDLER
    assert classifier.classify(IndexError()) is billing


def test_predicate_rules() -> None:
    """A predicate narrows a rule to what the type alone cannot say (an errno here)."""
    classifier = Classifier()
    classifier.register(
        OSError, Component.INTEGRATION, predicate=lambda e: getattr(e, "errno", None) == errno.EHOSTUNREACH
    )
    assert classifier.classify(OSError(errno.EHOSTUNREACH, "unreachable")) is Component.INTEGRATION
    assert classifier.classify(OSError(errno.ECONNREFUSED, "refused")) is None


def test_causes_and_groups_are_followed() -> None:
    """An app error wrapping a driver error, or a task group containing one, is classified."""
    classifier = Classifier()
    inner = redis.exceptions.ConnectionError("down")
    outer = RuntimeError("could not load session")
    outer.__cause__ = inner
    assert classifier.classify(outer) is Component.REDIS
    context_only = RuntimeError("while handling")
    context_only.__context__ = inner
    assert classifier.classify(context_only) is Component.REDIS
    group = ExceptionGroup("tasks", [ValueError(), asyncpg.exceptions.TooManyConnectionsError()])
    assert classifier.classify(group) is Component.DATABASE


def test_cyclic_cause_chain_terminates() -> None:
    """A cause chain that loops back on itself is walked once."""
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert Classifier().classify(a) is None


def test_exception_chain_walks_groups_and_causes_breadth_first_each_once() -> None:
    """The walk: the exception, its group members, then cause (or unsuppressed context), each once, at most 16."""
    cause, context, hidden = ValueError("cause"), KeyError("context"), OSError("suppressed")
    first, second = RuntimeError("first"), TypeError("second")
    first.__cause__ = cause
    first.__context__ = hidden  # a cause wins over the context
    second.__context__ = context
    group = ExceptionGroup("tasks", [first, second])
    assert list(exception_chain(group)) == [group, first, second, cause, context]
    suppressed = RuntimeError("from None")
    suppressed.__context__ = hidden
    suppressed.__suppress_context__ = True
    assert list(exception_chain(suppressed)) == [suppressed]
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert list(exception_chain(a)) == [a, b]
    links = [ValueError(str(n)) for n in range(40)]
    for outer, inner in itertools.pairwise(links):
        outer.__cause__ = inner
    assert list(exception_chain(links[0])) == links[:16]


def test_no_builtin_rules() -> None:
    """builtin_rules=False starts empty."""
    assert Classifier(builtin_rules=False).classify(redis.exceptions.ConnectionError()) is None


def test_application_bugs_in_drivers_stay_unclassified() -> None:
    """A unique violation or a WRONGTYPE reply is the app's bug, not an unavailable dependency."""
    classifier = Classifier()
    assert classifier.classify(asyncpg.exceptions.UniqueViolationError()) is None
    assert classifier.classify(asyncpg.exceptions.PostgresSyntaxError()) is None
    assert classifier.classify(redis.exceptions.ResponseError("WRONGTYPE")) is None
    assert classifier.classify(redis.exceptions.ReadOnlyError()) is Component.REDIS
    assert classifier.classify(asyncpg.exceptions.InvalidPasswordError()) is Component.DATABASE


def _raised(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail("the call did not raise")


class _Message(pydantic.BaseModel):
    text: str


class _Settings(pydantic.BaseModel):
    port: int


@pytest.mark.parametrize(
    "decode",
    [
        lambda: json.loads("this is not json"),
        lambda: ujson.loads("this is not json"),
        lambda: b"\xff\xfe not utf-8".decode("utf-8"),
        lambda: _Message.model_validate_json("this is not json"),
        lambda: _Message.model_validate_json('{"text": 42}'),
        lambda: pydantic.TypeAdapter(list[int]).validate_json('["a"]'),
    ],
    ids=["json", "ujson", "utf-8", "pydantic-json", "pydantic-invalid", "type-adapter"],
)
def test_undecodable_inbound_data_is_the_handlers(decode: Callable[[], object]) -> None:
    """Inbound data that cannot be decoded or validated is HANDLER (4004, not retryable)."""
    exc = _raised(decode)
    assert Classifier().classify(exc) is Component.HANDLER
    assert Classifier().component_of(exc) is Component.HANDLER
    assert Classifier(builtin_rules=False).classify(exc) is None


@pytest.mark.asyncio
async def test_the_handlers_diagnosis_says_do_not_retry() -> None:
    """The diagnosis of a decoding error: Message Handler, 4004, retryable false, retry_after_ms null."""
    diagnosis = await Diagnoser(Classifier()).diagnose(_raised(lambda: json.loads("this is not json")))
    frame = build_frame(diagnosis, code_scheme="private", expose_details=False)["error"]
    assert (frame["component"], frame["code"], frame["source"]) == ("Message Handler", 4004, "exception")
    assert frame["retryable"] is False
    assert frame["retry_after_ms"] is None


def test_data_rules_give_way_to_any_more_specific_rule() -> None:
    """A validation error raised while handling a dependency's error is that dependency's; a user rule wins."""
    with_cause = _raised(lambda: _Settings.model_validate({"port": "x"}))
    with_cause.__context__ = redis.exceptions.ConnectionError()
    assert Classifier().classify(with_cause) is Component.REDIS
    classifier = Classifier()
    classifier.register(
        "pydantic_core._pydantic_core.ValidationError",
        Component.DEPENDENCY,
        predicate=lambda exc: getattr(exc, "title", None) == "_Settings",
    )
    assert classifier.classify(_raised(lambda: _Settings.model_validate({"port": "x"}))) is Component.DEPENDENCY
    assert classifier.classify(_raised(lambda: _Message.model_validate({}))) is Component.HANDLER


def test_documented_override_of_the_data_rule_runs_as_written() -> None:
    """The docs' override: a validation error of a model named Settings is DEPENDENCY, others stay HANDLER."""
    page = Path(__file__).resolve().parent.parent / "docs" / "explanation" / "classification.md"
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page.read_text("utf-8"), flags=re.DOTALL) if "title" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "classification.md:override", "exec"), namespace)  # noqa: S102 - the docs' own code

    class Settings(pydantic.BaseModel):
        port: int

    classifier = namespace["classifier"]
    assert classifier.classify(_raised(lambda: Settings.model_validate({"port": "x"}))) is Component.DEPENDENCY
    assert classifier.classify(_raised(lambda: _Message.model_validate({}))) is Component.HANDLER
