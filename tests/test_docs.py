"""The documentation site's snippets run, and its generated reference matches the code.

Every fenced ``python`` block of a page under ``docs/`` runs, in order, in one namespace per page
(a later block may use what an earlier one defined). A block right after ``<!-- skip: next -->``
(among the HTML comments before its fence) is a fragment, needing the reader's database pool or app:
it is only compiled. ``mkdocs build --strict`` itself runs in ``scripts/test``.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import importlib.util
import json
import logging
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP = "<!-- skip: next -->"
# An opening fence, possibly indented (inside an admonition or a list), and what follows it.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
# pymdownx.snippets: a line that includes a repository file (the examples, the shipped rules).
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)


def _expand(code: str) -> str:
    return _INCLUDE.sub(lambda m: (ROOT / m["path"]).read_text(encoding="utf-8").rstrip("\n"), code)


def python_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """The page's ``python`` blocks: (line number, code, is a fragment)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[int, str, bool]] = []
    markers: set[str] = set()  # the HTML comments right before a fence (skip, ruff's fmt: off)
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            stripped = lines[i].strip()
            if stripped.startswith("<!--") and stripped.endswith("-->"):
                markers.add(stripped)
            elif stripped:
                markers = set()
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = match["info"].split()[0] if match["info"].strip() else ""
        start = i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[start:i])
        if language in {"python", "py"}:
            blocks.append((start + 1, _expand(textwrap.dedent(body)), SKIP in markers))
        markers = set()
        i += 1
    return blocks


PAGES = sorted(path for path in DOCS.rglob("*.md") if python_blocks(path))


def _run_page(path: Path) -> dict[str, Any]:
    # A module in sys.modules, as the reader's own is: Litestar resolves handler annotations through it.
    module = ModuleType(f"docs_{path.stem.replace('-', '_')}")
    namespace: dict[str, Any] = module.__dict__
    sys.modules[module.__name__] = module
    try:
        with _logging_restored():
            for line, code, fragment in python_blocks(path):
                compiled = compile(code, f"{path.relative_to(ROOT)}:{line}", "exec")
                if not fragment:
                    exec(compiled, namespace)  # noqa: S102 - the documentation's own snippets
    finally:
        del sys.modules[module.__name__]
    return namespace


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Undo what a page's snippets do to logging (a level set on ``ws_diag`` would hide later tests' records)."""
    names = ["", *logging.root.manager.loggerDict]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
    try:
        yield
    finally:
        for name in ["", *logging.root.manager.loggerDict]:
            logger = logging.getLogger(name)
            level, handlers, propagate, disabled = saved.get(name, (logging.NOTSET, [], True, False))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(DOCS)) for page in PAGES])
def test_page_snippets_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page's Python snippets run top to bottom without error; fragments at least compile."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in [name for name in sys.modules if name == "examples" or name.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        _run_page(page)
    finally:
        if "sentry_sdk" in sys.modules:  # a page that initialised Sentry leaves no client to later tests
            sys.modules["sentry_sdk"].get_global_scope().set_client(None)


# The operations pages each wire one integration into the app their snippets build.
OPERATING_PAGES = {
    "how-to/opentelemetry.md": "ws_diag.integrations.opentelemetry:OpenTelemetryListener",
    "how-to/sentry.md": "ws_diag.integrations.sentry:SentryListener",
    "how-to/correlation-ids.md": "ws_diag.integrations.correlation:CorrelationIdListener",
}


@pytest.mark.parametrize("page", list(OPERATING_PAGES))
def test_operating_page_builds_its_listener(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each operations page builds an app whose ws_diag layer has the page's listener."""
    from ws_diag import DiagnosticsMiddleware

    module, _, name = OPERATING_PAGES[page].partition(":")
    listener_type = getattr(importlib.import_module(module), name)
    monkeypatch.chdir(ROOT)
    try:
        namespace = _run_page(DOCS / page)
    finally:
        if "sentry_sdk" in sys.modules:
            sys.modules["sentry_sdk"].get_global_scope().set_client(None)
    layer = namespace["app"]
    while not isinstance(layer, DiagnosticsMiddleware):  # each middleware keeps the next as ``app``
        layer = layer.app
    assert any(isinstance(listener, listener_type) for listener in layer.lifecycle.listeners)


