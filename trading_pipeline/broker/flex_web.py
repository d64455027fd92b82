"""The project's client of IBKR's Flex Web Service: fetch a Flex statement by token and query id.

IBKR's protocol has two steps (version 3, HTTP GET, XML answers):

1. ``<base>/SendRequest?t=TOKEN&q=QUERY_ID&v=3`` -> ``<FlexStatementResponse>`` with
   ``<Status>Success</Status>``, a ``<ReferenceCode>`` and the ``<Url>`` to fetch it from;
   or ``<Status>Fail</Status>`` with an ``<ErrorCode>`` and ``<ErrorMessage>``.
2. ``<Url>?t=TOKEN&q=REFERENCE_CODE&v=3`` -> the statement (``<FlexQueryResponse>``), or while
   IBKR is still making it ``<Status>Warn</Status>`` with error 1019 "Statement generation in
   progress": :func:`fetch_statement` polls every ``poll_interval`` seconds until ``timeout``.

Errors are :class:`FlexWebServiceError` (a project error) naming the account: a bad or expired
token (1015 / 1012) is a :class:`FlexTokenError`, a bad query id (1014) a
:class:`FlexQueryIdError`, a statement still not ready at the deadline a
:class:`FlexTimeoutError`. The token never appears in a log record, an error or an exception
(not even in a chained one: network errors are re-raised without their cause, whose URL holds
the token), and reprs mask it.

Settings (the seeds' names), up to three accounts:

| variable               | what |
|------------------------|------|
| ``IBKR_FLEX_TOKEN_n``    | the Flex Web Service token (Client Portal: Settings > Flex Web Service) |
| ``IBKR_FLEX_QUERY_ID_n`` | the Flex query's id (an Activity or a Trade Confirmation query) |
| ``IBKR_FLEX_ACCOUNT_n``  | the account it reports (U1234567, DU1234567) |
| ``IBKR_FLEX_BASE_URL``   | the service's base URL; default IBKR's public endpoint. The simulator's loopback service sets it (plain http is accepted only for a loopback host) |

with n = 1, 2, 3.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import os
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from trading_pipeline.core.clock import Clock, SystemClock
from trading_pipeline.errors import ConfigurationError, TradingPipelineError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService"
BASE_URL_VARIABLE = "IBKR_FLEX_BASE_URL"
API_VERSION = "3"
MAX_ACCOUNTS = 3
DEFAULT_POLL_INTERVAL_SECONDS = 5.0
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
# IBKR refuses requests without a User-Agent.
USER_AGENT = "trading_pipeline-flex-client/1"
MASK = "***"

TOKEN_EXPIRED = 1012
QUERY_INVALID = 1014
TOKEN_INVALID = 1015
GENERATION_IN_PROGRESS = 1019
# Codes that mean "not now, try again shortly": statement incomplete or data not ready
# (1004-1008), server busy (1009), too many requests (1018), in progress (1019), not
# retrievable at this time (1021). Polled until the deadline like 1019.
TRY_AGAIN_CODES = frozenset({1004, 1005, 1006, 1007, 1008, 1009, 1018, 1019, 1021})


# ----- errors -----


class FlexWebServiceError(TradingPipelineError):
    """The Flex Web Service did not deliver a statement. Names the account, never the token."""

    def __init__(self, account: str, reason: str, *, code: int | None = None):
        self.account = account
        self.reason = reason
        self.code = code
        suffix = f" (IBKR error {code})" if code is not None else ""
        super().__init__(f"Flex Web Service, account {account}: {reason}{suffix}")


class FlexTokenError(FlexWebServiceError):
    """The token is invalid (1015) or has expired (1012)."""


class FlexQueryIdError(FlexWebServiceError):
    """The query id is unknown to the token's user (1014)."""


class FlexTimeoutError(FlexWebServiceError):
    """The statement was still being generated when the time allowed ran out."""


# ----- settings -----


