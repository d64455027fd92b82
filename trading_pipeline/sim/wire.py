"""The TWS API wire format: handshake, framing, field encoding, and a strict field cursor.

Everything here is pure byte/text handling; nothing knows about sockets or the market.

* Handshake: the client writes ``API\\0`` and one length-prefixed text ``v157..176``
  (a version range, optionally followed by `` +OPTIONS``) or a single ``v176``. The server
  answers with one normal frame of exactly two fields: the negotiated version and a time text.
* Frames (both directions afterwards): a 4-byte big-endian payload length, then UTF-8 fields
  each terminated by NUL, the last one included.
* Field encoding (server to client): ``None`` is empty, booleans are ``1``/``0``, integers are
  integer text (the clients parse ids, counts and times with ``int()``), floats are ``repr``,
  and the :data:`UNSET_DOUBLE` / :data:`UNSET_INTEGER` markers are TWS's own "no value" texts.
* :class:`FieldCursor` reads a client message field by field and fails on a missing field or
  on leftovers: the cheapest detector of a client/server layout drift.

The simulator speaks server version 176 only (every message layout in ``protocol`` is the
176 one); see :func:`negotiate_version` for what happens to clients that cannot speak it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Iterable

SERVER_VERSION = 176

API_PREFIX = b"API\0"
_LENGTH = struct.Struct(">I")
# A sane bound on one frame: the largest real message (an openOrder with algo parameters or
# a long secdef row) is a few kilobytes; anything near this limit is a broken or hostile peer.
MAX_FRAME_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer broke the wire protocol (bad handshake, oversized frame, wrong field layout)."""


class HandshakeRefused(ProtocolError):
    """The client's version range does not include the version this server speaks."""


# ----------------------------------------------------------------------------- handshake


@dataclass(frozen=True)
class Handshake:
    min_version: int
    max_version: int
    options: str = ""     # e.g. "+PACEAPI"; empty when the client sent none


def parse_handshake_text(text: str) -> Handshake:
    """Parse ``v157..176``, ``v157..176 +PACEAPI`` or ``v176``."""
    versions, _, options = text.strip().partition(" ")
    if not versions.startswith("v"):
        raise ProtocolError(f"handshake: expected 'vMIN..MAX', got {text!r}")
    low, dots, high = versions[1:].partition("..")
    try:
        min_version = int(low)
        max_version = int(high) if dots else min_version
    except ValueError:
        raise ProtocolError(f"handshake: versions are not integers in {text!r}") from None
    if min_version > max_version:
        raise ProtocolError(f"handshake: empty version range {text!r}")
    return Handshake(min_version, max_version, options.strip())


def negotiate_version(handshake: Handshake) -> int:
    """The version to answer: ``min(client_max, 176)``, or :class:`HandshakeRefused`.

    Refused when the client's minimum is above 176 (it cannot speak our layouts) and when its
    maximum is below 176: every encoder here writes the 176 layout, so answering a lower
    version would make the client silently mis-decode (the trap of tws-protocol.md §7.2 in
    the other direction). ib_insync 0.9.86 (157..176) and ib_async 2.x (157..178) both get 176.
    """
    version = min(handshake.max_version, SERVER_VERSION)
    if handshake.min_version > SERVER_VERSION:
        raise HandshakeRefused(
            f"client needs at least version {handshake.min_version}; "
            f"this server speaks {SERVER_VERSION}"
        )
    if version < SERVER_VERSION:
        raise HandshakeRefused(
            f"client speaks at most version {handshake.max_version}; "
            f"this server speaks only {SERVER_VERSION}"
        )
    return version


def handshake_reply(version: int, connection_time: datetime) -> bytes:
    """The server's answer: one frame with exactly two fields (the client ignores the time)."""
    return encode_frame([version, connection_time_text(connection_time)])


