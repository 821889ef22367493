"""The ``Judge``: "judge this message" for every entry point, assembled once.

Owns the profiles a server or command judges with, their compiled pipelines, the recipient
routing in force, the lookups filters use (one DNS resolver per set of zone files, built once
and kept with its cache; one spamd service; the server's delivery state) and the population
model, and the pool of worker processes SMTP transactions send large messages to (given by
the server: ``sinkd.services.offload``). SMTP asks it for a staged ``Transaction`` per mail
transaction; the API's re-evaluation, the compare and report pages and ``sinkd check`` and
``report`` call ``evaluate`` and ``estimate``.

It holds no policy (the core's engine decides) and speaks no protocol: it never stores,
logs a verdict or replies (``sinkd.services.recorder`` does), and never parses a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sinkd.core.engine import Pipeline, Router, Transaction, compile_profile
from sinkd.core.model import ClientIdentity, Verdict
from sinkd.core.population import Estimate, Population, load_population
from sinkd.core.ports import DeliveryMemory, Lookups, Resolver
from sinkd.core.profiles import LoadedProfile, ProfileSet, dns_zones_of
from sinkd.errors import ProfileError
from sinkd.lookups.dns import DnsMode, build_resolver
from sinkd.lookups.spamd import SpamdService
from sinkd.services.ids import new_message_id
from sinkd.services.offload import JudgePool, Offloaded
from sinkd.services.settings import DEFAULT_PROFILE

log = logging.getLogger(__name__)

DEFAULT_RECIPIENT = "recipient@example.com"  # the estimate's recipient when none is known


@dataclass(frozen=True, slots=True)
class DnsOptions:
    """``--dns``, ``--dns-server``, ``--dns-zone`` and ``--dns-timeout``: ``zones`` are read
    after the profiles' own and win where both hold the same name and type."""

    mode: DnsMode = "offline"
    server: tuple[str, int] | None = None
    zones: tuple[Path, ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sends, as the filters see it: the effective client plus what SMTP adds to it
    (the AUTH user, whether the session was under TLS)."""

    client: ClientIdentity
    auth_user: str | None = None
    tls: bool = False


@dataclass(frozen=True, slots=True)
class MailEnvelope:
    """The envelope a whole message is judged with: ``mail_from`` "" is the null path <>."""

    mail_from: str
    rcpt_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Routing:
    """A routing ready to be put in force (``Judge.prepare_routing``): compiled and with its
    DNS zone files named, but not yet judging anything."""

    profile: str
    routes: Mapping[str, str]
    router: Router
    zones: tuple[Path, ...]


class Judge:
    """Profiles, pipelines and lookups, built once per server or command.

    ``profile`` and ``routes`` are the routing SMTP transactions and ``evaluate`` without a
    profile use (``profile`` may be a YAML path, as ``--profile`` takes it). ``resolver``, when
    given, answers every lookup (a command that built one over all its zones); otherwise one is
    built from ``dns`` for each set of zone files and kept. ``delivery`` is what greylisting and
    rate limits remember; only SMTP transactions see it, never a what-if ``evaluate``.
    ``offload`` judges SMTP transactions' large messages in worker processes; a what-if
    ``evaluate`` judges inline."""

    def __init__(
        self,
        profiles: ProfileSet,
        *,
        profile: str = DEFAULT_PROFILE,
        routes: Mapping[str, str] | None = None,
        dns: DnsOptions | None = None,
        resolver: Resolver | None = None,
        spamd: tuple[str, int] | None = None,
        delivery: DeliveryMemory | None = None,
        population: Population | None = None,
        offload: JudgePool | None = None,
    ) -> None:
        self.profiles = profiles
        self.offload = offload
        self.dns = dns or DnsOptions()
        self.delivery = delivery
        self.spamd = SpamdService(override=spamd)
        self._given_resolver = resolver
        self._resolvers: dict[tuple[Path, ...], Resolver] = {}
        self._pipelines: dict[Path, Pipeline] = {}
        self._paths: dict[int, Path] = {}  # id(pipeline) -> its file, for the offload's workers
        self._zones_read = 0  # how often a routing change read the zone files again
        self._population = population  # loaded on first use unless a command gave it
        routes = dict(routes or {})
        started = {name: profiles.resolve(name) for name in (profile, *routes.values())}
        # The profiles routed at start by id: a --profile given as a YAML path keeps its id
        # usable in later routing although no profiles directory holds it.
        self._started_with = {loaded.profile.id: loaded for loaded in started.values()}
        self._routing = self._prepare(profile, routes, started)
        self._lookups = self._server_lookups(self._routing.zones, fresh=False)

    # --- routing (SMTP's) -------------------------------------------------------------------

    @property
    def router(self) -> Router:
        """The routing in force: the default pipeline and the recipient routes."""
        return self._routing.router

    @property
    def lookups(self) -> Lookups:
        """What SMTP transactions look things up with: the routing's resolver, spamd and the
        delivery state."""
        return self._lookups

    def routing(self) -> tuple[str, dict[str, str]]:
        """The default profile's id and the recipient routes (domain -> profile id) in force."""
        router = self.router
        routes = {domain: p.name for domain, p in router.exact.items()}
        routes.update({f"*{suffix}": p.name for suffix, p in router.wildcards})
        return router.default.name, routes

    def known_profiles(self) -> list[str]:
        """Profile ids routing accepts: every loaded profile and those started with."""
        return sorted({*self.profiles.names(), *self._started_with})

    def prepare_routing(self, profile: str, routes: Mapping[str, str]) -> Routing:
        """``profile`` by default and ``routes`` (domain -> profile id), compiled; only ids are
        accepted, never paths. ``ProfileError`` names an unknown or invalid profile."""
        loaded: dict[str, LoadedProfile] = {}
        for name in (profile, *routes.values()):
            if name not in loaded:
                loaded[name] = self._by_id(name)
        return self._prepare(profile, routes, loaded)

    def apply_routing(self, routing: Routing) -> None:
        """Put ``routing`` in force from the next transaction on; open transactions finish
        with the routing they began with. The DNS fixtures its profiles name are read again
        when they differ from those in force, as a restart with that routing would read them."""
        changed = routing.zones != self._routing.zones
        self._routing = routing
        if changed:
            self._lookups = self._server_lookups(routing.zones, fresh=True)
            self._zones_read += 1

    def transaction(self, identity: Identity) -> Transaction:
        """A staged transaction (MAIL, RCPT, DATA) under the routing in force, with the
        server's lookups and delivery state: what SMTP runs per mail transaction. Its large
        messages go to the worker pool, with the routing it began with."""
        offload = None
        if self.offload is not None:
            offload = Offloaded(self.offload, self._paths, self._routing.zones, self._zones_read)
        return Transaction(
            self.router,
            identity.client,
            new_message_id,
            lookups=self._lookups,
            auth_user=identity.auth_user,
            tls=identity.tls,
            offload=offload,
        )

    # --- what-ifs ---------------------------------------------------------------------------

    def profile(self, name: str) -> LoadedProfile:
        """A profile by id among the loaded ones and those started with (never a path)."""
        return self._by_id(name)

    async def evaluate(
        self,
        raw: bytes,
        envelope: MailEnvelope,
        identity: Identity,
        *,
        profile: str | LoadedProfile | None = None,
        new_id: Callable[[], str] = new_message_id,
    ) -> list[Verdict]:
        """Judge ``raw`` as a client would send it, through the same staged transaction as
        SMTP: with the routing in force, or with ``profile`` alone (an id, never a path; or a
        profile a command loaded itself, e.g. from a path it was given). Greylisting and rate
        limits remember nothing here. ``ProfileError``/``ConfigError`` for a profile or a zone
        file that is invalid on disk."""
        if profile is None:
            router, resolver = self.router, self._lookups.resolver
        else:
            loaded = self._by_id(profile) if isinstance(profile, str) else profile
            router = Router(self._pipeline(loaded))
            resolver = self.resolver_for([*loaded.dns_zones, *self.dns.zones])
        transaction = Transaction(
            router,
            identity.client,
            new_id,
            lookups=Lookups(spamd=self.spamd, resolver=resolver),
            auth_user=identity.auth_user,
            tls=identity.tls,
        )
        return await transaction.run(envelope.mail_from, envelope.rcpt_to, raw)

    def population(self) -> Population:
        """The survey model over the loaded profiles, loaded once (its pipelines too)."""
        if self._population is None:
            self._population = load_population(self.profiles)
        return self._population

    async def estimate(self, raw: bytes, envelope: MailEnvelope, identity: Identity) -> Estimate:
        """The population estimate for ``raw`` sent to the envelope's first recipient."""
        population = self.population()
        zones = dns_zones_of(population.profiles.resolve(n) for n in population.profile_ids)
        return await population.estimate(
            raw,
            mail_from=envelope.mail_from,
            rcpt=next(iter(envelope.rcpt_to), DEFAULT_RECIPIENT),
            client=identity.client,
            auth_user=identity.auth_user,
            tls=identity.tls,
            lookups=Lookups(
                spamd=self.spamd, resolver=self.resolver_for([*zones, *self.dns.zones])
            ),
        )

    def resolver_for(self, zones: Sequence[Path], *, fresh: bool = False) -> Resolver:
        """The resolver over ``zones`` (later files win), built once per set of files and
        kept with its cache; ``fresh`` reads the files again. The given resolver, if any."""
        if self._given_resolver is not None:
            return self._given_resolver
        key = tuple(zones)
        if fresh or key not in self._resolvers:
            d = self.dns
            self._resolvers[key] = build_resolver(d.mode, d.server, key, d.timeout)
        return self._resolvers[key]

    # --- internals --------------------------------------------------------------------------

    def _by_id(self, name: str) -> LoadedProfile:
        if name in self.profiles.names():
            return self.profiles.resolve(name)
        if name in self._started_with:
            return self._started_with[name]
        raise ProfileError(
            f"unknown profile {name!r}; available: {', '.join(self.known_profiles())}"
        )

    def _pipeline(self, loaded: LoadedProfile) -> Pipeline:
        """Each profile file compiled once."""
        if loaded.path not in self._pipelines:
            pipeline = self._pipelines[loaded.path] = compile_profile(loaded)
            self._paths[id(pipeline)] = loaded.path
        return self._pipelines[loaded.path]

    def _prepare(
        self, profile: str, routes: Mapping[str, str], loaded: Mapping[str, LoadedProfile]
    ) -> Routing:
        router = Router(
            self._pipeline(loaded[profile]),
            {domain: self._pipeline(loaded[name]) for domain, name in routes.items()},
        )
        # The profiles' zones, then --dns-zone's, which win where both hold a name and type.
        zones = dns_zones_of([loaded[profile], *(loaded[name] for name in routes.values())])
        return Routing(profile, dict(routes), router, (*zones, *self.dns.zones))

    def _server_lookups(self, zones: Sequence[Path], *, fresh: bool) -> Lookups:
        return Lookups(
            spamd=self.spamd, resolver=self.resolver_for(zones, fresh=fresh), state=self.delivery
        )
