"""Origin rules: a plain OSError is attributed by the library whose frames raised it.

The "libraries" here are functions compiled with a module's ``__name__`` as
their globals, so the tracebacks are real and their frames carry those names.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.exceptions
from services import free_port
from uvicorn.protocols.utils import ClientDisconnected

from ws_diag import CLIENT_GONE, Classifier, Component, CustomComponent
from ws_diag.attribution import Diagnoser
from ws_diag.classify.origin import frames_inner_first
from ws_diag.health import HealthChecker
from ws_diag.health.probes import CallableProbe, ProbeFailed

LLM = CustomComponent("llm", "LLM Provider", 4420, "The LLM provider failed")


def module_function(module: str, source: str, **names: Any) -> Callable[..., Any]:
    """The function ``f`` defined by ``source`` as if in ``module`` (its frames say so)."""
    namespace: dict[str, Any] = {"__name__": module, **names}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - test-only code of our own
    function: Callable[..., Any] = namespace["f"]
    return function


def raised(call: Callable[[], object]) -> BaseException:
    """What ``call`` raised."""
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail("the call did not raise")


def refused_connect() -> None:
    """A real refused connection: stdlib socket frames raise it."""
    socket.create_connection(("127.0.0.1", free_port()), timeout=5).close()


def library_connect(module: str) -> Callable[[], None]:
    """``refused_connect`` as ``module``'s own code."""
    source = "def f(): socket.create_connection(('127.0.0.1', free_port()), timeout=5).close()"
    return module_function(module, source, socket=socket, free_port=free_port)


def test_oserror_raised_in_a_library_names_its_component() -> None:
    """A ConnectionRefusedError from asyncpg's code, under socket's frames, is DATABASE."""
    connect = library_connect("asyncpg.connect_utils")
    exc = raised(connect)
    assert type(exc) is ConnectionRefusedError
    assert Classifier().classify(exc) is Component.DATABASE
    assert Classifier().component_of(exc) is Component.DATABASE


def test_event_loop_and_shim_frames_do_not_hide_the_library() -> None:
    """uvloop's frames (as under uvicorn with uvloop: measured) and anyio's below asyncpg are passed over."""
    loop = module_function("uvloop.loop", "def f(): raise ConnectionRefusedError")
    shim = module_function("anyio._backends._asyncio", "def f(): loop()", loop=loop)
    connect = module_function("asyncpg.connect_utils", "def f(): shim()", shim=shim)
    assert Classifier().classify(raised(connect)) is Component.DATABASE


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("sqlalchemy.pool.base", Component.DATABASE),
        ("psycopg.connection_async", Component.DATABASE),
        ("redis.asyncio.connection", Component.REDIS),
        ("httpcore._async.connection", Component.INTEGRATION),
        ("aiohttp.helpers", Component.INTEGRATION),
        ("anthropic._base_client", Component.INTEGRATION),
    ],
)
def test_builtin_origins_follow_the_type_rules(module: str, expected: Component) -> None:
    """Each known library's plain TimeoutError names the component its type rules name."""
    exc = raised(module_function(module, "def f(): raise TimeoutError"))
    assert Classifier().classify(exc) is expected


def test_the_outermost_known_library_decides() -> None:
    """The OpenAI SDK over httpcore: the library the app called (the LLM component) decides."""
    transport = library_connect("httpcore._sync.connection")
    sdk = module_function("openai._base_client", "def f(): transport()", transport=transport)
    assert Classifier(llm_component=LLM).classify(raised(sdk)) is LLM


def test_unknown_or_app_frames_name_nothing() -> None:
    """The app's own socket code, or a server's send, names nothing, even under a library's callback."""
    app_send = module_function("uvicorn.protocols.websockets.wsproto_impl", "def f(): raise BrokenPipeError")
    callback = module_function("redis.asyncio.client", "def f(): handler()", handler=app_send)
    own_code = module_function("myapp.chat", "def f(): connect()", connect=refused_connect)
    for call in (refused_connect, app_send, callback, own_code):
        assert Classifier().classify(raised(call)) is None


def test_a_departure_type_has_no_origin() -> None:
    """An OSError a type rule names (uvicorn's ClientDisconnected: CLIENT_GONE) gets no origin, wherever raised."""
    names = {"ClientDisconnected": ClientDisconnected}
    for module in ("uvicorn.protocols.websockets.websockets_impl", "redis.asyncio.client"):
        exc = raised(module_function(module, "def f(): raise ClientDisconnected", **names))
        assert Classifier().classify(exc) is CLIENT_GONE
        assert Classifier().component_of(exc) is None
    plain = raised(module_function("redis.asyncio.client", "def f(): raise OSError"))
    assert Classifier().component_of(plain) is Component.REDIS


