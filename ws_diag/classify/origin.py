"""Where an exception was raised: the known library a plain ``OSError`` came out of.

(The classifier also asks it about decoding errors: a dependency that answered
garbage is that dependency's failure, not the message handler's.)

A ``ConnectionRefusedError`` names no dependency by its type, but its traceback
says whose code was running: asyncpg's connect, aiohttp's request. Origin rules
map module names (``"asyncpg"`` covers ``asyncpg.connect_utils``) to components.

The traceback is walked from the innermost frame outward, bounded. Frames of
modules that carry no component of their own (the standard library, event loops
and async shims, data parsers: :data:`TRANSPARENT`) are passed over, so the
asyncio or socket frames below a library never hide it. The first other frame
must belong to a known library, else there is no origin: an ``OSError`` raised
by the app's own socket code, or by the server's ``send`` (uvicorn, hypercorn,
Starlette's frames are not known), names nothing, even when a library further
out called back into the app (a pub/sub callback). From there the walk follows
the run of known frames outward and the outermost one decides: the library the
app called (SQLAlchemy over asyncpg, the OpenAI SDK over httpx), not the one it
delegated to. Module names come from ``frame.f_globals["__name__"]``; nothing is
imported and no text is read. Only the failure path walks a traceback.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType

from ..components import Component, ComponentLike

__all__ = ["BUILTIN_ORIGINS", "LLM_COMPONENT", "TRANSPARENT", "OriginRules", "frames_inner_first"]

# Stands for the classifier's ``llm_component`` in BUILTIN_ORIGINS (a component is never a str).
LLM_COMPONENT = "llm_component"

# The built-in origins, following the type rules' mapping (ws_diag.classify);
# httpcore is httpx's transport.
BUILTIN_ORIGINS: tuple[tuple[str, ComponentLike | str], ...] = (
    ("asyncpg", Component.DATABASE),
    ("psycopg", Component.DATABASE),
    ("sqlalchemy", Component.DATABASE),
    ("redis", Component.REDIS),
    ("httpx", Component.INTEGRATION),
    ("httpcore", Component.INTEGRATION),
    ("aiohttp", Component.INTEGRATION),
    ("openai", LLM_COMPONENT),
    ("anthropic", LLM_COMPONENT),
)

# Top-level packages whose frames are plumbing under a library, never its origin.
TRANSPARENT: frozenset[str] = frozenset(sys.stdlib_module_names) | {
    "aiohappyeyeballs",
    "anyio",
    "async_timeout",
    "greenlet",
    "pydantic",
    "pydantic_core",
    "sniffio",
    "trio",
    "uvloop",
}

# Frames looked at, innermost first: a library's failure is raised a few dozen
# frames below the app at most. The outward links are followed at most
# _MAX_LINKS times, which only a pathological traceback reaches.
_MAX_FRAMES = 64
_MAX_LINKS = 4096


def frames_inner_first(tb: TracebackType | None) -> Iterator[FrameType]:
    """The innermost :data:`_MAX_FRAMES` frames of ``tb``, innermost first."""
    frames: deque[FrameType] = deque(maxlen=_MAX_FRAMES)
    links = 0
    while tb is not None and links < _MAX_LINKS:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
        links += 1
    if tb is not None:  # too deep to know the innermost frame
        return iter(())
    return reversed(frames)


@dataclass(frozen=True, slots=True)
class _OriginRule:
    outcome: ComponentLike
    predicate: Callable[[BaseException], bool] | None


class OriginRules:
    """Module-name rules: which component a failure raised inside a module points at."""

    __slots__ = ("_by_module", "_of_module")

    def __init__(self) -> None:
        self._by_module: dict[str, list[_OriginRule]] = {}
        # Per module name met on a failure path: None for plumbing, else the rules of the
        # registered names covering it, longest first (empty: an unknown module). Bounded by the
        # number of modules the process has; cleared when a rule is added.
        self._of_module: dict[str, tuple[_OriginRule, ...] | None] = {}

    def add(
        self, module: str, outcome: ComponentLike, predicate: Callable[[BaseException], bool] | None = None
    ) -> None:
        """Map frames of ``module`` and its submodules to ``outcome``; tried before earlier rules."""
        self._by_module.setdefault(module, []).insert(0, _OriginRule(outcome, predicate))
        self._of_module.clear()

    def _rules(self, module: str) -> tuple[_OriginRule, ...] | None:
        if module.partition(".")[0] in TRANSPARENT:
            return None
        # Longest covering name first: a predicate that declines falls back to a shorter one.
        rules: list[_OriginRule] = []
        name, dot = module, "."
        while dot:
            rules.extend(self._by_module.get(name, ()))
            name, dot, _ = name.rpartition(".")
        return tuple(rules)

    def origin_of(self, exc: BaseException) -> ComponentLike | None:
        """The component of the library ``exc`` was raised in, or ``None``."""
        if not self._by_module:
            return None
        found: ComponentLike | None = None
        for frame in frames_inner_first(exc.__traceback__):
            module = frame.f_globals.get("__name__")
            if not isinstance(module, str):
                break
            try:
                rules = self._of_module[module]
            except KeyError:
                rules = self._of_module[module] = self._rules(module)
            if rules is None:
                continue
            outcome = next((rule.outcome for rule in rules if rule.predicate is None or rule.predicate(exc)), None)
            if outcome is None:
                break
            found = outcome
        return found
