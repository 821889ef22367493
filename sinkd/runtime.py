"""Wiring for a running server: settings → profiles → store → SMTP listener → HTTP API.

Owns start-up and shutdown of ``sinkd serve`` (and of test servers): it loads and compiles the
profiles, opens the verdict log and the store, prepares TLS, binds the SMTP listener and serves
the HTTP API (``sinkd.web``) in the same event loop. It holds no policy and parses
no command line (``cli.py`` does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sinkd.chaos import Chaos, ChaosConfig, ChaosTrigger
from sinkd.delivery_state import DeliveryState
from sinkd.dns import DnsMode, build_resolver
from sinkd.engine import Pipeline, Router, compile_profile
from sinkd.ports import Lookups, Resolver
from sinkd.profiles import DEFAULT_PROFILE, ProfileSet
from sinkd.smtp import AuthMode, ServerOptions, SinkHandler, protocol_factory
from sinkd.spamd import SpamdService
from sinkd.store import MessageRecord, Store
from sinkd.store.sqlite import open_sqlite
from sinkd.tls import self_signed, server_context
from sinkd.verdict_log import VerdictLog
from sinkd.web import HttpServer, create_app
from sinkd.web.hub import Hub

log = logging.getLogger(__name__)


def default_db_path() -> Path:
    """``$SINKD_DB``, else ``$XDG_DATA_HOME/sinkd/sinkd.db`` (``~/.local/share/sinkd``)."""
    if os.environ.get("SINKD_DB"):
        return Path(os.environ["SINKD_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sinkd" / "sinkd.db"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 2525
    profile: str = DEFAULT_PROFILE
    profiles_dirs: list[Path] = field(default_factory=list)
    routes: Mapping[str, str] = field(default_factory=dict)
    db: Path = field(default_factory=default_db_path)
    max_message_size: int = 52428800
    max_recipients: int = 1000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth: AuthMode = "any"
    auth_user: str | None = None
    auth_password: str | None = None
    client_ip: str | None = None
    helo: str | None = None
    proxy_protocol: bool = False
    spamd: tuple[str, int] | None = None  # --spamd: overrides every spamassassin filter's address
    dns: DnsMode = "offline"  # offline: DNS answers come from fixtures only, never the network
    dns_server: tuple[str, int] | None = None  # implies live
    dns_zones: list[Path] = field(default_factory=list)
    dns_timeout: float = 5.0
    greylist_delay: float | None = None  # --greylist-delay: overrides every greylist's delay
    chaos_triggers: tuple[ChaosTrigger, ...] = ()  # injected failures (README "Chaos")
    chaos_seed: int | None = None  # None: a random seed, logged at start
    hostname: str = field(default_factory=socket.getfqdn)
    http: bool = True  # serve the HTTP API (--no-http: False)
    http_host: str = "127.0.0.1"  # loopback by default: the API changes state; see http_auth
    http_port: int = 8025  # 0 picks a free one
    http_auth: tuple[str, str] | None = None  # --http-auth USER:PASS: basic auth on the API
    verdict_log: Path | None = None  # --verdict-log: one JSON line per stored verdict


def build_router(profiles: ProfileSet, default: str, routes: Mapping[str, str]) -> Router:
    """Compile the default profile and every routed one (each once)."""
    compiled: dict[str, Pipeline] = {}

    def pipeline(name: str) -> Pipeline:
        if name not in compiled:
            compiled[name] = compile_profile(profiles.resolve(name))
        return compiled[name]

    return Router(pipeline(default), {domain: pipeline(name) for domain, name in routes.items()})


def profile_dns_zones(profiles: ProfileSet, default: str, routes: Mapping[str, str]) -> list[Path]:
    """The DNS zone files named by the default profile and every routed one, in that order."""
    zones: dict[Path, None] = {}
    for name in (default, *routes.values()):
        zones.update(dict.fromkeys(profiles.resolve(name).dns_zones))
    return list(zones)


def dns_resolver(
    profiles: ProfileSet,
    default: str,
    routes: Mapping[str, str],
    *,
    mode: DnsMode = "offline",
    server: tuple[str, int] | None = None,
    zones: Sequence[Path] = (),
    timeout: float = 5.0,
) -> Resolver:
    """The resolver for these options over the zones of the profiles used, then ``zones``
    (``--dns-zone``), which win where both hold the same name and type."""
    all_zones = [*profile_dns_zones(profiles, default, routes), *zones]
    return build_resolver(mode, server, all_zones, timeout)


class Sinkd:
    """A running sinkd: ``await start()``, then ``smtp_address`` (and ``http_address`` unless
    ``settings.http`` is False); ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.server: asyncio.Server | None = None
        self.smtp_address: tuple[str, int] | None = None
        # What greylist and rate_limit filters remember: one per server, across sessions.
        self.delivery = DeliveryState(delay_override=settings.greylist_delay)
        self.chaos: Chaos | None = None  # set by start(); Chaos.update changes it at runtime
        self.http: HttpServer | None = None
        self.http_address: tuple[str, int] | None = None
        # Live events (GET /api/v1/events): every stored verdict, every release.
        self.hub = Hub()
        self.verdict_log: VerdictLog | None = None

    def publish_records(self, records: Sequence[MessageRecord]) -> None:
        """After the commit, before the reply: append the records to the verdict log, then
        publish them as ``verdict`` events. Neither can fail the transaction."""
        if self.verdict_log is not None:
            self.verdict_log.write(records)
        for record in records:
            self.hub.publish("verdict", record.to_json())

    async def start(self) -> None:
        s = self.settings
        profiles = ProfileSet(s.profiles_dirs)
        router = build_router(profiles, s.profile, s.routes)
        resolver = dns_resolver(
            profiles,
            s.profile,
            s.routes,
            mode=s.dns,
            server=s.dns_server,
            zones=s.dns_zones,
            timeout=s.dns_timeout,
        )
        if s.tls_cert and s.tls_key:
            cert, key = s.tls_cert, s.tls_key
        else:
            cert, key = self_signed(s.db.parent, s.hostname)
        options = ServerOptions(
            hostname=s.hostname,
            max_message_size=s.max_message_size,
            max_recipients=s.max_recipients,
            auth=s.auth,
            auth_user=s.auth_user,
            auth_password=s.auth_password,
            client_ip=s.client_ip,
            helo=s.helo,
            proxy_protocol=s.proxy_protocol,
            tls_context=server_context(cert, key),
        )
        if s.verdict_log is not None:  # before the store: a bad path stops the start cleanly
            self.verdict_log = VerdictLog(s.verdict_log)
            log.info("verdict log %s", s.verdict_log)
        self.store = await open_sqlite(s.db)
        lookups = Lookups(
            spamd=SpamdService(override=s.spamd), resolver=resolver, state=self.delivery
        )
        self.chaos = Chaos(ChaosConfig(tuple(s.chaos_triggers), s.chaos_seed))
        handler = SinkHandler(
            router, self.store, options, lookups, chaos=self.chaos, on_commit=self.publish_records
        )
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            protocol_factory(handler, options), host=s.host, port=s.port, reuse_address=True
        )
        host, port = self.server.sockets[0].getsockname()[:2]
        self.smtp_address = (host, port)
        routes = ", ".join(f"{d}={p}" for d, p in s.routes.items()) or "none"
        dns = "live" if s.dns == "live" or s.dns_server else "offline"
        if s.dns_server:
            dns += f" via {s.dns_server[0]}:{s.dns_server[1]}"
        log.info(
            "listening on %s:%d profile=%s routes=%s store=%s dns=%s",
            host,
            port,
            router.default.name,
            routes,
            s.db,
            dns,
        )
        if self.chaos.enabled:  # the seed is logged so that a run can be repeated exactly
            log.info("chaos triggers=%s", self.chaos.describe())
        if s.http:
            try:
                await self._start_http()
            except BaseException:
                await self.stop()
                raise

    async def _start_http(self) -> None:
        s = self.settings
        self.http = HttpServer(create_app(self), s.http_host, s.http_port)
        await self.http.start()
        self.http_address = self.http.address
        assert self.http_address is not None
        log.info("http api on %s:%d", *self.http_address)

    async def stop(self) -> None:
        self.hub.close()  # ends open event streams, so the HTTP server need not wait for them
        if self.http is not None:
            await self.http.stop()
            self.http = None
            self.http_address = None
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self.verdict_log is not None:
            self.verdict_log.close()
            self.verdict_log = None
