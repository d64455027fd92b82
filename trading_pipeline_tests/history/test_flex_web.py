"""Contract under test: the Flex Web Service client (trading_pipeline.broker.flex_web) against
the simulator's loopback Flex Web Service (trading_pipeline.sim.flex_service).

The service speaks IBKR's two-step protocol (SendRequest -> reference code and Url;
GetStatement -> 1019 "in progress" for the first polls, then the statement; 1012 expired token,
1015 invalid token, 1014 invalid query, 1017 invalid reference, 1020 missing parameter). The
client does SendRequest then polls GetStatement while 1019, with an injectable clock and sleep,
and fails with project errors that name the account: FlexTokenError, FlexQueryIdError,
FlexTimeoutError, FlexWebServiceError. The token never appears in a log record, an error, an
exception or its chain, nor in a repr. Settings: IBKR_FLEX_TOKEN_n / IBKR_FLEX_QUERY_ID_n /
IBKR_FLEX_ACCOUNT_n (n = 1..3) and IBKR_FLEX_BASE_URL.
"""

from __future__ import annotations

import logging
import socket
import traceback
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from trading_pipeline.broker.flex_web import (
    DEFAULT_BASE_URL,
    FlexAccountSettings,
    FlexQueryIdError,
    FlexTimeoutError,
    FlexToken,
    FlexTokenError,
    FlexWebServiceError,
    fetch_account_statement,
    fetch_statement,
    resolve_base_url,
)
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.clock import FixedClock
from trading_pipeline.errors import ConfigurationError
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.flex import FlexOptions, StatementKind
from trading_pipeline.sim.flex_service import FlexService, FlexServiceGateway, ServedAccount, ServedQuery
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.sim.types import OrderRequest

TOKEN = "7391046283749102837465"            # long and unique: easy to search for in any text
EXPIRED_TOKEN = "5550001112223334445556"
OTHER_TOKEN = "9990001112223334445557"
ACCOUNT = "DU1234567"
OTHER_ACCOUNT = "DU7654321"
ACTIVITY_QUERY, TCF_QUERY, OTHER_QUERY = "1001", "1002", "2001"
START = datetime(2026, 11, 30, 10, tzinfo=NEW_YORK).astimezone(UTC)


def traded_broker(account_id: str = ACCOUNT) -> SimBroker:
    """A broker that sold one AAPL put at the market at 10:00 on Monday 2026-11-30."""
    broker = SimBroker(seed=7, start=START, prices={"AAPL": 200.0}, account_id=account_id)
    today = broker.today()
    expiry = next(d for d in broker.catalog.expirations("AAPL", today) if (d - today).days >= 4)
    put = min((o for o in broker.catalog.options("AAPL", expiry, today) if o.right == "P"),
              key=lambda o: abs(o.strike - 190))
    broker.place_order(1, 1, put, OrderRequest("SELL", 1, "MKT"))
    return broker


def served_accounts(broker: SimBroker, other: SimBroker) -> list[ServedAccount]:
    return [
        ServedAccount(broker, token=TOKEN, queries=(
            ServedQuery(ACTIVITY_QUERY, StatementKind.ACTIVITY),
            ServedQuery(TCF_QUERY, StatementKind.TRADE_CONFIRMATION, days=7,
                        options=FlexOptions(query_name="TJ Week", correct_execution=1)),
        )),
        ServedAccount(other, token=OTHER_TOKEN, queries=(ServedQuery(OTHER_QUERY, StatementKind.ACTIVITY),)),
        ServedAccount(broker, token=EXPIRED_TOKEN, queries=(ServedQuery(ACTIVITY_QUERY, StatementKind.ACTIVITY),),
                      token_expired=True),
    ]


@pytest.fixture(scope="module")
def brokers() -> tuple[SimBroker, SimBroker]:
    return traded_broker(), traded_broker(OTHER_ACCOUNT)


@pytest.fixture
def gateway(brokers):
    service = FlexServiceGateway(served_accounts(*brokers), pending_polls=2)
    service.start()
    try:
        yield service
    finally:
        service.stop()


