"""Contract: ``BrokerSettings`` from the environment, with the seeds' names and defaults.

- IBKR_HOST 127.0.0.1, IBKR_PORT 7497 (paper), IBKR_CLIENT_ID 1, IBKR_ACCOUNT empty,
  IBKR_TIMEOUT 15 s when unset; each variable overrides its default.
- The client id table: 1 by default (IBKR_CLIENT_ID changes it), watch 2, nt-watch 4, nt 5
  whatever IBKR_CLIENT_ID says; 3 (TWS's master API client id) is refused with a
  ConfigurationError that says why, from the environment, a command option or the code.
- Malformed values name their variable; command-line overrides replace single fields.
- The reconnect policy's waits grow by its factor up to its ceiling.
- Logged descriptions mask the account id.
"""

from __future__ import annotations

import pytest

from trading_pipeline.broker.settings import (
    BrokerSettings,
    ReconnectPolicy,
    check_client_id,
    mask_account,
)
from trading_pipeline.errors import ConfigurationError


def test_defaults_when_nothing_is_set():
    settings = BrokerSettings.from_env({})
    assert (settings.host, settings.port, settings.client_id, settings.account) == ("127.0.0.1", 7497, 1, "")
    assert settings.timeout == 15.0
    assert settings.market_data_type == 1
    assert settings.max_messages_per_second == 45
    assert not settings.is_live_port


def test_every_variable_overrides_its_default():
    settings = BrokerSettings.from_env({
        "IBKR_HOST": "10.0.0.5", "IBKR_PORT": "7496", "IBKR_CLIENT_ID": "7",
        "IBKR_ACCOUNT": " U7654321 ", "IBKR_TIMEOUT": "2.5", "IBKR_MARKET_DATA_TYPE": "3",
        "IBKR_MAX_MESSAGES_PER_SECOND": "0",
    })
    assert (settings.host, settings.port, settings.client_id) == ("10.0.0.5", 7496, 7)
    assert settings.account == "U7654321"
    assert settings.timeout == 2.5
    assert settings.market_data_type == 3
    assert settings.max_messages_per_second == 0
    assert settings.is_live_port


@pytest.mark.parametrize(("command", "client_id"), [
    (None, 1), ("quote", 1), ("watch", 2), ("nt-watch", 4), ("nt", 5),
])
def test_client_id_table(command, client_id):
    assert BrokerSettings.from_env({}, command=command).client_id == client_id


def test_fixed_command_ids_ignore_the_default_override():
    env = {"IBKR_CLIENT_ID": "9"}
    assert BrokerSettings.from_env(env).client_id == 9
    assert BrokerSettings.from_env(env, command="watch").client_id == 2
    assert BrokerSettings.from_env(env, command="nt").client_id == 5


def test_client_id_3_is_refused_from_the_environment():
    with pytest.raises(ConfigurationError) as refused:
        BrokerSettings.from_env({"IBKR_CLIENT_ID": "3"})
    message = str(refused.value)
    assert message.startswith("IBKR_CLIENT_ID=3: client id 3 is reserved")
    assert "Master API client id" in message


def test_client_id_3_is_refused_as_an_override_and_in_code():
    settings = BrokerSettings.from_env({})
    with pytest.raises(ConfigurationError, match="client id 3 is reserved"):
        settings.with_overrides(client_id=3)
    with pytest.raises(ConfigurationError, match="client id 3 is reserved"):
        BrokerSettings(client_id=3)
    with pytest.raises(ConfigurationError, match="client id 3 is reserved"):
        check_client_id(3)
    assert check_client_id(0) == 0
    with pytest.raises(ConfigurationError, match="between 0 and"):
        check_client_id(-1)


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("IBKR_PORT", "paper", "IBKR_PORT must be a whole number, not 'paper'"),
    ("IBKR_CLIENT_ID", "1.5", "IBKR_CLIENT_ID must be a whole number"),
    ("IBKR_TIMEOUT", "soon", "IBKR_TIMEOUT must be a number of seconds"),
    ("IBKR_TIMEOUT", "0", "IBKR_TIMEOUT must be a positive number of seconds"),
    ("IBKR_TIMEOUT", "nan", "IBKR_TIMEOUT must be a positive number of seconds"),
])
def test_malformed_values_name_their_variable(variable, value, words):
    with pytest.raises(ConfigurationError, match=words):
        BrokerSettings.from_env({variable: value})


@pytest.mark.parametrize(("field", "value", "words"), [
    ("port", 0, "port must be between 1 and 65535"),
    ("port", 70000, "port must be between 1 and 65535"),
    ("host", " ", "host is empty"),
    ("market_data_type", 5, "market data type must be 1"),
    ("max_messages_per_second", -1, "0 \\(no pacing\\) or more"),
])
def test_out_of_range_values_are_refused(field, value, words):
    with pytest.raises(ConfigurationError, match=words):
        BrokerSettings(**{field: value})


def test_command_line_overrides_replace_single_fields():
    base = BrokerSettings.from_env({"IBKR_ACCOUNT": "DU1234567", "IBKR_TIMEOUT": "4"})
    changed = base.with_overrides(host="192.168.1.9", port=4002, client_id=2)
    assert (changed.host, changed.port, changed.client_id) == ("192.168.1.9", 4002, 2)
    assert (changed.account, changed.timeout) == ("DU1234567", 4.0)
    assert base.with_overrides() == base


def test_reconnect_waits_grow_to_the_ceiling():
    assert ReconnectPolicy().delays() == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert ReconnectPolicy(attempts=4, first_delay=1.0, factor=3.0, max_delay=5.0).delays() == [1.0, 3.0, 5.0, 5.0]
    assert ReconnectPolicy(attempts=0).delays() == []
    with pytest.raises(ConfigurationError):
        ReconnectPolicy(factor=0.5)


def test_descriptions_mask_the_account():
    settings = BrokerSettings(account="DU1234567")
    assert settings.describe() == "127.0.0.1:7497 client id 1, account DU***567"
    assert "1234" not in settings.describe()
    assert mask_account("U123") == "***"
    assert BrokerSettings().describe() == "127.0.0.1:7497 client id 1"
