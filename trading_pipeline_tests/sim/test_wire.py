"""Contract under test: trading_pipeline.sim.wire, the TWS API byte format.

The handshake is parsed from ``API\\0`` + a length-prefixed ``vMIN..MAX[ +opts]`` (or a single
``vNNN``) however the bytes arrive, version 176 is negotiated for any client that can speak
it and refused otherwise, frames are split correctly from coalesced and split TCP reads,
fields are encoded the way the clients parse them (ints as integer text, bools as 1/0, None as
empty, floats as repr, TWS's unset texts), and the FieldCursor fails on missing or leftover
fields.
"""

from __future__ import annotations

import math
import struct
from datetime import datetime, timezone
from enum import Enum

import pytest

from trading_pipeline.sim.types import OrderStatus, SecType
from trading_pipeline.sim.wire import (
    SERVER_VERSION,
    UNSET_DOUBLE,
    UNSET_INTEGER,
    FieldCursor,
    FrameDecoder,
    Handshake,
    HandshakeDecoder,
    HandshakeRefused,
    ProtocolError,
    decode_payload,
    encode_field,
    encode_frame,
    handshake_reply,
    negotiate_version,
    parse_handshake_text,
)


def _handshake_bytes(text: str) -> bytes:
    body = text.encode()
    return b"API\0" + struct.pack(">I", len(body)) + body


# ------------------------------------------------------------------------------ handshake


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v157..176", Handshake(157, 176, "")),          # ib_insync 0.9.86
        ("v157..178", Handshake(157, 178, "")),          # ib_async 2.x
        ("v157..176 +PACEAPI", Handshake(157, 176, "+PACEAPI")),
        ("v176", Handshake(176, 176, "")),               # a single version
    ],
)
def test_handshake_text_is_parsed(text, expected):
    assert parse_handshake_text(text) == expected


@pytest.mark.parametrize("text", ["157..176", "vabc..176", "v180..170", ""])
def test_malformed_handshake_text_is_refused(text):
    with pytest.raises(ProtocolError):
        parse_handshake_text(text)


@pytest.mark.parametrize(
    ("handshake", "version"),
    [(Handshake(157, 176), 176), (Handshake(157, 178), 176), (Handshake(176, 176), 176),
     (Handshake(100, 300), 176)],
)
def test_negotiation_answers_min_of_client_max_and_176(handshake, version):
    assert negotiate_version(handshake) == version


def test_client_whose_minimum_is_above_176_is_refused():
    with pytest.raises(HandshakeRefused, match="at least version 177"):
        negotiate_version(Handshake(177, 190))


def test_client_that_cannot_reach_176_is_refused_rather_than_misserved():
    with pytest.raises(HandshakeRefused, match="only 176"):
        negotiate_version(Handshake(157, 170))


def test_handshake_decoder_waits_for_split_bytes_and_keeps_the_remainder():
    wire = _handshake_bytes("v157..178") + encode_frame([71, 2, 7, ""])
    decoder = HandshakeDecoder()
    results = [decoder.feed(wire[i:i + 1]) for i in range(len(_handshake_bytes("v157..178")))]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == Handshake(157, 178, "")
    # the startApi frame that followed in the same write is handed on untouched
    decoder_remainder = HandshakeDecoder()
    assert decoder_remainder.feed(wire) == Handshake(157, 178, "")
    assert FrameDecoder().feed(decoder_remainder.remainder) == [["71", "2", "7", ""]]


def test_handshake_without_api_prefix_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        HandshakeDecoder().feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError):
        HandshakeDecoder().feed(b"AX")


def test_handshake_reply_is_one_frame_of_exactly_two_fields():
    reply = handshake_reply(SERVER_VERSION, datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc))
    (length,) = struct.unpack(">I", reply[:4])
    assert length == len(reply) - 4
    assert decode_payload(reply[4:]) == ["176", "20261123 15:00:00 UTC"]


# ------------------------------------------------------------------------------ fields


class _Color(str, Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "1"),
        (False, "0"),
        (0, "0"),
        (1700000000, "1700000000"),
        (-1, "-1"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (6500.25, "6500.25"),
        (float("nan"), ""),
        (math.inf, "Infinity"),
        ("SPXW  261127P06500000", "SPXW  261127P06500000"),
        (UNSET_DOUBLE, "1.7976931348623157E308"),
        (UNSET_INTEGER, "2147483647"),
        (SecType.OPT, "OPT"),
        (OrderStatus.PRE_SUBMITTED, "PreSubmitted"),
        (_Color.RED, "red"),
    ],
)
def test_field_encoding(value, text):
    assert encode_field(value) == text


