"""Compiled routing and the DNS resolver for a default profile and recipient routes.

Owns compiling the profiles a server or a command judges with (each once) into a ``Router``,
and building the resolver over the DNS fixtures those profiles name. ``sinkd serve``,
``sinkd check`` and ``sinkd report`` share it, so a check judges exactly as the server does.

Must not bind, store or parse a command line; it imports neither the server nor the web layer
(``sinkd check`` loads it without aiosmtpd, starlette or the store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sinkd.core.engine import Pipeline, Router, compile_profile
from sinkd.core.ports import Resolver
from sinkd.core.profiles import ProfileSet, dns_zones_of
from sinkd.lookups.dns import DnsMode, build_resolver
from sinkd.services.settings import DEFAULT_DNS_TIMEOUT


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
    return dns_zones_of([profiles.resolve(name) for name in (default, *routes.values())])


def dns_resolver(
    profiles: ProfileSet,
    default: str,
    routes: Mapping[str, str],
    *,
    mode: DnsMode = "offline",
    server: tuple[str, int] | None = None,
    zones: Sequence[Path] = (),
    timeout: float = DEFAULT_DNS_TIMEOUT,
) -> Resolver:
    """The resolver for these options over the zones of the profiles used, then ``zones``
    (``--dns-zone``), which win where both hold the same name and type."""
    all_zones = [*profile_dns_zones(profiles, default, routes), *zones]
    return build_resolver(mode, server, all_zones, timeout)