def connection_time_text(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y%m%d %H:%M:%S") + " UTC"


class HandshakeDecoder:
    """Accumulates bytes until the handshake is complete.

    ``feed`` returns the :class:`Handshake` once it is whole (``None`` before); the bytes the
    client sent after it (it may coalesce its first request) are left in :attr:`remainder`.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.remainder = b""

    def feed(self, data: bytes) -> Handshake | None:
        self._buffer += data
        buffer = self._buffer
        if len(buffer) < len(API_PREFIX):
            if not API_PREFIX.startswith(buffer):
                raise ProtocolError(f"handshake: expected b'API\\0', got {buffer!r}")
            return None
        if not buffer.startswith(API_PREFIX):
            raise ProtocolError(f"handshake: expected b'API\\0', got {buffer[:4]!r}")
        body = buffer[len(API_PREFIX):]
        if len(body) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(body)
        if length > 1024:
            raise ProtocolError(f"handshake: version text of {length} bytes")
        end = _LENGTH.size + length
        if len(body) < end:
            return None
        text = body[_LENGTH.size:end].decode("utf-8", errors="replace")
        self.remainder = body[end:]
        self._buffer = b""
        return parse_handshake_text(text)


# ----------------------------------------------------------------------------- fields


class _Unset(Enum):
    """TWS's own "no value" texts, for the few places a client expects them verbatim."""

    DOUBLE = "1.7976931348623157E308"
    INTEGER = "2147483647"


UNSET_DOUBLE = _Unset.DOUBLE
UNSET_INTEGER = _Unset.INTEGER

Field = str | int | float | bool | None | Enum


def encode_field(value: Field) -> str:
    """One server-to-client field as text (see the module docstring for the rules)."""
    if value is None:
        return ""
    if isinstance(value, bool):          # before int: bool is an int subclass
        return "1" if value else "0"
    if isinstance(value, _Unset):
        return value.value
    if isinstance(value, Enum):          # SecType, OrderStatus ... carry their wire text
        return encode_field(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"a field cannot contain NUL: {value!r}")
        return value
    raise TypeError(f"cannot encode {type(value).__name__} {value!r} as a TWS field")


def encode_fields(values: Iterable[Field]) -> list[str]:
    return [encode_field(value) for value in values]


def encode_frame(fields: Iterable[Field]) -> bytes:
    """A length-prefixed frame; every field NUL-terminated (the last one too)."""
    payload = "".join(encode_field(value) + "\0" for value in fields).encode("utf-8")
    return _LENGTH.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into messages (lists of field texts), whatever the TCP chunking."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[list[str]]:
        self._buffer += data
        messages: list[list[str]] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds {self._max}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_LENGTH.size:end])
            del self._buffer[:end]
            messages.append(decode_payload(payload))
        return messages


def decode_payload(payload: bytes) -> list[str]:
    """The fields of one frame's payload (as the clients do it: split on NUL, drop the tail)."""
    text = payload.decode("utf-8", errors="backslashreplace")
    fields = text.split("\0")
    if fields[-1] != "":
        raise ProtocolError(f"frame does not end with NUL: {text[-40:]!r}")
    fields.pop()
    return fields


# ----------------------------------------------------------------------------- parsing


class FieldCursor:
    """Reads a client message's fields in order; fails on a missing field or leftovers.

    The clients send ``None`` and their UNSET constants as empty text, floats as ``str(x)``
    (``"5900"`` or ``"5900.0"``), ``math.inf`` as ``"Infinite"`` and booleans as ``1``/``0``.
    """

    def __init__(self, fields: list[str]):
        self._fields = fields
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    @property
    def remaining(self) -> int:
        return len(self._fields) - self._position

    def _fail(self, what: str) -> ProtocolError:
        message_id = self._fields[0] if self._fields else "?"
        return ProtocolError(
            f"message {message_id}: {what} at field {self._position} "
            f"(fields: {self._fields!r})"
        )

    def text(self) -> str:
        if self._position >= len(self._fields):
            raise self._fail("missing field")
        value = self._fields[self._position]
        self._position += 1
        return value

    def skip(self, count: int = 1) -> None:
        for _ in range(count):
            self.text()

    def expect(self, value: str) -> None:
        """Consume a field that must have this exact text (a message or version id)."""
        actual = self.text()
        if actual != value:
            self._position -= 1
            raise self._fail(f"expected {value!r}, got {actual!r}")

    def int(self) -> int:
        raw = self.text()
        try:
            return int(raw)
        except ValueError:
            self._position -= 1
            raise self._fail(f"not an integer {raw!r}") from None

    def optional_int(self) -> int | None:
        """An integer, or None for empty text (the clients' UNSET_INTEGER)."""
        if self._peek() == "":
            self._position += 1
            return None
        return self.int()

    def float(self) -> float:
        raw = self.text()
        if raw == "Infinite":
            return math.inf
        try:
            return float(raw)
        except ValueError:
            self._position -= 1
            raise self._fail(f"not a number {raw!r}") from None

    def optional_float(self) -> float | None:
        """A number, or None for empty text (the clients' UNSET_DOUBLE)."""
        if self._peek() == "":
            self._position += 1
            return None
        return self.float()

    def bool(self) -> bool:
        raw = self.text()
        if raw in ("", "0"):
            return False
        if raw == "1":
            return True
        self._position -= 1
        raise self._fail(f"not a boolean {raw!r}")

    def _peek(self) -> str:
        if self._position >= len(self._fields):
            raise self._fail("missing field")
        return self._fields[self._position]

    def finish(self) -> None:
        """Assert the message was consumed exactly."""
        if self._position != len(self._fields):
            leftovers = self._fields[self._position:]
            raise self._fail(f"{len(leftovers)} leftover field(s) {leftovers!r}")
