"""Deciding which component a failure belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .classify import Classifier, exception_chain
from .components import DEFAULT_PRIORITY, Component, ComponentLike
from .diagnosis import DEFAULT_RETRY_AFTER, Diagnosis
from .errors import WebSocketComponentError
from .health import HealthChecker

__all__ = ["Diagnoser"]


class Diagnoser:
    """Turns a failure into a :class:`Diagnosis`.

    In order: a :class:`WebSocketComponentError` raised (or wrapped) by the app
    names the component itself; then the classifier's rules (the exception's type,
    where a plain ``OSError`` was raised, undecodable inbound data: all ``source``
    ``"exception"``); then the health probes (failed required ones first, in ``priority``
    order, then degraded ones), from a report taken after the failure was seen or a
    fresh failing one, never a healthy report from before it
    (``HealthChecker.check(failure_at=...)``); last, GENERIC (1011).

    The suggested wait before reconnecting (``Diagnosis.retry_after``, seconds): the
    error's own ``retry_after`` when it set one; else the component's default
    (``retry_after_by_component``, then ``retry_after``), raised for a probe's
    diagnosis to the time until the probe's result can change
    (:meth:`HealthChecker.time_to_change`).

    Args:
        classifier: the exception-type rules.
        checker: the health checker, or ``None`` for no probing.
        priority: probe names or component keys blamed first.
        retry_after: default suggested wait, seconds.
        retry_after_by_component: per-component suggested waits, seconds, by component key.
    """

    def __init__(
        self,
        classifier: Classifier,
        checker: HealthChecker | None = None,
        priority: Sequence[str] = DEFAULT_PRIORITY,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
        retry_after_by_component: Mapping[str, float] | None = None,
    ) -> None:
        self.classifier = classifier
        self.checker = checker if checker is not None and checker.probes else None
        self.priority = tuple(priority)
        self.retry_after = retry_after
        self.retry_after_by_component = dict(retry_after_by_component or {})

    def default_retry_after(self, component: ComponentLike) -> float:
        """The configured suggested wait for ``component``, seconds."""
        return self.retry_after_by_component.get(component.key, self.retry_after)

    async def diagnose(self, exc: BaseException | None, *, failure_at: float | None = None) -> Diagnosis:
        """Diagnose ``exc``: what the app raised, or was handling when it closed with a failure code.

        ``failure_at`` is when the failure was seen, a reading of the checker's clock
        (:meth:`HealthChecker.now`); by default, now.

        Whether the client left is decided before, from the connection's own
        evidence (:func:`ws_diag.classify.departure.client_left`): a disconnect type met in
        the chain here is another connection's departure and names no component.
        """
        if exc is not None:
            for candidate in exception_chain(exc):
                if isinstance(candidate, WebSocketComponentError):
                    diagnosis = Diagnosis.from_component_error(candidate)
                    if diagnosis.retry_after is None:
                        return replace(diagnosis, retry_after=self.default_retry_after(diagnosis.component))
                    return diagnosis
            component = self.classifier.component_of(exc)
            if component is not None:
                return Diagnosis.for_component(
                    component, "exception", exc=exc, retry_after=self.default_retry_after(component)
                )
        if self.checker is not None:
            seen = self.checker.now() if failure_at is None else failure_at
            report = await self.checker.check(failure_at=seen)
            culprit = report.culprit(self.priority)
            if culprit is not None:
                wait = max(self.default_retry_after(culprit.component), self.checker.time_to_change(report))
                return Diagnosis.for_component(
                    culprit.component, "probe", root_cause=culprit.error, probe=culprit.name, retry_after=wait
                )
        return self.fallback(exc)

    def fallback(self, exc: BaseException | None) -> Diagnosis:
        """GENERIC (1011) with the configured suggested wait: for when nothing better is known."""
        return Diagnosis.for_component(
            Component.GENERIC, "default", exc=exc, retry_after=self.default_retry_after(Component.GENERIC)
        )