def test_float_encoding_round_trips_exactly():
    for value in (0.1 + 0.2, 1e-9, 123456.789, -0.05):
        assert float(encode_field(value)) == value


def test_nul_in_a_text_field_is_refused():
    with pytest.raises(ValueError):
        encode_field("a\0b")


def test_unencodable_type_is_refused():
    with pytest.raises(TypeError):
        encode_field(object())


def test_frame_is_length_prefixed_and_every_field_nul_terminated():
    frame = encode_frame([9, 1, 42])
    assert frame == b"\x00\x00\x00\x079\x001\x0042\x00"


def test_frame_with_an_empty_last_field_keeps_it():
    frame = encode_frame([4, 2, -1, 2104, "OK", ""])
    assert FrameDecoder().feed(frame) == [["4", "2", "-1", "2104", "OK", ""]]


def test_utf8_text_is_length_counted_in_bytes():
    frame = encode_frame(["Société"])
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len("Société".encode()) + 1
    assert FrameDecoder().feed(frame) == [["Société"]]


# ------------------------------------------------------------------------------ framing


def test_decoder_splits_coalesced_frames():
    wire = encode_frame([49, 1]) + encode_frame([61, 1]) + encode_frame([5, 1])
    assert FrameDecoder().feed(wire) == [["49", "1"], ["61", "1"], ["5", "1"]]


def test_decoder_reassembles_frames_split_at_every_byte():
    wire = encode_frame([49, 1]) + encode_frame([7, 3, 12, 0, "", "", "", "", "", ""])
    decoder = FrameDecoder()
    messages = []
    for i in range(len(wire)):
        messages += decoder.feed(wire[i:i + 1])
    assert messages == [["49", "1"], ["7", "3", "12", "0", "", "", "", "", "", ""]]
    assert decoder.pending_bytes == 0


def test_decoder_keeps_a_partial_frame_until_it_completes():
    frame = encode_frame([8, 1, 1])
    decoder = FrameDecoder()
    assert decoder.feed(frame[:6]) == []
    assert decoder.pending_bytes == 6
    assert decoder.feed(frame[6:] + frame[:2]) == [["8", "1", "1"]]
    assert decoder.pending_bytes == 2


def test_oversized_frame_is_refused_before_it_is_buffered():
    decoder = FrameDecoder(max_frame_bytes=100)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(struct.pack(">I", 101))


def test_payload_without_trailing_nul_is_refused():
    with pytest.raises(ProtocolError):
        decode_payload(b"49\x001")


# ------------------------------------------------------------------------------ cursor


def test_cursor_reads_typed_fields_in_order():
    cursor = FieldCursor(["3", "12", "", "5900", "5900.0", "Infinite", "1", "0", "", "abc"])
    cursor.expect("3")
    assert cursor.int() == 12
    assert cursor.optional_int() is None
    assert cursor.float() == 5900.0
    assert cursor.optional_float() == 5900.0
    assert cursor.float() == math.inf
    assert cursor.bool() is True
    assert cursor.bool() is False
    assert cursor.bool() is False           # empty is the clients' None for a bool
    assert cursor.text() == "abc"
    cursor.finish()


def test_cursor_fails_on_missing_fields():
    cursor = FieldCursor(["49"])
    cursor.expect("49")
    with pytest.raises(ProtocolError, match="missing field at field 1"):
        cursor.text()


def test_cursor_fails_on_leftover_fields():
    cursor = FieldCursor(["49", "1", "extra"])
    cursor.skip(2)
    with pytest.raises(ProtocolError, match="1 leftover field"):
        cursor.finish()


@pytest.mark.parametrize(
    ("method", "raw"),
    [("int", "1.0"), ("int", ""), ("float", "x"), ("bool", "true"), ("optional_int", "x")],
)
def test_cursor_rejects_wrongly_typed_fields_without_consuming_them(method, raw):
    cursor = FieldCursor(["1", raw])
    cursor.skip()
    with pytest.raises(ProtocolError):
        getattr(cursor, method)()
    assert cursor.position == 1


def test_cursor_expect_names_the_mismatch():
    cursor = FieldCursor(["71", "3"])
    cursor.skip()
    with pytest.raises(ProtocolError, match="expected '2', got '3'"):
        cursor.expect("2")