class SteppedTime:
    """A FixedClock and a sleep that moves it: waiting costs no real time and is recorded."""

    def __init__(self) -> None:
        self.clock = FixedClock(datetime(2026, 12, 4, 23, tzinfo=UTC))
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))


def answer(xml: bytes) -> dict[str, str]:
    root = ET.fromstring(xml)
    assert root.tag == "FlexStatementResponse"
    return {child.tag: (child.text or "") for child in root}


# ----- the service, without sockets -----


def test_service_two_steps_in_progress_then_the_statement(brokers):
    service = FlexService(served_accounts(*brokers), pending_polls=2)
    sent = answer(service.send_request(TOKEN, ACTIVITY_QUERY))
    assert sent["Status"] == "Success" and sent["ReferenceCode"] == "4000000001"
    assert sent["Url"].endswith("/AccountManagement/FlexWebService/GetStatement")
    for _ in range(2):
        assert answer(service.get_statement(TOKEN, "4000000001")) == {
            "Status": "Warn",
            "ErrorCode": "1019",
            "ErrorMessage": "Statement generation in progress. Please try again shortly.",
        }
    statement = ET.fromstring(service.get_statement(TOKEN, "4000000001"))
    assert (statement.tag, statement.get("type")) == ("FlexQueryResponse", "AF")
    assert statement.find("FlexStatements/FlexStatement").attrib == {
        "accountId": ACCOUNT, "fromDate": "20251201", "toDate": "20261130",
        "period": "Last365CalendarDays", "whenGenerated": "20261130;100000",
    }
    # A fetched statement can be fetched again (IBKR keeps it for a while).
    assert ET.fromstring(service.get_statement(TOKEN, "4000000001")).tag == "FlexQueryResponse"


def test_service_query_kinds_windows_and_options(brokers):
    service = FlexService(served_accounts(*brokers), pending_polls=0)
    reference = answer(service.send_request(TOKEN, TCF_QUERY))["ReferenceCode"]
    statement = ET.fromstring(service.get_statement(TOKEN, reference))
    assert statement.attrib == {"queryName": "TJ Week", "type": "TCF"}
    assert statement.find("FlexStatements/FlexStatement").attrib["fromDate"] == "20261124"     # 7 days to today
    assert statement.find("FlexStatements/FlexStatement").attrib["period"] == "Last7CalendarDays"
    # correct_execution=1: original, cancel, rebook of the one sale.
    kinds = [c.get("transactionType") for c in statement.iter("TradeConfirm")]
    assert kinds == ["ExchTrade", "TradeCancel", "ExchTrade"]
    other = answer(service.send_request(OTHER_TOKEN, OTHER_QUERY))["ReferenceCode"]
    assert ET.fromstring(service.get_statement(OTHER_TOKEN, other)).find(
        "FlexStatements/FlexStatement").get("accountId") == OTHER_ACCOUNT


@pytest.mark.parametrize(
    ("token", "query", "code", "message"),
    [
        ("nope", ACTIVITY_QUERY, "1015", "Token is invalid."),
        (EXPIRED_TOKEN, ACTIVITY_QUERY, "1012", "Token has expired."),
        (TOKEN, "9999", "1014", "Query is invalid."),
        (TOKEN, OTHER_QUERY, "1014", "Query is invalid."),      # another account's query
        ("", ACTIVITY_QUERY, "1020", "Invalid request or unable to validate request."),
        (TOKEN, "", "1020", "Invalid request or unable to validate request."),
    ],
)
def test_service_send_request_errors(brokers, token, query, code, message):
    service = FlexService(served_accounts(*brokers))
    assert answer(service.send_request(token, query)) == {"Status": "Fail", "ErrorCode": code, "ErrorMessage": message}


def test_service_get_statement_errors(brokers):
    service = FlexService(served_accounts(*brokers))
    reference = answer(service.send_request(TOKEN, ACTIVITY_QUERY))["ReferenceCode"]
    assert answer(service.get_statement(TOKEN, "123"))["ErrorCode"] == "1017"
    assert answer(service.get_statement(OTHER_TOKEN, reference))["ErrorCode"] == "1017"   # not its reference
    assert answer(service.get_statement("nope", reference))["ErrorCode"] == "1015"
    assert answer(service.get_statement(EXPIRED_TOKEN, reference))["ErrorCode"] == "1012"


