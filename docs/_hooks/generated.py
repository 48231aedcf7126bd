"""mkdocs hook: fills the reference pages' generated parts from the code at build time.

A page asks for a part with a marker on a line of its own (indented inside a block if need be),
e.g. ``<!-- generated: settings -->``.
Nothing here is copied by hand: the settings table comes from ``DiagSettings``' fields, the log
vocabulary from ``ws_diag.logs.LogEvent``, the code table
from what ``ws-diag codes --json`` prints, the frame's schema from the file the package ships.
``tests/test_docs.py`` imports this module to check the parts against the code.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
import types
import typing
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import pydantic
from pydantic.fields import FieldInfo

MARKER = re.compile(r"^(?P<indent>[ \t]*)<!-- generated: (?P<name>[a-z-]+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    # Descriptions are plain text: "Bearer <token>" must not become an HTML tag.
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value is pydantic.fields.PydanticUndefined:
        return "unset"
    if isinstance(value, frozenset | set):
        value = sorted(value)
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _settings_rows(model: type[pydantic.BaseModel], prefix: str, env: str, delimiter: str | None) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) and delimiter:
            # A group of settings: its fields are nested names and variables.
            rows += _settings_rows(annotation, f"{prefix}{name}.", f"{env}{name.upper()}{delimiter}", delimiter)
            continue
        variable = field.validation_alias if isinstance(field.validation_alias, str) else f"{env}{name.upper()}"
        rows.append(
            f"| `{prefix}{name}` | `{variable}` | {_type_name(annotation)} | {_default(field)} "
            f"| {_cell(field.description or '')} |"
        )
    return rows


def settings_table() -> str:
    """The settings tables: one per group of ``DiagSettings`` (name, variable, type, default, meaning)."""
    import inspect

    from ws_diag import DiagSettings
    from ws_diag.settings.groups import GROUPS

    config = DiagSettings.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = config.get("env_nested_delimiter")
    header = ["| setting | environment variable | type | default | meaning |", "|---|---|---|---|---|"]
    parts = []
    for title, group in GROUPS.items():
        rows = _settings_rows(group, "", prefix, delimiter)
        parts.append("\n".join([f"## {title}", "", inspect.getdoc(group) or "", "", *header, *rows]))
    return "\n\n".join(parts)


def code_rows() -> list[dict[str, Any]]:
    """What ``ws-diag codes --json`` prints, run in-process."""
    from ws_diag.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["codes", "--json"])
    if status != 0:
        msg = f"ws-diag codes --json exited {status}"
        raise RuntimeError(msg)
    rows: list[dict[str, Any]] = json.loads(out.getvalue())
    return rows


def codes_table() -> str:
    """The component code table, from ``ws-diag codes --json``."""
    lines = [
        "| component | member | private (default) | legacy: frame | legacy: wire | HTTP (denial) | retryable |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in code_rows():
        lines.append(
            f"| {row['component']} | `{row['member']}` | {row['private']} | {row['legacy']} | {row['legacy_wire']} "
            f"| {row['http']} | {'yes' if row['retryable'] else 'no'} |"
        )
    return "\n".join(lines)


def frame_schema_text() -> str:
    """The frame's JSON Schema, as the package ships it."""
    return (files("ws_diag") / "schemas" / "frame.schema.json").read_text(encoding="utf-8")


def frame_schema() -> str:
    """The frame's JSON Schema as a code block."""
    return f"```json\n{frame_schema_text().rstrip()}\n```"


def frame_fields() -> str:
    """One row per field of the frame's ``error`` object, with the schema's description."""
    schema = json.loads(frame_schema_text())
    error = schema["properties"]["error"]
    required = set(error.get("required", ()))
    lines = ["| field | JSON type | always present | description |", "|---|---|---|---|"]
    for name, prop in error["properties"].items():
        kind = prop.get("type", "")
        if "const" in prop:
            kind = json.dumps(prop["const"])
        elif "enum" in prop:
            kind = " \\| ".join(json.dumps(value) for value in prop["enum"])
        elif isinstance(kind, list):
            kind = " \\| ".join(kind)
        lines.append(
            f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {_cell(prop.get('description', ''))} |"
        )
    return "\n".join(lines)


def log_events_table() -> str:
    """One row per :class:`ws_diag.logs.LogEvent`: the ``ws_diag_event`` value, its logger, level and meaning."""
    from ws_diag.logs import LogEvent

    lines = ["| `ws_diag_event` | logger | level | when |", "|---|---|---|---|"]
    for event in LogEvent:
        loggers = ", ".join(f"`{name.strip()}`" for name in event.logger.split(","))
        lines.append(f"| `{event.value}` | {loggers} | {event.level} | {_cell(event.meaning)} |")
    return "\n".join(lines)


PARTS: dict[str, Callable[[], str]] = {
    "log-events": log_events_table,
    "settings": settings_table,
    "codes": codes_table,
    "frame-schema": frame_schema,
    "frame-fields": frame_fields,
}


def render(markdown: str) -> str:
    """Replace every marker in a page by its generated part; an unknown marker is an error."""

    def part(match: re.Match[str]) -> str:
        name, indent = match["name"], match["indent"]
        if name not in PARTS:
            msg = f"unknown generated part {name!r}; known: {sorted(PARTS)}"
            raise KeyError(msg)
        # Indented like the marker, so that a part can sit inside an admonition or a list item.
        return "\n".join(indent + line if line else line for line in PARTS[name]().splitlines())

    return MARKER.sub(part, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: runs for every page before it is rendered."""
    return render(markdown)


# Docstrings cite objects the Sphinx way (:class:`~ws_diag.X`), which Markdown renders as ":class:" and code.
_SPHINX_ROLE = re.compile(r":(?:class|func|meth|attr|data|exc|mod|obj):<code>(~?)([^<]*)</code>")


def plain_roles(html: str) -> str:
    """Drop Sphinx role prefixes from rendered docstrings; ``~a.b.C`` shows as ``C``, as Sphinx would."""
    return _SPHINX_ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)


def on_page_content(html: str, **kwargs: Any) -> str:
    """mkdocs event: runs for every page after it is rendered to HTML (the API pages included)."""
    return plain_roles(html)
