"""The store's writer process: the SQLite writes of ``sinkd serve`` outside the SMTP processes.

Owns starting the writer process, the sockets to it and what travels on them: operations (a
save's prepared values, a release, a delete, a clear) down, one answer per committed batch
up. The SQL itself is ``sinkd.store.sqlite._Writer``'s, the same the writer thread runs.

Why a process: a writer thread shares the interpreter lock with the event loop, and each of
its statements hands the lock back and forth with the loop; measured under 20 SMTP sessions,
that cost the SMTP process far more CPU than the writes themselves (bench/RESULTS.md). The
process commits in parallel on another core; an event loop only sends each turn's operations
in one write and, once per commit, reads the answer.

Clients: the server (``WriterProcess``, which started the process) and, with ``--workers``,
each SMTP worker (``WriterClient`` on a socket the server obtained with ``attach()``). One
transaction takes what every client sent (group commit across processes); the server is told
of the other clients' committed records (for the live event stream).

Durability is unchanged: the process commits with ``synchronous=FULL`` before it answers, and
a ``save`` returns only after that answer. When the process ends unexpectedly, every
unanswered operation fails with ``StoreError`` (no 250 for it) and the server's next operation
starts a new one. The process ends when told to or when the server's socket closes, after
committing what it had received. It must not decide anything about mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from sinkd.errors import NotFound, StoreError
from sinkd.store.sqlite import MAX_BATCH, PreparedSave, _Op, _op_of, _Writer

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # the process imports the store and opens (maybe migrates) the file
# How long a batch waits for more operations when the server is busy (see serve()). Under 20
# sessions at 1 KB, one SMTP process: 0 ms 1,513 msgs/s, 1 ms 1,912-2,214, 2 ms 1,873-2,042,
# 4 ms 1,951, 8 ms 1,756 (longer waits leave the cores idle); runs differ by ~10%.
COMMIT_DELAY = 0.001
# Big enough that a large message is written to the socket in one go while the process
# commits the batch before it.
SOCKET_BUFFER = 4 * 1024 * 1024

# Down: a list of (number, kind, message_id, row, raw, filtered, codes, received, search), the
#       operations submitted in one turn of a client's event loop; from the server also None
#       (stop) and ("attach",) followed by a socket (SCM_RIGHTS) for one more client.
# Up:   ("ready", None) | ("failed", text) | ("done", commits, [(number, result, error)]) where
#       error is None or (class name, text) | to the server: ("committed", [json text]), the
#       records the other clients saved in a batch.
_Wire = tuple[Any, ...]


def _to_wire(number: int, op: _Op) -> _Wire:
    return (
        number,
        op.kind,
        op.message_id,
        op.row,
        op.raw,
        op.filtered,
        op.codes,
        op.received,
        op.search,
    )


def _from_wire(item: _Wire) -> tuple[int, _Op]:
    number, kind, message_id, row, raw, filtered, codes, received, search = item
    op = _Op(kind, None, None, message_id, row, raw, filtered, codes, received, search)
    return number, op


def _error_to_wire(error: BaseException | None) -> tuple[str, str] | None:
    if error is None:
        return None
    return ("NotFound" if isinstance(error, NotFound) else "StoreError", str(error))


def _error_from_wire(error: tuple[str, str]) -> StoreError:
    kind, text = error
    return NotFound(text) if kind == "NotFound" else StoreError(text)


def _dumps(value: Any) -> bytes:
    # pickle.dumps, not Connection.send: multiprocessing's pickler copies its dispatch table
    # on every call (~15 us a record, measured).
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


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
    submit(op)``. Answers are read by that loop; operations may be submitted from any thread
    and loop (their futures are settled on their own loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path  # for messages only
        self.commits = 0
        # Told the records other clients saved (the server's live event stream).
        self.on_committed: Callable[[list[str]], None] | None = None
        self._numbers = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._send_lock = threading.Lock()  # guards the outbox and the socket's sending end
        self._outbox: list[_Wire] = []  # submitted this turn of the loop, not yet sent
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: asyncio.Future[None] | None = None
        self._closing = False

    def bind(self, sock: socket.socket) -> None:
        """Use ``sock`` (a connection to the writer process) from the running event loop."""
        loop = self._loop = asyncio.get_running_loop()
        sock.setblocking(True)
        conn = Connection(sock.detach())
        self._ended = loop.create_future()
        with self._send_lock:
            self._conn = conn
        loop.add_reader(conn.fileno(), self._receive)

    async def submit(self, op: _Op) -> Any:
        """Send ``op`` and return its result once the process has committed it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        number = next(self._numbers)
        with self._send_lock:
            if self._closing:
                raise StoreError(f"message store {self.path} is closed")
            if self._conn is None:
                raise StoreError(f"the writer process for {self.path} is gone")
            self._pending[number] = (loop, future)
            self._outbox.append(_to_wire(number, op))
            first = len(self._outbox) == 1
        if first:
            # Everything submitted during this turn of the event loop travels as one batch
            # (several sessions' DATA often end in the same turn): one write, one wake-up of
            # the process, and a larger group commit.
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
        await self.submit(_op_of(prepared, None))

    def _flush(self) -> None:
        with self._send_lock:
            items, self._outbox = self._outbox, []
            conn = self._conn
            if not items:
                return
            try:
                if conn is None:
                    raise OSError("it has ended")
                conn.send_bytes(_dumps(items))
                return
            except (OSError, ValueError) as exc:
                failure = StoreError(f"the writer process for {self.path} is gone: {exc}")
            lost = [self._pending.pop(item[0], None) for item in items]
        for entry in lost:
            if entry is not None:
                _settle_on(entry[0], self._loop, entry[1], None, failure)

    def _send_control(self, message: Any) -> None:
        """Send ``message`` after what this turn submitted; raise OSError when gone."""
        self._flush()
        with self._send_lock:
            if self._conn is None:
                raise OSError("the writer process has ended")
            self._conn.send_bytes(_dumps(message))

    def _receive(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            self._lost()
            return
        kind = message[0]
        if kind == "done":
            self.commits = message[1]
            for number, result, error in message[2]:
                entry = self._pending.pop(number, None)
                if entry is None:
                    continue
                failure = None if error is None else _error_from_wire(error)
                _settle_on(entry[0], self._loop, entry[1], result, failure)
        elif kind == "committed":
            if self.on_committed is not None:
                try:
                    self.on_committed(message[1])
                except Exception:  # a listener's failure never stops the answers
                    log.exception("commit listener failed")
        else:
            self._control(message)

    def _control(self, message: Any) -> None:
        """Messages other than answers (the server's: ready, failed)."""

    def _lost(self) -> None:
        """The socket closed: the process ended. Nothing unanswered may count as committed."""
        loop = self._loop
        conn = self._conn
        if conn is not None and loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(conn.fileno())
        with self._send_lock:
            self._conn = None
            pending, self._pending = self._pending, {}
            self._outbox = []
        if conn is not None:
            conn.close()
        failure = StoreError(self._lost_text())
        if not self._closing:
            log.error("%s", failure)
        for caller, future in pending.values():
            _settle_on(caller, loop, future, None, failure)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _lost_text(self) -> str:
        return f"the writer process for {self.path} ended before confirming the commit"

    async def close(self) -> None:
        """Send what this turn submitted, then close the socket (the process drops this
        client; whatever it has not answered fails here with ``StoreError``)."""
        self._flush()
        self._closing = True
        self._lost()


class WriterProcess(WriterClient):
    """The server's client, which owns the process: ``await start()``, ``attach()`` a socket
    for a worker, ``await close()`` (the process commits what it has, answers and ends)."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        super().__init__(path)
        self.busy_timeout = busy_timeout
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
        ours, theirs = socket_pair()
        try:
            self._process = subprocess.Popen(  # noqa: ASYNC220 (fork and exec; the wait is the ready message)
                [
                    sys.executable,
                    "-m",
                    "sinkd.store.writer",
                    str(theirs.fileno()),
                    str(self.path),
                    repr(self.busy_timeout),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=_child_env(),
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
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.shield(self._ready)
        except BaseException as exc:
            await self._abandon()
            if isinstance(exc, TimeoutError):
                raise StoreError(
                    f"the writer process for {self.path} did not start in {START_TIMEOUT:.0f} s"
                ) from None
            raise

    async def submit(self, op: _Op) -> Any:
        if self._conn is None and not self._closing:
            await self._start_again()
        return await super().submit(op)

    async def _start_again(self) -> None:
        assert self._restart is not None
        async with self._restart:
            if self._conn is None and not self._closing:
                log.warning("starting a new writer process for %s", self.path)
                await self.start()
                if self.on_restart is not None:
                    self.on_restart()

    def attach(self) -> socket.socket:
        """A new connection to the process, for a worker to ``bind``; OSError when gone."""
        ours, theirs = socket_pair()
        try:
            with self._send_lock:
                conn, process = self._conn, self._process
                if conn is None or process is None:
                    raise OSError("the writer process has ended")
                conn.send_bytes(_dumps(("attach",)))
                reduction.send_handle(conn, theirs.fileno(), process.pid)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def _control(self, message: Any) -> None:
        kind = message[0]
        if kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif kind == "failed" and self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreError(str(message[1])))

    def _lost(self) -> None:
        was_running = self._ready is not None and self._ready.done()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                StoreError(f"the writer process for {self.path} ended before it opened the store")
            )
        super()._lost()
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


def _settle_on(
    caller: asyncio.AbstractEventLoop,
    home: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """Resolve ``future`` now when it belongs to the loop we run in, else on its own loop."""
    if caller is home:
        _resolve(future, result, error)
    else:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            caller.call_soon_threadsafe(_resolve, future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled; the write stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _wait(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log.error("the store writer process %d did not end; killed", process.pid)
        process.kill()
        process.wait()


def _child_env() -> dict[str, str]:
    """The server's environment, with the directory sinkd was imported from first on the path
    (a source checkout run without installing still finds ``sinkd.store.writer``)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# --- the process side --------------------------------------------------------------------


def serve(server: Connection, path: Path, busy_timeout: float) -> int:
    """Commit what the clients send, in batches, until the server says stop or goes away."""
    try:
        writer = _Writer(path, busy_timeout)
    except StoreError as exc:
        server.send_bytes(_dumps(("failed", str(exc))))
        return 1
    server.send_bytes(_dumps(("ready", None)))
    clients: list[Connection] = [server]
    try:
        done = False
        busy = False  # operations arrived while the last batch was committing
        while not done:
            items: list[tuple[Connection, _Wire]] = []
            ready = wait(clients)  # block until some client sends
            # Under load, wait a moment for more before committing: a commit's cost is mostly
            # per transaction (fsync, page writes), measured 281 us of CPU per save in batches
            # of 1, 107 in batches of 3, 52 in batches of 10. An idle server (nothing arrived
            # during the last commit) commits at once.
            deadline = time.monotonic() + (COMMIT_DELAY if busy else 0.0)
            while True:
                for client in ready:
                    assert isinstance(client, Connection)
                    done = _read(client, server, clients, items) or done
                if done or len(items) >= MAX_BATCH:
                    break
                ready = wait(clients, max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
            if items:
                _commit(writer, server, items)
            busy = bool(wait(clients, 0))
    finally:
        writer.close()
        for client in clients:
            client.close()
    return 0


def _read(
    client: Connection,
    server: Connection,
    clients: list[Connection],
    items: list[tuple[Connection, _Wire]],
) -> bool:
    """Take one message from ``client``; True when the server said stop or went away."""
    try:
        message = pickle.loads(client.recv_bytes())
    except (EOFError, OSError):
        if client is server:
            return True  # the server is gone: commit what arrived, then end
        clients.remove(client)  # a worker ended
        client.close()
        return False
    if message is None:
        return client is server
    if isinstance(message, tuple) and message[0] == "attach":
        clients.append(Connection(reduction.recv_handle(client)))
        return False
    items.extend((client, item) for item in message)
    return False


def _commit(writer: _Writer, server: Connection, items: list[tuple[Connection, _Wire]]) -> None:
    """One transaction for ``items``, then each client's answers in one message."""
    batch = [(client, *_from_wire(item)) for client, item in items]
    writer.write([op for _, _, op in batch])
    answers: dict[Connection, list[tuple[int, Any, tuple[str, str] | None]]] = {}
    others: list[str] = []
    for client, number, op in batch:
        answers.setdefault(client, []).append((number, op.result, _error_to_wire(op.error)))
        if client is not server and op.kind == "save" and op.error is None:
            others.append(str(op.row[12]))  # the record's JSON text
    for client, answered in answers.items():
        # A client that is gone gets nothing; its records are committed all the same.
        with contextlib.suppress(OSError):
            client.send_bytes(_dumps(("done", writer.commits, answered)))
    if others:
        with contextlib.suppress(OSError):
            server.send_bytes(_dumps(("committed", others)))


def main(argv: Sequence[str]) -> int:
    fd, path, busy_timeout = argv
    # The server stops this process (through the socket) once its sessions are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="sinkd store writer: %(message)s")
    return serve(Connection(int(fd)), Path(path), float(busy_timeout))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
