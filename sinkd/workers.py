"""Worker processes of ``sinkd serve --workers N``: more SMTP listeners on the same port.

Owns starting the extra SMTP processes, the pipe to each and what travels on it: committed
records up (so the primary's live event stream shows every verdict), routing and chaos changes
down (so ``PUT /api/v1/routing`` and ``PUT /api/v1/chaos`` reach every process), and stopping
them. Each worker is a whole SMTP server (profiles, engine, its own store connection and group
commit writer) bound with ``SO_REUSEPORT`` to the primary's port: the kernel spreads incoming
connections over the listeners, and SQLite's WAL lets every process commit to the one store.

Why processes: the filter core and aiosmtpd are Python, so one process uses one core; on a
machine with more, the listeners multiply throughput (bench/RESULTS.md). It holds no policy,
serves no HTTP (the primary does) and never picks the number of workers (``runtime`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from sinkd.chaos import ChaosConfig
from sinkd.errors import ConfigError
from sinkd.logs import LogFormat

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from sinkd.runtime import Settings

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a worker imports sinkd and compiles the profiles: ~1 s, more when loaded
STOP_TIMEOUT = 30.0  # open sessions finish their transaction before a worker ends
# spawn, not fork: the primary runs an event loop and threads (the store's writer), which a
# forked child must not inherit.
_CONTEXT = multiprocessing.get_context("spawn")

# Messages on a worker's pipe: (kind, payload).
# up:   ("ready", None), ("failed", text), ("records", [record JSON, ...])
# down: ("routing", (profile, routes)), ("chaos", ChaosConfig), ("stop", None)


class WorkerPool:
    """The extra SMTP processes of one server: ``await start()``, ``broadcast()``, ``stop()``.

    ``on_records`` gets the JSON of every record a worker committed (after its commit), in
    the primary's event loop.
    """

    def __init__(
        self,
        settings: Settings,
        count: int,
        log_setup: tuple[LogFormat, int],
        on_records: Callable[[Sequence[dict[str, Any]]], None],
    ) -> None:
        self.settings = settings
        self.count = count  # extra processes: the primary is listener 0 of count + 1
        self.log_setup = log_setup
        self.on_records = on_records
        self._workers: list[_Worker] = []

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
        if kind == "records":
            self.on_records(payload)
        elif kind == "ready" and not worker.ready.done():
            worker.ready.set_result(None)
        elif kind == "failed" and not worker.ready.done():
            worker.ready.set_exception(ConfigError(f"worker {worker.index}: {payload}"))

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

    app = Sinkd(settings, listener=(index, total))
    app.on_records = lambda records: _send(conn, ("records", [r.to_json() for r in records]))
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
        if kind == "stop":
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
