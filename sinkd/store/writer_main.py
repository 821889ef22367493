"""The store's writer process itself: ``python -m sinkd.store.writer_main FD KIND PATH TIMEOUT
MIGRATE`` (a PostgreSQL store's URL comes in the environment, ``STORE_URL_ENV``, never in argv:
``ps`` shows argv to every user of the machine, and the URL may hold a password).

Owns the process's loop (read what the clients send, commit it in batches, answer each client
once per batch, tell them when the store's health changes) and the wire format both ends use,
and which writer a store has (``WriterSpec.open``: SQLite's ``sinkd.store.sql.Writer`` with its
checkpoints, or ``sinkd.store.pg_sql.PgWriter``), which the writer thread
(``sinkd.store.writer.WriterThread``) opens too. Started and stopped by ``sinkd.store.writer``.
Imports only the standard library and those light modules, no asyncio: the process starts fast
and stays small (~15 MiB resident); psycopg only for a PostgreSQL store. It must not decide
anything about mail or answer before a commit.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import pickle
import select
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sinkd.errors import NotFound, StoreError
from sinkd.location import NEEDS_EXTRA, StoreLocation
from sinkd.store import MessageRecord
from sinkd.store.columns import MessageRow, SearchText, prepare_json
from sinkd.store.sql import MAX_BATCH, Op, Writer

log = logging.getLogger(__name__)

# How long a batch waits for more operations when the server is busy (see serve()). Under 20
# sessions at 1 KB, one SMTP process: 0 ms 1,513 msgs/s, 1 ms 1,912-2,214, 2 ms 1,873-2,042,
# 4 ms 1,951, 8 ms 1,756 (longer waits leave the cores idle); runs differ by ~10%.
COMMIT_DELAY = 0.001

# Down: a list of (number, kind, message_id, row, raw, filtered, codes, received, search,
#       released_at, relay) (see to_wire; a record sent as data, record_to_wire, has kind "record"
#       and (transaction_id, its JSON shape marshalled) for row), the operations submitted
#       while the client's previous batch was in flight; from the server also None (stop) and
#       ("attach",) followed by a socket (SCM_RIGHTS) for one more client.
# Up:   ("ready", None) | ("failed", text) | ("done", commits, [(number, result, error)]) where
#       error is None or (class name, text) | to the server: ("committed", [json text]), the
#       records the other clients saved in a batch | to every client: ("health", bool), when
#       the store became unreachable or reachable again (a PostgreSQL outage).
Wire = tuple[Any, ...]


# A message's raw or filtered bytes of this size or more travel out of band (``frame``): not
# copied into the pickle, but written to the socket from the record's own bytes.
OUT_OF_BAND = 64 * 1024


def _blob(data: bytes | None) -> bytes | pickle.PickleBuffer | None:
    """``data`` as it travels: a large one as a ``PickleBuffer``, which ``frame`` sends out
    of band; it arrives as a read-only ``memoryview``, which SQLite stores as the same BLOB."""
    if data is not None and len(data) >= OUT_OF_BAND:
        return pickle.PickleBuffer(data)
    return data


def _unblob(data: Any) -> Any:
    """A blob as ``from_wire`` hands it on: the buffer an out-of-band one was received into
    (a ``bytearray``, which has the bytes methods the store uses and binds as a BLOB), not the
    read-only view pickle wraps it in; anything else as it came."""
    if isinstance(data, memoryview):
        base = data.obj
        if isinstance(base, bytes | bytearray) and len(base) == data.nbytes:
            return base
        return bytes(data)
    return data


def to_wire(number: int, op: Op) -> Wire:
    """``op`` as it travels, numbered for its answer: plain tuples only (the named ones would
    pickle their class with every operation)."""
    return (number, *op_to_wire(op))


def op_to_wire(op: Op) -> Wire:
    """``op`` as it travels, without its number (the client adds it)."""
    return (
        op.kind,
        op.message_id,
        None if op.row is None else tuple(op.row),
        _blob(op.raw),
        _blob(op.filtered),
        op.codes,
        # Milliseconds since the epoch: pickling a datetime cost ~8 us of a record's ~9.
        None if op.received is None else (op.received - _EPOCH) // _MILLISECOND,
        tuple(op.search),
        op.released_at,
        op.relay,
    )


def record_to_wire(record: MessageRecord) -> Wire | None:
    """A record to save as it travels without its number (``WriterClient.submit_record``):
    its JSON shape, which the writer process encodes and takes the columns from
    (``prepare_json``), so that the SMTP process, the busier one, does not. None when the
    shape is not plain data (``marshal`` takes built-in types only) or the time is naive: then
    the caller prepares it itself, as before.

    The JSON text is most of ``prepare``'s cost (~13 of its ~24 us at 1 KB, no-filter; more
    with more findings) and marshalling the shape costs ~3 us."""
    received = record.received_at
    if received.tzinfo is None:
        return None
    data = record.to_json()
    try:
        payload = marshal.dumps(data)
    except ValueError:
        return None
    millis = (received - _EPOCH) // _MILLISECOND
    return (
        "record",
        record.id,
        (record.transaction_id, payload),
        _blob(record.raw),
        _blob(record.verdict.filtered),
        (),
        millis,
        (),
        None,
        None,  # the relay state to queue is in the JSON shape (prepare_json takes it)
    )


def from_wire(item: Wire) -> tuple[int, Op]:
    number, kind, message_id, row, raw, filtered, codes, millis, search, released_at, relay = item
    raw, filtered = _unblob(raw), _unblob(filtered)
    if kind == "record":
        return number, _record_op(message_id, row, raw, filtered, millis)
    op = Op(
        kind,
        None,
        None,
        message_id,
        None if row is None else MessageRow._make(row),
        raw=raw,
        filtered=filtered,
        codes=codes,
        received=None if millis is None else _EPOCH + millis * _MILLISECOND,
        search=SearchText._make(search),
        released_at=released_at,
        relay=relay,
    )
    return number, op


def _record_op(
    message_id: str,
    sent: tuple[str, bytes],
    raw: bytes | None,
    filtered: bytes | None,
    millis: int,
) -> Op:
    """The save of a record sent as data; when it has no JSON text or columns, an op that
    carries the ``StoreError`` (answered, never written), as ``prepare`` raised it before."""
    transaction_id, payload = sent
    try:
        prepared = prepare_json(
            marshal.loads(payload),
            message_id,
            transaction_id,
            _EPOCH + millis * _MILLISECOND,
            raw,
            filtered,
        )
    except StoreError as exc:
        return Op("save", None, None, message_id, error=exc)
    except Exception as exc:  # a shape without some field: that record fails, not the batch
        error = StoreError(f"message {message_id!r} cannot be stored: {exc!r}")
        return Op("save", None, None, message_id, error=error)
    return Op.of_prepared(prepared, None)


def error_to_wire(error: BaseException | None) -> tuple[str, str] | None:
    if error is None:
        return None
    return ("NotFound" if isinstance(error, NotFound) else "StoreError", str(error))


def error_from_wire(error: tuple[str, str]) -> StoreError:
    kind, text = error
    return NotFound(text) if kind == "NotFound" else StoreError(text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# Each message: its pickle's length and how many out-of-band buffers follow it, each buffer's
# length, the pickle, then the buffers (pickle protocol 5, PEP 574).
_HEADER = struct.Struct("!II")
_LENGTH = struct.Struct("!Q")


class Channel:
    """The writer process's end of a client's socket: blocking reads and writes of framed
    messages (``frame``), and sockets for more clients passed over it (SCM_RIGHTS).
    multiprocessing's ``Connection`` would do the same and cost the process ~3 MiB of
    imports; the clients' ends are non-blocking (``sinkd.store.writer``)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, value: Any) -> None:
        for part in frame(value):
            self.sock.sendall(part)

    def recv(self) -> Any:
        """The next message; EOFError when the other end has closed."""
        size, count = _HEADER.unpack(self._exactly(_HEADER.size))
        lengths = [_LENGTH.unpack_from(self._exactly(_LENGTH.size))[0] for _ in range(count)]
        data = self._exactly(size)
        # Each buffer is received into its own bytearray and used as it is (no copy).
        return pickle.loads(data, buffers=[self._exactly(length) for length in lengths])

    def _exactly(self, size: int) -> bytearray:
        # Exactly ``size`` bytes and no more: a passed socket rides on the byte after a message.
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError
            got += n
        return buffer

    def recv_socket(self) -> socket.socket:
        _, fds, _, _ = socket.recv_fds(self.sock, 1, 1)
        if not fds:
            raise EOFError
        return socket.socket(fileno=fds[0])

    def close(self) -> None:
        self.sock.close()


