"""Deciding which component a failure belongs to."""

from __future__ import annotations

from collections.abc import Sequence

from .classify import CLIENT_GONE, Classifier, exception_chain
from .codes import DEFAULT_PRIORITY, Component
from .diagnosis import Diagnosis
from .errors import WebSocketComponentError
from .health import HealthChecker

__all__ = ["Diagnoser"]


class Diagnoser:
    """Turns a failure into a :class:`Diagnosis`.

    In order: a :class:`WebSocketComponentError` raised (or wrapped) by the app
    names the component itself; then the classifier's rules for the exception's
    type; then the health probes (failed required ones first, in ``priority``
    order, then degraded ones); last, GENERIC (1011).

    Args:
        classifier: the exception-type rules.
        checker: the health checker, or ``None`` for no probing.
        priority: probe names or component keys blamed first.
    """

    def __init__(
        self,
        classifier: Classifier,
        checker: HealthChecker | None = None,
        priority: Sequence[str] = DEFAULT_PRIORITY,
    ) -> None:
        self.classifier = classifier
        self.checker = checker if checker is not None and checker.probes else None
        self.priority = tuple(priority)

    async def diagnose(self, exc: BaseException | None) -> Diagnosis | None:
        """Diagnose ``exc`` (``None`` when the app closed with a rewrite code).

        Returns ``None`` when the exception means the client went away: there is
        nobody to tell.
        """
        if exc is not None:
            if self.classifier.classify_one(exc) is CLIENT_GONE:
                return None  # the client left, whatever the exception's causes say
            for candidate in exception_chain(exc):
                if isinstance(candidate, WebSocketComponentError):
                    return Diagnosis.from_component_error(candidate)
            outcome = self.classifier.classify(exc)
            if outcome is CLIENT_GONE:
                return None
            if outcome is not None:
                return Diagnosis.for_component(outcome, "exception", exc=exc)
        if self.checker is not None:
            report = await self.checker.check()
            culprit = report.culprit(self.priority)
            if culprit is not None:
                return Diagnosis.for_component(culprit.component, "probe", root_cause=culprit.error, probe=culprit.name)
        return Diagnosis.for_component(Component.GENERIC, "default", exc=exc)