def test_service_configuration_is_checked(brokers):
    broker = brokers[0]
    with pytest.raises(ValueError, match="own token"):
        FlexService([ServedAccount(broker, token="a", queries=()), ServedAccount(broker, token="a", queries=())])
    with pytest.raises(ValueError, match="token"):
        ServedAccount(broker, token="", queries=())
    with pytest.raises(ValueError, match="at least one day"):
        ServedQuery("1", StatementKind.ACTIVITY, days=0)
    assert TOKEN not in repr(ServedAccount(broker, token=TOKEN, queries=()))


# ----- the client against the loopback service -----


def test_fetch_succeeds_after_polling_while_in_progress(gateway):
    time = SteppedTime()
    body = fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=gateway.base_url,
                           poll_interval=5, timeout=60, clock=time.clock, sleep=time.sleep)
    root = ET.fromstring(body)
    assert (root.tag, root.get("type")) == ("FlexQueryResponse", "AF")
    assert [t.get("transactionType") for t in root.iter("Trade")] == ["ExchTrade"]
    # Two 1019 answers, each followed by one wait of the poll interval.
    assert time.sleeps == [5, 5]


def test_fetch_a_trade_confirmation_statement(gateway):
    time = SteppedTime()
    body = fetch_statement(FlexToken(TOKEN), TCF_QUERY, account=ACCOUNT, base_url=gateway.base_url,
                           poll_interval=1, clock=time.clock, sleep=time.sleep)
    assert ET.fromstring(body).get("type") == "TCF"


@pytest.mark.parametrize(
    ("token", "query", "error_type", "code", "words"),
    [
        ("0000000000000000000000", ACTIVITY_QUERY, FlexTokenError, 1015, "is invalid"),
        (EXPIRED_TOKEN, ACTIVITY_QUERY, FlexTokenError, 1012, "has expired"),
        (TOKEN, "4242", FlexQueryIdError, 1014, "Flex query 4242"),
    ],
)
def test_bad_token_or_query_id_is_a_clear_error_naming_the_account(gateway, token, query, error_type, code, words):
    time = SteppedTime()
    with pytest.raises(error_type) as raised:
        fetch_statement(token, query, account=ACCOUNT, base_url=gateway.base_url, clock=time.clock, sleep=time.sleep)
    error = raised.value
    assert isinstance(error, FlexWebServiceError) and error.code == code and error.account == ACCOUNT
    assert f"account {ACCOUNT}" in str(error) and words in str(error)
    assert token not in str(error) and time.sleeps == []


def test_a_statement_still_in_progress_at_the_deadline_times_out(brokers):
    with FlexServiceGateway(served_accounts(*brokers), pending_polls=1000) as slow:
        time = SteppedTime()
        with pytest.raises(FlexTimeoutError) as raised:
            fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=slow.base_url,
                            poll_interval=5, timeout=12, clock=time.clock, sleep=time.sleep)
    # Deadline 12 s: waits of 5, 5, then the 2 s left; the fourth poll finds the time spent.
    assert time.sleeps == [5, 5, 2]
    assert raised.value.code == 1019 and "not ready after 12 s and 4 tries" in str(raised.value)
    assert f"account {ACCOUNT}" in str(raised.value)


def test_a_statement_url_on_another_site_is_not_followed(gateway):
    # The token goes wherever the Url points: the client keeps to the configured site.
    gateway.service.get_statement_url = "http://198.51.100.7/AccountManagement/FlexWebService/GetStatement"
    time = SteppedTime()
    body = fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=gateway.base_url,
                           clock=time.clock, sleep=time.sleep)
    assert ET.fromstring(body).tag == "FlexQueryResponse"


