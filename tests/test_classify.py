"""Classifying exceptions by type."""

from __future__ import annotations

import errno

import asyncpg
import pytest
import redis.exceptions
import starlette.websockets

from ws_diag import CLIENT_GONE, Classifier, Component, CustomComponent


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
