"""Deciding which component a failure belongs to."""

from __future__ import annotations

from .classify import CLIENT_GONE, Classifier, exception_chain
from .codes import Component
from .diagnosis import Diagnosis
from .errors import WebSocketComponentError

__all__ = ["Diagnoser"]


class Diagnoser:
    """Turns a failure into a :class:`Diagnosis`.

    In order: a :class:`WebSocketComponentError` raised (or wrapped) by the app
    names the component itself; then the classifier's rules for the exception's
    type; last, GENERIC (1011).

    Args:
        classifier: the exception-type rules.
    """

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    async def diagnose(self, exc: BaseException | None) -> Diagnosis | None:
        """Diagnose ``exc`` (``None`` when the app closed with a rewrite code).

        Returns ``None`` when the exception means the client went away: there is
        nobody to tell.
        """
        if exc is not None:
            for candidate in exception_chain(exc):
                if isinstance(candidate, WebSocketComponentError):
                    return Diagnosis.from_component_error(candidate)
            outcome = self.classifier.classify(exc)
            if outcome is CLIENT_GONE:
                return None
            if outcome is not None:
                return Diagnosis.for_component(outcome, "exception", exc=exc)
        return Diagnosis.for_component(Component.GENERIC, "default", exc=exc)
