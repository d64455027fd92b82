"""The CLI's terminal, lent to an execution run that runs in the same process.

``tp execute-two-tier`` executes the job in process (so the run is in the Dagster instance)
and answers the hybrid prompt at the terminal. Run config cannot carry a function, so the
command registers its prompt and its printer here under a random token and passes the token
in the run config (``prompt_token``); the op takes them back. A run launched from the UI has
no token and waits for an approval in the ledger instead.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from trading_pipeline.trading.two_tier import Decide


@dataclass(frozen=True)
class Terminal:
    decide: Decide | None
    say: Callable[[str], None] | None


_LOCK = threading.Lock()
_TERMINALS: dict[str, Terminal] = {}


def lend_terminal(*, decide: Decide | None, say: Callable[[str], None] | None) -> str:
    """Register the terminal; the token to put in the run config."""
    token = secrets.token_hex(8)
    with _LOCK:
        _TERMINALS[token] = Terminal(decide, say)
    return token


def terminal_for(token: str) -> Terminal | None:
    with _LOCK:
        return _TERMINALS.get(token) if token else None


def return_terminal(token: str) -> None:
    with _LOCK:
        _TERMINALS.pop(token, None)
