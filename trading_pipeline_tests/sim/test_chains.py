"""Contract under test: trading_pipeline.sim.chains.

Trading classes per underlying; the expirations listed as of a day (dailies, weeklies,
monthlies, LEAPS, VIX Wednesdays; holiday expiries moved to the session before; AM classes
gone on their expiry day); strike ladders on the level increments; option ticks; OCC local
symbols; option conIds that encode and decode. Expected dates were read off a calendar.
"""

from __future__ import annotations

from datetime import date

import pytest

from trading_pipeline.sim import chains
from trading_pipeline.sim.chains import OptionKey
from trading_pipeline.sim.universe import DEFAULT_UNIVERSE

MONDAY = date(2026, 11, 23)


def classes(symbol):
    return {klass.name: klass for klass in chains.option_classes(DEFAULT_UNIVERSE.get(symbol))}


def iso(days):
    return [day.isoformat() for day in days]


def test_trading_classes():
    assert list(classes("SPX")) == ["SPX", "SPXW"]
    assert classes("SPX")["SPX"].am_settled and not classes("SPX")["SPXW"].am_settled
    assert list(classes("XSP")) == ["XSP"]
    assert list(classes("NDX")) == ["NDX", "NDXP"]
    assert list(classes("RUT")) == ["RUT", "RUTW"]
    assert list(classes("VIX")) == ["VIX", "VIXW"]
    assert list(classes("AAPL")) == ["AAPL"]
    assert list(classes("BRK B")) == ["BRKB"]
    assert classes("SPY")["SPY"].dailies and not classes("AAPL")["AAPL"].dailies


def test_third_fridays_and_holiday_adjustment():
    assert chains.third_friday(2026, 12) == date(2026, 12, 18)
    assert chains.third_friday(2027, 1) == date(2027, 1, 15)
    assert chains.third_friday(2027, 10) == date(2027, 10, 15)  # October 1 is a Friday
    # Christmas 2026 and New Year 2027 are Fridays; Juneteenth 2027 is observed Friday June 18.
    assert chains.session_on_or_before(date(2026, 12, 25)) == date(2026, 12, 24)
    assert chains.session_on_or_before(date(2027, 1, 1)) == date(2026, 12, 31)
    assert chains.session_on_or_before(date(2027, 6, 18)) == date(2027, 6, 17)
    assert chains.session_on_or_before(date(2026, 12, 18)) == date(2026, 12, 18)


def test_stock_expirations_weeklies_monthlies_and_leaps():
    listed = chains.listed_expirations(classes("AAPL")["AAPL"], MONDAY)
    assert iso(listed) == [
        # weekly Fridays for 8 weeks; the two holiday Fridays move to Thursday
        "2026-11-27", "2026-12-04", "2026-12-11", "2026-12-18", "2026-12-24", "2026-12-31",
        "2027-01-08", "2027-01-15",
        # third Fridays for 12 months (November 2026's, the 20th, has passed); June's is a holiday
        "2027-02-19", "2027-03-19", "2027-04-16", "2027-05-21", "2027-06-17", "2027-07-16",
        "2027-08-20", "2027-09-17", "2027-10-15", "2027-11-19",
        # the next two Januaries as LEAPS
        "2028-01-21", "2029-01-19",
    ]  # fmt: skip


def test_spxw_lists_every_session_for_two_weeks_spx_only_monthlies():
    spxw = chains.listed_expirations(classes("SPX")["SPXW"], MONDAY)
    # Thanksgiving (Thursday 2026-11-26) is not a session; 0DTE on the day itself is listed.
    assert iso(spxw[:9]) == [
        "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30",
        "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04",
    ]  # fmt: skip
    assert date(2026, 12, 7) in spxw and date(2026, 12, 8) not in spxw
    spx = chains.listed_expirations(classes("SPX")["SPX"], MONDAY)
    assert iso(spx[:3]) == ["2026-12-18", "2027-01-15", "2027-02-19"]
    assert set(spx) & set(spxw) >= {date(2026, 12, 18), date(2027, 1, 15)}


def test_am_settled_class_stops_listing_on_its_expiry_day():
    expiry_day = date(2026, 12, 18)
    assert expiry_day not in chains.listed_expirations(classes("SPX")["SPX"], expiry_day)
    assert expiry_day in chains.listed_expirations(classes("SPX")["SPX"], date(2026, 12, 17))
    assert expiry_day in chains.listed_expirations(classes("SPX")["SPXW"], expiry_day)


def test_vix_expirations_are_wednesdays_thirty_days_before_the_next_third_friday():
    assert chains.vix_monthly_expiry(2026, 12) == date(2026, 12, 16)  # 2027-01-15 minus 30 days
    # June 2027's third Friday is a holiday: count from Thursday June 17.
    assert chains.vix_monthly_expiry(2027, 5) == date(2027, 5, 18)
    monthly = chains.listed_expirations(classes("VIX")["VIX"], MONDAY)
    assert len(monthly) == chains.VIX_MONTHLY_COUNT and monthly[0] == date(2026, 12, 16)
    weekly = chains.listed_expirations(classes("VIX")["VIXW"], MONDAY)
    assert iso(weekly) == ["2026-11-25", "2026-12-02", "2026-12-09", "2026-12-23", "2026-12-30"]