def test_snippets_exist_and_most_run() -> None:
    """The site has runnable snippets, and fragments are the exception, not the rule."""
    blocks = [block for page in PAGES for block in python_blocks(page)]
    runnable = [block for block in blocks if not block[2]]
    assert len(runnable) >= 20
    assert len(runnable) > 2 * (len(blocks) - len(runnable))


def test_fragment_marker_is_recognised(tmp_path: Path) -> None:
    """A block after the skip marker is a fragment; the next one is not."""
    page = tmp_path / "page.md"
    page.write_text(f"{SKIP}\n\n```python\nraise SystemExit\n```\n\n```python\nx = 1\n```\n")
    assert python_blocks(page) == [(4, "raise SystemExit", True), (8, "x = 1", False)]


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generated_hook", DOCS / "_hooks" / "generated.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_table_has_every_field() -> None:
    """The generated settings table has one row per DiagSettings field, with its variable and description."""
    from ws_diag import DiagSettings

    table = _hooks().settings_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= len(DiagSettings.model_fields)
    for name, field in DiagSettings.model_fields.items():
        # A group of settings (a nested model) has one row per field of its own: `group.field`.
        matching = [row for row in rows if row.split("|")[1].strip().strip("`").split(".")[0] == name]
        assert matching, name
        assert all("`WS_DIAG_" in row for row in matching)
        if len(matching) == 1 and field.description:
            # Plain text in the table: "<token>" escaped, so a browser shows it rather than taking it for a tag.
            assert html.escape(field.description, quote=False).replace("|", "\\|") in matching[0]


def test_settings_tables_are_one_per_group() -> None:
    """The settings reference has one table per group, under the group's title, holding exactly its fields."""
    from ws_diag import DiagSettings

    table = _hooks().settings_table()
    sections = table.split("\n## ")
    assert [section.removeprefix("## ").splitlines()[0] for section in sections] == list(DiagSettings.groups())
    for section, fields in zip(sections, DiagSettings.groups().values(), strict=True):
        names = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")]
        assert names == list(fields)


def test_codes_table_is_what_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The generated code table holds exactly the rows ``ws-diag codes --json`` prints."""
    from ws_diag.cli import main

    assert main(["codes", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    table = _hooks().codes_table().splitlines()[2:]
    assert len(table) == len(printed)
    for row, line in zip(printed, table, strict=True):
        assert line.startswith(f"| {row['component']} | `{row['member']}` | {row['private']} |")


def test_frame_schema_is_the_shipped_file() -> None:
    """The frame schema on the protocol page is the package's schema file, unchanged."""
    hooks = _hooks()
    shipped = (ROOT / "ws_diag" / "schemas" / "frame.schema.json").read_text(encoding="utf-8")
    assert hooks.frame_schema_text() == shipped
    assert json.loads(hooks.frame_schema().removeprefix("```json\n").removesuffix("\n```")) == json.loads(shipped)


def test_unknown_generated_part_fails_the_build() -> None:
    """A page asking for a part the hook does not know stops the build instead of rendering the marker."""
    with pytest.raises(KeyError, match="no-such-part"):
        _hooks().render("<!-- generated: no-such-part -->")


def test_every_generated_part_is_used() -> None:
    """Each part the hook can generate appears on some page, and every page's marker names a known part."""
    hooks = _hooks()
    pages = [page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md")]
    used = {match["name"] for text in pages for match in hooks.MARKER.finditer(text)}
    assert used == set(hooks.PARTS)


def test_sphinx_roles_render_as_code() -> None:
    """A docstring's :class:`~ws_diag.X` renders as the code X, without the role; without ~ the full path stays."""
    hooks = _hooks()
    html = "a :class:<code>~ws_diag.DiagnosisEvent</code> or :func:<code>ws_diag.client.explain</code>"
    assert hooks.plain_roles(html) == "a <code>DiagnosisEvent</code> or <code>ws_diag.client.explain</code>"


def test_docs_speak_to_users() -> None:
    """No page refers readers to the project's internal tracker."""
    tracker = re.compile(r"\b(issue|ticket) #?\d+\b", re.IGNORECASE)
    hits = [
        f"{page.relative_to(ROOT)}: {m.group(0)}"
        for page in DOCS.rglob("*.md")
        for m in tracker.finditer(page.read_text(encoding="utf-8"))
    ]
    assert hits == []


def test_every_page_is_in_the_navigation() -> None:
    """Every Markdown page under docs/ is reachable from mkdocs.yml's nav."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert {page for page in pages if page not in nav} == set()
