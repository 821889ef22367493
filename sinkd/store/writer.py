"""The store's writer process: the SQLite writes of ``sinkd serve`` outside the SMTP process.

Owns starting the writer process, the socket to it and what travels on it: operations (a
save's prepared values, a release, a delete, a clear) down, one answer per committed batch
up. The SQL itself is ``sinkd.store.sqlite._Writer``'s, the same the writer thread runs.

Why a process: a writer thread shares the interpreter lock with the event loop, and each of
its statements hands the lock back and forth with the loop; measured under 20 SMTP sessions,
that cost the SMTP process 0.27 ms of CPU per message against the writer's own 0.1 ms
(bench/RESULTS.md). The process commits in parallel on another core, and the loop only
sends a tuple and, once per batch, reads the answer.

Durability is unchanged: the process commits with ``synchronous=FULL`` before it answers, and
a ``save`` returns only after that answer. When the process ends unexpectedly, every
unanswered operation fails with ``StoreError`` (no 250 for it) and the next operation starts
a new process. The process ends when told to or when its socket closes (the server is gone),
after committing what it had received. It must not decide anything about mail.
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
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sinkd.errors import NotFound, StoreError
from sinkd.store.sqlite import MAX_BATCH, _Op, _Writer

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # the process imports the store and opens (maybe migrates) the file
# Big enough that a large message is written to the socket in one go while the process
# commits the batch before it.
SOCKET_BUFFER = 4 * 1024 * 1024

# Down: a list of (number, kind, message_id, row, raw, filtered, codes, received, search), the
#       operations submitted in one turn of the event loop; or None (stop).
# Up:   ("ready", None) | ("failed", text) | ("done", commits, [(number, result, error)])
#       where error is None or (class name, text).
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


# --- the client side: in the server process ----------------------------------------------


class WriterProcess:
    """The server's end of the writer process: ``await start()``, ``await submit(op)``,
    ``await close()``. Answers are read by the event loop that started it; operations may be
    submitted from any thread and loop (their futures are settled on their own loop)."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.commits = 0
        self._numbers = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._send_lock = threading.Lock()  # guards the outbox and the socket's sending end
        self._outbox: list[_Wire] = []  # submitted this turn of the loop, not yet sent
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None
        self._restart: asyncio.Lock | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the process; return once it has opened the store, or raise ``StoreError``."""
        loop = self._loop = asyncio.get_running_loop()
        self._restart = self._restart or asyncio.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (ours, theirs):
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
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
        self._conn = Connection(ours.detach())
        self._ready = loop.create_future()
        self._ended = loop.create_future()
        loop.add_reader(self._conn.fileno(), self._receive)
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
        """Send ``op`` and return its result once the process has committed it."""
        if self._conn is None and not self._closing:
            await self._start_again()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        number = next(self._numbers)
        with self._send_lock:
            if self._conn is None or self._closing:
                raise StoreError(f"message store {self.path} is closed")
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

    def _flush(self) -> None:
        with self._send_lock:
            items, self._outbox = self._outbox, []
            conn = self._conn
            if not items:
                return
            try:
                if conn is None:
                    raise OSError("it has ended")
                # pickle.dumps, not Connection.send: multiprocessing's pickler copies its
                # dispatch table on every call (~15 us a record, measured).
                conn.send_bytes(_dumps(items))
                return
            except (OSError, ValueError) as exc:
                failure = StoreError(f"the writer process for {self.path} is gone: {exc}")
            lost = [self._pending.pop(item[0], None) for item in items]
        for entry in lost:
            if entry is not None:
                _settle_on(entry[0], self._loop, entry[1], None, failure)

    async def _start_again(self) -> None:
        assert self._restart is not None
        async with self._restart:
            if self._conn is None and not self._closing:
                log.warning("starting a new writer process for %s", self.path)
                await self.start()

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
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif kind == "failed" and self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreError(str(message[1])))

    def _lost(self) -> None:
        """The socket closed: the process ended. Nothing unanswered may count as committed."""
        loop = self._loop
        conn = self._conn
        if conn is not None and loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(conn.fileno())
            with self._send_lock:
                self._conn = None
                conn.close()
        code = None if self._process is None else self._process.poll()
        failure = StoreError(
            f"the writer process for {self.path} ended"
            + ("" if code is None else f" (exit code {code})")
            + " before confirming the commit"
        )
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                StoreError(f"the writer process for {self.path} ended before it opened the store")
            )
        elif not self._closing:
            log.error("%s", failure)
        with self._send_lock:
            pending, self._pending = self._pending, {}
            self._outbox = []
        for caller, future in pending.values():
            _settle_on(caller, loop, future, None, failure)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def close(self) -> None:
        """Let the process commit everything sent so far, answer it, and end."""
        self._closing = True
        self._flush()  # what was submitted before the close still goes
        with self._send_lock:
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    conn.send_bytes(_dumps(None))
        if conn is not None and self._ended is not None:
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


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


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


def serve(conn: Connection, path: Path, busy_timeout: float) -> int:
    """Commit what arrives on ``conn`` in batches until told to stop or the socket closes."""
    try:
        writer = _Writer(path, busy_timeout)
    except StoreError as exc:
        conn.send_bytes(_dumps(("failed", str(exc))))
        return 1
    conn.send_bytes(_dumps(("ready", None)))
    try:
        done = False
        while not done:
            items: list[_Wire] = []
            try:
                # Block for the first message only; each carries one turn's submissions.
                message = pickle.loads(conn.recv_bytes())
                while True:
                    if message is None:
                        done = True
                        break
                    items.extend(message)
                    if len(items) >= MAX_BATCH or not conn.poll(0):
                        break
                    message = pickle.loads(conn.recv_bytes())
            except EOFError:
                done = True  # the server is gone: commit what arrived, then end
            batch = [_from_wire(item) for item in items]
            if not batch:
                continue
            ops: Sequence[_Op] = [op for _, op in batch]
            writer.write(ops)
            answers = [(n, op.result, _error_to_wire(op.error)) for n, op in batch]
            try:
                conn.send_bytes(_dumps(("done", writer.commits, answers)))
            except OSError:
                done = True  # nobody to answer; the batch is committed all the same
    finally:
        writer.close()
    return 0


def main(argv: Sequence[str]) -> int:
    fd, path, busy_timeout = argv
    # The server stops this process (through the socket) once its sessions are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="sinkd store writer: %(message)s")
    with Connection(int(fd)) as conn:
        return serve(conn, Path(path), float(busy_timeout))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
