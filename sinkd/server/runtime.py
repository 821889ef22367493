"""Wiring for a running server: settings → profiles → store → SMTP listener → HTTP API.

Owns start-up and shutdown of ``sinkd serve`` (and of test servers): it builds the one
``Judge`` (profiles, routing, lookups) and the one ``Recorder`` (store, verdict log, events)
every entry point shares, and the pool of worker processes that judges large messages
(``sinkd.services.offload``, started by the first one); it prepares TLS, binds the SMTP
listener and serves the HTTP API (``sinkd.web``, over narrow dependencies) in the same event
loop. It holds no policy and parses
no command line (``sinkd.cli`` does); what it runs with is ``sinkd.services.settings.Settings``,
declared there once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sinkd.core.chaos import Chaos, ChaosConfig
from sinkd.core.delivery_state import DeliveryState
from sinkd.core.engine import Router
from sinkd.core.profiles import ProfileSet
from sinkd.errors import ConfigError, NotFound
from sinkd.listen import listen, show
from sinkd.server import logs
from sinkd.server.handler import SinkHandler
from sinkd.server.options import ServerOptions
from sinkd.server.protocol import protocol_factory
from sinkd.server.tls import self_signed, server_context
from sinkd.server.workers import WorkerPool, worker_chaos
from sinkd.services.ids import configure_ids
from sinkd.services.judge import DnsOptions, Judge
from sinkd.services.metrics import Metrics
from sinkd.services.offload import Job, JudgePool, WorkerSetup, judge_task, worker_count
from sinkd.services.recorder import Recorder
from sinkd.services.relay import RelayConfig, Relayer
from sinkd.services.settings import Settings
from sinkd.store import Store, VerdictSink
from sinkd.store.backends import in_memory, open_store, shared_delivery_state, shared_links
from sinkd.store.verdict_log import VerdictLog
from sinkd.web import HttpServer, create_app
from sinkd.web.common import HttpOptions, WebContext
from sinkd.web.hub import Hub

if TYPE_CHECKING:
    from sinkd.store.pg_events import Notification, SharedLinks
    from sinkd.store.pg_state import PgDeliveryState

log = logging.getLogger(__name__)
# How long a scrape waits for each worker's measurements: a worker busy judging a large
# message still answers within this; one that does not is left out of that scrape (logged).
METRICS_TIMEOUT = 2.0

SMTP_BACKLOG = 1024  # pending connections per listening socket
MAX_WORKERS = 4  # --workers 0 (auto): beyond four, SQLite's single writer is the bound

T = TypeVar("T")


class Sinkd:
    """A running sinkd: ``await start()``, then ``smtp_address`` (and ``http_address`` unless
    ``settings.http`` is False); ``await stop()``.

    Under ``localhost`` (the default host) those are the 127.0.0.1 addresses, and
    ``smtp_addresses`` and ``http_addresses`` list every one it listens on: ::1 too, on the
    same port."""

    def __init__(
        self,
        settings: Settings,
        *,
        listener: tuple[int, int] = (0, 1),
        store: VerdictSink | None = None,
        judge_job: Job = judge_task,
    ) -> None:
        self.settings = settings
        self._judge_job = judge_job  # what the judge workers run (tests hold it at a gate)
        # The worker processes judging large messages (--judge-offload-bytes), started by the
        # first one; None when every message is judged in this process.
        self.judge_pool: JudgePool | None = None
        # (index, total) of this process's SMTP listener: (0, 1) alone; a worker of
        # ``--workers N`` is (i, N) with i >= 1 and serves no HTTP (sinkd.server.workers).
        self.listener = listener
        self.workers: WorkerPool | None = None
        self._given_sink = store  # a worker's PipeStore: records go to the writer process
        self._scratch: tempfile.TemporaryDirectory[str] | None = None  # --db :memory:'s certificate
        self._factory: Callable[[], asyncio.Protocol] | None = None  # a worker's protocols
        # Where the SMTP path saves; ``store`` too is set (the same object) unless a worker's
        # sink was given, and is what the HTTP API reads.
        self.sink: VerdictSink | None = None
        self.store: Store | None = None
        self.server: asyncio.Server | None = None  # the first of ``servers`` (127.0.0.1's)
        self.servers: list[asyncio.Server] = []  # one per listening socket
        self._listeners: list[socket.socket] = []  # the SMTP sockets, while workers serve them
        self.smtp_address: tuple[str, int] | None = None
        self.smtp_addresses: list[tuple[str, int]] = []
        # What greylist and rate_limit filters remember: one per server, across sessions; with
        # a PostgreSQL store, what every instance shares (made by start()).
        self.delivery: DeliveryState | PgDeliveryState = DeliveryState(
            delay_override=settings.greylist_delay
        )
        self.chaos: Chaos | None = None  # set by start(); Chaos.update changes it at runtime
        self.http: HttpServer | None = None
        self.http_address: tuple[str, int] | None = None
        self.http_addresses: list[tuple[str, int]] = []
        # Live events (GET /api/v1/events): every stored verdict, every release.
        self.hub = Hub()
        # GET /metrics: this server's counts; with --workers, theirs too (publish_committed).
        self.metrics = Metrics()
        self.handler: SinkHandler | None = None  # set by start()
        # Set by start(): the one Judge (profiles, routing, resolver, spamd, delivery state)
        # and the one Recorder (store, verdict log, events) every entry point goes through.
        self.judge: Judge | None = None
        self.recorder: Recorder | None = None
        # --relay: delivers the relay queue onward; in the primary only (index 0), which the
        # writer process tells of the workers' commits (publish_committed wakes it).
        self.relayer: Relayer | None = None

        self.verdict_log: VerdictLog | None = None
        # This server among the instances sharing its store (a PostgreSQL one): named in the
        # events its writer commits, so that it does not publish its own records twice.
        self.instance = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        # The events of other instances and the relay lease (None: a store of one machine).
        self.links: SharedLinks | None = None

    def set_routing(self, profile: str, routes: Mapping[str, str], *, forward: bool = True) -> None:
        """Judge mail with ``profile`` by default and ``routes`` (domain -> profile id) from the
        next MAIL FROM on; open transactions finish with the routing they began with. Only
        profile ids are accepted, never paths. ``ProfileError`` names an unknown or invalid
        profile; nothing changes then. The DNS fixtures the profiles name are loaded too,
        as ``sinkd serve --profile ... --route ...`` would load them."""
        assert self.judge is not None, "the server has not started"
        routing = self.judge.prepare_routing(profile, routes)
        stateful = routing.router.keeps_state() if self.delivery_in_memory else None
        if self.workers is not None and stateful:
            raise ConfigError(
                f"profile {stateful!r} keeps delivery state (greylisting, rate or connection "
                f"limits) in each process's memory, and this server runs "
                f"{self.workers.count} SMTP processes; restart it with --workers 1"
            )
        self.judge.apply_routing(routing)
        self.settings.profile, self.settings.routes = profile, dict(routes)
        if forward and self.workers is not None:
            self.workers.set_routing(profile, dict(routes))
        shown = ", ".join(f"{d}={p}" for d, p in routes.items()) or "none"
        log.info("routing profile=%s routes=%s (set over HTTP)", profile, shown)

    def publish_committed(self, json_texts: Sequence[str]) -> None:
        """``verdict`` events for the records the workers saved (the writer process tells the
        primary of them after each commit; the workers wrote their verdict log lines)."""
        records = [json.loads(text) for text in json_texts]
        self.metrics.count_json(records)  # the workers' own registries are never scraped
        if self.relayer is not None and any(data.get("relay") for data in records):
            self.relayer.wake()
        if self.hub.subscribers:
            for data in records:
                self.hub.publish("verdict", data)

    async def publish_shared(self, found: Notification) -> None:
        """Another instance on the shared store committed ``found``: its records' events for
        this server's subscribers, read back from the store (a notification carries ids
        only). Metrics are not counted here: each instance counts what it judged, and
        Prometheus sums the instances."""
        if not self.hub.subscribers or self.store is None:
            return
        for message_id in found.ids:
            try:
                data = (await self.store.get(message_id)).data
            except NotFound:
                continue  # deleted meanwhile: nothing to show
            if found.event == "relay":
                self.hub.publish("relay", {"id": message_id, "relay": data["relay"]})
            elif found.event in ("verdict", "released"):
                self.hub.publish(found.event, data)

    async def gather_metrics(self) -> None:
        """Ask every worker for its own measurements (commit and judging time, open
        sessions), which the primary's ``/metrics`` adds to its own (``Metrics.others``).
        A worker that does not answer in time keeps its last answer: left out, its counts
        and histogram sums would fall, which Prometheus reads as a counter reset."""
        if self.workers is not None:
            self.metrics.others.update(await self.workers.metrics(within=METRICS_TIMEOUT))
        if self.store is not None:  # read at scrape time: right across restarts and workers
            self.metrics.relay_depth.set(await self.store.relay_depth())

    async def adopt(self, connection: socket.socket) -> None:
        """Serve an SMTP connection the primary accepted (a worker of ``--workers``)."""
        assert self._factory is not None, "not a worker"
        await asyncio.get_running_loop().connect_accepted_socket(self._factory, connection)

    def store_ready(self) -> bool:
        """Whether the store takes writes (its writer process is there; see /readyz)."""
        return self.sink is not None and self.sink.writable

    def smtp_serving(self) -> bool:
        """Whether SMTP is served: this process's listener, or every worker's (``--workers``)."""
        if self.workers is not None:
            return self.workers.serving()
        return bool(self.servers) and all(server.is_serving() for server in self.servers)

    def set_chaos(self, config: ChaosConfig) -> None:
        """Replace the chaos triggers in every SMTP process (``PUT /api/v1/chaos``)."""
        assert self.chaos is not None, "the server has not started"
        self.chaos.update(config)
        if self.workers is not None:
            self.workers.set_chaos(self.chaos.config)

    @property
    def shared_delivery(self) -> PgDeliveryState | None:
        """The delivery state shared through a PostgreSQL store, once start() made it."""
        return None if isinstance(self.delivery, DeliveryState) else self.delivery

    @property
    def delivery_in_memory(self) -> bool:
        """Whether delivery state lives in this process's memory (not with a PostgreSQL
        store, whose instances and worker processes all share it)."""
        return self.settings.location.kind != "postgresql"

    def listener_count(self, router: Router) -> int:
        """How many SMTP processes to run: ``--workers N`` as given (refused when a profile
        keeps delivery state in memory, which processes would not share); ``--workers 0``
        (auto): one per core up to ``MAX_WORKERS``, or 1 when a profile keeps state or chaos
        is on (a seeded chaos run replays exactly only in one process)."""
        s = self.settings
        if s.location.kind == "memory":
            if s.workers > 1:
                raise ConfigError(
                    f"--workers {s.workers}: --db :memory: keeps the messages in one process's "
                    "memory; use a database file with worker processes"
                )
            return 1
        # A PostgreSQL store's delivery state is shared by every process (pg_state).
        stateful = router.keeps_state() if self.delivery_in_memory else None
        if s.workers == 0:
            if stateful or s.chaos_triggers:
                why = f"profile {stateful!r} keeps delivery state" if stateful else "chaos is on"
                log.info("workers: 1 (%s)", why)
                return 1
            return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
        if s.workers > 1 and stateful:
            raise ConfigError(
                f"--workers {s.workers}: profile {stateful!r} keeps delivery state "
                "(greylisting, rate or connection limits) in each process's memory; "
                "use --workers 1 with it"
            )
        return s.workers

    async def start(self) -> None:
        s = self.settings
        # A missing self-signed certificate is made by a child process while the profiles load.
        making_cert = None
        if not (s.tls_cert and s.tls_key):
            # Beside a SQLite file; with a PostgreSQL store, in --db's directory (the data
            # directory of this machine: a certificate is no record to share).
            location = s.location
            cert_dir = location.path.parent if location.path is not None else s.db.parent
            if location.kind == "memory":
                # No data directory to keep it in (":memory:"'s parent is the working
                # directory): a certificate of this run only, removed at stop.
                self._scratch = tempfile.TemporaryDirectory(prefix="sinkd-")
                cert_dir = Path(self._scratch.name)
            making_cert = asyncio.ensure_future(self_signed(cert_dir, s.hostname))
        try:
            await self._start(making_cert)
        except BaseException:
            self._remove_scratch()  # a failed start leaves nothing behind
            raise
        finally:
            if making_cert is not None and not making_cert.done():
                making_cert.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await making_cert

    async def _start(self, making_cert: asyncio.Future[tuple[Path, Path]] | None) -> None:
        s = self.settings
        if s.judge_offload_bytes is not None:
            setup = WorkerSetup(tuple(s.profiles_dirs), s.dns, s.dns_server, s.dns_timeout, s.spamd)
            self.judge_pool = JudgePool(
                setup,
                workers=worker_count(s.judge_workers),
                threshold=s.judge_offload_bytes,
                job=self._judge_job,
            )
        if s.location.kind == "postgresql" and self.shared_delivery is None:
            # Started below, once nothing before the listeners can fail.
            self.delivery = shared_delivery_state(
                s.location, self.instance, delay_override=s.greylist_delay
            )
        judge = self.judge = Judge(
            ProfileSet(s.profiles_dirs),
            profile=s.profile,
            routes=s.routes,
            dns=DnsOptions(s.dns, s.dns_server, tuple(s.dns_zones), s.dns_timeout),
            spamd=s.spamd,
            delivery=self.delivery,
            offload=self.judge_pool,
        )
        router = judge.router
        if making_cert is None:
            assert s.tls_cert and s.tls_key
            cert, key = s.tls_cert, s.tls_key
        else:
            cert, key = await making_cert
        options = ServerOptions.of(s, server_context(cert, key))
        relay = RelayConfig.of(s)
        if relay is not None:  # before the store: a bad --relay-ca stops the start cleanly
            relay.tls_context()
        if s.verdict_log is not None:  # before the store: a bad path stops the start cleanly
            self.verdict_log = VerdictLog(s.verdict_log)
            log.info("verdict log %s", s.verdict_log)
        # The writes run in a process of their own: a writer thread would share the
        # interpreter lock with the SMTP loop (sinkd.store.writer says what that costs).
        if self._given_sink is not None:
            self.sink = self._given_sink
        else:
            # Its writer names this instance in the events it notifies (see publish_shared).
            self.sink = self.store = await open_store(
                s.location, writer="process", migrate=s.migrate, instance=self.instance
            )
            if in_memory(s.location):
                log.info("store: in memory, gone when the server stops (--db :memory:)")
        index, total = self.listener
        if index == 0:
            self.links = shared_links(
                s.location, self.instance, self.publish_shared, relay=relay is not None
            )
        if relay is not None and index == 0 and self.store is not None:
            # On a shared store, only the instance holding the lease relays (pg_events).
            queue = self.store if self.links is None else self.links.relay_queue(self.store)
            self.relayer = Relayer(relay, queue, metrics=self.metrics, events=self.hub)
        self.recorder = Recorder(
            self.sink,
            verdict_log=self.verdict_log,
            events=self.hub,
            metrics=self.metrics,
            # Every SMTP process decides which of its records are queued (same commit); the
            # primary's relayer delivers them.
            relay_verdicts=s.relay_verdicts if relay is not None else (),
            on_relay_queued=None if self.relayer is None else self.relayer.wake,
        )
        workers = self.listener_count(router) if index == 0 else 1
        if workers > 1:
            total = workers + 1  # the primary (index 0) and the SMTP workers 1..N draw ids
        chaos = ChaosConfig(tuple(s.chaos_triggers), s.chaos_seed)
        self.chaos = Chaos(worker_chaos(chaos, index))
        configure_ids(index, total)
        shared = self.shared_delivery
        handler = self.handler = SinkHandler(
            judge, self.recorder, options, chaos=self.chaos, metrics=self.metrics, shared=shared
        )
        if shared is not None:
            await shared.start()
        if workers > 1:
            # The workers handle every SMTP connection; the primary accepts them and hands
            # each to the next worker in turn (sinkd.server.workers) and keeps the HTTP API and the
            # event hub; every process's records go to the store's writer process.
            self._listeners = await self._listen()
            self.smtp_addresses = [_address(listener) for listener in self._listeners]
            port = self.smtp_addresses[0][1]
            await self._start_workers(workers, port, self.chaos.config.seed)
            assert self.workers is not None
            for listener in self._listeners:  # every socket's connections go to the workers
                self.workers.accept_from(listener)
        elif index > 0:
            # A worker: no listener of its own; the primary hands it accepted connections.
            self._factory = protocol_factory(handler, options)
            self.smtp_addresses = [(s.host, s.port)]
        else:
            loop = asyncio.get_running_loop()
            listeners = await self._listen()
            # One asyncio server per socket: given several hosts and port 0, create_server
            # would pick a different port for each.
            while listeners:
                try:
                    server = await loop.create_server(
                        protocol_factory(handler, options), sock=listeners[0], backlog=SMTP_BACKLOG
                    )
                except BaseException:
                    for listener in listeners:
                        listener.close()
                    await self.stop()
                    raise
                self.servers.append(server)
                listeners.pop(0)
            self.server = self.servers[0]
            self.smtp_addresses = [_address(server.sockets[0]) for server in self.servers]
        self.smtp_address = self.smtp_addresses[0]
        listening = " and ".join(show(address) for address in self.smtp_addresses)
        routes = ", ".join(f"{d}={p}" for d, p in s.routes.items()) or "none"
        dns = "live" if s.dns == "live" or s.dns_server else "offline"
        if s.dns_server:
            dns += f" via {s.dns_server[0]}:{s.dns_server[1]}"
        log.info(
            "listening on %s profile=%s routes=%s store=%s dns=%s"
            + (f" (worker {index})" if index else "")
            + (f" ({workers} SMTP workers)" if workers > 1 else ""),
            listening,
            router.default.name,
            routes,
            s.location.shown,
            dns,
        )
        if self.chaos.enabled:  # the seed is logged so that a run can be repeated exactly
            log.info("chaos triggers=%s", self.chaos.describe())
        if self.links is not None:
            self.links.start()
        if self.relayer is not None:  # its first scan picks up what a previous run left queued
            self.relayer.start()
        if s.http:
            try:
                await self._start_http()
            except BaseException:
                await self.stop()
                raise

    async def _listen(self) -> list[socket.socket]:
        """The SMTP sockets (``sinkd.listen``); when they cannot be bound, what started is
        stopped (the store's writer process) before the error goes up."""
        try:
            return listen(self.settings.host, self.settings.port, backlog=SMTP_BACKLOG)
        except BaseException:
            await self.stop()
            raise

    async def _start_workers(self, count: int, port: int, chaos_seed: int | None) -> None:
        worker_settings = dataclasses.replace(
            # Each worker appends its own records' lines to the verdict log (O_APPEND).
            self.settings,
            port=port,
            http=False,
            workers=1,
            chaos_seed=chaos_seed,
        )
        # SqliteStore or PostgresStore (imported only with the postgresql extra).
        writer = getattr(self.store, "writer_process", None)
        assert writer is not None, "the server's store writes in a process"
        self.workers = WorkerPool(worker_settings, count, logs.current(), writer, type(self))
        writer.on_committed = self.publish_committed
        writer.on_restart = self.workers.reattach
        try:
            await self.workers.start()
        except BaseException:
            self.workers = None
            await self.stop()
            raise
        log.info("workers: %d SMTP processes on port %d", count, port)

    async def _start_http(self) -> None:
        s = self.settings
        assert self.judge is not None and self.recorder is not None and self.store is not None
        context = WebContext(
            judge=self.judge,
            recorder=self.recorder,
            messages=self.store,
            hub=self.hub,
            delivery=self.delivery,
            metrics=self.metrics,
            server=self,  # readiness, chaos and routing: ServerControl
            http=HttpOptions(s.http_host, tuple(s.http_allowed_hosts), s.http_auth),
        )
        self.http = HttpServer(create_app(context), s.http_host, s.http_port)
        await self.http.start()
        self.http_address = self.http.address
        self.http_addresses = list(self.http.addresses)
        assert self.http_address is not None
        log.info("http api on %s", " and ".join(show(address) for address in self.http_addresses))

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    async def stop(self) -> None:
        self._remove_scratch()
        self.hub.close()  # ends open event streams, so the HTTP server need not wait for them
        for listener in self._listeners:  # no new connections, then the workers stop
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        self._listeners = []
        if self.workers is not None:
            await self.workers.stop()
            self.workers = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
            self.http_address = None
            self.http_addresses = []
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers = []
        self.server = None
        if self.relayer is not None:  # before the store: attempts record their outcome
            await self.relayer.stop()
            self.relayer = None
        if self.links is not None:
            await self.links.close()
            self.links = None
        if self.judge_pool is not None:  # after SMTP: no message is sent to it any more
            await self.judge_pool.close()
        if self.shared_delivery is not None:  # after SMTP: leave the shared counts
            await self.shared_delivery.close()
        if self.sink is not None:
            await self.sink.close()
            self.sink = self.store = None
        if self.verdict_log is not None:
            self.verdict_log.close()
            self.verdict_log = None


def _address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


class ServerThread:
    """A ``Sinkd`` in a background thread with its own event loop, for synchronous callers
    (the pytest plugin, scripts): ``start()`` returns once it listens (or raises what stopped
    it), ``stop()`` stops it and ends the thread."""

    def __init__(self, settings: Settings, *, start_timeout: float = 30.0) -> None:
        self.sinkd = Sinkd(settings)
        self.start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sinkd:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="sinkd-server", daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.sinkd.start(), loop)
        try:
            started.result(self.start_timeout)
        except BaseException:
            self._end()
            raise
        return self.sinkd

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.sinkd.stop(), self._loop).result(30.0)
        finally:
            self._end()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in the server's loop and return its result (for tests and
        tools that change the running server from outside)."""
        assert self._loop is not None, "the server thread is not running"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30.0)

    def _end(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30.0)
        loop.close()

    def __enter__(self) -> Sinkd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
