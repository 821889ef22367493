"""The store's writers: the writes of ``sinkd serve`` in a process outside the SMTP processes,
or (tests, tools) in a thread, for SQLite and PostgreSQL alike.

Owns starting the writer process, the sockets to it and what travels on them: operations (a
record to save, as its JSON shape or its prepared values; a release, a delete, a clear)
down, one answer per committed batch up, and the store's health (a PostgreSQL outage) up.
Owns too the writer thread (``WriterThread``) and the write side every SQL store composes
(``StoreWrites``: saves and administration through one writer, thread or process). The SQL is
``sinkd.store.sql``'s or ``sinkd.store.pg_sql``'s (``WriterSpec.open``); the process's loop is
``sinkd.store.writer_main``.

Why a process: a writer thread shares the interpreter lock with the event loop, and each of
its statements hands the lock back and forth with the loop; measured under 20 SMTP sessions,
that cost the SMTP process far more CPU than the writes themselves (bench/RESULTS.md). The
process commits in parallel on another core, and makes each record's JSON text and columns
there too; an event loop sends one batch and reads its answer per commit (what is submitted
meanwhile waits for the answer and goes as the next batch).

Clients: the server (``WriterProcess``, which started the process) and, with ``--workers``,
each SMTP worker (``WriterClient`` on a socket the server obtained with ``attach()``). One
transaction takes what every client sent (group commit across processes); the server is told
of the other clients' committed records (for the live event stream).

Durability is unchanged: the process commits (SQLite with ``synchronous=FULL``, PostgreSQL
with its default ``synchronous_commit = on``) before it answers, and a ``save`` returns only
after that answer. When the process ends unexpectedly, every
unanswered operation fails with ``StoreError`` (no 250 for it) and the server's next operation
starts a new one. The process ends when told to or when the server's socket closes, after
committing what it had received. It must not decide anything about mail.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sinkd.children import child_env
from sinkd.errors import StoreError
from sinkd.store import MessageRecord, iso
from sinkd.store.columns import PreparedSave, prepare
from sinkd.store.settle import settle_on, settle_threadsafe
from sinkd.store.sql import MAX_BATCH, Op, OpKind
from sinkd.store.writer_main import (
    BatchWriter,
    FrameReader,
    Wire,
    WriterSpec,
    error_from_wire,
    frame,
    op_to_wire,
    record_to_wire,
)

log = logging.getLogger(__name__)

WRITER_START_TIMEOUT = 30.0  # the process imports the store and opens (maybe migrates) the file
# Big enough that a large message is written to the socket in one go while the process
# commits the batch before it.
SOCKET_BUFFER = 4 * 1024 * 1024
_IOV_MAX = 64  # parts given to one sendmsg (Linux takes up to 1024)
SEND_STEP = 512 * 1024  # the most one turn of the event loop sends (see _send_unsent)


def socket_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (ours, theirs):
        with contextlib.suppress(OSError):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    return ours, theirs


# --- the clients: in the server and in SMTP workers --------------------------------------


class WriterClient:
    """One connection to the writer process: ``bind(sock)`` in an event loop, then ``await
    submit(op)``. That loop does all the socket's I/O, without blocking: a writer process that
    is slow to read (a commit waiting for another program's lock) never stalls the SMTP
    sessions or the HTTP API sharing the loop. Operations may be submitted from any thread and
    loop (their futures are settled on their own loop)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path  # for messages only: a file, or a URL as shown (no password)
        self.commits = 0
        # The store's health as the writer process last told it (False while a PostgreSQL
        # store is unreachable), and who is told when it changes.
        self.healthy = True
        self.on_health: Callable[[bool], None] | None = None
        # Told the records other clients saved (the server's live event stream).
        self.on_committed: Callable[[list[str]], None] | None = None
        self._numbers = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._send_lock = threading.Lock()  # guards the outbox and the socket's sending end
        self._outbox: list[Wire] = []  # submitted, not yet sent (see _flush)
        self._in_flight = 0  # operations sent and not answered yet
        self._sock: socket.socket | None = None  # non-blocking; None once the process ended
        # What the socket did not take yet, in order (sent when writable): views of the frames'
        # parts, a big message's bytes among them, never copied here (see frame).
        self._unsent: collections.deque[memoryview] = collections.deque()
        self._reader = FrameReader()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: asyncio.Future[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the writer process can be reached (False once it ended, until replaced)."""
        return self._sock is not None

    @property
    def writable(self) -> bool:
        """Whether a save can be committed now: the process is there and so is its store."""
        return self._sock is not None and self.healthy

    def bind(self, sock: socket.socket) -> None:
        """Use ``sock`` (a connection to the writer process) from the running event loop; a
        socket bound before (to a writer that was replaced) is dropped, with whatever it had
        not answered."""
        if self._sock is not None:
            self._lost()
        loop = self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._ended = loop.create_future()
        with self._send_lock:
            self._sock = sock
            self._unsent = collections.deque()
            self._in_flight = 0
            self._reader = FrameReader()
        self.healthy = True  # a new process says otherwise if its store is unreachable
        loop.add_reader(sock.fileno(), self._receive, sock)

    async def submit(self, op: Op) -> Any:
        """Send ``op`` and return its result once the process has committed it."""
        return await self.submit_wire(op_to_wire(op))

    async def submit_record(self, record: MessageRecord) -> None:
        """Save ``record``; return once it is committed. Its JSON text and columns are made
        by the writer process when the record is plain data (``record_to_wire``), else here
        (``prepare``); a record without JSON fails with ``StoreError`` either way."""
        wire = record_to_wire(record)
        if wire is None:
            await self.submit(Op.of_prepared(prepare(record), None))
        else:
            await self.submit_wire(wire)

    async def submit_wire(self, wire: Wire) -> Any:
        """Send one operation as it travels (without its number); its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        number = next(self._numbers)
        with self._send_lock:
            if self._closing:
                raise StoreError(f"message store {self.path} is closed")
            if self._sock is None:
                raise StoreError(f"the writer process for {self.path} is gone")
            self._pending[number] = (loop, future)
            self._outbox.append((number, *wire))
            first = len(self._outbox) == 1
        if first:
            # Everything submitted during this turn of the event loop travels as one batch
            # (several sessions' DATA often end in the same turn): one write, one wake-up of
            # the process, and a larger group commit. While an earlier batch is in flight the
            # flush waits for its answer instead (see _flush).
            home = self._loop
            assert home is not None
            if home is loop:
                loop.call_soon(self._flush)
            else:
                home.call_soon_threadsafe(self._flush)
        # If the caller is cancelled the write still happens; only the answer is dropped.
        return await future

    async def submit_prepared(self, prepared: PreparedSave) -> None:
        """Save a record ``prepare`` turned into values; return once it is committed."""
        await self.submit(Op.of_prepared(prepared, None))

    def _flush(self, *, force: bool = False) -> None:
        """Send what was submitted (in the home loop), unless a batch sent before is still
        unanswered: then its answer sends them (``_handle``), unless ``force``.

        One batch in flight per client: the process commits one transaction at a time, so
        operations sent while it commits would only wait in its socket; held here instead,
        they travel together once it answers, as the next group commit. Under load that is
        one send and one wake-up of the process per commit rather than per turn of the loop
        (each a system call that wakes the other process: ~30 us of the SMTP process's CPU
        per message at 1 KB, measured with py-spy), and larger batches for the process. An
        idle client sends at once, as before; nothing waits longer than the commit in
        progress, which it waited for anyway.
        """
        with self._send_lock:
            if self._in_flight and not force:
                return
            items, self._outbox = self._outbox, []
            if not items:
                return
            self._in_flight += len(items)
            try:
                self._write(frame(items))
                return
            except OSError as exc:
                failure = StoreError(f"the writer process for {self.path} is gone: {exc}")
            self._in_flight -= len(items)
            lost = [self._pending.pop(number, None) for number, *_ in items]
        for entry in lost:
            if entry is not None:
                caller, future = entry
                settle_on(caller, self._loop, future, None, failure)

    def _write(self, parts: list[bytes | memoryview]) -> None:
        """Send ``parts`` after what is still unsent, as far as the socket takes them now; the
        loop sends the rest when the socket is writable. Under ``_send_lock``."""
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            raise OSError("the writer process has ended")
        waiting = bool(self._unsent)
        self._unsent.extend(memoryview(part) for part in parts)
        if not waiting and not self._send_unsent(sock):
            loop.add_writer(sock.fileno(), self._write_more)

    def _send_unsent(self, sock: socket.socket) -> bool:
        """Send what the socket takes now, up to ``SEND_STEP`` bytes; True once nothing is
        left. Each send copies into the socket's buffer, and a writer process that reads as
        fast as it is sent would take a 20 MiB message in one go (~100 ms of the event loop,
        measured with py-spy): a big message goes a step per turn of the loop, which serves
        the other sessions between them (the writer callback runs again at once while the
        socket is writable). OSError when the process is gone."""
        unsent = self._unsent
        budget = SEND_STEP
        parts: list[memoryview] = []
        for part in unsent:
            if len(parts) == _IOV_MAX or budget <= 0:
                break
            parts.append(part if part.nbytes <= budget else part[:budget])
            budget -= part.nbytes
        try:
            sent = sock.sendmsg(parts)
        except BlockingIOError:
            return False
        while sent:
            head = unsent[0]
            if sent >= head.nbytes:
                sent -= head.nbytes
                unsent.popleft()
            else:
                unsent[0] = head[sent:]
                sent = 0
        return not unsent

    def _write_more(self) -> None:
        with self._send_lock:
            sock, loop = self._sock, self._loop
            if sock is None or loop is None:
                return
            try:
                done = self._send_unsent(sock)
            except OSError:
                done = None
            if done:
                loop.remove_writer(sock.fileno())
        if done is None:
            self._lost()

    def _send_control(self, message: Any) -> None:
        """Send ``message`` after everything submitted; raise OSError when gone."""
        self._flush(force=True)
        with self._send_lock:
            self._write(frame(message))

    def _receive(self, sock: socket.socket) -> None:
        if sock is not self._sock:  # dropped meanwhile
            return
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of file: the process ended
            self._lost()
            return
        for message in self._reader.feed(data):
            self._handle(message)

    def _handle(self, message: Any) -> None:
        match message:
            case ("done", commits, answers):
                self.commits = commits
                with self._send_lock:
                    self._in_flight = max(0, self._in_flight - len(answers))
                for number, result, error in answers:
                    entry = self._pending.pop(number, None)
                    if entry is None:
                        continue
                    caller, future = entry
                    failure = None if error is None else error_from_wire(error)
                    settle_on(caller, self._loop, future, result, failure)
                self._flush()  # what was held while the batch was in flight (see _flush)
            case ("health", healthy):
                self.healthy = bool(healthy)
                if self.on_health is not None:
                    self.on_health(self.healthy)
            case ("committed", records):
                if self.on_committed is not None:
                    try:
                        self.on_committed(records)
                    except Exception:  # a listener's failure never stops the answers
                        log.exception("commit listener failed")
            case _:
                self._control(message)

    def _control(self, message: Any) -> None:
        """Messages other than answers (the server's: ready, failed)."""

    def _lost(self, *, report: bool = True) -> None:
        """The socket closed: the process ended. Nothing unanswered may count as committed.
        ``report``: log it (not for a process that never opened the store: its start fails
        with the reason instead)."""
        loop = self._loop
        with self._send_lock:
            sock, self._sock = self._sock, None
            pending, self._pending = self._pending, {}
            self._outbox = []
            self._in_flight = 0
            self._unsent = collections.deque()
        if sock is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                    loop.remove_writer(sock.fileno())
            sock.close()
        failure = StoreError(self._lost_text())
        if report and not self._closing and sock is not None:
            log.error("%s", failure)
        for caller, future in pending.values():
            settle_on(caller, loop, future, None, failure)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _lost_text(self) -> str:
        return f"the writer process for {self.path} ended before confirming the commit"

    async def close(self) -> None:
        """Send what was submitted, then close the socket (the process drops this client;
        whatever it has not answered fails here with ``StoreError``)."""
        self._flush(force=True)
        self._closing = True
        self._lost()


class WriterProcess(WriterClient):
    """The server's client, which owns the process: ``await start()``, ``attach()`` a socket
    for a worker, ``await close()`` (the process commits what it has, answers and ends)."""

    def __init__(self, spec: WriterSpec) -> None:
        super().__init__(spec.location.path or spec.shown)
        self.spec = spec
        # Told after a new process replaced one that died (workers need new sockets).
        self.on_restart: Callable[[], None] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._restart: asyncio.Lock | None = None
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the process; return once it has opened the store, or raise ``StoreError``."""
        loop = asyncio.get_running_loop()
        self._restart = self._restart or asyncio.Lock()
        previous = self._process
        if previous is not None and previous.poll() is None:
            # One that died but is not reaped yet (or hangs): it must not linger as a zombie.
            previous.kill()
            await loop.run_in_executor(None, _wait, previous)
        ours, theirs = socket_pair()
        argv, extra_env = self.spec.to_argv()  # a URL in the environment, never in argv
        try:
            self._process = subprocess.Popen(  # noqa: ASYNC220 (fork and exec; the wait is the ready message)
                [sys.executable, "-m", "sinkd.store.writer_main", str(theirs.fileno()), *argv],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**child_env(), **extra_env},
                # Its own session: a terminal's Ctrl-C reaches the server's process group, and
                # the writer must outlive it until the server has finished its sessions.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise StoreError(f"cannot start the writer process for {self.path}: {exc}") from exc
        finally:
            theirs.close()
        self._ready = loop.create_future()
        self.bind(ours)
        try:
            async with asyncio.timeout(WRITER_START_TIMEOUT):
                await asyncio.shield(self._ready)
        except BaseException as exc:
            await self._abandon()
            if isinstance(exc, TimeoutError):
                raise StoreError(
                    f"the writer process for {self.path} did not start"
                    f" in {WRITER_START_TIMEOUT:.0f} s"
                ) from None
            raise

    async def submit_wire(self, wire: Wire) -> Any:
        if self._sock is None and not self._closing:
            await self._start_again()
        return await super().submit_wire(wire)

    async def _start_again(self) -> None:
        assert self._restart is not None
        async with self._restart:
            if self._sock is None and not self._closing:
                log.warning("starting a new writer process for %s", self.path)
                await self.start()
                if self.on_restart is not None:
                    self.on_restart()

    def attach(self) -> socket.socket:
        """A new connection to the process, for a worker to ``bind``; OSError when gone."""
        ours, theirs = socket_pair()
        try:
            with self._send_lock:
                sock, loop = self._sock, self._loop
                if sock is None or loop is None:
                    raise OSError("the writer process has ended")
                # Rare (start-up, a replaced writer): send in order and blocking, the socket
                # after the message that announces it.
                sock.setblocking(True)
                try:
                    for part in [*self._unsent, *frame(("attach",))]:
                        sock.sendall(part)
                    socket.send_fds(sock, [b"s"], [theirs.fileno()])
                finally:
                    sock.setblocking(False)
                if self._unsent:
                    self._unsent.clear()
                    loop.remove_writer(sock.fileno())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def _control(self, message: Any) -> None:
        ready = self._ready
        if ready is None or ready.done():
            return
        match message:
            case ("ready", _):
                ready.set_result(None)
            case ("failed", text):
                ready.set_exception(StoreError(str(text)))

    def _lost(self, *, report: bool = True) -> None:
        ready = self._ready
        # Replaced only if it had started: a process that could not open the store would
        # fail again, and start() reports that to its caller.
        was_running = (
            ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                StoreError(f"the writer process for {self.path} ended before it opened the store")
            )
        super()._lost(report=report and was_running)
        if was_running and not self._closing and self._loop is not None:
            # Start the next one now, not at the server's next write: SMTP workers save
            # through their own connections and would wait for it otherwise.
            task = self._loop.create_task(self._replace())
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    async def _replace(self) -> None:
        try:
            await self._start_again()
        except StoreError as exc:  # the next write tries again
            log.error("%s", exc)

    def _lost_text(self) -> str:
        code = None if self._process is None else self._process.poll()
        return (
            f"the writer process for {self.path} ended"
            + ("" if code is None else f" (exit code {code})")
            + " before confirming the commit"
        )

    async def close(self) -> None:
        """Let the process commit everything sent so far, answer it, and end."""
        self._closing = True
        with contextlib.suppress(OSError, ValueError):
            self._send_control(None)  # after what was submitted before the close
        if self._ended is not None:
            await asyncio.shield(self._ended)  # the answers come first, then end of file
        process = self._process
        if process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _wait, process)

    async def _abandon(self) -> None:
        """A start that failed: end the process (it may have opened nothing) and reap it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        self._lost()
        if process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _wait, process)


def _wait(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log.error("the store writer process %d did not end; killed", process.pid)
        process.kill()
        process.wait()


# Where a store's writes run: a thread of this process, or a process of its own.
WriterKind = Literal["thread", "process"]

_STOP = object()  # queued by WriterThread.close(); everything queued before it is still written


class WriterThread:
    """A store's writes on a thread of this process (tests and tools; ``sinkd serve`` uses
    the process): the same ``BatchWriter`` and batching as the process, futures settled on
    each caller's loop. While its writer is unhealthy and idle, it ticks it once per
    ``idle_interval`` (reconnecting a PostgreSQL store), so ``healthy`` follows the store."""

    def __init__(self, spec: WriterSpec) -> None:
        self.spec = spec
        self._queue: queue.SimpleQueue[Op | object] = queue.SimpleQueue()
        # Guards the closed flag together with enqueueing, so nothing can be queued behind
        # the stop marker (it would never be answered).
        self._lock = threading.Lock()
        self._closed = False
        self.commits = 0
        self.healthy = True
        # Told (from the writer thread) when ``healthy`` changes.
        self.on_health: Callable[[bool], None] | None = None
        self._ready: asyncio.Future[None] | None = None
        name = spec.location.path.name if spec.location.path is not None else "postgresql"
        self._thread = threading.Thread(
            target=self._run, name=f"sinkd-store-writer:{name}", daemon=True
        )

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def start(self) -> None:
        """Open the store in the thread; ``StoreError`` when it cannot be."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._thread.start()
        try:
            await self._ready
        except BaseException:
            with self._lock:
                self._closed = True
                # If the thread did open (we were cancelled meanwhile), this stops it.
                self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            raise

    async def submit(self, op: Op) -> Any:
        """Queue ``op`` (its loop and future set); its result once committed."""
        with self._lock:
            if self._closed:
                raise StoreError(f"message store {self.spec.shown} is closed")
            self._queue.put(op)
        assert op.future is not None
        # If the caller is cancelled the write still happens; only the answer is dropped.
        return await op.future

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if self._thread.is_alive():
            # Joining waits for every write queued before the stop marker to be committed.
            await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        ready = self._ready
        assert ready is not None
        try:
            writer: BatchWriter = self.spec.open()
        except StoreError as exc:
            settle_threadsafe(ready.get_loop(), ready, None, exc)
            return
        settle_threadsafe(ready.get_loop(), ready, None, None)
        try:
            stop = False
            while not stop:
                try:  # block for the first item only
                    batch = [self._queue.get(timeout=writer.idle_interval)]
                except queue.Empty:
                    writer.tick()
                    self._health(writer.healthy)
                    continue
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                ops = [item for item in batch if isinstance(item, Op)]
                stop = len(ops) != len(batch)
                if ops:
                    writer.write(ops)
                    self.commits = writer.commits
                    self._health(writer.healthy)
                    for op in ops:
                        if op.loop is not None and op.future is not None:
                            settle_threadsafe(op.loop, op.future, op.result, op.error)
                    writer.committed(ops)
        finally:
            writer.close()

    def _health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            if self.on_health is not None:
                self.on_health(healthy)


class StoreWrites:
    """The write side of a SQL store (``SqliteStore``, ``PostgresStore``): every write goes
    through its one writer, a thread or a process (``writer``), so writes are serialized and
    batched; ``save`` returns once committed. Reads are the store's own."""

    def __init__(self, spec: WriterSpec, writer: WriterKind) -> None:
        self.spec = spec
        self.kind = writer
        self.closed = False
        self.process: WriterProcess | None = None  # writer="process", once started
        self.thread: WriterThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None  # set (and replaced) when health changes

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        if self.kind == "process":
            process = WriterProcess(self.spec)
            process.on_health = self._health_changed
            await process.start()
            self.process = process
            return
        thread = WriterThread(self.spec)
        thread.on_health = self._health_changed
        await thread.start()
        self.thread = thread

    def _health_changed(self, healthy: bool) -> None:
        """The store became reachable or unreachable (from the writer thread, or the client's
        loop): wake whoever waits for it on the store's loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    async def wait_writable(self, wanted: bool = True) -> None:
        """Return once ``writable`` is ``wanted`` (a PostgreSQL store's outage begins or ends);
        the caller bounds the wait (``asyncio.timeout``)."""
        while self.writable != wanted:
            if self.closed:
                raise StoreError(f"message store {self.spec.shown} is closed")
            changed = self._changed
            assert changed is not None, "start() first"
            await changed.wait()

    @property
    def writable(self) -> bool:
        """Whether writes can be committed now: open, its writer there, its store reachable."""
        if self.closed:
            return False
        if self.process is not None:
            return self.process.writable
        return self.thread is not None and self.thread.alive and self.thread.healthy

    @property
    def commits(self) -> int:
        if self.process is not None:
            return self.process.commits
        return 0 if self.thread is None else self.thread.commits

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError(f"message store {self.spec.shown} is closed")

    async def save(self, record: MessageRecord) -> None:
        self._check_open()
        if self.process is not None:
            # The writer process makes the record's JSON text and columns (submit_record).
            await self.process.submit_record(record)
            return
        await self._run(Op.of_prepared(prepare(record), asyncio.get_running_loop()))

    async def release(self, message_id: str, released_at: datetime, *, relay: bool = False) -> bool:
        released: bool = await self.submit(
            "release_relay" if relay else "release",
            message_id=message_id,
            released_at=iso(released_at.astimezone(UTC)),
        )
        return released

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        updated: bool = await self.submit(
            "relay_update", message_id=message_id, relay=json.dumps(state, separators=(",", ":"))
        )
        return updated

    async def delete(self, message_id: str) -> None:
        await self.submit("delete", message_id=message_id)

    async def clear(self) -> int:
        removed: int = await self.submit("clear")
        return removed

    async def submit(
        self,
        kind: OpKind,
        *,
        message_id: str | None = None,
        released_at: str | None = None,
        relay: str | None = None,
    ) -> Any:
        self._check_open()
        # The writer process's client keeps its own futures; the thread answers on this loop.
        loop = None if self.process is not None else asyncio.get_running_loop()
        future = None if loop is None else loop.create_future()
        return await self._run(
            Op(kind, loop, future, message_id=message_id, released_at=released_at, relay=relay)
        )

    async def _run(self, op: Op) -> Any:
        if self.process is not None:
            return await self.process.submit(op)
        assert self.thread is not None
        return await self.thread.submit(op)

    async def close(self) -> None:
        """Commit what was submitted, then stop the writer."""
        self.closed = True
        if self.process is not None:
            # The process answers everything sent before the stop, then ends.
            await self.process.close()
        elif self.thread is not None:
            await self.thread.close()


class WritesThrough:
    """The write methods of a SQL store (``SqliteStore``, ``PostgresStore``): each goes through
    the store's ``StoreWrites`` (``_writes``), whose writer serializes and batches them."""

    _writes: StoreWrites

    @property
    def writer_process(self) -> WriterProcess | None:
        """The writer process (``writer="process"``), which SMTP workers connect to."""
        return self._writes.process

    @property
    def commits(self) -> int:
        """How many write transactions the writer has committed (for tests and stats)."""
        return self._writes.commits

    async def save(self, record: MessageRecord) -> None:
        await self._writes.save(record)

    async def release(self, message_id: str, released_at: datetime, *, relay: bool = False) -> bool:
        return await self._writes.release(message_id, released_at, relay=relay)

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        return await self._writes.relay_update(message_id, state)

    async def delete(self, message_id: str) -> None:
        await self._writes.delete(message_id)

    async def clear(self) -> int:
        return await self._writes.clear()
