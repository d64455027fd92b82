"""Where the broker is and how the project connects to it.

| setting                   | environment variable            | default                 |
|---------------------------|---------------------------------|-------------------------|
| host                      | ``IBKR_HOST``                   | ``127.0.0.1``           |
| port                      | ``IBKR_PORT``                   | ``7497`` (paper; live is 7496) |
| client id                 | ``IBKR_CLIENT_ID``              | ``1`` (see the table)   |
| account                   | ``IBKR_ACCOUNT``                | empty: the only managed account |
| request timeout, seconds  | ``IBKR_TIMEOUT``                | ``15``                  |
| market data type          | ``IBKR_MARKET_DATA_TYPE``       | ``1`` live (3 delayed, 4 delayed frozen) |
| message pacing, per second| ``IBKR_MAX_MESSAGES_PER_SECOND``| ``45`` (TWS allows 50; 0 = no pacing, for the simulator) |

Client ids: every IBKR API connection needs its own id; two connections with one id knock
each other off. Each command family has a fixed id so they can run side by side:

| id | commands |
|----|----------|
| 1  | the default: stage, execute, trade, scan, monitor, quote, option-chain, reconcile ... (``IBKR_CLIENT_ID`` changes it) |
| 2  | watch |
| 3  | reserved: TWS's Master API client id; refused |
| 4  | nt-watch |
| 5  | nt |
| 6  | snapshot-positions (the 16:00 position snapshots, beside a monitor on 1) |
| 9  | emergency-stop (connects while another command holds 1) |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from trading_pipeline.errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
PAPER_PORT = 7497
LIVE_PORT = 7496
DEFAULT_CLIENT_ID = 1
DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_MAX_MESSAGES_PER_SECOND = 45
RESERVED_CLIENT_ID = 3

# Commands whose client id is fixed (they run beside the default commands).
COMMAND_CLIENT_IDS: Mapping[str, int] = {
    "watch": 2, "nt-watch": 4, "nt": 5, "snapshot-positions": 6, "emergency-stop": 9,
}

RESERVED_MESSAGE = (
    "client id 3 is reserved: it is the TWS Master API client id, which allows one connection "
    "only and blocks until released; use 1 (default), 2 (watch), 4 (nt-watch) or 5 (nt)"
)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How the adapter re-establishes a lost connection: ``attempts`` tries, waiting
    ``first_delay`` seconds before the first and multiplying the wait by ``factor`` up to
    ``max_delay``. Bounded on purpose: a TWS that stays away (nightly restart, 2FA prompt)
    turns into a clear error instead of a silent loop."""

    attempts: int = 5
    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.first_delay < 0 or self.factor < 1 or self.max_delay < 0:
            raise ConfigurationError("reconnect policy: attempts and delays must be >= 0, factor >= 1")

    def delays(self) -> list[float]:
        """The wait before each attempt."""
        waits, delay = [], self.first_delay
        for _ in range(self.attempts):
            waits.append(min(delay, self.max_delay))
            delay *= self.factor
        return waits


def check_client_id(client_id: int) -> int:
    """The client id, or ConfigurationError when it is reserved or out of range."""
    if client_id == RESERVED_CLIENT_ID:
        raise ConfigurationError(RESERVED_MESSAGE)
    if not 0 <= client_id <= 2_147_483_647:
        raise ConfigurationError(f"client id must be between 0 and 2147483647, not {client_id}")
    return client_id


@dataclass(frozen=True)
class BrokerSettings:
    host: str = DEFAULT_HOST
    port: int = PAPER_PORT
    client_id: int = DEFAULT_CLIENT_ID
    account: str = ""
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    market_data_type: int = 1
    max_messages_per_second: int = DEFAULT_MAX_MESSAGES_PER_SECOND
    reconnect: ReconnectPolicy = ReconnectPolicy()

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ConfigurationError("the broker host is empty")
        if not 1 <= self.port <= 65535:
            raise ConfigurationError(f"the broker port must be between 1 and 65535, not {self.port}")
        check_client_id(self.client_id)
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigurationError(f"the broker timeout must be a positive number of seconds, not {self.timeout}")
        if self.market_data_type not in (1, 2, 3, 4):
            raise ConfigurationError("market data type must be 1 (live), 2 (frozen), 3 (delayed) "
                                     f"or 4 (delayed frozen), not {self.market_data_type}")
        if self.max_messages_per_second < 0:
            raise ConfigurationError("messages per second must be 0 (no pacing) or more")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, command: str | None = None) -> "BrokerSettings":
        """Settings from the environment; ``command`` picks its fixed client id (watch: 2,
        nt-watch: 4, nt: 5), which ``IBKR_CLIENT_ID`` does not override."""
        env = os.environ if env is None else env
        client_id = COMMAND_CLIENT_IDS.get(command or "")
        if client_id is None:
            client_id = _int(env, "IBKR_CLIENT_ID", DEFAULT_CLIENT_ID)
        return cls(
            host=env.get("IBKR_HOST", "").strip() or DEFAULT_HOST,
            port=_int(env, "IBKR_PORT", PAPER_PORT),
            client_id=_checked_client_id(client_id, "IBKR_CLIENT_ID" if command not in COMMAND_CLIENT_IDS else None),
            account=env.get("IBKR_ACCOUNT", "").strip(),
            timeout=_float(env, "IBKR_TIMEOUT", DEFAULT_TIMEOUT_SECONDS),
            market_data_type=_int(env, "IBKR_MARKET_DATA_TYPE", 1),
            max_messages_per_second=_int(env, "IBKR_MAX_MESSAGES_PER_SECOND", DEFAULT_MAX_MESSAGES_PER_SECOND),
        )

    def with_overrides(self, *, host: str | None = None, port: int | None = None,
                       client_id: int | None = None, account: str | None = None,
                       timeout: float | None = None) -> "BrokerSettings":
        """A copy with the given values (e.g. a command's --host/--port/--client-id)."""
        changes = {name: value for name, value in (
            ("host", host), ("port", port), ("client_id", client_id), ("account", account),
            ("timeout", timeout)) if value is not None}
        return replace(self, **changes)

    @property
    def is_live_port(self) -> bool:
        return self.port == LIVE_PORT

    def describe(self) -> str:
        """For logs and messages: where, which client id; the account masked."""
        account = f", account {mask_account(self.account)}" if self.account else ""
        return f"{self.host}:{self.port} client id {self.client_id}{account}"


def mask_account(account: str) -> str:
    """DU1234567 -> DU***567: enough to tell accounts apart in a log, not to name one."""
    if len(account) <= 5:
        return "***"
    return f"{account[:2]}***{account[-3:]}"


def _checked_client_id(client_id: int, variable: str | None) -> int:
    try:
        return check_client_id(client_id)
    except ConfigurationError as problem:
        if variable:
            raise ConfigurationError(f"{variable}={client_id}: {problem}") from None
        raise


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {text!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {text!r}")
    return value
