"""Contract under test: trading_pipeline.sim.session, one client connection without sockets.

A Session fed raw bytes answers the handshake and startApi exactly (one 2-field frame, then
15, 9 and the farm-status infos), refuses clients that cannot speak 176 and a second live
connection with the same client id (326, then closed), survives unparseable and unsupported
requests (320 / 321) but closes on broken framing, sends a fill in TWS's order (execDetails,
openOrder, orderStatus, commissionReport), streams only the ticks that changed, and computes
trading hours, bar counts and request times as documented.
"""

from __future__ import annotations

import logging
import struct
from datetime import date, datetime, timedelta, timezone

import pytest

from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.session import Session, SessionHub, parse_tws_time
from trading_pipeline.sim.wire import FrameDecoder, encode_frame
from trading_pipeline_tests.sim.conftest import SIM_SEED, SIM_START

UTC = timezone.utc


def _handshake(text: str = "v157..176") -> bytes:
    return b"API\0" + struct.pack(">I", len(text)) + text.encode()


class Peer:
    """A client end: feeds a Session bytes and decodes what it writes back."""

    def __init__(self, hub: SessionHub):
        self._decoder = FrameDecoder()
        self.closed = False
        self.session = Session(hub, write=self._written, close=self._close, peer="test")
        self._pending: list[list[str]] = []

    def _written(self, data: bytes) -> None:
        self._pending += self._decoder.feed(data)

    def _close(self) -> None:
        self.closed = True

    def send(self, *messages: list) -> None:
        self.session.receive(b"".join(encode_frame(m) for m in messages))

    def take(self) -> list[list[str]]:
        taken, self._pending = self._pending, []
        return taken

    def ids(self) -> list[str]:
        return [m[0] for m in self.take()]

    def connect(self, client_id: int = 1) -> None:
        self.session.receive(_handshake() + encode_frame([71, 2, client_id, ""]))
        self.take()


@pytest.fixture
def hub():
    broker = SimBroker(seed=SIM_SEED, start=SIM_START)
    hub = SessionHub(broker)
    yield hub
    hub.close()


# ============================================================================ handshake


def test_handshake_and_start_api_in_one_write(hub):
    peer = Peer(hub)
    peer.session.receive(_handshake("v157..178") + encode_frame([71, 2, 4, ""]))
    messages = peer.take()
    assert messages[0] == ["176", "20261123 15:00:00 UTC"]
    assert messages[1] == ["15", "1", "DU1234567"]
    assert messages[2] == ["9", "1", "1"]
    assert [m[3] for m in messages[3:]] == ["2104", "2106", "2158"]
    assert all(m[:3] == ["4", "2", "-1"] and len(m) == 6 for m in messages[3:])
    assert peer.session.client_id == 4 and hub.client_ids() == [4]


def test_client_below_176_is_refused_and_closed(hub):
    peer = Peer(hub)
    peer.session.receive(_handshake("v100..170"))
    assert peer.closed and peer.take() == []


def test_garbage_instead_of_a_handshake_closes(hub, caplog):
    peer = Peer(hub)
    with caplog.at_level(logging.ERROR, logger="trading_pipeline.sim.session"):
        peer.session.receive(b"GET / HTTP/1.1\r\n\r\n")
    assert peer.closed
    assert "expected b'API" in caplog.text


def test_second_connection_with_a_live_client_id_gets_326_and_is_closed(hub):
    first = Peer(hub)
    first.connect(client_id=1)
    second = Peer(hub)
    second.session.receive(_handshake() + encode_frame([71, 2, 1, ""]))
    messages = second.take()
    assert messages[1][:4] == ["4", "2", "-1", "326"]
    assert second.closed and not first.closed
    assert hub.client_ids() == [1]
    # once the first goes away the id is free again
    first.session.connection_lost()
    third = Peer(hub)
    third.connect(client_id=1)
    assert not third.closed and hub.client_ids() == [1]


def test_requests_before_start_api_are_ignored(hub):
    peer = Peer(hub)
    peer.session.receive(_handshake())
    peer.take()
    peer.send([49, 1])
    assert peer.take() == []


# ============================================================================ robustness


