"""Redaction: credentials never leave the process, whatever shape they come in.

Everything ws_diag sends or logs about a failure passes through :func:`redact`.
Texts are cut at :data:`MAX_TEXT_CHARS` first, so no input can make the
patterns expensive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_DETAILS_BYTES",
    "MAX_DETAILS_DEPTH",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_ROOT_CAUSE_BYTES",
    "MAX_SUGGESTIONS",
    "MAX_SUGGESTION_BYTES",
    "MAX_TEXT_CHARS",
    "MAX_USER_ID_BYTES",
    "bound_text",
    "describe_exception",
    "redact",
    "redact_details",
    "safe_str",
]

# Texts longer than this are cut: nothing longer is ever sent or logged by ws_diag.
MAX_TEXT_CHARS = 2048
# A frame must stay small enough to be cheap for every client; details beyond
# this are replaced by a marker rather than sent.
MAX_DETAILS_BYTES = 2048
# Details nested deeper than this are replaced by a marker (and cannot exhaust the stack).
MAX_DETAILS_DEPTH = 16

# Bounds of the frame's client-visible texts, in bytes of their JSON form as sent
# (quotes included; the frame escapes non-ASCII, up to 12 bytes per character).
# Whatever the app puts into an error, a frame stays within MAX_FRAME_BYTES (the
# bounds add up to about 11 KiB with the fixed fields), far below a default
# client's max_size (websockets: 1 MiB).
MAX_MESSAGE_BYTES = 2048
MAX_ROOT_CAUSE_BYTES = 2048
MAX_USER_ID_BYTES = 256
MAX_COMPONENT_BYTES = 128
MAX_SUGGESTIONS = 8
MAX_SUGGESTION_BYTES = 512
MAX_FRAME_BYTES = 16 * 1024
_ELLIPSIS = "…"
# Redaction runs on a window this much wider than the cut, so that a credential
# straddling the cut is recognised whole and no prefix of it survives.
_WINDOW = 1500

_SECRET_WORDS = (
    r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|auth|authorization|cookie|session"  # noqa: S105
    r"|private[_-]?key|credential|dsn"
)
# scheme://user:secret@host; the secret may itself contain '@' (the last one
# before the host counts), or run on without one when it is too long to tell.
_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/@\s]{0,256}:)(?P<secret>\S{0,1024}@|[^\s@]{1025,})"
)
# key=value, key: value, "key": "value", key='value', with prefixes (db_password,
# PGPASSWORD, access_token, client_secret) and header forms (Authorization: Bearer x).
_KEY_VALUE = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9])[\w.-]{{0,64}}?(?:{_SECRET_WORDS})[\w.-]{{0,32}}[\"']?\s{{0,16}}[=:]\s{{0,16}})"
    r"(?P<value>\"[^\"]*\"?|'[^']*'?|(?:Bearer|Basic|Token|Digest)\s+[^\s,;&\"'}]+|[^\s,;&\"'}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_SECRET_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)


def _mask_url(match: re.Match[str]) -> str:
    return match["head"] + ("***@" if match["secret"].endswith("@") else "***")


def _mask_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{quote}***{quote}"


def redact(text: str) -> str:
    """Remove credentials from ``text``: URL passwords, secret-named key/value pairs, bearer tokens.

    Text beyond :data:`MAX_TEXT_CHARS` is cut off (marked with an ellipsis).
    """
    cut = len(text) > MAX_TEXT_CHARS
    if cut:
        text = text[: MAX_TEXT_CHARS + _WINDOW]
    text = _URL_CREDENTIALS.sub(_mask_url, text)
    text = _KEY_VALUE.sub(_mask_value, text)
    text = _BEARER.sub(r"\g<scheme> ***", text)
    return text[:MAX_TEXT_CHARS] + "…" if cut else text


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when its ``__str__`` is broken."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _json_size(text: str) -> int:
    return len(json.dumps(text))


def bound_text(text: str, max_bytes: int) -> str:
    """``text`` cut so that its JSON string (ASCII-escaped, quotes included) takes at most ``max_bytes``.

    A cut is marked with an ellipsis and never splits a character; lone
    surrogates are replaced by U+FFFD, so the text is always valid UTF-8.
    """
    # Every character takes at least one byte: nothing beyond max_bytes characters can fit,
    # so a megabyte of text costs no more than a short one.
    cut = len(text) > max_bytes
    if cut:
        text = text[:max_bytes]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # pairs written as two surrogates are joined, lone ones replaced
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if not cut and _json_size(text) <= max_bytes:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the ellipsis
        middle = (low + high + 1) // 2
        if _json_size(text[:middle] + _ELLIPSIS) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return text[:low] + _ELLIPSIS


def _walk(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DETAILS_DEPTH and isinstance(value, dict | list):
        return _ELLIPSIS
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.search(k) else _walk(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        # [("password", "x")] pairs: a secret-named first item masks the second.
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEY.search(value[0]):
            return [value[0], "***"]
        return [_walk(v, depth + 1) for v in value]
    return value


def redact_details(details: Mapping[str, Any]) -> dict[str, Any] | None:
    """``details`` made safe to send: JSON only, redacted, at most :data:`MAX_DETAILS_BYTES`.

    Containers nested deeper than :data:`MAX_DETAILS_DEPTH` become ``"…"``; details
    too large are replaced by ``{"truncated": true, "size": <bytes>}``, details that
    are not JSON (NaN, circular) by ``{"unserialisable": true}``.

    Everything is turned into JSON first (``str()`` for the rest), so bytes,
    exceptions and objects are redacted as the text they would be sent as.
    """
    if not details:
        return None
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and a browser's JSON.parse rejects them.
        encoded = json.dumps(details, default=safe_str, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return {"unserialisable": True}
    # Size first: redacting megabytes only to throw them away would be wasted work.
    if len(encoded) > MAX_DETAILS_BYTES:
        return {"truncated": True, "size": len(encoded)}
    try:
        redacted: dict[str, Any] = _walk(json.loads(encoded))
    except RecursionError:  # parsing recurses as deep as the encoder did, from a deeper stack
        return {"unserialisable": True}
    # Masking can lengthen short values ({"token": 1} -> {"token": "***"}): measure again.
    size = len(json.dumps(redacted))
    if size > MAX_DETAILS_BYTES:
        return {"truncated": True, "size": size}
    return redacted


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` for an exception, redacted."""
    text = safe_str(exc)
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)
