"""Worker processes of ``sinkd serve --workers N``: more SMTP listeners on the same port.

Owns starting the extra SMTP processes, handing them connections, the pipe to each and what
travels on it: records to commit up, "committed" down; routing and chaos changes down (so
``PUT /api/v1/routing`` and ``PUT /api/v1/chaos`` reach every process); a scrape's question
for each worker's own measurements down and its answer up (``GET /metrics``); and stopping
them.

The primary accepts every SMTP connection and passes it to the next worker in turn over a Unix
socket (SCM_RIGHTS), so long-lived sessions are spread evenly (``SO_REUSEPORT`` hashing put 12
of 19 on one worker of two). A worker is an SMTP server with the profiles and the engine whose
store is a ``PipeStore``: it sends its records straight to the store's writer process (a
socket the primary obtained from it), which commits every process's records, so group commit
spans all of them and no two processes wait on SQLite's file lock (whose busy handler sleeps:
1, 2, 5 ... ms). A worker answers 250 only once the writer has committed, and writes its own
verdict log lines; the writer tells the primary of the records for its live event stream.

Why processes: the filter core and aiosmtpd are Python, so one process uses one core; on a
machine with more, the listeners multiply throughput (bench/RESULTS.md). It holds no policy,
serves no HTTP (the primary does) and never picks the number of workers (``runtime`` does).
It never imports ``runtime``: ``runtime`` starts the pool and hands it the server class each
worker runs (``ServerFactory``), which the spawned process imports when it unpickles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

from sinkd.core.chaos import Chaos, ChaosConfig
from sinkd.errors import ConfigError
from sinkd.server import logs
from sinkd.server.logs import LogFormat
from sinkd.services.metrics import Metrics, Sample
from sinkd.services.settings import Settings
from sinkd.store.writer import WriterClient

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from pathlib import Path

    from sinkd.store import MessageRecord, VerdictSink
    from sinkd.store.writer import WriterProcess

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a worker imports sinkd and compiles the profiles: ~1 s, more when loaded
ACCEPT_RETRY_DELAY = 1.0  # after accept() failed for want of descriptors
STOP_TIMEOUT = 30.0  # open sessions finish their transaction before a worker ends
# spawn, not fork: the primary runs an event loop and threads (the store's writer), which a
# forked child must not inherit.
_CONTEXT = multiprocessing.get_context("spawn")


class WorkerServer(Protocol):
    """What a worker process runs: the server ``runtime`` assembles (``Sinkd``), seen from
    here only through what a worker calls on it. ``runtime`` hands its class to the pool, so
    this module never imports ``runtime`` (which imports this one to start the workers)."""

    chaos: Chaos | None
    metrics: Metrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def adopt(self, connection: socket.socket) -> None: ...

    def set_routing(
        self, profile: str, routes: Mapping[str, str], *, forward: bool = True
    ) -> None: ...


class ServerFactory(Protocol):
    """Builds a worker's server: ``Sinkd(settings, listener=..., store=...)``. Pickled by
    reference into the spawned process, which imports it there."""

    def __call__(
        self, settings: Settings, *, listener: tuple[int, int], store: VerdictSink | None
    ) -> WorkerServer: ...


# Messages on a worker's pipe: (kind, payload).
# up:   ("ready", None), ("failed", text), ("metrics", [Sample]) (the answer to "metrics")
# down: ("routing", (profile, routes)), ("chaos", ChaosConfig), ("writer", socket) (a new
#       writer process replaced one that died), ("metrics", None) (a scrape asks for the
#       worker's own measurements), ("stop", None)


class WorkerPool:
    """The extra SMTP processes of one server: ``await start()``, ``broadcast()``, ``stop()``.

    ``writer`` is the store's writer process; each worker gets a connection of its own to it.
    ``server`` builds the server each worker runs (``runtime.Sinkd``).
    """

    def __init__(
        self,
        settings: Settings,
        count: int,
        log_setup: tuple[LogFormat, int],
        writer: WriterProcess,
        server: ServerFactory,
    ) -> None:
        self.settings = settings
        self.server = server
        self.count = count  # SMTP processes 1..count; the primary (0) serves no SMTP
        self.log_setup = log_setup
        self.writer = writer
        self._workers: list[_Worker] = []
        self._next = 0  # the worker the next connection goes to
        self._asked: dict[int, asyncio.Future[list[Sample]]] = {}  # index -> metrics asked

    async def start(self) -> None:
        """Start every worker and return once each listens; ``ConfigError`` names one that
        could not (the others are stopped again)."""
        loop = asyncio.get_running_loop()
        total = self.count + 1
        for index in range(1, total):
            ours, theirs = _CONTEXT.Pipe()
            # Accepted connections travel here; SEQPACKET keeps one descriptor per message.
            handover, their_handover = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                store_socket = self.writer.attach()
            except OSError as exc:
                raise ConfigError(f"worker {index}: no connection to the store: {exc}") from exc
            process = _CONTEXT.Process(
                target=worker_main,
                args=(
                    self.server,
                    self.settings,
                    index,
                    total,
                    theirs,
                    their_handover,
                    store_socket,
                    self.log_setup,
                ),
                name=f"sinkd-worker-{index}",
                daemon=True,  # never outlives the primary's interpreter
            )
            process.start()
            theirs.close()
            their_handover.close()
            store_socket.close()
            handover.setblocking(False)
            worker = _Worker(index, process, ours, loop.create_future(), handover)
            self._workers.append(worker)
            loop.add_reader(ours.fileno(), self._receive, worker)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(w.ready for w in self._workers))
        except BaseException:
            await self.stop()
            raise

    def accept_from(self, listener: socket.socket) -> None:
        """Accept on ``listener`` (non-blocking) from now on, handing connections to workers."""
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a burst at a time; the loop comes back for more
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and the like: the connection stays queued and the socket readable, so
                # pause accepting for a second instead of spinning (as asyncio's servers do).
                log.warning("cannot accept an SMTP connection: %s; retrying in 1 s", exc)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY_DELAY, self._resume, listener)
                return
            try:
                self._hand_over(connection)
            finally:
                connection.close()  # the worker holds its own descriptor now

    def _resume(self, listener: socket.socket) -> None:
        if listener.fileno() != -1:  # not closed by a stop meanwhile
            self.accept_from(listener)

    def _hand_over(self, connection: socket.socket) -> None:
        count = len(self._workers)
        for step in range(count):
            worker = self._workers[(self._next + step) % count]
            if not worker.alive:
                continue
            try:
                socket.send_fds(worker.handover, [b"c"], [connection.fileno()])
            except OSError:  # its queue is full or it is gone: the next one
                continue
            self._next = (self._next + step + 1) % count
            return
        log.error("no worker could take an SMTP connection; closed it")

    def serving(self) -> bool:
        """Every worker is alive and listening. When one dies, the kernel hands its share of
        new connections to the others, but the server is degraded and ``/readyz`` says so."""
        # Asked only once start() has returned, so every worker said "ready" then.
        return bool(self._workers) and all(w.alive and w.process.is_alive() for w in self._workers)

    def broadcast(self, kind: str, payload: Any) -> None:
        for worker in self._workers:
            if worker.alive:
                try:
                    worker.conn.send((kind, payload))
                except OSError as exc:
                    log.error("worker %d: cannot send %s: %s", worker.index, kind, exc)

    async def metrics(self, within: float) -> dict[int, list[Sample]]:
        """Each live worker's own measurements (``Metrics.snapshot``), asked for now; a worker
        that does not answer ``within`` seconds is left out of this scrape (logged).
        Scrapes at the same time share one question."""
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            if worker.alive and worker.index not in self._asked:
                self._asked[worker.index] = loop.create_future()
                try:
                    worker.conn.send(("metrics", None))
                except OSError as exc:
                    self._asked.pop(worker.index).cancel()
                    log.error("worker %d: cannot ask for metrics: %s", worker.index, exc)
        asked = dict(self._asked)
        if asked:
            await asyncio.wait([asyncio.shield(f) for f in asked.values()], timeout=within)
        answers: dict[int, list[Sample]] = {}
        for index, future in asked.items():
            if future.done() and not future.cancelled():
                answers[index] = future.result()
            else:
                log.warning("worker %d sent no metrics within %g s", index, within)
        return answers

    def set_routing(self, profile: str, routes: dict[str, str]) -> None:
        self.broadcast("routing", (profile, routes))

    def set_chaos(self, config: ChaosConfig) -> None:
        self.broadcast("chaos", config)

    def reattach(self) -> None:
        """A new writer process replaced one that died: give every worker a connection to it
        (until then their saves fail with 451, as the primary's own would have)."""
        for worker in self._workers:
            if not worker.alive:
                continue
            try:
                store_socket = self.writer.attach()
            except OSError as exc:
                log.error("worker %d: no connection to the new store writer: %s", worker.index, exc)
                continue
            try:
                worker.conn.send(("writer", store_socket))
            except OSError as exc:
                log.error("worker %d: cannot send the store connection: %s", worker.index, exc)
            finally:
                store_socket.close()

    async def stop(self) -> None:
        """Ask every worker to finish its open sessions and end; kill those that do not."""
        for worker in self._workers:
            worker.stopping = True
        self.broadcast("stop", None)
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            await loop.run_in_executor(None, worker.process.join, STOP_TIMEOUT)
            if worker.process.is_alive():
                log.error("worker %d did not stop in %.0f s; killed", worker.index, STOP_TIMEOUT)
                worker.process.kill()
                await loop.run_in_executor(None, worker.process.join, 5.0)
            self._close(worker)
        self._workers.clear()

    def _receive(self, worker: _Worker) -> None:
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._close(worker)
            if not worker.ready.done():
                worker.ready.set_exception(
                    ConfigError(f"worker {worker.index} ended before it listened")
                )
            elif not worker.stopping:
                code = worker.process.exitcode
                log.error("worker %d ended unexpectedly (exit code %s)", worker.index, code)
            return
        if kind == "metrics":
            asked = self._asked.pop(worker.index, None)
            if asked is not None and not asked.done():
                asked.set_result(payload)
        elif kind == "ready" and not worker.ready.done():
            worker.ready.set_result(None)
        elif kind == "failed" and not worker.ready.done():
            worker.ready.set_exception(ConfigError(f"worker {worker.index}: {payload}"))

    def _close(self, worker: _Worker) -> None:
        asked = self._asked.pop(worker.index, None)
        if asked is not None:
            asked.cancel()  # no answer will come: a scrape waiting for it goes on without
        if worker.alive:
            worker.alive = False
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            worker.conn.close()
            worker.handover.close()


@dataclasses.dataclass(eq=False)
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: asyncio.Future[None]
    handover: socket.socket  # accepted connections go to the worker through it
    alive: bool = True
    stopping: bool = False


# --- inside a worker process ---------------------------------------------------------------


def worker_main(
    server: ServerFactory,
    settings: Settings,
    index: int,
    total: int,
    conn: Connection,
    handover: socket.socket,
    store_socket: socket.socket,
    log_setup: tuple[LogFormat, int],
) -> None:
    """A worker process: one more SMTP listener on the primary's port until told to stop, or
    until the primary goes away (its end of the pipe closes)."""
    log_format, level = log_setup
    logs.setup(log_format, level)
    # The primary decides when to stop (it forwards SIGINT/SIGTERM as "stop"); a terminal's
    # Ctrl-C reaches the whole process group, and must not cut a worker's sessions short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server, settings, index, total, conn, handover, store_socket))


async def _serve(
    server: ServerFactory,
    settings: Settings,
    index: int,
    total: int,
    conn: Connection,
    handover: socket.socket,
    store_socket: socket.socket,
) -> None:
    store = PipeStore(settings.location.path or settings.location.shown)
    store.client.bind(store_socket)
    app = server(settings, listener=(index, total), store=store)
    try:
        await app.start()
    except Exception as exc:
        _send(conn, ("failed", str(exc) or type(exc).__name__))
        return
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def control() -> None:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the primary is gone: finish and end
            kind, payload = "stop", None
        if kind == "writer":
            store.client.bind(payload)
        elif kind == "stop":
            loop.remove_reader(conn.fileno())
            if not stopped.done():
                stopped.set_result(None)
        elif kind == "routing":
            profile, routes = payload
            app.set_routing(profile, routes, forward=False)
        elif kind == "chaos" and app.chaos is not None:
            app.chaos.update(worker_chaos(payload, index))
        elif kind == "metrics":
            _send(conn, ("metrics", app.metrics.snapshot()))

    adopting: set[asyncio.Task[None]] = set()

    def take() -> None:
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(handover, 1, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                fds = []
            if not fds:  # the primary closed its end (or sent nothing usable): no more
                loop.remove_reader(handover.fileno())
                return
            for fd in fds:
                task = loop.create_task(app.adopt(socket.socket(fileno=fd)))
                adopting.add(task)
                task.add_done_callback(adopting.discard)

    handover.setblocking(False)
    loop.add_reader(handover.fileno(), take)
    loop.add_reader(conn.fileno(), control)
    # Logged before "ready": the primary's readiness line then follows it on stderr.
    log.info("worker %d of %d listening (pid %d)", index, total - 1, os.getpid())
    _send(conn, ("ready", None))
    try:
        await stopped
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(handover.fileno())
        handover.close()
        await app.stop()
        await store.client.close()
        conn.close()


class PipeStore:
    """The store as a worker sees it: only a ``VerdictSink``. ``save`` sends the record to the
    store's writer process and returns once it is committed; reads and administration are the
    primary's (a worker serves no HTTP)."""

    def __init__(self, path: Path | str) -> None:
        self.client = WriterClient(path)  # a file, or a PostgreSQL URL as shown (no password)

    @property
    def writable(self) -> bool:
        """Whether the writer process can be reached (until the primary sends a new one) and
        its store too (a PostgreSQL outage)."""
        return self.client.writable

    async def save(self, record: MessageRecord) -> None:
        # As the server's own saves: sent as data, the writer process makes the JSON text and
        # the columns (each worker is an SMTP loop, busier than the writer, which mostly waits
        # for fsync); a record that is not plain data is prepared here (submit_record).
        await self.client.submit_record(record)

    async def close(self) -> None:
        """Nothing to release here: the worker closes its writer connection when it ends."""


def worker_chaos(config: ChaosConfig, index: int) -> ChaosConfig:
    """Listener ``index``'s chaos: the same triggers, its own sequence (seed + index), so the
    processes do not fail the same events in lockstep."""
    if config.seed is None:
        return config
    return ChaosConfig(config.triggers, config.seed + index)


def _send(conn: Connection, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except OSError as exc:  # the primary is gone; the records are stored all the same
        log.warning("cannot reach the primary process: %s", exc)
