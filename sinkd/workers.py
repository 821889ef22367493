"""Worker processes of ``sinkd serve --workers N``: more SMTP listeners on the same port.

Owns starting the extra SMTP processes, the pipe to each and what travels on it: records to
commit up, "committed" down; routing and chaos changes down (so ``PUT /api/v1/routing`` and
``PUT /api/v1/chaos`` reach every process); and stopping them. Each worker is an SMTP server
with the profiles and the engine, bound with ``SO_REUSEPORT`` to the primary's port (the kernel
spreads incoming connections over the listeners), whose store is a ``PipeStore``: the primary
commits every process's records with its one writer, so group commit spans all of them and no
two processes wait on SQLite's file lock (whose busy handler sleeps: 1, 2, 5 ... ms). A worker
still answers 250 only once the primary has committed the message.

Why processes: the filter core and aiosmtpd are Python, so one process uses one core; on a
machine with more, the listeners multiply throughput (bench/RESULTS.md). It holds no policy,
serves no HTTP (the primary does) and never picks the number of workers (``runtime`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from sinkd.chaos import ChaosConfig
from sinkd.errors import ConfigError, StoreError
from sinkd.logs import LogFormat

if TYPE_CHECKING:
    from datetime import datetime
    from multiprocessing.process import BaseProcess

    from sinkd.runtime import Settings
    from sinkd.store import MessageRecord, Query, Store, StoredMessage

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a worker imports sinkd and compiles the profiles: ~1 s, more when loaded
STOP_TIMEOUT = 30.0  # open sessions finish their transaction before a worker ends
# spawn, not fork: the primary runs an event loop and threads (the store's writer), which a
# forked child must not inherit.
_CONTEXT = multiprocessing.get_context("spawn")

# Messages on a worker's pipe: (kind, payload).
# up:   ("ready", None), ("failed", text), ("save", (n, MessageRecord))
# down: ("saved", (n, error text or None)), ("routing", (profile, routes)),
#       ("chaos", ChaosConfig), ("stop", None)


class WorkerPool:
    """The extra SMTP processes of one server: ``await start()``, ``broadcast()``, ``stop()``.

    ``store`` commits the workers' records; ``on_commit`` is told of them after their
    commit and before the worker is (verdict log, live events), in the primary's event loop.
    """

    def __init__(
        self,
        settings: Settings,
        count: int,
        log_setup: tuple[LogFormat, int],
        store: Store,
        on_commit: Callable[[Sequence[MessageRecord]], None],
    ) -> None:
        self.settings = settings
        self.count = count  # SMTP processes 1..count; the primary (0) serves no SMTP
        self.log_setup = log_setup
        self.store = store
        self.on_commit = on_commit
        self._workers: list[_Worker] = []
        self._saving: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def start(self) -> None:
        """Start every worker and return once each listens; ``ConfigError`` names one that
        could not (the others are stopped again)."""
        loop = asyncio.get_running_loop()
        total = self.count + 1
        for index in range(1, total):
            ours, theirs = _CONTEXT.Pipe()
            process = _CONTEXT.Process(
                target=worker_main,
                args=(self.settings, index, total, theirs, self.log_setup),
                name=f"sinkd-worker-{index}",
                daemon=True,  # never outlives the primary's interpreter
            )
            process.start()
            theirs.close()
            worker = _Worker(index, process, ours, loop.create_future())
            self._workers.append(worker)
            loop.add_reader(ours.fileno(), self._receive, worker)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(w.ready for w in self._workers))
        except BaseException:
            await self.stop()
            raise

    def serving(self) -> bool:
        """Every worker is alive and listening. When one dies, the kernel hands its share of
        new connections to the others, but the server is degraded and ``/readyz`` says so."""
        return bool(self._workers) and all(
            w.alive
            and w.ready.done()
            and not w.ready.cancelled()
            and w.ready.exception() is None
            and w.process.is_alive()
            for w in self._workers
        )

    def broadcast(self, kind: str, payload: Any) -> None:
        for worker in self._workers:
            if worker.alive:
                try:
                    worker.conn.send((kind, payload))
                except OSError as exc:
                    log.error("worker %d: cannot send %s: %s", worker.index, kind, exc)

    def set_routing(self, profile: str, routes: dict[str, str]) -> None:
        self.broadcast("routing", (profile, routes))

    def set_chaos(self, config: ChaosConfig) -> None:
        self.broadcast("chaos", config)

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
        if kind == "save":
            task = asyncio.ensure_future(self._save(worker, *payload))
            self._saving.add(task)
            task.add_done_callback(self._saving.discard)
        elif kind == "ready" and not worker.ready.done():
            worker.ready.set_result(None)
        elif kind == "failed" and not worker.ready.done():
            worker.ready.set_exception(ConfigError(f"worker {worker.index}: {payload}"))

    async def _save(self, worker: _Worker, number: int, record: MessageRecord) -> None:
        error: str | None = None
        try:
            await self.store.save(record)
        except Exception as exc:  # the worker answers 451 4.3.5, as the primary itself would
            log.exception("could not store verdict %s from worker %d", record.id, worker.index)
            error = str(exc) or type(exc).__name__
        else:
            try:
                self.on_commit([record])
            except Exception:  # a listener's failure never costs the client its reply
                log.exception("commit listener failed")
        if worker.alive:
            try:
                worker.conn.send(("saved", (number, error)))
            except OSError as exc:
                log.error("worker %d: cannot confirm %s: %s", worker.index, record.id, exc)

    def _close(self, worker: _Worker) -> None:
        if worker.alive:
            worker.alive = False
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            worker.conn.close()


@dataclasses.dataclass(eq=False)
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: asyncio.Future[None]
    alive: bool = True
    stopping: bool = False


# --- inside a worker process ---------------------------------------------------------------


def worker_main(
    settings: Settings, index: int, total: int, conn: Connection, log_setup: tuple[LogFormat, int]
) -> None:
    """A worker process: one more SMTP listener on the primary's port until told to stop, or
    until the primary goes away (its end of the pipe closes)."""
    from sinkd.logs import setup

    log_format, level = log_setup
    setup(log_format, level)
    # The primary decides when to stop (it forwards SIGINT/SIGTERM as "stop"); a terminal's
    # Ctrl-C reaches the whole process group, and must not cut a worker's sessions short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, index, total, conn))


async def _serve(settings: Settings, index: int, total: int, conn: Connection) -> None:
    from sinkd.runtime import Sinkd

    store = PipeStore(conn)
    app = Sinkd(settings, listener=(index, total), store=store)
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
            store.primary_gone()
        if kind == "saved":
            store.settled(*payload)
        elif kind == "stop":
            loop.remove_reader(conn.fileno())
            if not stopped.done():
                stopped.set_result(None)
        elif kind == "routing":
            profile, routes = payload
            app.set_routing(profile, routes, forward=False)
        elif kind == "chaos" and app.chaos is not None:
            app.chaos.update(worker_chaos(payload, index))

    loop.add_reader(conn.fileno(), control)
    # Logged before "ready": the primary's readiness line then follows it on stderr.
    log.info("worker %d of %d listening (pid %d)", index, total - 1, os.getpid())
    _send(conn, ("ready", None))
    try:
        await stopped
    finally:
        await app.stop()
        conn.close()


class PipeStore:
    """The store as a worker sees it: ``save`` sends the record to the primary and returns
    once the primary has committed it. Nothing else is served here (no HTTP in a worker)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._numbers = itertools.count()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._gone = False

    async def save(self, record: MessageRecord) -> None:
        if self._gone:
            raise StoreError("the primary process is gone")
        number = next(self._numbers)
        done = self._pending[number] = asyncio.get_running_loop().create_future()
        try:
            self._conn.send(("save", (number, record)))
        except OSError as exc:
            del self._pending[number]
            raise StoreError(f"cannot reach the primary process: {exc}") from None
        await done

    def settled(self, number: int, error: str | None) -> None:
        done = self._pending.pop(number, None)
        if done is None or done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(StoreError(error))

    def primary_gone(self) -> None:
        """The pipe closed: whatever was not confirmed was not committed (no 250 for it)."""
        self._gone = True
        for done in self._pending.values():
            if not done.done():
                done.set_exception(StoreError("the primary process is gone"))
        self._pending.clear()

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        raise StoreError("a worker process reads nothing")

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        raise StoreError("a worker process reads nothing")

    async def count(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        raise StoreError("a worker process reads nothing")

    async def release(self, message_id: str, released_at: datetime) -> bool:
        raise StoreError("a worker process changes nothing")

    async def delete(self, message_id: str) -> None:
        raise StoreError("a worker process changes nothing")

    async def clear(self) -> int:
        raise StoreError("a worker process changes nothing")

    async def close(self) -> None:
        """Nothing to release: the primary owns the store."""


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
