"""A loopback Flex Web Service in front of simulated accounts: IBKR's two-step protocol.

IBKR serves Flex statements in two steps, both HTTP GET, every answer HTTP 200 with XML:

1. ``<base>/SendRequest?t=TOKEN&q=QUERY_ID&v=3`` asks for a statement::

       <FlexStatementResponse timestamp="..."><Status>Success</Status>
       <ReferenceCode>4000000001</ReferenceCode><Url><base>/GetStatement</Url></FlexStatementResponse>

2. ``<Url>?t=TOKEN&q=REFERENCE_CODE&v=3`` fetches it: the statement XML (``<FlexQueryResponse>``)
   once generated; before that ``<Status>Warn</Status>`` with ErrorCode 1019 "Statement
   generation in progress. Please try again shortly." (here: for the first ``pending_polls``
   polls of each reference).

Failures answer ``<Status>Fail</Status><ErrorCode>..</ErrorCode><ErrorMessage>..</ErrorMessage>``:
1012 "Token has expired." (a token configured as expired), 1015 "Token is invalid." (an
unknown token), 1014 "Query is invalid." (a query id the token does not own), 1017
"Reference code is invalid." (GetStatement with an unknown reference, or one of another
token), 1020 "Invalid request or unable to validate request." (a parameter missing).

Each served account is a SimBroker (its account id) with a token and its query ids, each query
either an Activity or a Trade Confirmation statement covering the last ``days`` calendar days
up to and including the simulated today (a simulated statement is ready at once, so unlike
IBKR's Activity statements it includes today). The statement is made when SendRequest is
answered, from the broker's executions at that instant.

The broker is not thread-safe: when it runs inside a SimGateway, pass
``run_on_broker=gateway.call`` so the executions are read on the gateway's thread.

The service never writes a token to its log: the request log shows the path without the
query string.

    gateway = FlexServiceGateway([ServedAccount(broker, token="t0k3n", queries=(
        ServedQuery("1001", StatementKind.ACTIVITY), ServedQuery("1002", StatementKind.TRADE_CONFIRMATION)))])
    gateway.start()            # background thread, free port
    gateway.base_url           # http://127.0.0.1:PORT/AccountManagement/FlexWebService
    gateway.stop()
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.clock import Clock
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.flex import FlexOptions, StatementKind, statement
from trading_pipeline.sim.types import Execution

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_PATH = "/AccountManagement/FlexWebService"
DEFAULT_HOST = "127.0.0.1"
FIRST_REFERENCE_CODE = 4_000_000_001
# Statements kept for GetStatement; the oldest are dropped past this many (a long demo run).
KEPT_STATEMENTS = 256
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")

# IBKR's error codes and texts.
TOKEN_EXPIRED = (1012, "Token has expired.")
QUERY_INVALID = (1014, "Query is invalid.")
TOKEN_INVALID = (1015, "Token is invalid.")
REFERENCE_INVALID = (1017, "Reference code is invalid.")
GENERATION_IN_PROGRESS = (1019, "Statement generation in progress. Please try again shortly.")
INVALID_REQUEST = (1020, "Invalid request or unable to validate request.")


@dataclass(frozen=True)
class ServedQuery:
    """One Flex query of an account: its id, which statement, and how far back it reaches."""

    query_id: str
    kind: StatementKind
    days: int = 365
    options: FlexOptions = FlexOptions()    # name, date format, an injected cancel-and-correct ...

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"a Flex query covers at least one day, not {self.days}")


@dataclass(frozen=True)
class ServedAccount:
    """A simulated account as the service knows it: its broker, its token, its queries."""

    broker: SimBroker
    token: str = field(repr=False)
    queries: tuple[ServedQuery, ...]
    token_expired: bool = False

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("a served account needs a token")

    @property
    def account_id(self) -> str:
        return self.broker.account_id

    def query(self, query_id: str) -> ServedQuery | None:
        return next((q for q in self.queries if q.query_id == query_id), None)


@dataclass
class _Pending:
    token: str
    body: bytes
    polls_left: int


class FlexServiceError(Exception):
    """A request the service answers with an IBKR error."""

    def __init__(self, error: tuple[int, str]):
        super().__init__(f"{error[0]}: {error[1]}")
        self.code, self.message = error


def _default_runner(fn: Callable[[], T]) -> T:
    return fn()


class FlexService:
    """The protocol without the sockets: ``send_request`` and ``get_statement`` return XML bytes."""

    def __init__(
        self,
        accounts: Sequence[ServedAccount],
        *,
        pending_polls: int = 1,
        run_on_broker: Callable[[Callable[[], Any]], Any] | None = None,
        clock: Clock | None = None,
    ):
        tokens = [a.token for a in accounts]
        if len(set(tokens)) != len(tokens):
            raise ValueError("each served account needs its own token")
        if pending_polls < 0:
            raise ValueError("pending_polls must be 0 or more")
        if not accounts and clock is None:
            raise ValueError("a Flex service needs at least one account (or a clock)")
        self._accounts = {a.token: a for a in accounts}
        # The responses' timestamp label: simulated time, the first account's clock by default.
        self._clock = clock or accounts[0].broker.clock
        self.pending_polls = pending_polls
        self._run_on_broker = run_on_broker or _default_runner
        self._references = itertools.count(FIRST_REFERENCE_CODE)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.get_statement_url = SERVICE_PATH + "/GetStatement"   # replaced by the gateway with a full URL

    def _account(self, token: str) -> ServedAccount:
        account = self._accounts.get(token)
        if account is None:
            raise FlexServiceError(TOKEN_INVALID)
        if account.token_expired:
            raise FlexServiceError(TOKEN_EXPIRED)
        return account

    def send_request(self, token: str, query_id: str) -> bytes:
        """Step 1: make the statement now and hand back its reference code."""
        try:
            if not token or not query_id:
                raise FlexServiceError(INVALID_REQUEST)
            account = self._account(token)
            query = account.query(query_id)
            if query is None:
                raise FlexServiceError(QUERY_INVALID)
            executions, now = self._run_on_broker(lambda: (account.broker.executions(), account.broker.clock.now()))
            body = self._statement(account, query, executions, now)
        except FlexServiceError as error:
            return self._response("Fail", error=(error.code, error.message))
        with self._lock:
            reference = str(next(self._references))
            self._pending[reference] = _Pending(token, body, self.pending_polls)
            while len(self._pending) > KEPT_STATEMENTS:
                del self._pending[next(iter(self._pending))]
        log.info("Flex query %s of account %s: statement %s made (%d bytes)", query_id, account.account_id,
                 reference, len(body))
        return self._response("Success", reference=reference)

    def get_statement(self, token: str, reference: str) -> bytes:
        """Step 2: 1019 while 'generating', then the statement."""
        try:
            if not token or not reference:
                raise FlexServiceError(INVALID_REQUEST)
            self._account(token)
            with self._lock:
                pending = self._pending.get(reference)
                if pending is None or pending.token != token:
                    raise FlexServiceError(REFERENCE_INVALID)
                if pending.polls_left > 0:
                    pending.polls_left -= 1
                    return self._response("Warn", error=GENERATION_IN_PROGRESS)
                return pending.body
        except FlexServiceError as error:
            return self._response("Fail", error=(error.code, error.message))

    @staticmethod
    def _statement(account: ServedAccount, query: ServedQuery, executions: list[Execution], now: datetime) -> bytes:
        today = now.astimezone(NEW_YORK).date()
        options = query.options
        period = options.period if options.period != FlexOptions.period else f"Last{query.days}CalendarDays"
        options = replace(options, period=period, from_date=today - timedelta(days=query.days - 1), to_date=today)
        return statement(query.kind, executions, account_id=account.account_id, generated_at=now, options=options)

    def _response(self, status: str, *, reference: str = "", error: tuple[int, str] | None = None) -> bytes:
        now = self._clock.now().astimezone(NEW_YORK)
        # IBKR's label, e.g. '04 December, 2026 06:30 PM EST' (month names not from the locale).
        stamp = f"{now:%d} {_MONTH_NAMES[now.month - 1]}, {now:%Y} {now.hour % 12 or 12:02d}:{now:%M} " \
                f"{'AM' if now.hour < 12 else 'PM'} {now.tzname() or ''}"
        lines = [f"<FlexStatementResponse timestamp='{stamp}'>", f"<Status>{status}</Status>"]
        if reference:
            lines.append(f"<ReferenceCode>{reference}</ReferenceCode>")
            lines.append(f"<Url>{escape(self.get_statement_url)}</Url>")
        if error is not None:
            lines.append(f"<ErrorCode>{error[0]}</ErrorCode>")
            lines.append(f"<ErrorMessage>{escape(error[1])}</ErrorMessage>")
        lines.append("</FlexStatementResponse>")
        return "\n".join(lines).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: "_FlexHTTPServer"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        parameters = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        token = parameters.get("t", "")
        query = parameters.get("q", "")
        service = self.server.service
        if parts.path == SERVICE_PATH + "/SendRequest":
            body = service.send_request(token, query)
        elif parts.path == SERVICE_PATH + "/GetStatement":
            body = service.get_statement(token, query)
        else:
            self._send(404, b"not found", "text/plain")
            return
        self._send(200, body, "text/xml; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line holds the token: log the path alone.
        log.info("Flex Web Service: %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        # http.server's own messages (errors) may quote the request line: keep them out.
        log.warning("Flex Web Service: request from %s could not be served", self.client_address[0])


class _FlexHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: FlexService):
        super().__init__(address, _Handler)
        self.service = service


class FlexServiceGateway:
    """Runs a :class:`FlexService` over HTTP on a loopback port in a background thread."""

    def __init__(
        self,
        accounts: Sequence[ServedAccount],
        *,
        pending_polls: int = 1,
        run_on_broker: Callable[[Callable[[], Any]], Any] | None = None,
        clock: Clock | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
    ):
        self.accounts = tuple(accounts)
        self.service = FlexService(accounts, pending_polls=pending_polls, run_on_broker=run_on_broker, clock=clock)
        self._host = host
        self._port = port
        self._server: _FlexHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What IBKR_FLEX_BASE_URL should be for the project's client to use this service."""
        if self._server is None:
            raise RuntimeError("the Flex service is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{SERVICE_PATH}"

    def start(self) -> str:
        """Listen (a free port unless one was given) and serve in a thread; return the base URL."""
        if self._server is not None:
            raise RuntimeError("the Flex service is already started")
        self._server = _FlexHTTPServer((self._host, self._port), self.service)
        self.service.get_statement_url = self.base_url + "/GetStatement"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sim-flex-service", daemon=True)
        self._thread.start()
        log.info("simulated Flex Web Service at %s", self.base_url)
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def client_env(self) -> dict[str, str]:
        """The environment the project's client needs: base URL and, per account (1, 2, 3),
        IBKR_FLEX_TOKEN_n / IBKR_FLEX_QUERY_ID_n (the first query) / IBKR_FLEX_ACCOUNT_n."""
        env = {"IBKR_FLEX_BASE_URL": self.base_url}
        for slot, account in enumerate(self.accounts[:3], start=1):
            env[f"IBKR_FLEX_TOKEN_{slot}"] = account.token
            env[f"IBKR_FLEX_ACCOUNT_{slot}"] = account.account_id
            if account.queries:
                env[f"IBKR_FLEX_QUERY_ID_{slot}"] = account.queries[0].query_id
        return env

    def __enter__(self) -> "FlexServiceGateway":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


__all__ = [
    "FlexService",
    "FlexServiceGateway",
    "ServedAccount",
    "ServedQuery",
    "SERVICE_PATH",
]