def frame(value: Any) -> list[bytes | memoryview]:
    """``value`` as it travels, in parts to send in order: the header and the pickle as one
    bytes object, then each out-of-band buffer (``_blob``) as a view of the bytes it wraps.

    A 20 MiB message's raw and filtered bytes were copied into the pickle, the frame and the
    unsent buffer before: ~300 ms of the event loop that sends them. Now only the socket's
    sends copy them, as far as the socket takes them each time the loop finds it writable."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL, buffer_callback=buffers.append)
    # pickle.dumps, not multiprocessing's pickler, which copies its dispatch table on every
    # call (~15 us a record, measured).
    views = [buffer.raw() for buffer in buffers]
    header = _HEADER.pack(len(data), len(views)) + b"".join(
        _LENGTH.pack(view.nbytes) for view in views
    )
    return [header + data, *views]


class FrameReader:
    """The messages in a stream read in arbitrary pieces (a non-blocking socket's)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Take ``data``; return every message it completed, in order."""
        buffer = self._buffer
        buffer += data
        messages: list[Any] = []
        at = 0
        while len(buffer) - at >= _HEADER.size:
            size, count = _HEADER.unpack_from(buffer, at)
            start = at + _HEADER.size + count * _LENGTH.size
            if len(buffer) < start:
                break
            lengths = [
                _LENGTH.unpack_from(buffer, at + _HEADER.size + i * _LENGTH.size)[0]
                for i in range(count)
            ]
            end = start + size + sum(lengths)
            if len(buffer) < end:
                break
            buffers = []
            offset = start + size
            for length in lengths:
                buffers.append(bytes(buffer[offset : offset + length]))
                offset += length
            messages.append(pickle.loads(buffer[start : start + size], buffers=buffers))
            at = end
        del buffer[:at]
        return messages


# How many bytes committed (a record's raw, filtered and JSON bytes; a page's overhead each)
# before the WAL is checkpointed: about SQLite's own default of 1,000 pages of 4 KiB.
CHECKPOINT_BYTES = 4 * 1024 * 1024
WAL_RESTART_PAGES = 8192  # ~32 MiB of 4 KiB pages: the writer's own checkpoint, rewinding the WAL
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept after a rewind
_OP_OVERHEAD = 4096


class Checkpointer:
    """The WAL checkpoints of the writer process, on their own connection and thread.

    SQLite checkpoints in the commit that grows the WAL past 1,000 pages (wal_autocheckpoint):
    after a 20 MiB message that commit copied the 20 MiB again into the database file before
    it returned, ~half of the ~140 ms the message's save took, and every record sent meanwhile
    (a small message's 250) waited for it. The writer's connection checkpoints no more; this
    thread runs a PASSIVE checkpoint once about as much has been committed, on a connection
    of its own, which a WAL database lets run beside the writer's next commits (the sqlite3
    module releases the interpreter lock while SQLite works). Durability is the commit's
    (the WAL is fsynced, synchronous=FULL); a checkpoint only moves committed pages.
    """

    def __init__(self, writer: Writer, busy_timeout: float) -> None:
        # The writer's commits no longer checkpoint at 1,000 pages, but they still do at
        # WAL_RESTART_PAGES: under steady load the PASSIVE checkpoints of this thread never
        # catch up with the last commit, and SQLite only rewinds the WAL when a write begins
        # after a checkpoint that copied every frame, so without it the WAL grew without bound
        # (~500 MB after 30,000 1 KB messages). By then this thread has copied nearly every
        # frame, so the writer's own checkpoint has little left to copy; journal_size_limit
        # then truncates the rewound file.
        writer.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_RESTART_PAGES}")
        writer.conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        self.path = writer.path
        self.conn = sqlite3.connect(
            writer.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self.committed = 0  # bytes committed since the last checkpoint was asked for
        self._due = False  # a checkpoint was asked for (and is run even if close follows)
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sinkd-wal-checkpoint", daemon=True)
        self._thread.start()

    def count(self, ops: Sequence[Op]) -> None:
        """``ops`` were committed: ask for a checkpoint once enough has been."""
        for op in ops:
            self.committed += _OP_OVERHEAD + len(op.raw or b"") + len(op.filtered or b"")
        if self.committed >= CHECKPOINT_BYTES:
            self.committed = 0
            self._due = True
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._due:
                self._due = False
                try:
                    self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next one tries again; closing checkpoints
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            if self._stopping:
                return

    def close(self) -> None:
        """Stop the thread (after the checkpoint asked for, if any) and close its connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.conn.close()


def ready_among(channels: list[Channel], timeout: float | None) -> list[Channel]:
    readable: list[Channel]
    readable, _, _ = select.select(channels, [], [], timeout)
    return readable


# The environment variables a writer process reads: a PostgreSQL store's URL (not argv, see
# the module's docstring) and the instance name its notifications carry.
STORE_URL_ENV = "SINKD_WRITER_STORE_URL"
INSTANCE_ENV = "SINKD_INSTANCE"


class BatchWriter(Protocol):
    """What the writer loop (process or thread) needs of a store's writer: ``write`` one batch
    per transaction (each op's result or error set), ``healthy`` (the store can be reached
    now), ``tick`` when idle ``idle_interval`` seconds (None: never), ``committed`` after the
    answers went out."""

    @property
    def commits(self) -> int: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def idle_interval(self) -> float | None: ...

    def write(self, ops: Sequence[Op]) -> None: ...

    def tick(self) -> None: ...

    def committed(self, ops: Sequence[Op]) -> None: ...

    def close(self) -> None: ...


class SqliteBatch:
    """SQLite's ``Writer`` with the writer process's WAL checkpoints (``Checkpointer``): the
    file is always there, so it is always healthy; its failures are each batch's own."""

    healthy = True
    idle_interval: float | None = None

    def __init__(self, path: Path, busy_timeout: float, *, checkpoints: bool) -> None:
        self.writer = Writer(path, busy_timeout)
        self.checkpointer: Checkpointer | None = None
        if checkpoints:
            try:
                self.checkpointer = Checkpointer(self.writer, busy_timeout)
            except sqlite3.Error as exc:
                self.writer.close()
                raise StoreError(f"cannot open {path} for checkpoints: {exc}") from exc

    @property
    def commits(self) -> int:
        return self.writer.commits

    def write(self, ops: Sequence[Op]) -> None:
        self.writer.write(ops)

    def tick(self) -> None:
        """Nothing to check: a SQLite file needs no connection kept alive."""

    def committed(self, ops: Sequence[Op]) -> None:
        if self.checkpointer is not None:
            self.checkpointer.count(ops)  # after the answers: a checkpoint never delays them

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()  # first: the writer's close checkpoints the rest
        self.writer.close()


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """Which store a writer writes to and how it opens it: what the server hands the writer
    process (``sinkd.store.writer.WriterProcess``) or thread."""

    location: StoreLocation
    busy_timeout: float = 5.0  # SQLite: seconds a statement waits for another's lock
    migrate: bool = False  # PostgreSQL: create or migrate the schema (SQLite always does)
    instance: str = ""  # PostgreSQL: the origin its notifications name

    @property
    def shown(self) -> str:
        return self.location.shown

    def open(self, *, checkpoints: bool = False) -> BatchWriter:
        """The writer, its store opened (created or migrated as allowed); ``StoreError``."""
        if self.location.kind == "postgresql":
            # Imported here only: psycopg is the optional ``postgresql`` extra, and a SQLite
            # user without it must still be able to run sinkd (and this process stays small).
            try:
                from sinkd.store.pg_sql import PgWriter
            except ImportError as exc:
                raise StoreError(f"{NEEDS_EXTRA.format(shown=self.shown)} ({exc})") from None
            if not self.location.url:  # libpq would take "" for its defaults: another database
                raise StoreError(f"the writer process was given no URL (${STORE_URL_ENV})")
            return PgWriter(self.location, migrate=self.migrate, instance=self.instance)
        assert self.location.path is not None
        return SqliteBatch(self.location.path, self.busy_timeout, checkpoints=checkpoints)

    def to_argv(self) -> tuple[list[str], dict[str, str]]:
        """The writer process's arguments and extra environment for this spec."""
        path = "" if self.location.path is None else str(self.location.path)
        env = {INSTANCE_ENV: self.instance} if self.instance else {}
        if self.location.url is not None:
            env[STORE_URL_ENV] = self.location.url
        argv = [self.location.kind, path, repr(self.busy_timeout), "1" if self.migrate else "0"]
        return argv, env

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> WriterSpec:
        kind, path, busy_timeout, migrate = argv
        if kind == "postgresql":
            location = StoreLocation("postgresql", url=os.environ.pop(STORE_URL_ENV, ""))
        else:
            location = StoreLocation("sqlite", path=Path(path))
        instance = os.environ.get(INSTANCE_ENV, "")
        return cls(location, float(busy_timeout), migrate == "1", instance)


def serve(server: Channel, spec: WriterSpec) -> int:
    """Commit what the clients send, in batches, until the server says stop or goes away."""
    try:
        writer = spec.open(checkpoints=True)
    except StoreError as exc:
        server.send(("failed", str(exc)))
        return 1
    server.send(("ready", None))
    clients: list[Channel] = [server]
    healthy = writer.healthy
    try:
        done = False
        busy = False  # operations arrived while the last batch was committing
        while not done:
            items: list[tuple[Channel, Wire]] = []
            # Block until some client sends; a writer that watches a connection is told when
            # it was idle for its interval (a PostgreSQL outage shows without traffic).
            ready = ready_among(clients, writer.idle_interval)
            if not ready:
                writer.tick()
                healthy = _tell_health(writer, healthy, clients)
                continue
            # Under load, wait a moment for more before committing: a commit's cost is mostly
            # per transaction (fsync, page writes), measured 281 us of CPU per save in batches
            # of 1, 107 in batches of 3, 52 in batches of 10. An idle server (nothing arrived
            # during the last commit) commits at once.
            deadline = time.monotonic() + (COMMIT_DELAY if busy else 0.0)
            while True:
                for client in ready:
                    done = _read(client, server, clients, items, healthy) or done
                if done or len(items) >= MAX_BATCH:
                    break
                ready = ready_among(clients, max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
            if items:
                _commit(writer, server, items)
                healthy = _tell_health(writer, healthy, clients)
            busy = bool(ready_among(clients, 0))
    finally:
        writer.close()
        for client in clients:
            client.close()
    return 0


def _tell_health(writer: BatchWriter, was: bool, clients: list[Channel]) -> bool:
    """Tell every client when the store's health changed; the health now."""
    now = writer.healthy
    if now != was:
        for client in clients:
            with contextlib.suppress(OSError):
                client.send(("health", now))
    return now


def _read(
    client: Channel,
    server: Channel,
    clients: list[Channel],
    items: list[tuple[Channel, Wire]],
    healthy: bool = True,
) -> bool:
    """Take one message from ``client``; True when the server said stop or went away. A
    client attached while the store is unreachable is told so at once."""
    try:
        message = client.recv()
    except (EOFError, OSError):
        if client is server:
            return True  # the server is gone: commit what arrived, then end
        clients.remove(client)  # a worker ended
        client.close()
        return False
    match message:
        case None:
            return client is server
        case ("attach",):
            attached = Channel(client.recv_socket())
            clients.append(attached)
            if not healthy:
                with contextlib.suppress(OSError):
                    attached.send(("health", False))
        case _:
            items.extend((client, item) for item in message)
    return False


def _commit(writer: BatchWriter, server: Channel, items: list[tuple[Channel, Wire]]) -> None:
    """One transaction for ``items``, then each client's answers in one message."""
    batch = [(client, *from_wire(item)) for client, item in items]
    ops = [op for _, _, op in batch if op.error is None]  # not those that could not be made
    if ops:
        writer.write(ops)
    answers: dict[Channel, list[tuple[int, Any, tuple[str, str] | None]]] = {}
    others: list[str] = []
    for client, number, op in batch:
        answers.setdefault(client, []).append((number, op.result, error_to_wire(op.error)))
        if client is not server and op.row is not None and op.error is None:
            others.append(op.row.data)  # a record another client saved: its JSON text
    for client, answered in answers.items():
        # A client that is gone gets nothing; its records are committed all the same.
        with contextlib.suppress(OSError):
            client.send(("done", writer.commits, answered))
    if others:
        with contextlib.suppress(OSError):
            server.send(("committed", others))
    writer.committed(ops)


def main(argv: Sequence[str]) -> int:
    fd, *rest = argv
    spec = WriterSpec.from_argv(rest)
    # The server stops this process (through the socket) once its sessions are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="sinkd store writer: %(message)s")
    return serve(Channel(socket.socket(fileno=int(fd))), spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
