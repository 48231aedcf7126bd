"""A minimal WebSocket client on raw asyncio protocols, for load generation only.

It exists because a load generator has to be cheaper than the server it
drives: frames to send are built (and masked) once and written as bytes, the
handshake is one fixed request, replies are parsed just enough to find frame
boundaries, close codes and text. No extensions are offered (so nothing is
compressed), pings are answered, fragmentation is not needed for the small
messages used here.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlsplit

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "HandshakeError",
    "WSProtocol",
    "client_frame",
    "close_frame",
    "handshake_request",
    "parse_url",
    "text_frame",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NO_CLOSE_FRAME = 1006  # what a client library reports when the TCP connection ends without a close frame
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes, base64; the server's answer is not checked
_MAX_HEAD = 65536


class HandshakeError(ConnectionError):
    """The server did not answer the upgrade with 101."""

    def __init__(self, status: int, line: str) -> None:
        super().__init__(f"handshake refused: {line}")
        self.status = status


def parse_url(url: str) -> tuple[str, int, str]:
    """``ws://host:port/path`` -> (host, port, path)."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        msg = f"expected a ws:// URL, got {url!r}"
        raise ValueError(msg)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, parts.port or 80, path


def handshake_request(host: str, port: int, path: str) -> bytes:
    """The HTTP/1.1 upgrade request (no extensions, no subprotocols)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, masked client frame."""
    mask = mask if mask is not None else os.urandom(4)
    size = len(payload)
    head = bytearray([0x80 | opcode])
    if size < 126:
        head.append(0x80 | size)
    elif size < 1 << 16:
        head.append(0x80 | 126)
        head += size.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += size.to_bytes(8, "big")
    return bytes(head) + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def text_frame(text: str) -> bytes:
    """A masked text frame."""
    return client_frame(OP_TEXT, text.encode())


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    """A masked close frame."""
    return client_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode())


class WSProtocol(asyncio.Protocol):
    """Handshake, frame parsing, close handling; subclasses react in ``on_open``/``on_message``.

    ``opened`` resolves at the 101 (or fails), ``lost`` when the TCP connection
    ends. ``close_code`` and ``close_at_ns`` (``time.monotonic_ns()``) are set
    when the server's close frame arrives, or at the end of the connection
    (code 1006) when it never did.
    """

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.upgraded = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_at_ns: int | None = None
        self.close_sent = False
        self._head = bytearray()
        self._buf = bytearray()

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self._frames(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._refused(0, "response head too large")
            return
        line = bytes(self._head[: self._head.find(b"\r\n")]).decode("latin-1")
        rest = bytes(self._head[end + 4 :])
        self._head.clear()
        fields = line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if status != 101:
            self._refused(status, line)
            return
        self.upgraded = True
        if not self.opened.done():
            self.opened.set_result(None)
        self.on_open()
        if rest:
            self._frames(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = NO_CLOSE_FRAME
            self.close_at_ns = time.monotonic_ns()
            self.on_close()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("connection closed before the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- hooks -----------------------------------------------------------------
    def on_open(self) -> None:
        """The handshake completed."""

    def on_message(self, opcode: int, payload: bytes) -> None:
        """A text or binary frame arrived."""

    def on_close(self) -> None:
        """The server's close frame arrived, or the connection ended without one."""

    # -- helpers ----------------------------------------------------------------
    def send_close(self, code: int = 1000) -> None:
        """Send a close frame (once)."""
        if not self.close_sent and self.transport is not None and not self.transport.is_closing():
            self.close_sent = True
            self.transport.write(close_frame(code))

    def abort(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            self.transport.abort()

    def _refused(self, status: int, line: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(status, line))
        if self.transport is not None:
            self.transport.close()

    def _frames(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 2:
            size = buf[1] & 0x7F
            pos = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, pos = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, pos = int.from_bytes(buf[2:10], "big"), 10
            if buf[1] & 0x80:  # servers do not mask; tolerate it anyway
                pos += 4
            if len(buf) < pos + size:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[pos : pos + size])
            del buf[: pos + size]
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self.on_message(opcode, payload)
            elif opcode == OP_CLOSE:
                self._closed_by_server(payload)
            elif opcode == OP_PING and self.transport is not None:
                self.transport.write(client_frame(OP_PONG, payload))

    def _closed_by_server(self, payload: bytes) -> None:
        if self.close_code is None:
            self.close_at_ns = time.monotonic_ns()
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode(errors="replace")
            self.on_close()
        self.send_close(1000)