def test_fetch_for_a_configured_account_uses_the_settings(gateway, brokers):
    env = gateway.client_env()
    assert env["IBKR_FLEX_BASE_URL"] == gateway.base_url
    assert [env[f"IBKR_FLEX_ACCOUNT_{slot}"] for slot in (1, 2, 3)] == [ACCOUNT, OTHER_ACCOUNT, ACCOUNT]
    with pytest.raises(ConfigurationError, match=f"Flex account {ACCOUNT} is configured twice"):
        FlexAccountSettings.from_env(env)    # slot 3 is the expired token of DU1234567
    settings = FlexAccountSettings.from_env({k: v for k, v in env.items() if not k.endswith("_3")})
    assert settings.base_url == gateway.base_url
    assert [(a.slot, a.account, a.query_id) for a in settings.accounts] == [
        (1, ACCOUNT, ACTIVITY_QUERY), (2, OTHER_ACCOUNT, OTHER_QUERY)]
    time = SteppedTime()
    body = fetch_account_statement(settings, OTHER_ACCOUNT, clock=time.clock, sleep=time.sleep)
    assert ET.fromstring(body).find("FlexStatements/FlexStatement").get("accountId") == OTHER_ACCOUNT


def test_the_service_in_front_of_a_running_sim_gateway(brokers):
    # The broker lives on the SimGateway's thread: the service reads it there.
    broker = traded_broker()
    with SimGateway(broker) as tws:
        account = ServedAccount(broker, token=TOKEN, queries=(ServedQuery(ACTIVITY_QUERY, StatementKind.ACTIVITY),))
        with FlexServiceGateway([account], run_on_broker=tws.call) as service:
            tws.call(broker.advance, timedelta(days=1))
            time = SteppedTime()
            body = fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=service.base_url,
                                   clock=time.clock, sleep=time.sleep)
    statement = ET.fromstring(body).find("FlexStatements/FlexStatement")
    assert statement.get("toDate") == "20261201" and len(list(statement.iter("Trade"))) == 1


# ----- the token stays secret -----


def exception_texts(error: BaseException) -> list[str]:
    """Everything an exception can show: its text, repr, args, attributes, and its whole chain."""
    texts = []
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error), repr(error.args), repr(vars(error))]
        texts.append("".join(traceback.format_exception(error)))
        error = error.__cause__ or error.__context__
    return texts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_token_appears_in_no_log_record_and_no_exception(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    time = SteppedTime()
    failures: list[BaseException] = []
    fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=gateway.base_url,
                    clock=time.clock, sleep=time.sleep)
    attempts = [
        dict(query_id="4242", base_url=gateway.base_url),                                     # 1014
        dict(query_id=ACTIVITY_QUERY, base_url=gateway.base_url.replace("FlexWebService", "Nowhere")),  # HTTP 404
        dict(query_id=ACTIVITY_QUERY, base_url=f"http://127.0.0.1:{free_port()}/FlexWebService"),     # refused
    ]
    for attempt in attempts:
        with pytest.raises(FlexWebServiceError) as raised:
            fetch_statement(TOKEN, account=ACCOUNT, clock=time.clock, sleep=time.sleep, request_timeout=5, **attempt)
        failures.append(raised.value)
    for token in (EXPIRED_TOKEN, "0000000000000000000000"):
        with pytest.raises(FlexTokenError) as raised:
            fetch_statement(token, ACTIVITY_QUERY, account=ACCOUNT, base_url=gateway.base_url,
                            clock=time.clock, sleep=time.sleep)
        assert token not in "".join(exception_texts(raised.value))
    assert "HTTP 404" in str(failures[1]) and "could not reach" in str(failures[2])
    for failure in failures:
        assert not any(TOKEN in text for text in exception_texts(failure)), failure
    assert caplog.records, "the client and the service log what they do"
    for record in caplog.records:
        shown = record.getMessage() + repr(record.args) + (record.exc_text or "")
        assert TOKEN not in shown and EXPIRED_TOKEN not in shown, record.getMessage()