class FlexToken:
    """A Flex Web Service token. Its text comes out only through :meth:`reveal`; ``str`` and
    ``repr`` show ``***`` so that a token put in a message or a log by mistake stays hidden."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"FlexToken('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlexToken) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("FlexToken", self._value))


@dataclass(frozen=True)
class FlexAccount:
    """One configured account: its slot (1..3), name, query id and token (masked in reprs)."""

    slot: int
    account: str
    query_id: str
    token: FlexToken

    @property
    def token_variable(self) -> str:
        return f"IBKR_FLEX_TOKEN_{self.slot}"

    @property
    def query_id_variable(self) -> str:
        return f"IBKR_FLEX_QUERY_ID_{self.slot}"


@dataclass(frozen=True)
class FlexAccountSettings:
    """The Flex Web Service accounts (up to three) and the service's base URL."""

    accounts: tuple[FlexAccount, ...] = ()
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "FlexAccountSettings":
        """Read IBKR_FLEX_{TOKEN,QUERY_ID,ACCOUNT}_{1,2,3} and IBKR_FLEX_BASE_URL.

        A slot with none of its three variables is unused; a slot with some but not all is a
        ConfigurationError naming the missing variables (never a value).
        """
        env = os.environ if env is None else env
        accounts = []
        for slot in range(1, MAX_ACCOUNTS + 1):
            names = {
                "token": f"IBKR_FLEX_TOKEN_{slot}",
                "query_id": f"IBKR_FLEX_QUERY_ID_{slot}",
                "account": f"IBKR_FLEX_ACCOUNT_{slot}",
            }
            values = {key: env.get(name, "").strip() for key, name in names.items()}
            if not any(values.values()):
                continue
            missing = [names[key] for key, value in values.items() if not value]
            if missing:
                raise ConfigurationError(
                    f"Flex account {slot} is incomplete: set {' and '.join(missing)} "
                    f"(each account needs {', '.join(names.values())})"
                )
            accounts.append(FlexAccount(slot, values["account"], values["query_id"], FlexToken(values["token"])))
        seen: set[str] = set()
        for account in accounts:
            if account.account in seen:
                raise ConfigurationError(f"Flex account {account.account} is configured twice (IBKR_FLEX_ACCOUNT_n)")
            seen.add(account.account)
        return cls(tuple(accounts), resolve_base_url(env=env))

    def names(self) -> list[str]:
        return [a.account for a in self.accounts]

    def account(self, name: str | None = None) -> FlexAccount:
        """The account called ``name``; without a name, the only one configured."""
        if not self.accounts:
            raise ConfigurationError(
                "no Flex Web Service account is configured: set IBKR_FLEX_TOKEN_1, IBKR_FLEX_QUERY_ID_1 "
                "and IBKR_FLEX_ACCOUNT_1 (up to 3 accounts)"
            )
        if name is None or not name.strip():
            if len(self.accounts) == 1:
                return self.accounts[0]
            raise ConfigurationError(f"several Flex accounts are configured ({', '.join(self.names())}): name one")
        wanted = name.strip()
        for account in self.accounts:
            if account.account == wanted:
                return account
        raise ConfigurationError(
            f"Flex account {wanted} is not configured (configured: {', '.join(self.names())})"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The service's base URL: ``explicit``, else IBKR_FLEX_BASE_URL, else IBKR's endpoint.

    It must be https; plain http only for a loopback host (the simulator), since the token
    travels in the query string.
    """
    env = os.environ if env is None else env
    url = (explicit or env.get(BASE_URL_VARIABLE, "") or DEFAULT_BASE_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{BASE_URL_VARIABLE} must be an http(s) URL, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"{BASE_URL_VARIABLE} must use https (plain http is accepted only for a loopback simulator): {url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{BASE_URL_VARIABLE} must not carry a query or fragment: {url!r}")
    return url


# ----- the protocol -----


@dataclass(frozen=True)
class _Answer:
    """A FlexStatementResponse: its status, and the reference or the error."""

    status: str
    code: int | None
    message: str
    reference: str
    url: str


class _Exchange:
    """One fetch: the account's label, the secret, the deadline and the HTTP calls."""

    def __init__(self, *, label: str, token: str, query_id: str, base: str, clock: Clock,
                 sleep: Callable[[float], None], poll_interval: float, timeout: float, request_timeout: float,
                 token_variable: str, query_id_variable: str):
        self.label = label
        self._token = token
        self.query_id = query_id
        self.base = base
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.request_timeout = request_timeout
        self.deadline = clock.now() + timedelta(seconds=timeout)
        self.token_variable = token_variable
        self.query_id_variable = query_id_variable

    def _hide(self, text: str) -> str:
        return text.replace(self._token, MASK) if self._token else text

    def get(self, url: str, reference_or_query: str) -> bytes:
        query = urlencode({"t": self._token, "q": reference_or_query, "v": API_VERSION})
        request = urllib.request.Request(f"{url}?{query}", headers={"User-Agent": USER_AGENT})
        problem = ""
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            problem = f"the Flex Web Service at {url} answered HTTP {error.code}"
        except urllib.error.URLError as error:
            problem = f"could not reach the Flex Web Service at {url}: {error.reason}"
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            problem = f"could not reach the Flex Web Service at {url}: {type(error).__name__}: {error}"
        # Raised outside the except block: the caught error (its URL holds the token) is
        # then no part of the raised one, not even as its context.
        raise FlexWebServiceError(self.label, self._hide(problem))

    def answer(self, body: bytes) -> _Answer:
        problem = ""
        try:
            root = ET.fromstring(body)
        except ET.ParseError as error:
            root = None
            problem = f"the Flex Web Service's answer is not XML ({error})"
        if root is None or root.tag != "FlexStatementResponse":
            raise FlexWebServiceError(
                self.label, self._hide(problem or f"unexpected answer from the Flex Web Service: <{root.tag}>")
            )

        def text(tag: str) -> str:
            element = root.find(tag)
            return (element.text or "").strip() if element is not None else ""

        code_text = text("ErrorCode")
        try:
            code = int(code_text) if code_text else None
        except ValueError:
            code = None
        return _Answer(
            status=text("Status"),
            code=code,
            message=self._hide(text("ErrorMessage")),
            reference=text("ReferenceCode"),
            url=text("Url"),
        )

    def failure(self, answer: _Answer) -> FlexWebServiceError:
        said = answer.message or answer.status or "no reason given"
        token_setting = f" ({self.token_variable})" if self.token_variable else ""
        query_setting = f" ({self.query_id_variable})" if self.query_id_variable else ""
        if answer.code == TOKEN_EXPIRED:
            return FlexTokenError(
                self.label,
                f"the Flex token{token_setting} has expired: make a new one in Client Portal "
                "(Settings > Flex Web Service) and configure it",
                code=answer.code,
            )
        if answer.code == TOKEN_INVALID:
            return FlexTokenError(
                self.label,
                f"the Flex token{token_setting} is invalid: compare it with Client Portal "
                "(Settings > Flex Web Service)",
                code=answer.code,
            )
        if answer.code == QUERY_INVALID:
            return FlexQueryIdError(
                self.label,
                f"Flex query {self.query_id}{query_setting} is invalid: check that the query exists in "
                "Client Portal and belongs to the token's user",
                code=answer.code,
            )
        return FlexWebServiceError(self.label, f"the Flex Web Service refused the request: {said}", code=answer.code)

    def wait_or_give_up(self, answer: _Answer, polls: int) -> None:
        """Sleep before the next try, or raise FlexTimeoutError when the deadline has passed."""
        remaining = (self.deadline - self.clock.now()).total_seconds()
        if remaining <= 0:
            raise FlexTimeoutError(
                self.label,
                f"the statement of Flex query {self.query_id} was not ready after {self.timeout:g} s "
                f"and {polls} tries; IBKR said: {answer.message or answer.status}",
                code=answer.code,
            )
        log.debug("Flex account %s: not ready (IBKR error %s), trying again in %.1f s", self.label, answer.code,
                  min(self.poll_interval, remaining))
        self.sleep(min(self.poll_interval, remaining))

    def statement_url(self, url: str) -> str:
        """Where to fetch the statement: the answer's Url when it is on the base URL's site."""
        fallback = f"{self.base}/GetStatement"
        if not url:
            return fallback
        given, base = urlsplit(url), urlsplit(self.base)
        same_site = (
            given.scheme == base.scheme
            and given.hostname is not None
            and base.hostname is not None
            and (given.hostname == base.hostname or given.hostname.split(".")[-2:] == base.hostname.split(".")[-2:])
            and given.port == base.port
        )
        if not same_site or given.query:
            # The token is sent to that URL: never to another site than the one configured.
            log.warning("Flex account %s: ignoring the statement URL %s (not on %s)", self.label,
                        f"{given.scheme}://{given.hostname}", base.hostname)
            return fallback
        return url


def _is_statement(body: bytes) -> bool:
    """Whether the body is a Flex statement (FlexQueryResponse), judged from its first tag only:
    a statement may be hundreds of megabytes."""
    head = body[:4096].lstrip(b"\xef\xbb\xbf").lstrip()
    while head.startswith(b"<?") or head.startswith(b"<!--"):
        end = head.find(b"?>" if head.startswith(b"<?") else b"-->")
        if end < 0:
            return False
        head = head[end + (2 if head.startswith(b"<?") else 3):].lstrip()
    return head.startswith(b"<FlexQueryResponse")


def fetch_statement(
    token: str | FlexToken,
    query_id: str,
    *,
    account: str = "",
    base_url: str | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
    env: Mapping[str, str] | None = None,
    token_variable: str = "",
    query_id_variable: str = "",
) -> bytes:
    """Fetch one Flex statement: SendRequest, then GetStatement until it is ready; its XML bytes.

    ``account`` names the account in messages (the query id does when it is empty).
    ``base_url`` defaults to IBKR_FLEX_BASE_URL, else IBKR's endpoint. ``clock`` and ``sleep``
    measure and spend the waiting (tests pass a FixedClock and a sleep that advances it).
    """
    secret = token.reveal() if isinstance(token, FlexToken) else str(token).strip()
    label = account or f"(query {query_id})"
    if not secret:
        raise FlexTokenError(label, "no Flex token is configured" + (f" ({token_variable})" if token_variable else ""))
    if not str(query_id).strip():
        raise FlexQueryIdError(
            label, "no Flex query id is configured" + (f" ({query_id_variable})" if query_id_variable else "")
        )
    if not (poll_interval >= 0 and timeout > 0 and request_timeout > 0):
        raise ConfigurationError("poll_interval must be >= 0 and the timeouts > 0 seconds")
    exchange = _Exchange(
        label=label,
        token=secret,
        query_id=str(query_id).strip(),
        base=resolve_base_url(base_url, env=env),
        clock=clock or SystemClock(),
        sleep=sleep,
        poll_interval=poll_interval,
        timeout=timeout,
        request_timeout=request_timeout,
        token_variable=token_variable,
        query_id_variable=query_id_variable,
    )

    tries = 0
    while True:
        tries += 1
        answer = exchange.answer(exchange.get(f"{exchange.base}/SendRequest", exchange.query_id))
        if answer.status == "Success" and answer.reference:
            break
        if answer.code not in TRY_AGAIN_CODES:
            raise exchange.failure(answer)
        exchange.wait_or_give_up(answer, tries)
    log.info("Flex account %s: statement of query %s requested, reference %s", label, exchange.query_id,
             answer.reference)

    url = exchange.statement_url(answer.url)
    polls = 0
    while True:
        polls += 1
        body = exchange.get(url, answer.reference)
        if _is_statement(body):
            log.info("Flex account %s: statement %s received after %d poll(s), %d bytes", label, answer.reference,
                     polls, len(body))
            return body
        pending = exchange.answer(body)
        if pending.code not in TRY_AGAIN_CODES:
            raise exchange.failure(pending)
        exchange.wait_or_give_up(pending, polls)


def fetch_account_statement(
    settings: FlexAccountSettings, account: str | None = None, **kwargs
) -> bytes:
    """Fetch the statement of a configured account (see :func:`fetch_statement` for ``kwargs``)."""
    configured = settings.account(account)
    return fetch_statement(
        configured.token,
        configured.query_id,
        account=configured.account,
        base_url=kwargs.pop("base_url", None) or settings.base_url,
        token_variable=configured.token_variable,
        query_id_variable=configured.query_id_variable,
        **kwargs,
    )


__all__ = [
    "DEFAULT_BASE_URL",
    "FlexAccount",
    "FlexAccountSettings",
    "FlexQueryIdError",
    "FlexTimeoutError",
    "FlexToken",
    "FlexTokenError",
    "FlexWebServiceError",
    "fetch_account_statement",
    "fetch_statement",
    "resolve_base_url",
]
