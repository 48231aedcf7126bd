"""Classifying exceptions by type: which component an exception points at.

Rules are looked up along ``type(exc).__mro__`` (as Starlette looks up exception
handlers), so a rule for a base class covers its subclasses. Rules can be keyed
by the class itself or by its dotted name, which lets the built-in rules cover
asyncpg and redis without importing them: an exception of a module that was
never imported cannot occur. Exception text is never looked at.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain

from .codes import Component, ComponentLike

__all__ = ["CLIENT_GONE", "Classifier", "ClientGone", "Outcome", "Predicate", "exception_chain"]


class ClientGone(enum.Enum):
    """The outcome for exceptions that mean the peer went away: no diagnosis, nothing sent."""

    CLIENT_GONE = "client-gone"


CLIENT_GONE = ClientGone.CLIENT_GONE

Outcome = ComponentLike | ClientGone
Predicate = Callable[[BaseException], bool]

# The cause chain of a real failure is short; the bound only guards against
# pathological chains.
_MAX_CHAIN = 16


@dataclass(frozen=True, slots=True)
class _Rule:
    outcome: Outcome
    predicate: Predicate | None


# Only errors that mean the dependency itself is unavailable: a unique violation,
# a syntax error or a WRONGTYPE reply is the application's bug, not the database's.
_BUILTIN_NAMED_RULES: dict[str, Outcome] = {
    "asyncpg.exceptions.PostgresConnectionError": Component.DATABASE,
    "asyncpg.exceptions.InsufficientResourcesError": Component.DATABASE,
    "asyncpg.exceptions.OperatorInterventionError": Component.DATABASE,
    "asyncpg.exceptions.InvalidAuthorizationSpecificationError": Component.DATABASE,
    "asyncpg.exceptions.ReadOnlySQLTransactionError": Component.DATABASE,
    "asyncpg.exceptions._base.InterfaceError": Component.DATABASE,
    "redis.exceptions.ConnectionError": Component.REDIS,
    "redis.exceptions.TimeoutError": Component.REDIS,
    "redis.exceptions.ReadOnlyError": Component.REDIS,
    "redis.exceptions.ClusterDownError": Component.REDIS,
    "redis.exceptions.TryAgainError": Component.REDIS,
    "starlette.websockets.WebSocketDisconnect": CLIENT_GONE,
    "uvicorn.protocols.utils.ClientDisconnected": CLIENT_GONE,
}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Classifier:
    """Maps exception types to components.

    The built-in rules map asyncpg's connection, resource, operator-intervention,
    authorisation and interface errors to DATABASE, redis-py's connection,
    timeout, read-only and cluster-down errors to REDIS (query errors and error
    replies stay unclassified: they are the application's bugs), and Starlette's
    ``WebSocketDisconnect`` and uvicorn's ``ClientDisconnected`` to
    :data:`CLIENT_GONE`. Plain ``OSError`` and ``TimeoutError`` are left
    unclassified on purpose: they do not say which dependency timed out, so the
    health probes decide.

    Args:
        builtin_rules: start with the built-in rules (default ``True``).
    """

    def __init__(self, *, builtin_rules: bool = True) -> None:
        self._by_type: dict[type[BaseException], list[_Rule]] = {}
        self._by_name: dict[str, list[_Rule]] = {}
        if builtin_rules:
            for name, outcome in _BUILTIN_NAMED_RULES.items():
                self._by_name[name] = [_Rule(outcome, None)]

    def register(
        self,
        exc_type: type[BaseException] | str,
        outcome: Outcome,
        *,
        predicate: Predicate | None = None,
    ) -> None:
        """Map ``exc_type`` (a class or its dotted ``module.QualName``) to ``outcome``.

        With a ``predicate``, the rule applies only to exceptions it accepts (for
        what a type cannot say, such as an ``OSError``'s errno or a port).
        Rules registered later for the same type are tried first.

        Raises:
            TypeError: ``exc_type`` is neither an exception class nor a dotted name,
                ``outcome`` is neither a component nor :data:`CLIENT_GONE`, or
                ``predicate`` is not callable.
        """
        if isinstance(exc_type, str):
            if not exc_type:
                msg = "Classifier.register: exc_type must not be an empty name"
                raise TypeError(msg)
        elif not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            msg = (
                "Classifier.register: exc_type must be an exception class or its dotted name "
                f"('module.QualName'), got {exc_type!r}"
            )
            raise TypeError(msg)
        if outcome is not CLIENT_GONE and not all(hasattr(outcome, attribute) for attribute in ("key", "code")):
            msg = (
                "Classifier.register: outcome must be a Component member, a CustomComponent or CLIENT_GONE, "
                f"got {type(outcome).__name__}"
            )
            raise TypeError(msg)
        if predicate is not None and not callable(predicate):
            msg = f"Classifier.register: predicate must be callable or None, got {type(predicate).__name__}"
            raise TypeError(msg)
        rule = _Rule(outcome, predicate)
        if isinstance(exc_type, str):
            self._by_name.setdefault(exc_type, []).insert(0, rule)
        else:
            self._by_type.setdefault(exc_type, []).insert(0, rule)

    def classify(self, exc: BaseException) -> Outcome | None:
        """The outcome for ``exc``, its causes or its group members; ``None`` if unknown.

        The exception itself is tried first, then ``__cause__``/``__context__``
        (an app that wraps an asyncpg error in its own still points at the
        database), then the members of an ``ExceptionGroup``.
        """
        for candidate in exception_chain(exc):
            outcome = self._lookup(candidate)
            if outcome is not None:
                return outcome
        return None

    def component_of(self, exc: BaseException) -> ComponentLike | None:
        """The component ``exc``, its causes or group members point at; ``None`` if none does.

        Like :meth:`classify`, but a disconnect type met on the way is passed over:
        whether *this* connection's client left is decided from its own evidence
        (:func:`ws_diag.departure.client_left`), and another connection's departure
        names no component.
        """
        for candidate in exception_chain(exc):
            outcome = self.classify_one(candidate)
            if outcome is not None and not isinstance(outcome, ClientGone):
                return outcome
        return None

    def classify_one(self, exc: BaseException) -> Outcome | None:
        """The outcome for ``exc`` itself, ignoring its causes and group members."""
        return self._lookup(exc)

    def _lookup(self, exc: BaseException) -> Outcome | None:
        for cls in type(exc).__mro__:
            for rule in chain(self._by_type.get(cls, ()), self._by_name.get(_name(cls), ())):
                if rule.predicate is None or rule.predicate(exc):
                    return rule.outcome
        return None


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its group members and causes, breadth first, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        linked = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if linked is not None:
            pending.append(linked)
