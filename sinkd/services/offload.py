"""Judging large messages in worker processes, so that one big message never stalls the others.

Owns the ``JudgePool``: a ``ProcessPoolExecutor`` (``spawn`` context: a server's process has a
running event loop and threads, which must never be forked) started when the first message
that needs it arrives, and what each of its workers keeps for the life of the process: the
profiles compiled once by path, one DNS resolver per set of zone files (built from the same
options as the server's), one spamd service and one event loop for the filters that await
(DNS, spamd). A ``Task`` carries everything one message's DATA stage needs as plain values
(the raw bytes, ``sinkd.core.engine.DataGroup``s, each profile's file and the zone files in
force), so a routing change (``PUT /routing``) reaches the workers with the next message.

The DATA stage reads no delivery state (greylisting and rate limits act at MAIL and RCPT), so
a worker gives exactly the verdicts the server's loop would (``judge_message`` is the one
judgement). A worker that dies (a crash in C code, an OOM kill) costs its message a
``BackendError`` (the handler answers 451 4.3.0, nothing is stored, the client retries); the
pool is then built again and the event is logged.

It decides no policy and never stores, logs a verdict or replies; it must not be imported by
``sinkd.core`` (the core sees only its ``Offload`` port, ``sinkd.core.engine.Offload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sinkd.core.engine import DataGroup, Pipeline, compile_profile, judge_message
from sinkd.core.model import Verdict
from sinkd.core.ports import Lookups, Resolver
from sinkd.core.profiles import ProfileSet
from sinkd.errors import BackendError
from sinkd.lookups.dns import DnsMode, build_resolver
from sinkd.lookups.spamd import SpamdService
from sinkd.services.settings import MAX_JUDGE_WORKERS

log = logging.getLogger(__name__)

# A message this large goes to its worker through a file (``Task.spool``), not in the pickle.
# The pool's feeder thread pickles each task in one call that holds the interpreter lock: for
# a 20 MiB message ~60 ms during which the event loop could not run (py-spy --gil). Written
# to a file from a thread, the copy runs in the kernel without the lock.
SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What every worker is started with: where profiles are found (a profile's ``extends``
    names others by id) and the lookups' options, as the server's ``Judge`` has them."""

    profiles_dirs: tuple[Path, ...]
    dns_mode: DnsMode = "offline"
    dns_server: tuple[str, int] | None = None
    dns_timeout: float = 5.0
    spamd: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Task:
    """One message's DATA stage, as a worker judges it: ``profiles`` maps each group's profile
    id to its file; ``zones`` are the DNS fixtures in force and ``zones_read`` counts how often
    the server has read them again (a routing change), so the worker does too."""

    raw: bytes
    groups: tuple[DataGroup, ...]
    profiles: Mapping[str, Path]
    zones: tuple[Path, ...]
    zones_read: int = 0
    spool: str | None = None  # the file holding the message instead of ``raw`` (then empty)

    def message(self) -> bytes:
        """The message's bytes, from ``raw`` or the spool file."""
        if self.spool is None:
            return self.raw
        with open(self.spool, "rb") as spooled:
            return spooled.read()


@dataclass
class _Worker:
    """What one worker process keeps between messages."""

    setup: WorkerSetup
    profiles: ProfileSet
    loop: asyncio.AbstractEventLoop
    spamd: SpamdService
    pipelines: dict[Path, Pipeline] = field(default_factory=dict)
    resolvers: dict[tuple[tuple[Path, ...], int], Resolver] = field(default_factory=dict)

    def pipeline(self, path: Path) -> Pipeline:
        if path not in self.pipelines:
            self.pipelines[path] = compile_profile(self.profiles.load(path))
        return self.pipelines[path]

    def resolver(self, zones: tuple[Path, ...], read: int) -> Resolver:
        key = (zones, read)
        if key not in self.resolvers:
            self.resolvers.clear()  # an older reading of the zones is never asked for again
            s = self.setup
            self.resolvers[key] = build_resolver(s.dns_mode, s.dns_server, zones, s.dns_timeout)
        return self.resolvers[key]


_worker: _Worker | None = None  # this process's, when it is a pool worker


def start_worker(setup: WorkerSetup) -> None:
    """The pool's initializer, in each new worker process."""
    global _worker
    # Ctrl-C in a terminal signals the whole process group: the server shuts the pool down,
    # so a worker must not die of it first (its message would get a needless 451).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker must not outlive its server, even one killed with SIGKILL (which runs no
    # shutdown): it ends when its parent's process sentinel says the parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    _worker = _Worker(
        setup,
        ProfileSet(list(setup.profiles_dirs)),
        asyncio.new_event_loop(),
        SpamdService(override=setup.spamd),
    )


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


