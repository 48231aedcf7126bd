"""Deciding which component a failure belongs to."""

from __future__ import annotations

from collections.abc import Sequence

from .classify import Classifier, exception_chain
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

    async def diagnose(self, exc: BaseException | None) -> Diagnosis:
        """Diagnose ``exc``: what the app raised, or was handling when it closed with a failure code.

        Whether the client left is decided before, from the connection's own
        evidence (:func:`ws_diag.departure.client_left`): a disconnect type met in
        the chain here is another connection's departure and names no component.
        """
        if exc is not None:
            for candidate in exception_chain(exc):
                if isinstance(candidate, WebSocketComponentError):
                    return Diagnosis.from_component_error(candidate)
            component = self.classifier.component_of(exc)
            if component is not None:
                return Diagnosis.for_component(component, "exception", exc=exc)
        if self.checker is not None:
            report = await self.checker.check()
            culprit = report.culprit(self.priority)
            if culprit is not None:
                return Diagnosis.for_component(culprit.component, "probe", root_cause=culprit.error, probe=culprit.name)
        return Diagnosis.for_component(Component.GENERIC, "default", exc=exc)