def test_unparseable_request_answers_320_and_keeps_the_connection(hub, caplog):
    peer = Peer(hub)
    peer.connect()
    with caplog.at_level(logging.ERROR, logger="trading_pipeline.sim.session"):
        peer.send([49, 1, "extra"])
    (message,) = peer.take()
    assert message[:4] == ["4", "2", "-1", "320"]
    assert "leftover" in caplog.text
    peer.send([49, 1])
    assert peer.take() == [["49", "1", str(int(SIM_START.timestamp()))]]


def test_unsupported_request_answers_321(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send([81, 1, "AAPL"])   # reqMatchingSymbols
    (message,) = peer.take()
    assert message[:4] == ["4", "2", "-1", "321"] and not peer.closed


def test_oversized_frame_closes_the_connection(hub):
    peer = Peer(hub)
    peer.connect()
    peer.session.receive(struct.pack(">I", 1 << 30))
    assert peer.closed and hub.client_ids() == []


# ============================================================================ orders


def _stock_order(order_id: int, action: str, quantity: int, order_type: str = "MKT",
                 lmt_price: str = "") -> list:
    """A placeOrder as ib_async sends it for Stock('AAPL', 'SMART', 'USD')."""
    from trading_pipeline_tests.sim.decoding import api, encode_request

    m = api("ib_async")
    order = m.Order(action=action, totalQuantity=quantity, orderType=order_type,
                    lmtPrice=float(lmt_price) if lmt_price else m.order.UNSET_DOUBLE)
    return encode_request("ib_async", "placeOrder", order_id, m.Stock("AAPL", "SMART", "USD"),
                          order)


def test_a_fill_goes_out_in_tws_order(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send(_stock_order(1, "BUY", 100))
    messages = peer.take()
    assert [m[0] for m in messages] == ["5", "3", "11", "5", "3", "59"]
    assert messages[1][2] == "Submitted"
    assert messages[2][1] == "-1"                      # live execution
    assert messages[4][2] == "Filled" and messages[4][3] == "100.0"
    assert messages[5][2] == messages[2][14]          # commission report names the execId


def test_orders_of_other_clients_are_not_pushed(hub):
    owner, other = Peer(hub), Peer(hub)
    owner.connect(client_id=1)
    other.connect(client_id=2)
    owner.send(_stock_order(1, "BUY", 10))
    assert owner.ids() == ["5", "3", "11", "5", "3", "59"]
    assert other.ids() == []


def test_subscriptions_get_position_portfolio_and_account_pushes(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send([61, 1], [6, 2, 1, "DU1234567"], [62, 1, 7, "All", "NetLiquidation"])
    first = peer.ids()
    assert first[0] == "62"                            # no positions yet
    assert first[-3:] == ["54", "63", "64"]
    peer.send(_stock_order(1, "BUY", 100))
    ids = peer.ids()
    assert ids[:6] == ["5", "3", "11", "5", "3", "59"]
    assert ids[6] == "61"                              # the position push
    assert "7" in ids and "6" in ids and ids.count("8") == 1
    assert ids[-2:] == ["63", "64"]                    # the summary subscription refreshed


def test_global_cancel_cancels_every_working_order_with_202(hub):
    peer = Peer(hub)
    peer.connect()
    ask = hub.broker.quote(265598).ask
    peer.send(_stock_order(4, "BUY", 10, "LMT", f"{round(ask * 0.5, 2)}"),
              _stock_order(6, "BUY", 10, "LMT", f"{round(ask * 0.6, 2)}"))
    assert peer.ids() == ["5", "3", "5", "3"]
    peer.send([58, 1])
    messages = peer.take()
    assert [m[0] for m in messages] == ["5", "3", "4", "5", "3", "4"]
    assert [m[2] for m in messages if m[0] == "3"] == ["Cancelled", "Cancelled"]
    assert [(m[2], m[3]) for m in messages if m[0] == "4"] == [("4", "202"), ("6", "202")]


def test_req_ids_answers_above_every_order_id_used(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send(_stock_order(41, "BUY", 1))
    peer.take()
    peer.send([8, 1, 1])
    assert peer.take() == [["9", "1", "42"]]


def test_unknown_contract_order_gets_200_with_the_order_id(hub):
    peer = Peer(hub)
    peer.connect()
    fields = _stock_order(3, "BUY", 1)
    fields[3] = "NOPEX"
    peer.send(fields)
    (message,) = peer.take()
    assert message[:4] == ["4", "2", "3", "200"]


# ============================================================================ market data


def test_streaming_sends_only_changed_ticks_and_stops_when_cancelled(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send([1, 11, 5, 265598, "AAPL", "STK", "", "0.0", "", "", "SMART", "", "USD", "", "",
               0, "", 0, 0, ""])
    first = peer.take()
    assert [m[0] for m in first[:2]] == ["81", "58"]
    assert {m[3] for m in first if m[0] == "1"} >= {"1", "2", "4", "9"}
    hub.after_change()                                 # same instant: nothing changed
    assert peer.take() == []
    hub.broker.advance(timedelta(minutes=1))
    hub.after_change()
    update = peer.take()
    assert update and all(m[0] in ("1", "2") for m in update)
    assert not any(m[0] == "1" and m[3] == "9" for m in update)   # the close does not move
    peer.send([2, 2, 5])
    hub.broker.advance(timedelta(minutes=1))
    hub.after_change()
    assert peer.take() == []


def test_snapshot_ends_with_57_and_does_not_stream(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send([59, 1, 4],
              [1, 11, 6, 265598, "", "", "", "", "", "", "SMART", "", "", "", "", 0, "", 1, 0, ""])
    messages = peer.take()
    assert messages[-1] == ["57", "1", "6"]
    assert ["58", "1", "6", "4"] in messages
    assert {m[3] for m in messages if m[0] == "1"} >= {"66", "67", "68", "75"}
    hub.broker.advance(timedelta(minutes=5))
    hub.after_change()
    assert peer.take() == []


# ============================================================================ helpers


def test_contract_details_hours_follow_the_nyse_calendar(hub):
    peer = Peer(hub)
    peer.connect()
    peer.send([9, 8, 2, 265598, "", "", "", "", "", "", "SMART", "", "", "", "", 0, "", "", ""])
    details, end = peer.take()
    assert end == ["52", "1", "2"]
    trading, liquid = details[26], details[27]
    liquid_days = liquid.split(";")
    assert liquid_days[0] == "20261123:0930-20261123:1600"
    assert "20261126:CLOSED" in liquid_days                       # Thanksgiving
    assert "20261127:0930-20261127:1300" in liquid_days           # the early close after it
    assert "20261128:CLOSED" in liquid_days                       # Saturday
    assert "20261127:0400-20261127:1700" in trading.split(";")    # stocks trade extended hours


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261123-15:30:00", datetime(2026, 11, 23, 15, 30, tzinfo=UTC)),
        ("20261123 10:30:00", datetime(2026, 11, 23, 15, 30, tzinfo=UTC)),        # New York
        ("20261123 10:30:00 US/Eastern", datetime(2026, 11, 23, 15, 30, tzinfo=UTC)),
        ("20261123 15:30:00 UTC", datetime(2026, 11, 23, 15, 30, tzinfo=UTC)),
        ("20261123", datetime(2026, 11, 24, 4, 59, 59, tzinfo=UTC)),
    ],
)
def test_request_times_parse(text, expected):
    assert parse_tws_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "20261123 25:00:00", "20261123 10:00:00 Mars/X"])
def test_bad_request_times_are_refused(text):
    with pytest.raises(ValueError):
        parse_tws_time(text)


@pytest.mark.parametrize(
    ("duration", "count"),
    [("5 D", 5), ("1 W", 5), ("2 W", 10), ("1 M", 21), ("3600 S", 1)],
)
def test_bar_counts(duration, count):
    # a month back from Monday 2026-11-23: Oct 24 .. Nov 23 holds 21 sessions
    assert Session._bar_count(duration, date(2026, 11, 23)) == count


def test_bad_durations_are_refused():
    for duration in ("5", "x D", "0 D", "5 Q"):
        with pytest.raises(ValueError):
            Session._bar_count(duration, date(2026, 11, 23))