@contextlib.contextmanager
def _may_start_children() -> Iterator[None]:
    """Let this process start pool workers although it is daemonic (an SMTP worker of
    ``--workers`` is). multiprocessing refuses children of a daemonic process so that none is
    orphaned when it is terminated at its parent's exit; the pool's workers end with this
    process's server (``JudgePool.close``) or, if it is killed, with it (``_end_with``)."""
    me = multiprocessing.current_process()
    if not me.daemon:
        yield
        return
    me.daemon = False
    try:
        yield
    finally:
        me.daemon = True


def judge_task(task: Task) -> list[Verdict]:
    """Judge ``task`` in this worker process (the pool's job)."""
    worker = _worker
    assert worker is not None, "not a judge worker (start_worker was not run)"
    pipelines = {name: worker.pipeline(path) for name, path in task.profiles.items()}
    lookups = Lookups(spamd=worker.spamd, resolver=worker.resolver(task.zones, task.zones_read))
    raw = task.message()
    return worker.loop.run_until_complete(judge_message(raw, task.groups, pipelines, lookups))


Job = Callable[[Task], list[Verdict]]


class JudgePool:
    """Worker processes judging the DATA stage of messages of ``threshold`` bytes or more
    (None: none; 0: every one). Started on first use; ``close`` ends them."""

    def __init__(
        self,
        setup: WorkerSetup,
        *,
        workers: int,
        threshold: int | None,
        job: Job = judge_task,
    ) -> None:
        self.setup = setup
        self.workers = workers
        self.threshold = threshold
        self.job = job  # a module-level function (the workers import it); tests gate it
        self._executor: ProcessPoolExecutor | None = None
        self.rebuilt = 0  # how often a broken pool was replaced (a worker died)

    def takes(self, size: int) -> bool:
        return self.threshold is not None and size >= self.threshold

    @property
    def started(self) -> bool:
        return self._executor is not None

    def pids(self) -> list[int]:
        """The worker processes running now (for tests and diagnostics)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            log.info("judge workers: starting %d processes", self.workers)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,
                initargs=(self.setup,),
            )
        return self._executor

    async def run(self, task: Task) -> list[Verdict]:
        """The verdicts of ``task`` from a worker; ``BackendError`` when the worker died (the
        pool is rebuilt for the next message)."""
        executor = self._pool()
        spool = await asyncio.to_thread(_spool, task.raw) if len(task.raw) >= SPOOL_BYTES else None
        sent = task if spool is None else dataclasses.replace(task, raw=b"", spool=spool)
        try:
            with _may_start_children():  # the executor starts its processes as work arrives
                judging = asyncio.get_running_loop().run_in_executor(executor, self.job, sent)
            return await judging
        except BrokenProcessPool as exc:
            if self._executor is executor:  # the first of its messages to fail replaces it
                self._executor = None
                self.rebuilt += 1
                log.error(
                    "judge worker died while judging a %d-byte message (%s); the message is "
                    "answered 451 and the worker pool is started again",
                    len(task.raw),
                    exc,
                )
                executor.shutdown(wait=False, cancel_futures=True)
            raise BackendError("the judge worker process died; try again later") from exc
        finally:
            if spool is not None:
                with contextlib.suppress(OSError):
                    os.unlink(spool)

    async def close(self) -> None:
        """Stop the workers: a message they are judging is abandoned (its session is gone)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _spool(raw: bytes) -> str:
    """``raw`` in a new private file (0600, in memory where /dev/shm is): its path. Run in a
    thread: the write releases the interpreter lock while the kernel copies."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="sinkd-judge-", suffix=".eml", dir=where)
    try:
        with memoryview(raw) as view:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])  # a blocking write: some bytes, or OSError
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)
    return path


def worker_count(setting: int, cores: int | None = None, limit: int = MAX_JUDGE_WORKERS) -> int:
    """``--judge-workers``: as given, or (0, auto) one per core but the one the SMTP process
    needs, at least one and at most ``limit``: on 2 cores one worker (~60 MiB) judges while the
    SMTP process keeps answering; a second would only take turns with them on the same cores."""
    if setting > 0:
        return setting
    return max(1, min((cores or os.cpu_count() or 1) - 1, limit))


class Offloaded:
    """The core's ``Offload`` port for one transaction: its messages over ``pool``'s size go
    to the workers with the profiles' files and the zones in force when it began."""

    def __init__(
        self,
        pool: JudgePool,
        paths: Mapping[int, Path],
        zones: tuple[Path, ...],
        zones_read: int,
    ) -> None:
        self.pool = pool
        self.paths = paths  # id(pipeline) -> its profile's file (the Judge's compiled ones)
        self.zones = zones
        self.zones_read = zones_read

    def offloads(self, size: int) -> bool:
        return self.pool.takes(size)

    async def judge(
        self, raw: bytes, groups: Sequence[DataGroup], pipelines: Mapping[str, Pipeline]
    ) -> list[Verdict]:
        profiles = {name: self.paths[id(pipeline)] for name, pipeline in pipelines.items()}
        return await self.pool.run(Task(raw, tuple(groups), profiles, self.zones, self.zones_read))