def test_is_expiration_of_recognises_each_class_dates():
    aapl, spxw, spx = classes("AAPL")["AAPL"], classes("SPX")["SPXW"], classes("SPX")["SPX"]
    assert chains.is_expiration_of(aapl, date(2026, 12, 24))  # holiday-moved weekly
    assert not chains.is_expiration_of(aapl, date(2026, 11, 24))  # a Tuesday: no dailies
    assert chains.is_expiration_of(spxw, date(2026, 11, 24))
    assert chains.is_expiration_of(spx, date(2026, 12, 18))
    assert not chains.is_expiration_of(spx, date(2026, 12, 11))
    assert not chains.is_expiration_of(spxw, date(2026, 11, 26))  # Thanksgiving


def test_strike_ladders():
    aapl = chains.strike_ladder("AAPL", 231.30)
    # 0.5x = 115.65 -> first 2.5-step strike 117.5; 1.3x = 300.69 -> last 300; 2.5 below 200, 5 above
    assert aapl[:3] == (117.5, 120.0, 122.5)
    assert aapl[30:36] == (192.5, 195.0, 197.5, 200.0, 205.0, 210.0)
    assert aapl[-1] == 300.0 and len(aapl) == 33 + 21
    assert chains.strike_ladder("F", 13.0) == tuple(x / 2 for x in range(13, 34))  # 6.5 .. 16.5
    intc = chains.strike_ladder("INTC", 38.0)  # 19 .. 49.4: halves below 25, ones above
    assert intc[:3] == (19.0, 19.5, 20.0) and intc[11:14] == (24.5, 25.0, 26.0) and intc[-1] == 49.0
    assert len(chains.strike_ladder("SPX", 6650.0)) == (8645 - 3325) // 5 + 1
    assert chains.strike_ladder("NDX", 24500.0)[:2] == (12250.0, 12275.0)
    vix = chains.strike_ladder("VIX", 17.0)  # calls matter for VIX: up to 3x = 51
    assert vix[0] == 8.5 and vix[-3:] == (48.0, 49.0, 50.0)  # above 50 the step is 2.5: 52.5 > 51


def test_listed_strikes_follow_the_level_grid():
    assert chains.is_listed_strike("AAPL", 2100)
    assert not chains.is_listed_strike("AAPL", 2125)  # 212.5: above 200 the step is 5
    assert chains.is_listed_strike("AAPL", 1975)
    assert not chains.is_listed_strike("SPX", 65025)
    assert not chains.is_listed_strike("AAPL", 0)


def test_option_ticks():
    assert chains.option_tick("SPX", 2.95) == 0.05
    assert chains.option_tick("SPX", 3.00) == 0.10
    assert chains.option_tick("AAPL", 12.0) == 0.01  # penny name
    assert chains.option_tick("MMM", 2.99) == 0.01
    assert chains.option_tick("MMM", 3.0) == 0.05
    assert chains.option_min_tick("SPX") == 0.05 and chains.option_min_tick("MMM") == 0.01


def test_occ_symbols():
    assert chains.occ_symbol("SPXW", date(2025, 12, 19), "C", 59000) == "SPXW  251219C05900000"
    assert chains.occ_symbol("BRKB", date(2026, 1, 16), "P", 4825) == "BRKB  260116P00482500"


def test_option_con_ids_encode_readably_and_decode():
    key = OptionKey(ordinal=12, class_index=0, expiry=date(2025, 12, 19), right="P", strike_tenths=2300)
    assert chains.encode_option_con_id(key) == 121251219002300
    assert chains.decode_option_con_id(121251219002300) == key
    spxw_call = OptionKey(ordinal=437, class_index=1, expiry=date(2026, 12, 18), right="C", strike_tenths=66000)
    assert chains.encode_option_con_id(spxw_call) == 4372261218066000
    assert chains.decode_option_con_id(4372261218066000) == spxw_call
    assert chains.encode_option_con_id(spxw_call) < 2**53


@pytest.mark.parametrize("con_id", [265598, 10**13 - 1, 121251319002300, 121251219000000, 9_000 * 10**13])
def test_malformed_option_con_ids_decode_to_none(con_id):
    assert chains.decode_option_con_id(con_id) is None


def test_encoding_refuses_what_it_cannot_represent():
    with pytest.raises(ValueError):
        chains.encode_option_con_id(OptionKey(900, 0, date(2026, 1, 16), "C", 10))
    with pytest.raises(ValueError):
        chains.encode_option_con_id(OptionKey(1, 0, date(2026, 1, 16), "C", 1_000_000))


def test_last_trading_day():
    aapl = DEFAULT_UNIVERSE.get("SPX")
    spx = chains.make_option(aapl, 437, 0, classes("SPX")["SPX"], date(2026, 12, 18), "C", 66000)
    spxw = chains.make_option(aapl, 437, 1, classes("SPX")["SPXW"], date(2026, 12, 18), "C", 66000)
    assert chains.last_trading_day(spx) == date(2026, 12, 17)
    assert chains.last_trading_day(spxw) == date(2026, 12, 18)
    assert spx.local_symbol == "SPX   261218C06600000" and spx.multiplier == 100 and spx.min_tick == 0.05