def test_only_oserrors_and_data_errors_have_an_origin() -> None:
    """A ValueError raised inside a library names nothing; a type rule's own verdict is kept."""
    assert Classifier().classify(raised(module_function("asyncpg.pool", "def f(): raise ValueError"))) is None
    wrong_type = raised(module_function("redis.client", "def f(): raise KeyError"))
    assert Classifier().classify(wrong_type) is None


def test_type_rules_win_over_origin() -> None:
    """A type rule, on the exception or anywhere in its chain, wins over where it was raised."""
    classifier = Classifier()
    classifier.register(ConnectionRefusedError, Component.SUPERVISOR)
    connect = library_connect("asyncpg.connect_utils")
    assert classifier.classify(raised(connect)) is Component.SUPERVISOR
    source = """
        def f(error):
            try:
                raise error
            except Exception:
                raise OSError("while handling")
    """
    in_chain = raised(lambda: module_function("asyncpg.pool", source)(redis.exceptions.ConnectionError()))
    assert Classifier().classify(in_chain) is Component.REDIS


def test_a_decoding_error_inside_a_library_is_that_library() -> None:
    """A dependency answering garbage (httpx's Response.json()) is INTEGRATION, not the handler's."""
    garbage = httpx.Response(200, content=b"<html>502 Bad Gateway</html>")
    exc = raised(garbage.json)
    assert isinstance(exc, json.JSONDecodeError)
    assert Classifier().classify(exc) is Component.INTEGRATION


def test_register_origin() -> None:
    """Users add libraries; the longest registered module name decides; predicates narrow a rule."""
    classifier = Classifier()
    classifier.register_origin("mylib", Component.SUPERVISOR)
    classifier.register_origin("mylib.bridge", Component.BRIDGE, predicate=lambda exc: isinstance(exc, TimeoutError))

    def verdict(module: str, exc_type: str) -> object:
        return classifier.classify(raised(module_function(module, f"def f(): raise {exc_type}")))

    assert verdict("mylib.agents", "OSError") is Component.SUPERVISOR
    assert verdict("mylib.bridge.io", "TimeoutError") is Component.BRIDGE
    assert verdict("mylib.bridge", "OSError") is Component.SUPERVISOR
    assert verdict("mylibrary", "OSError") is None
    for module, outcome in (("", Component.BRIDGE), ("my lib", Component.BRIDGE), ("mylib", "bridge")):
        with pytest.raises(TypeError):
            classifier.register_origin(module, outcome)  # type: ignore[arg-type]


def test_no_builtin_origins_and_departures_unaffected() -> None:
    """Without built-in rules nothing has an origin; classify_one (the departure rules) never looks."""
    exc = raised(library_connect("asyncpg.connect_utils"))
    assert Classifier(builtin_rules=False).classify(exc) is None
    assert Classifier().classify_one(exc) is None


def test_the_walk_is_bounded() -> None:
    """A library frame beyond the innermost 64 frames of stdlib plumbing is not looked for."""
    deep = module_function("asyncio.deep", "def f(n):\n    if n == 0: raise OSError\n    f(n - 1)")
    shallow = module_function("redis.connection", "def f(n): deep(n)", deep=deep)
    assert Classifier().classify(raised(lambda: shallow(10))) is Component.REDIS
    assert Classifier().classify(raised(lambda: shallow(100))) is None
    assert len(list(frames_inner_first(raised(lambda: shallow(100)).__traceback__))) == 64


@pytest.mark.asyncio
async def test_origin_wins_over_a_failing_probe() -> None:
    """A refused connect raised in asyncpg is Database by origin even while a Redis probe fails; no probe runs."""
    runs: list[int] = []

    async def redis_down() -> None:
        runs.append(1)
        raise ProbeFailed("redis down")

    checker = HealthChecker([CallableProbe("redis", Component.REDIS, redis_down)])
    diagnosis = await Diagnoser(Classifier(), checker).diagnose(raised(library_connect("asyncpg.connect_utils")))
    assert (diagnosis.component, diagnosis.source, diagnosis.probe) == (Component.DATABASE, "exception", None)
    assert runs == []
    plain = await Diagnoser(Classifier(), checker).diagnose(raised(refused_connect))
    assert (plain.component, plain.source) == (Component.REDIS, "probe")
