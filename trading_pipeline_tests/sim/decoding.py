"""Decode server messages with the real client libraries' decoders, without sockets.

``decode(library, fields)`` feeds one message to ``ib_async.decoder.Decoder`` or
``ib_insync.decoder.Decoder`` at server version 176 with a wrapper that records every call,
and fails when the decoder logs an error (the libraries swallow decode exceptions and only
log them, which is exactly how a wrong field count goes unnoticed).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import timezone
from types import SimpleNamespace
from typing import Any

import pytest

LIBRARIES = ("ib_async", "ib_insync")


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]


@dataclass
class RecordingWrapper:
    """Stands in for the client's Wrapper: records each callback the decoder makes."""

    calls: list[Call] = field(default_factory=list)
    ib: Any = field(default_factory=lambda: SimpleNamespace(TimezoneTWS=None))
    defaultTimezone: Any = timezone.utc

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args):
            self.calls.append(Call(name, args))

        return record


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def library(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed")


def decode(library_name: str, fields: list[str]) -> list[Call]:
    """The wrapper calls the library's decoder makes for one message; fails on decode errors."""
    decoder_module = importlib.import_module(f"{library(library_name).__name__}.decoder")
    wrapper = RecordingWrapper()
    decoder = decoder_module.Decoder(wrapper, 176)
    collector = _ErrorCollector()
    decoder.logger.addHandler(collector)
    try:
        decoder.interpret(list(fields))
    finally:
        decoder.logger.removeHandler(collector)
    if collector.records:
        record = collector.records[0]
        detail = record.exc_text or (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        pytest.fail(f"{library_name} could not decode {fields!r}: {record.getMessage()}\n{detail}")
    return wrapper.calls


def decode_one(library_name: str, fields: list[str], method: str) -> tuple[Any, ...]:
    """The arguments of the single wrapper call ``method`` the message produced."""
    calls = decode(library_name, fields)
    assert [call.method for call in calls] == [method], calls
    return calls[0].args


def encode_request(library_name: str, method: str, *args) -> list[str]:
    """The fields the library's own Client sends for ``client.method(*args)`` at version 176."""
    client_module = importlib.import_module(f"{library(library_name).__name__}.client")
    client = client_module.Client(RecordingWrapper())
    client._serverVersion = 176
    client.connState = client_module.Client.CONNECTED
    sent: list[str] = []
    client.sendMsg = sent.append
    getattr(client, method)(*args)
    assert len(sent) == 1, sent
    fields = sent[0].split("\0")
    assert fields.pop() == "", "a client message ends with NUL"
    return fields


def api(library_name: str):
    """The library's top-level module (Contract, Order, Stock, Option, TagValue ...)."""
    return library(library_name)
