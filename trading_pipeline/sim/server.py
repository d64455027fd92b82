"""The TWS stand-in's TCP server, and ``SimGateway`` to run it from tests and the CLI.

One ``SimBroker`` serves every connection. The server runs on one asyncio event loop; every
broker call happens on that loop's thread (the broker is not thread-safe). A driver task
advances the broker to ``clock.now()`` every ``driver_interval`` seconds of real time while
the clock runs (speed > 0), and after each step the sessions push the ticks that changed.
With a stepped clock (speed 0) nothing moves until someone advances it, typically a test
through :meth:`SimGateway.call`::

    gateway = SimGateway(SimBroker(seed=7, start=...))
    host, port = gateway.start()            # background thread, free port
    gateway.call(gateway.broker.advance, timedelta(minutes=5))
    gateway.stop()

``call`` runs the function on the loop thread, then lets every session flush held order
updates and push changed market data, and returns the function's result (or raises its
exception) in the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, TypeVar

from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.session import Session, SessionHub

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DRIVER_INTERVAL_SECONDS = 0.05


class _Connection(asyncio.Protocol):
    """Glue between an asyncio transport and a Session."""

    def __init__(self, hub: SessionHub):
        self._hub = hub
        self._session: Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")

        def write(data: bytes) -> None:
            # A client that hung up gets nothing more: asyncio would log a warning for
            # every write to a lost connection until the session hears of the loss.
            if not transport.is_closing():
                transport.write(data)

        self._session = Session(self._hub, write=write, close=transport.close,
                                peer=f"{peer[0]}:{peer[1]}" if peer else "")
        log.info("connection from %s", self._session.peer)

    def data_received(self, data: bytes) -> None:
        assert self._session is not None
        self._session.receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            log.info("client %s (%s) disconnected", self._session.client_id, self._session.peer)
            self._session.connection_lost()


class SimServer:
    """The asyncio server: listening socket, sessions hub, and the clock driver."""

    def __init__(self, broker: SimBroker, *, driver_interval: float = DRIVER_INTERVAL_SECONDS):
        self.broker = broker
        self.hub = SessionHub(broker)
        self._driver_interval = driver_interval
        self._server: asyncio.AbstractServer | None = None
        self._driver: asyncio.Task | None = None

    async def start(self, host: str = DEFAULT_HOST, port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self.hub), host, port)
        self._driver = loop.create_task(self._drive())
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            try:
                await self._driver
            except asyncio.CancelledError:
                pass
            self._driver = None
        if self._server is not None:
            self._server.close()
            self.hub.close()
            await self._server.wait_closed()
            self._server = None

    def step(self) -> None:
        """One driver step: catch the broker up with a running clock, then push changes."""
        if self.broker.clock.speed > 0:
            self.broker.advance_to(self.broker.clock.now())
        self.hub.after_change()

    async def _drive(self) -> None:
        while True:
            await asyncio.sleep(self._driver_interval)
            try:
                self.step()
            except Exception:
                # The market must keep running for the other clients; the log says why.
                log.exception("simulator driver step failed")


class SimGateway:
    """Runs a :class:`SimServer` on its own event loop in a background thread."""

    def __init__(self, broker: SimBroker, *, host: str = DEFAULT_HOST, port: int = 0,
                 driver_interval: float = DRIVER_INTERVAL_SECONDS):
        self.broker = broker
        self._host = host
        self._port = port
        self._server = SimServer(broker, driver_interval=driver_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    @property
    def host(self) -> str:
        assert self.address is not None, "the gateway is not started"
        return self.address[0]

    @property
    def port(self) -> int:
        assert self.address is not None, "the gateway is not started"
        return self.address[1]

    @property
    def hub(self) -> SessionHub:
        return self._server.hub

    def start(self) -> tuple[str, int]:
        """Start serving in a background thread; return (host, port) once it listens."""
        if self._thread is not None:
            raise RuntimeError("the gateway is already started")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.address = loop.run_until_complete(self._server.start(self._host, self._port))
            except BaseException as error:     # noqa: BLE001 (handed to the starting thread)
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._server.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="sim-gateway", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        log.info("simulated TWS listening on %s:%s", *self.address)
        return self.address

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        if self._thread is None:
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the server's thread; then sessions push what changed."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the gateway is not started")

        async def run() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                self._server.hub.after_change()

        if threading.current_thread() is self._thread:
            raise RuntimeError("SimGateway.call from the gateway's own thread would deadlock")
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    def connected_client_ids(self) -> list[int]:
        return self.call(self._server.hub.client_ids)

    def __enter__(self) -> "SimGateway":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
