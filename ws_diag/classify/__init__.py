"""Classifying exceptions by type: which component an exception points at.

Rules are looked up along ``type(exc).__mro__`` (as Starlette looks up exception
handlers), so a rule for a base class covers its subclasses. Rules can be keyed
by the class itself or by its dotted name, which lets the built-in rules cover
asyncpg and redis without importing them: an exception of a module that was
never imported cannot occur. Exception text is never looked at.

Three tiers, each over the whole cause chain: the type rules; then, for a plain
``OSError`` (``TimeoutError`` included) or a decoding error no type rule names,
the origin rules (:mod:`ws_diag.classify.origin`: which known library it was raised in);
last, the inbound-data rules (decoding and validation errors: the message handler's).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from ..components import Component, ComponentLike
from .origin import BUILTIN_ORIGINS, OriginRules
from .rules import BUILTIN_NAMED_RULES, CLIENT_GONE, INBOUND_DATA_RULES, LLM, ClientGone, Outcome, Predicate, Rule

__all__ = ["CLIENT_GONE", "Classifier", "ClientGone", "Outcome", "Predicate", "exception_chain"]


# The cause chain of a real failure is short; the bound only guards against
# pathological chains.
_MAX_CHAIN = 16


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Classifier:
    """Maps exception types to components.

    The built-in rules (by dotted name, so none of these packages is imported)
    name only errors that mean a dependency is unavailable; query errors, error
    replies and HTTP 4xx stay unclassified, they are the application's bugs:

    - DATABASE: asyncpg's connection, resource, operator-intervention,
      authorisation and interface errors; psycopg 3's ``OperationalError`` when it
      has no SQLSTATE (refused, lost or closed connection) or a connection-level
      one (classes 08, 28, 53, 57, and 25006 read-only), not serialization
      failures or deadlocks (class 40); SQLAlchemy's ``DBAPIError`` family when
      SQLAlchemy invalidated the connection (``connection_invalidated``) or the
      driver's original (``orig``) is an ``OSError`` or carries such a SQLSTATE,
      its ``DisconnectionError`` and its pool's ``TimeoutError``.
    - REDIS: redis-py's connection, timeout, read-only and cluster-down errors.
    - INTEGRATION: httpx's timeouts, network errors, ``RemoteProtocolError`` and
      ``ProxyError``; aiohttp's ``ClientConnectionError`` family (refused, reset,
      disconnected, connect and socket-read timeouts) and ``ClientPayloadError``;
      ``httpx.HTTPStatusError`` and ``aiohttp.ClientResponseError`` (from
      ``raise_for_status()``) only for a 5xx: a dependency's 5xx is its failure,
      a 4xx is our request's.
    - ``llm_component`` (INTEGRATION by default): the OpenAI and Anthropic SDKs'
      ``APIConnectionError`` (``APITimeoutError`` included), ``RateLimitError``
      (429) and ``InternalServerError`` (5xx, Anthropic's 529 overloaded included).
    - HANDLER: ``UnicodeEncodeError``: the handler produced text that UTF-8 cannot
      encode (a lone surrogate, say from a model's output), which the server refuses
      to send; it is the message the handler built that failed, not a dependency, and
      the same message would fail again.
    - :data:`CLIENT_GONE`: Starlette's and Litestar's ``WebSocketDisconnect`` and
      uvicorn's ``ClientDisconnected``.
    - HANDLER (4004, not retryable), only when nothing above and no origin rule
      names anything in the chain: inbound data that cannot be decoded or
      validated (``json.JSONDecodeError``, ujson's ``JSONDecodeError``,
      ``UnicodeDecodeError``, pydantic's ``ValidationError``). A pydantic error
      from the app's own settings or outbound data lands here too: still the
      app's failure, and a retry does not help. Register a rule to say otherwise.

    A plain ``OSError`` (``TimeoutError`` included), or a decoding error, that no
    type rule names is attributed by the known library it was raised in
    (:mod:`ws_diag.classify.origin`, the same components as the type rules): SQLAlchemy
    over asyncpg lets a refused new connection through as a plain
    ``ConnectionRefusedError``, aiohttp's ``ClientTimeout(total=...)`` raises a
    plain ``TimeoutError``. Anything else is left to the health probes.

    Args:
        builtin_rules: start with the built-in rules (default ``True``).
        llm_component: where the LLM SDK rules point (default
            ``Component.INTEGRATION``); e.g. a custom "LLM provider" component.
    """

    def __init__(self, *, builtin_rules: bool = True, llm_component: ComponentLike = Component.INTEGRATION) -> None:
        self._by_type: dict[type[BaseException], list[Rule]] = {}
        self._by_name: dict[str, list[Rule]] = {}
        self._inbound_by_name: dict[str, list[Rule]] = {}
        self._origins = OriginRules()
        self.llm_component = llm_component
        if builtin_rules:
            for name, outcome, predicate in BUILTIN_NAMED_RULES:
                resolved = llm_component if outcome is LLM.LLM else outcome
                self._by_name.setdefault(name, []).append(Rule(resolved, predicate))
            for name in INBOUND_DATA_RULES:
                self._inbound_by_name[name] = [Rule(Component.HANDLER, None)]
            for module, component in BUILTIN_ORIGINS:
                self._origins.add(module, llm_component if isinstance(component, str) else component)

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
        Rules registered later for the same type are tried first; registered
        rules are type rules, tried before the origin and inbound-data rules.

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
        if outcome is not CLIENT_GONE:
            _check_component("register", outcome)
        _check_predicate("register", predicate)
        rule = Rule(outcome, predicate)
        if isinstance(exc_type, str):
            self._by_name.setdefault(exc_type, []).insert(0, rule)
        else:
            self._by_type.setdefault(exc_type, []).insert(0, rule)

    def register_origin(self, module: str, outcome: ComponentLike, *, predicate: Predicate | None = None) -> None:
        """Attribute a plain ``OSError`` raised inside ``module`` to ``outcome``.

        ``module`` is a dotted module name and covers its submodules (``"mydb"``
        covers ``mydb.pool``); the rules of the longest registered name covering a
        frame's module are tried first (later ones first), then shorter names'. Applies
        to an ``OSError`` (``TimeoutError`` included) or a decoding error that no
        type rule names; see :mod:`ws_diag.classify.origin` for which frame counts.

        Raises:
            TypeError: ``module`` is not a non-empty dotted name, ``outcome`` is not
                a component, or ``predicate`` is not callable.
        """
        if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
            msg = f"Classifier.register_origin: module must be a dotted module name, got {module!r}"
            raise TypeError(msg)
        _check_component("register_origin", outcome)
        _check_predicate("register_origin", predicate)
        self._origins.add(module, outcome, predicate)

    def classify(self, exc: BaseException) -> Outcome | None:
        """The outcome for ``exc``, its causes or its group members; ``None`` if unknown.

        The exception itself is tried first, then ``__cause__``/``__context__``
        (an app that wraps an asyncpg error in its own still points at the
        database), then the members of an ``ExceptionGroup``: first by the type
        rules, then by origin, then by the inbound-data rules.
        """
        return self._resolve(exc, departures=True)

    def component_of(self, exc: BaseException) -> ComponentLike | None:
        """The component ``exc``, its causes or group members point at; ``None`` if none does.

        Like :meth:`classify`, but a disconnect type met on the way is passed over:
        whether *this* connection's client left is decided from its own evidence
        (:func:`ws_diag.classify.departure.client_left`), and another connection's departure
        names no component.
        """
        outcome = self._resolve(exc, departures=False)
        return None if isinstance(outcome, ClientGone) else outcome

    def classify_one(self, exc: BaseException) -> Outcome | None:
        """The type rules' outcome for ``exc`` itself: no causes, group members, origin or inbound-data rules."""
        return self._lookup(exc, self._by_name, by_type=True)

    def _resolve(self, exc: BaseException, *, departures: bool) -> Outcome | None:
        # Only exceptions no type rule names (a departure type passed over included)
        # reach the origin and inbound-data tiers.
        unnamed: list[BaseException] = []
        for candidate in exception_chain(exc):
            outcome = self.classify_one(candidate)
            if outcome is None:
                unnamed.append(candidate)
            elif departures or not isinstance(outcome, ClientGone):
                return outcome
        inbound = [self._lookup(candidate, self._inbound_by_name) for candidate in unnamed]
        for candidate, data_error in zip(unnamed, inbound, strict=True):
            if isinstance(candidate, OSError) or data_error is not None:
                origin = self._origins.origin_of(candidate)
                if origin is not None:
                    return origin
        return next((outcome for outcome in inbound if outcome is not None), None)

    def _lookup(self, exc: BaseException, by_name: dict[str, list[Rule]], *, by_type: bool = False) -> Outcome | None:
        for cls in type(exc).__mro__:
            typed = self._by_type.get(cls, ()) if by_type else ()
            for rule in chain(typed, by_name.get(_name(cls), ())):
                if rule.predicate is None or rule.predicate(exc):
                    return rule.outcome
        return None


def _check_component(method: str, outcome: object) -> None:
    if not all(hasattr(outcome, attribute) for attribute in ("key", "code")):
        what = "a Component member, a CustomComponent or CLIENT_GONE" if method == "register" else "a component"
        msg = f"Classifier.{method}: outcome must be {what}, got {type(outcome).__name__}"
        raise TypeError(msg)


def _check_predicate(method: str, predicate: object) -> None:
    if predicate is not None and not callable(predicate):
        msg = f"Classifier.{method}: predicate must be callable or None, got {type(predicate).__name__}"
        raise TypeError(msg)


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