def test_a_server_that_echoes_the_token_does_not_leak_it(brokers):
    class EchoingService(FlexService):
        def send_request(self, token: str, query_id: str) -> bytes:
            return (f"<FlexStatementResponse><Status>Fail</Status><ErrorCode>1020</ErrorCode>"
                    f"<ErrorMessage>bad request t={token}</ErrorMessage></FlexStatementResponse>").encode()

    echoing = FlexServiceGateway(served_accounts(*brokers))
    echoing.service = EchoingService(served_accounts(*brokers))
    with echoing:
        with pytest.raises(FlexWebServiceError) as raised:
            fetch_statement(TOKEN, ACTIVITY_QUERY, account=ACCOUNT, base_url=echoing.base_url)
    assert "bad request t=***" in str(raised.value)
    assert not any(TOKEN in text for text in exception_texts(raised.value))


# ----- settings -----


def full_env() -> dict[str, str]:
    env = {}
    for slot, account in ((1, "U1111111"), (2, "U2222222"), (3, "DU3333333")):
        env |= {f"IBKR_FLEX_TOKEN_{slot}": f"secret-token-{slot}-{TOKEN}",
                f"IBKR_FLEX_QUERY_ID_{slot}": f"10{slot}", f"IBKR_FLEX_ACCOUNT_{slot}": account}
    return env


def test_settings_for_up_to_three_accounts_with_masked_tokens():
    settings = FlexAccountSettings.from_env(full_env())
    assert settings.names() == ["U1111111", "U2222222", "DU3333333"]
    assert settings.base_url == DEFAULT_BASE_URL
    second = settings.account("U2222222")
    assert (second.slot, second.query_id, second.token.reveal()) == (2, "102", f"secret-token-2-{TOKEN}")
    assert (second.token_variable, second.query_id_variable) == ("IBKR_FLEX_TOKEN_2", "IBKR_FLEX_QUERY_ID_2")
    for shown in (repr(settings), str(settings), repr(second), str(second.token), f"{second.token}"):
        assert TOKEN not in shown and "***" in shown


def test_settings_errors_name_variables_never_values():
    env = full_env()
    del env["IBKR_FLEX_QUERY_ID_2"]
    with pytest.raises(ConfigurationError) as raised:
        FlexAccountSettings.from_env(env)
    assert "IBKR_FLEX_QUERY_ID_2" in str(raised.value) and TOKEN not in str(raised.value)
    assert FlexAccountSettings.from_env({}).accounts == ()
    with pytest.raises(ConfigurationError, match="no Flex Web Service account is configured"):
        FlexAccountSettings.from_env({}).account()
    settings = FlexAccountSettings.from_env(full_env())
    with pytest.raises(ConfigurationError, match="U9 is not configured .configured: U1111111, U2222222, DU3333333"):
        settings.account("U9")
    with pytest.raises(ConfigurationError, match="name one"):
        settings.account()
    only = {k: v for k, v in full_env().items() if k.endswith("_3")}
    assert FlexAccountSettings.from_env(only).account().account == "DU3333333"


def test_base_url_from_the_environment_and_its_safety_rules():
    assert resolve_base_url(env={}) == DEFAULT_BASE_URL
    assert resolve_base_url(env={"IBKR_FLEX_BASE_URL": "http://127.0.0.1:8123/AccountManagement/FlexWebService/"}) == (
        "http://127.0.0.1:8123/AccountManagement/FlexWebService")
    assert resolve_base_url("https://example.test/Flex", env={"IBKR_FLEX_BASE_URL": "http://localhost:1/x"}) == (
        "https://example.test/Flex")
    with pytest.raises(ConfigurationError, match="must use https"):
        resolve_base_url(env={"IBKR_FLEX_BASE_URL": "http://flex.example.com/FlexWebService"})
    with pytest.raises(ConfigurationError, match="http.s. URL"):
        resolve_base_url(env={"IBKR_FLEX_BASE_URL": "ftp://127.0.0.1/x"})


def test_missing_credentials_fail_before_any_request():
    with pytest.raises(FlexTokenError, match="no Flex token is configured"):
        fetch_statement("  ", "1001", account=ACCOUNT, base_url="http://127.0.0.1:9/x")
    with pytest.raises(FlexQueryIdError, match="no Flex query id"):
        fetch_statement(TOKEN, "", account=ACCOUNT, base_url="http://127.0.0.1:9/x")
