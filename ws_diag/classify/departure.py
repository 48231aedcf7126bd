"""Whose client left? Deciding a departure from one connection's own evidence.

A chat app broadcasts: connection B's handler sends to connection A, whose
client vanished. The server refuses A's send (uvicorn raises its
``ClientDisconnected``, Starlette turns it into ``WebSocketDisconnect(1006)``)
and that exception escapes *B's* handler. A disconnect type somewhere in the
chain therefore says nothing about B's client. What does:

- an ``OSError`` (uvicorn's ``ClientDisconnected``, a reset connection) passed
  through a call of B's own server ``send``: the server says B's peer is gone, or
- a disconnect type (Starlette's ``WebSocketDisconnect``, uvicorn's
  ``ClientDisconnected``) raised where a ``websocket.disconnect`` message was
  in hand (Starlette's ``_raise_on_disconnect(message)``, an app's
  ``if message["type"] == "websocket.disconnect": raise ...``): B's own
  ``receive`` yielded it. A disconnect type raised with no such message, say by
  an endpoint while its client is still there, says nothing about B's client.

A disconnect that passed through a call of the same ``send`` function bound to
*another* connection is that connection's departure, not B's.

Any other refusal by B's own ``send`` says nothing of the kind: uvicorn refuses
Starlette's HTTP answer to an ``HTTPException`` raised after accept with a
``RuntimeError``, and a text frame holding a lone surrogate makes the server's
``send`` raise ``UnicodeEncodeError``, both while the client is there. Those are
the app's failures. The one ambiguous refusal (uvicorn's legacy implementation
refuses a send to a departed client with a plain ``RuntimeError``, the same type)
is settled by the responder: it tries the frame, and the server refusing ws_diag's
first message is the departure. (granian refuses no send after the client left:
it discards them, like hypercorn.)

This runs only on the failure path: it walks the exception chain and each
traceback, comparing the frames of the server's ``send`` with B's own callable
(a bound method's ``self``, or a closure's cells). The message path knows
nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType, FrameType, MethodType

from . import CLIENT_GONE, Classifier, exception_chain

__all__ = ["CallSite", "client_left"]

# A real traceback is a few dozen frames; the bound guards against pathological ones.
_MAX_FRAMES = 256


class CallSite:
    """Recognises the frames of one callable: its code, and its own instance or cells.

    ``None`` from :meth:`of` when the callable cannot be told apart from other
    instances of the same code (a module-level function, a ``partial``): then
    no frame is evidence either way.
    """

    __slots__ = ("_code", "_is_mine")

    def __init__(self, code: CodeType, is_mine: Callable[[FrameType], bool]) -> None:
        self._code = code
        self._is_mine = is_mine

    @classmethod
    def of(cls, fn: object) -> CallSite | None:
        """The call site of ``fn``: a bound method (the servers' ``send``), a closure (a wrapping
        middleware's), or an object whose ``__call__`` is one of those."""
        if not isinstance(fn, MethodType) and not hasattr(fn, "__code__"):
            fn = getattr(fn, "__call__", None)  # noqa: B004 - an instance's bound __call__, not a callability test
        if isinstance(fn, MethodType):
            code = getattr(fn.__func__, "__code__", None)
            if not isinstance(code, CodeType) or code.co_argcount == 0:
                return None
            first, owner = code.co_varnames[0], fn.__self__
            return cls(code, lambda frame: frame.f_locals.get(first) is owner)
        code = getattr(fn, "__code__", None)
        closure = getattr(fn, "__closure__", None)
        if not isinstance(code, CodeType) or not closure:
            return None
        cells = tuple(zip(code.co_freevars, closure, strict=True))

        def is_mine(frame: FrameType) -> bool:
            names = frame.f_locals
            try:
                return all(name in names and names[name] is cell.cell_contents for name, cell in cells)
            except ValueError:  # an empty cell
                return False

        return cls(code, is_mine)

    def raised_in(self, exc: BaseException) -> bool | None:
        """``True``: ``exc`` passed through a call of this callable; ``False``: through a call
        of the same code for another instance only; ``None``: through neither."""
        verdict: bool | None = None
        tb = exc.__traceback__
        for _ in range(_MAX_FRAMES):
            if tb is None:
                break
            frame = tb.tb_frame
            if frame.f_code is self._code:
                if self._is_mine(frame):
                    return True
                verdict = False
            tb = tb.tb_next
        return verdict


def client_left(exc: BaseException, send: object, classifier: Classifier) -> bool:
    """Tell whether ``exc`` says that the client of the connection whose server ``send`` this is left.

    Args:
        exc: what the app raised, or the exception it was handling when it closed.
        send: the server's ``send`` callable of this connection, as ws_diag received it.
        classifier: its ``CLIENT_GONE`` rules name the disconnect types.

    Only an ``OSError`` from the connection's own send counts as its send failing
    because the peer left (the type every server that refuses such a send uses for it,
    but uvicorn's legacy implementation: pinned in ``tests/test_server_facts.py``); any other
    refusal is the app's failure, or ambiguous, and left to the responder's first message.
    """
    site = CallSite.of(send)
    for candidate in exception_chain(exc):
        if isinstance(candidate, OSError) and site is not None and site.raised_in(candidate):
            return True  # this connection's own send failed: the server says the peer is gone
        if (
            classifier.classify_one(candidate) is CLIENT_GONE
            and not _foreign(candidate, site)
            and _received_disconnect(candidate)
        ):
            return True
    return False


def _received_disconnect(exc: BaseException) -> bool:
    """Whether a frame ``exc`` passed through had a ``websocket.disconnect`` message in hand."""
    tb = exc.__traceback__
    for _ in range(_MAX_FRAMES):
        if tb is None:
            break
        for value in tb.tb_frame.f_locals.values():
            # ASGI messages are plain dicts; nothing else is looked into.
            if type(value) is dict and value.get("type") == "websocket.disconnect":
                return True
        tb = tb.tb_next
    return False


def _foreign(disconnect: BaseException, site: CallSite | None) -> bool:
    """Whether a disconnect came through another connection's send (its cause chain says so)."""
    if site is None:
        return False
    for linked in exception_chain(disconnect):
        where = site.raised_in(linked)
        if where is not None:
            return not where
    return False
