"""The one declaration of every setting sinkd runs with: name, type, default, ``SINKD_*``
variable, help text and the subcommands that take it.

Owns ``Settings`` (what ``sinkd serve``, the test server and the workers run with), the
defaults (each written here once: ports, size limits, the default profile), the parsers that
turn an option's or a variable's text into a value, and the generated step from a parsed
command line to ``Settings``: ``add_options`` writes the argparse options of a subcommand from
the declarations, ``from_namespace`` builds ``Settings`` from what argparse returned.

Precedence: an option on the command line wins over its variable, which wins over the default;
a repeatable option adds to the items its variable lists. An empty variable counts as unset. A
variable that does not parse is a ``ConfigError`` naming it (exit 2), as a bad option is.

Must not start, bind or open anything, nor import an adapter (server, web, store, cli): it
only describes and checks values. It stays cheap to import (no profile loading, no pydantic
model building beyond ``sinkd.core.chaos``'s parser) because every subcommand reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sinkd.core.chaos import ChaosConfig, ChaosTrigger, parse_triggers
from sinkd.errors import ConfigError
from sinkd.listen import LOOPBACK_NAME
from sinkd.location import StoreLocation

if TYPE_CHECKING:
    from sinkd.lookups.dns import DnsMode

AuthMode = Literal["any", "required", "off"]
LogFormat = Literal["text", "json"]

DEFAULT_PROFILE = "typical-corporate"
DEFAULT_SMTP_PORT = 2525
DEFAULT_HTTP_PORT = 8025
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024  # bytes of DATA
# RFC 5321 §4.5.3.1.8 asks servers to take at least 100 recipients; Postfix's
# smtpd_recipient_limit defaults to 1000.
DEFAULT_MAX_RECIPIENTS = 1000
# Messages from this size on are judged in worker processes, off the SMTP event loop: at
# typical-corporate's ~0.3 ms per KiB of HTML, 64 KiB judged inline hold the loop ~20 ms,
# which stays in the probe's idle noise (bench/stall.py); smaller ones cost less inline than
# the trip to a worker (sinkd.services.offload).
DEFAULT_JUDGE_OFFLOAD_BYTES = 64 * 1024
MAX_JUDGE_WORKERS = 4  # --judge-workers auto: one per core but one, up to this many
DEFAULT_DNS_TIMEOUT = 5.0  # seconds for each live lookup, retries included
# Where a client on this machine finds the HTTP API by default (``sinkd readyz``, SinkdClient).
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"

Kind = Literal["value", "list", "switch"]


def default_db_path() -> Path:
    """``$SINKD_DB``, else ``$XDG_DATA_HOME/sinkd/sinkd.db`` (``~/.local/share/sinkd``)."""
    if os.environ.get("SINKD_DB"):
        return Path(os.environ["SINKD_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sinkd" / "sinkd.db"


# --- parsers: an option's text (or one item of its variable) to a value ---------------------


def parse_store(text: str) -> StoreLocation:
    """``--store``: a path, ``sqlite:///PATH`` or a ``postgresql://`` URL."""
    try:
        return StoreLocation.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_route(text: str) -> tuple[str, str]:
    """``DOMAIN=PROFILE``: recipients of DOMAIN (or ``*.DOMAIN``) judged with PROFILE."""
    domain, eq, profile = text.partition("=")
    if not eq or not domain or not profile:
        raise argparse.ArgumentTypeError(f"expected DOMAIN=PROFILE, got {text!r}")
    return domain.strip().lower(), profile.strip()


def parse_size(text: str) -> int:
    """Bytes, or with a unit: 10k, 10M, 1G (binary, an optional ``iB``/``B``)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 10485760 or 10M, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets or not)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_seconds(text: str) -> float:
    """A timeout: more than 0, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 5 or 0.5, got {text!r}"
        ) from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 3600, got {text!r}")
    return value


def parse_delay(text: str) -> float:
    """A delay: 0 up to a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 300 or 0.5, got {text!r}"
        ) from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 <= seconds <= 86400, got {text!r}")
    return value


def parse_workers(text: str) -> int:
    """--workers N (1..64) or auto (0)."""
    if text == "auto":
        return 0
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a number of processes 1..64, or auto")


def parse_offload_bytes(text: str) -> int | None:
    """--judge-offload-bytes: a size (0: every message), or off (None: none)."""
    if text.strip().lower() == "off":
        return None
    if text.strip() == "0":
        return 0
    return parse_size(text)


def parse_judge_workers(text: str) -> int:
    """--judge-workers N (1..64) or auto (0)."""
    if text == "auto":
        return 0
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a number of processes 1..64, or auto")


# --- relaying onward (--relay; sinkd.services.relay) -----------------------------------------

RelayStartTls = Literal["off", "opportunistic", "require"]
RELAY_VERDICTS = ("accept", "quarantine")  # a rejected message was never delivered
RELAY_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}  # RFC 5321 §4.5.4.2's port; RFC 8314 §3.3
# Retry: Postfix's minimal_backoff_time and maximal_backoff_time default to 300 s and 4000 s
# (postconf(5)); sinkd's 1 s to 300 s are an assumption for a test environment, where a
# restarted catcher should get its mail within seconds, not five minutes later.
DEFAULT_RELAY_BACKOFF = (1.0, 300.0)
# Postfix's maximal_queue_lifetime is 5 days (postconf(5)); a staging target down for more
# than a day is more likely gone than restarting, and a day-old message is stale in a test
# run, so sinkd fails a relay still deferred after one day, with the reason recorded.
DEFAULT_RELAY_LIFETIME = 86400.0
DEFAULT_RELAY_CONCURRENCY = 4  # connections to the target at once: a catcher, not an MX


@dataclass(frozen=True)
class RelayTarget:
    """Where ``--relay`` delivers: ``smtp://HOST[:PORT]`` (STARTTLS per --relay-starttls) or
    ``smtps://HOST[:PORT]`` (implicit TLS, RFC 8314 §3.3)."""

    scheme: Literal["smtp", "smtps"]
    host: str
    port: int

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_relay_url(text: str) -> RelayTarget:
    """``smtp://HOST[:PORT]`` or ``smtps://HOST[:PORT]``; no user, path, query or fragment
    (credentials go in --relay-user and --relay-password, never in a URL that is logged)."""
    expected = "expected smtp://HOST[:PORT] or smtps://HOST[:PORT]"
    try:
        url = urllib.parse.urlsplit(text.strip())
        port = url.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{expected}: {exc}") from None
    scheme = url.scheme.lower()
    if scheme not in RELAY_DEFAULT_PORTS:
        raise argparse.ArgumentTypeError(f"{expected}, got scheme {url.scheme or 'none'!r}")
    if url.username is not None or url.password is not None:
        raise argparse.ArgumentTypeError(
            f"{expected}: no user or password in the URL (use --relay-user, --relay-password)"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise argparse.ArgumentTypeError(f"{expected}: no path, query or fragment")
    if not url.hostname:
        raise argparse.ArgumentTypeError(f"{expected}: the host is missing")
    if port == 0:
        raise argparse.ArgumentTypeError(f"{expected}: port 0 is no port to deliver to")
    return RelayTarget(
        "smtps" if scheme == "smtps" else "smtp",
        url.hostname,
        RELAY_DEFAULT_PORTS[scheme] if port is None else port,
    )


def parse_relay_verdicts(text: str) -> tuple[str, ...]:
    """A comma list of accept and quarantine (each once)."""
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in RELAY_VERDICTS]
    if not items or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {' and '.join(RELAY_VERDICTS)}, got {text!r}"
        )
    return tuple(dict.fromkeys(items))


def parse_backoff(text: str) -> tuple[float, float]:
    """``MIN,MAX`` seconds: the first retry after MIN, doubling up to MAX."""
    low, comma, high = text.partition(",")
    try:
        pair = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MIN,MAX seconds such as 1,300, got {text!r}"
        ) from None
    if not comma or not 0 < pair[0] <= pair[1] <= 86400:
        raise argparse.ArgumentTypeError(
            f"expected MIN,MAX seconds with 0 < MIN <= MAX <= 86400, got {text!r}"
        )
    return pair


def parse_lifetime(text: str) -> float:
    """Seconds a relay may stay deferred: more than 0, at most 30 days."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 86400, got {text!r}") from None
    if not 0 < value <= 30 * 86400:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 2592000, got {text!r}")
    return value


def parse_concurrency(text: str) -> int:
    """--relay-concurrency N (1..64)."""
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a number of connections 1..64")


def _http_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise ConfigError("--http-auth: expected USER:PASS, both non-empty")
    return user, password


def _allowed_hosts(names: Sequence[str]) -> list[str]:
    """--http-allowed-host names: host names only (a Host's port is not checked, so one given
    here would never match)."""
    for name in names:
        if name != "*" and (not name or "/" in name or name.count(":") == 1):
            raise ConfigError(
                f"--http-allowed-host {name!r}: expected a host name such as sinkd, without "
                "scheme or port (or '*')"
            )
    return list(names)


# --- the declarations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """How one setting is given on the command line and in the environment.

    ``parse`` turns one text (the option's argument, or one item of the variable) into a
    value; ``convert`` turns what argparse collected into the ``Settings`` value (None: as
    is). ``shown`` is how the default reads in the help ("" shows none; None: the default
    itself). ``doc`` and ``doc_default`` are the wording of docs/cli.md's option table where
    it says more than the help (``markdown_table``)."""

    flag: str
    help: str
    commands: frozenset[str] = frozenset({"serve"})
    kind: Kind = "value"
    parse: Callable[[str], Any] | None = None
    expected: str = "a valid value"  # what a variable's value must be, when parse says no more
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    dest: str | None = None
    env: str | None = None  # default: SINKD_ and the dest in capitals
    split: str = ", \t\n"  # a list variable's item separators
    read_env: bool = True  # False: the variable is read where the value is checked (chaos)
    shown: str | None = None
    convert: Callable[[Any], Any] | None = None
    doc: str | None = None  # the option table's description (Markdown); None: the help
    doc_default: str | None = None  # the option table's default column (Markdown); None: from shown

    @property
    def name(self) -> str:
        """The argparse dest (the attribute of the parsed namespace)."""
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    @property
    def variable(self) -> str:
        return self.env or f"SINKD_{self.name.upper()}"


_CHECK = frozenset({"serve", "check"})  # the profile and routing options
_JUDGE = frozenset({"serve", "check", "report"})  # the DNS options and --spamd
_PROFILES = frozenset({"serve", "check", "report", "profiles"})


@dataclass
class Settings:
    """What a server runs with. Each field declares its option, variable and help once; the
    CLI parser and the option table of docs/cli.md are generated from these declarations."""

    # "localhost": 127.0.0.1 and ::1 on one port (sinkd.listen; RFC 6761 §6.3), else exactly
    # the address given (0.0.0.0, ::, one address). The same holds for http_host.
    host: str = field(
        default=LOOPBACK_NAME,
        metadata={
            "option": Option(
                "--host",
                "SMTP listen address; localhost: both 127.0.0.1 and ::1 on the one port, "
                "whichever a client's resolver gives first",
                doc="SMTP listen address; `localhost` means both loopback addresses, `127.0.0.1` "
                "and `::1`, on the one port, because resolvers may give either for "
                "`localhost` and many (macOS, many Linux and Java set-ups) give `::1` first; "
                "`127.0.0.1` only where the machine has no IPv6 loopback. Any other value is "
                "bound exactly (`127.0.0.1`, `0.0.0.0`, `::`)",
            )
        },
    )
    port: int = field(
        default=DEFAULT_SMTP_PORT,
        metadata={
            "option": Option(
                "--port",
                "SMTP port; 0 picks a free one",
                parse=int,
                expected="a whole number",
                doc="SMTP port; `0` picks a free one (see the ready line)",
            )
        },
    )
    # --workers: SMTP listener processes on the one port (0: one per core, up to MAX_WORKERS,
    # when the profiles allow it; see Sinkd.listener_count).
    workers: int = field(
        default=1,
        metadata={
            "option": Option(
                "--workers",
                "SMTP worker processes taking the port's connections in turn; auto: one per core "
                "up to 4, or 1 when a profile greylists or rate-limits (unless --store is "
                "PostgreSQL, which they share)",
                parse=parse_workers,
                metavar="N|auto",
                doc="SMTP worker processes sharing the port (see *Worker processes*); `auto`: "
                "one per core, up to 4",
            )
        },
    )
    # Judging large messages in worker processes (sinkd.services.offload): from what size, and
    # in how many processes (0: auto).
    judge_offload_bytes: int | None = field(
        default=DEFAULT_JUDGE_OFFLOAD_BYTES,
        metadata={
            "option": Option(
                "--judge-offload-bytes",
                "judge messages of this size and more in worker processes, off the SMTP event "
                "loop, so that they never stall other sessions; 0: every message; off: none",
                parse=parse_offload_bytes,
                expected="a size such as 64K, 0 or off",
                shown="64K",
                metavar="N|off",
                doc="messages of this size or more are judged in worker processes (see "
                "*Large messages*), so one big message never stalls the other sessions; `0`: "
                "every message; `off`: all in the SMTP process",
                doc_default="`64K`",
            )
        },
    )
    judge_workers: int = field(
        default=0,
        metadata={
            "option": Option(
                "--judge-workers",
                f"worker processes judging large messages, started at the first one; auto: one "
                f"per core but one, 1 to {MAX_JUDGE_WORKERS}",
                parse=parse_judge_workers,
                shown="auto",
                metavar="N|auto",
                doc="worker processes judging large messages (`--judge-offload-bytes`), started "
                f"when the first one arrives; `auto`: one per core but the SMTP process's, 1 to "
                f"{MAX_JUDGE_WORKERS}",
                doc_default="`auto`",
            )
        },
    )
    http_host: str = field(
        # loopback by default: the API changes state; see http_auth
        default=LOOPBACK_NAME,
        metadata={
            "option": Option(
                "--http-host",
                "HTTP API listen address (localhost: 127.0.0.1 and ::1)",
                doc="HTTP API listen address, `localhost` as for `--host` (see *HTTP API*); off "
                "loopback, set `--http-auth`",
            )
        },
    )
    http_port: int = field(
        default=DEFAULT_HTTP_PORT,
        metadata={
            "option": Option(
                "--http-port",
                "HTTP API port; 0 picks a free one",
                parse=int,
                expected="a whole number",
                doc="HTTP API port; `0` picks a free one (see the ready line)",
            )
        },
    )
    http: bool = field(
        # serve the HTTP API (--no-http: False)
        default=True,
        metadata={
            "option": Option(
                "--no-http",
                "serve no HTTP API, only SMTP",
                kind="switch",
                shown="",
                convert=lambda no_http: not no_http,
                doc="serve SMTP only, no HTTP API",
            )
        },
    )
    http_auth: tuple[str, str] | None = field(
        # --http-auth USER:PASS: basic auth on the API
        default=None,
        metadata={
            "option": Option(
                "--http-auth",
                "require these HTTP Basic credentials on the API, except /livez and /readyz",
                metavar="USER:PASS",
                convert=_http_auth,
                doc="HTTP Basic auth on every HTTP endpoint but `/livez` and `/readyz` (`401` "
                "otherwise)",
            )
        },
    )
    # --http-allowed-host: Host names served besides loopback names, IP literals and http_host
    # ("*": any, unsafe); docs/security.md.
    http_allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={
            "option": Option(
                "--http-allowed-host",
                "also serve requests whose Host is NAME, e.g. a container's service name; loopback "
                "names, IP literals and --http-host always pass; '*' turns the DNS rebinding check "
                "off (unsafe)",
                kind="list",
                metavar="NAME",
                dest="http_allowed_hosts",
                convert=_allowed_hosts,
                doc="also serve requests whose `Host` is `NAME` (a container's service name, a "
                "shared host's DNS name); loopback names, IP literals and `--http-host` "
                "always pass, any other name gets `403`; repeatable; `*` turns the check off "
                "(unsafe: DNS rebinding, see *Security*)",
            )
        },
    )
    profile: str = field(
        default=DEFAULT_PROFILE,
        metadata={
            "option": Option(
                "--profile",
                "profile id or YAML path",
                commands=_CHECK,
                metavar="NAME|PATH",
                doc="the default profile",
            )
        },
    )
    profiles_dirs: list[Path] = field(
        default_factory=list,
        metadata={
            "option": Option(
                "--profiles-dir",
                "extra directory of profiles (and population.yaml), loaded over the built-in ones",
                commands=_PROFILES,
                kind="list",
                parse=Path,
                convert=list,
                metavar="DIR",
                doc="extra profiles (and an optional `replies.yaml`), over the built-in ones; "
                "repeatable",
            )
        },
    )
    routes: Mapping[str, str] = field(
        default_factory=dict,
        metadata={
            "option": Option(
                "--route",
                "judge recipients of DOMAIN (or *.DOMAIN) with PROFILE",
                commands=_CHECK,
                kind="list",
                parse=parse_route,
                metavar="DOMAIN=PROFILE",
                convert=dict,
                doc="recipients of `DOMAIN` (or `*.DOMAIN` for its subdomains) use `PROFILE`; "
                "repeatable",
            )
        },
    )
    spamd: tuple[str, int] | None = field(
        # overrides every spamassassin filter's address
        default=None,
        metadata={
            "option": Option(
                "--spamd",
                "spamd for every spamassassin filter, whatever the profile says",
                commands=_JUDGE,
                parse=parse_address,
                metavar="HOST:PORT",
                doc="the spamd every `spamassassin` filter uses, whatever its profile says",
            )
        },
    )
    dns: DnsMode = field(
        # offline: DNS answers come from fixtures only, never the network
        default="offline",
        metadata={
            "option": Option(
                "--dns",
                "offline: DNS answers come only from --dns-zone fixtures and nothing leaves this "
                "machine; live: fixtures first, then real DNS",
                commands=_JUDGE,
                choices=("offline", "live"),
                doc="where SPF, DKIM, DMARC and blocklist checks get DNS answers (see *Network "
                "and DNS*)",
            )
        },
    )
    dns_server: tuple[str, int] | None = field(
        # implies live
        default=None,
        metadata={
            "option": Option(
                "--dns-server",
                "ask this DNS server instead of the system's; implies --dns live",
                commands=_JUDGE,
                parse=parse_address,
                metavar="HOST:PORT",
                doc="ask this DNS server (implies `live`); fixtures still answer first",
            )
        },
    )
    dns_zones: list[Path] = field(
        default_factory=list,
        metadata={
            "option": Option(
                "--dns-zone",
                "DNS fixture: an RFC 1035 master file, or a .yaml record map",
                commands=_JUDGE,
                kind="list",
                parse=lambda text: Path(text.strip()),
                metavar="FILE",
                split=",",
                convert=list,
                doc="DNS fixtures: RFC 1035 master files or YAML record maps; repeatable",
            )
        },
    )
    dns_timeout: float = field(
        default=DEFAULT_DNS_TIMEOUT,
        metadata={
            "option": Option(
                "--dns-timeout",
                "time for each live DNS lookup, retries included",
                commands=_JUDGE,
                parse=parse_seconds,
                metavar="SECONDS",
                doc="per lookup; a timeout becomes a temperror, never a hung session",
            )
        },
    )
    db: Path = field(
        default_factory=default_db_path,
        metadata={
            "option": Option(
                "--db",
                "SQLite store; ':memory:' keeps messages in this process only (no file)",
                parse=Path,
                shown="$XDG_DATA_HOME/sinkd/sinkd.db",
                metavar="PATH",
                doc="the SQLite store; `:memory:` keeps messages in the server's memory only, "
                "gone when it stops (one SMTP process)",
                doc_default="`$XDG_DATA_HOME/sinkd/sinkd.db` (`~/.local/share/sinkd/sinkd.db`)",
            )
        },
    )
    store: StoreLocation | None = field(
        default=None,
        metadata={
            "option": Option(
                "--store",
                "where messages are stored: PATH, sqlite:///PATH or postgresql://... "
                "(overrides --db)",
                parse=parse_store,
                expected="a path, sqlite:///PATH or postgresql://USER@HOST/DATABASE",
                shown="",
                metavar="URL",
                doc="the store: a SQLite file (`PATH` or `sqlite:///PATH`) or a PostgreSQL "
                "database (`postgresql://USER:PASSWORD@HOST:PORT/DATABASE`, shared by several "
                "instances: docs/scale-out.md); overrides `--db`",
                doc_default="`--db`",
            )
        },
    )
    migrate: bool = field(
        default=False,
        metadata={
            "option": Option(
                "--migrate",
                "create or migrate a PostgreSQL store's schema at start-up "
                "(else: sinkd store migrate)",
                kind="switch",
                doc="create or migrate a PostgreSQL store's schema before serving; without it "
                "an older or missing schema stops the start (run `sinkd store migrate`). A SQLite "
                "file is always migrated at start-up",
            )
        },
    )
    max_message_size: int = field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metadata={
            "option": Option(
                "--max-message-size",
                "largest DATA the server takes, bytes or 10M",
                parse=parse_size,
                shown=f"{DEFAULT_MAX_MESSAGE_SIZE // 1024**2} MiB",
                metavar="N",
                doc="the server's hard DATA limit (`552 5.3.4`); profiles set their own, lower "
                "limits",
                doc_default="`50M`",
            )
        },
    )
    max_recipients: int = field(
        default=DEFAULT_MAX_RECIPIENTS,
        metadata={
            "option": Option(
                "--max-recipients",
                "recipients per message, like Postfix",
                parse=int,
                expected="a whole number",
                metavar="N",
                doc="more recipients get `452 4.5.3` (Postfix's default limit)",
            )
        },
    )
    tls_cert: Path | None = field(
        default=None,
        metadata={
            "option": Option(
                "--tls-cert",
                "PEM certificate for STARTTLS",
                parse=Path,
                metavar="PATH",
                doc="STARTTLS certificate, with `--tls-key`; without them a self-signed one is "
                "made at first start and kept next to the store",
                doc_default="self-signed",
            )
        },
    )
    tls_key: Path | None = field(
        default=None,
        metadata={
            "option": Option(
                "--tls-key",
                "PEM key for STARTTLS",
                parse=Path,
                metavar="PATH",
                doc="its key, with `--tls-cert`",
                doc_default="self-signed",
            )
        },
    )
    auth: AuthMode = field(
        default="any",
        metadata={
            "option": Option(
                "--auth",
                "AUTH PLAIN/LOGIN",
                choices=("any", "required", "off"),
                doc="`any`: AUTH PLAIN and LOGIN advertised, any credentials accepted, also "
                "without TLS (apps and ESPs insist on AUTH); `required`: MAIL before AUTH "
                "gets `530`; `off`: no AUTH",
            )
        },
    )
    auth_user: str | None = field(
        default=None,
        metadata={
            "option": Option(
                "--auth-user",
                "accept only this user",
                doc="accept only this user, with `--auth-password` (`535 5.7.8` otherwise)",
            )
        },
    )
    auth_password: str | None = field(
        default=None,
        metadata={
            "option": Option(
                "--auth-password", "and this password", doc="and this password, with `--auth-user`"
            )
        },
    )
    client_ip: str | None = field(
        default=None,
        metadata={
            "option": Option(
                "--client-ip",
                "simulated client IP when the client sets none via XCLIENT/PROXY",
                metavar="IP",
                doc=(
                    "the simulated sender's address when the client sets none (see"
                    " [the simulated sender](judging.md#the-simulated-sender))"
                ),
            )
        },
    )
    helo: str | None = field(
        default=None,
        metadata={
            "option": Option(
                "--helo",
                "simulated HELO name",
                metavar="NAME",
                doc=(
                    "the simulated sender's HELO name when the client sets none (see"
                    " [the simulated sender](judging.md#the-simulated-sender))"
                ),
            )
        },
    )
    proxy_protocol: bool = field(
        default=False,
        metadata={
            "option": Option(
                "--proxy-protocol",
                "expect a PROXY protocol header on every connection",
                kind="switch",
            )
        },
    )
    hostname: str = field(
        default_factory=socket.getfqdn,
        metadata={
            "option": Option(
                "--hostname",
                "name in the greeting",
                env="SINKD_HOSTNAME_SMTP",  # $HOSTNAME is the shell's, so not SINKD_HOSTNAME
                shown="this host's FQDN",
                metavar="NAME",
                doc="the name in the greeting and the self-signed certificate",
                doc_default="this host's FQDN",
            )
        },
    )
    greylist_delay: float | None = field(
        # overrides every greylist filter's delay
        default=None,
        metadata={
            "option": Option(
                "--greylist-delay",
                "greylisting delay for every profile's greylist filter, 0 allowed: the first "
                "attempt is still deferred, any retry passes",
                parse=parse_delay,
                metavar="SECONDS",
                doc="the greylisting delay of every `greylist` filter; `0` allowed (the first "
                "attempt is still deferred, any retry passes)",
                doc_default="each profile's (`300` in `deferring-gateway`)",
            )
        },
    )
    verdict_log: Path | None = field(
        # one JSON line per stored verdict
        default=None,
        metadata={
            "option": Option(
                "--verdict-log",
                "append one JSON line per stored verdict (the API's message object) to PATH, "
                "written after the store commit and before the reply",
                parse=Path,
                metavar="PATH",
                doc="append one JSON line per stored verdict to `PATH` (the API's message "
                "object), for CI artifacts (see *In CI*)",
            )
        },
    )
    log_format: LogFormat = field(
        default="text",
        metadata={
            "option": Option(
                "--log-format",
                "log lines as text or JSON",
                choices=("text", "json"),
                doc="one line per verdict on standard error; `json` gives JSON lines",
            )
        },
    )
    relay: RelayTarget | None = field(
        default=None,
        metadata={
            "option": Option(
                "--relay",
                "deliver each accepted message (see --relay-verdicts) onward to this SMTP server, "
                "as smtp://HOST[:PORT] (port 25) or smtps://HOST[:PORT] (implicit TLS, port 465)",
                parse=parse_relay_url,
                expected="smtp://HOST[:PORT] or smtps://HOST[:PORT]",
                metavar="URL",
                doc="relay each accepted message's delivered copy onward to this SMTP server "
                "(see *Relay onward*): `smtp://HOST[:PORT]` (port 25) or `smtps://HOST[:PORT]` "
                "(implicit TLS, port 465); never relays without it",
            )
        },
    )
    relay_starttls: RelayStartTls = field(
        default="opportunistic",
        metadata={
            "option": Option(
                "--relay-starttls",
                "STARTTLS to the relay target: off, opportunistic (when offered, certificate not "
                "checked, like Postfix's smtp_tls_security_level=may) or require (defer when not "
                "offered; certificate checked)",
                choices=("off", "opportunistic", "require"),
                doc="STARTTLS to an `smtp://` target: `opportunistic` when offered, the "
                "certificate not checked (Postfix's `may`); `require`: a target without it "
                "defers, the certificate is checked (Postfix's `secure`); `off`",
            )
        },
    )
    relay_user: str | None = field(
        default=None,
        metadata={
            "option": Option(
                "--relay-user",
                "AUTH to the relay target as this user, with --relay-password",
                doc="AUTH to the relay target as this user, with `--relay-password`",
            )
        },
    )
    relay_password: str | None = field(
        default=None,
        repr=False,  # never in a log line or an error that shows the settings
        metadata={
            "option": Option(
                "--relay-password",
                "and this password (never logged)",
                doc="and this password (never logged, never in the JSON or /metrics)",
            )
        },
    )
    relay_ca: Path | None = field(
        default=None,
        metadata={
            "option": Option(
                "--relay-ca",
                "PEM file of CA certificates the relay target's certificate is checked against "
                "with smtps:// or --relay-starttls require (default: the system's)",
                parse=Path,
                metavar="FILE",
                doc="CA certificates (PEM) the relay target's certificate is verified against "
                "(`smtps://`, `--relay-starttls require`)",
                doc_default="the system's",
            )
        },
    )
    relay_insecure: bool = field(
        default=False,
        metadata={
            "option": Option(
                "--relay-insecure",
                "do not verify the relay target's TLS certificate with smtps:// or "
                "--relay-starttls require (a staging catcher's self-signed one)",
                kind="switch",
            )
        },
    )
    relay_verdicts: tuple[str, ...] = field(
        default=("accept",),
        metadata={
            "option": Option(
                "--relay-verdicts",
                "which verdicts are relayed: accept, quarantine or both (a released quarantined "
                "message is relayed either way)",
                parse=parse_relay_verdicts,
                expected="accept, quarantine or accept,quarantine",
                shown="accept",
                metavar="LIST",
                doc="which verdicts are relayed, `accept`, `quarantine` or both; releasing a "
                "quarantined message relays it whatever this says",
            )
        },
    )
    relay_backoff: tuple[float, float] = field(
        default=DEFAULT_RELAY_BACKOFF,
        metadata={
            "option": Option(
                "--relay-backoff",
                "retry a deferred relay after MIN seconds, doubling up to MAX",
                parse=parse_backoff,
                shown="1,300",
                metavar="MIN,MAX",
                doc="a deferred relay (4xx, connection error) is retried after `MIN` seconds, "
                "doubling up to `MAX` (Postfix: 300,4000)",
            )
        },
    )
    relay_lifetime: float = field(
        default=DEFAULT_RELAY_LIFETIME,
        metadata={
            "option": Option(
                "--relay-lifetime",
                "fail a relay still deferred this many seconds after it was queued",
                parse=parse_lifetime,
                metavar="SECONDS",
                doc="a relay still deferred this long after it was queued fails, with the "
                "reason recorded (Postfix: 5 days)",
            )
        },
    )
    relay_concurrency: int = field(
        default=DEFAULT_RELAY_CONCURRENCY,
        metadata={
            "option": Option(
                "--relay-concurrency",
                "connections to the relay target at once",
                parse=parse_concurrency,
                metavar="N",
            )
        },
    )
    chaos_triggers: tuple[ChaosTrigger, ...] = field(
        # injected failures (docs/cli.md, "Chaos")
        default=(),
        metadata={
            "option": Option(
                "--chaos-triggers",
                "inject failures: STAGE:CODE|disconnect:PERCENT[:TEXT],... with stages connect, "
                "ehlo, auth, mail, rcpt, data, or Mailpit's Sender:451:50,Recipient:550:10,"
                "Authentication:535:100",
                metavar="SPEC",
                read_env=False,
                shown="",
                doc="inject SMTP failures (see *Chaos*), e.g. `rcpt:450:25,data:disconnect:2` or "
                "Mailpit's `Sender:451:50`",
            )
        },
    )
    chaos_seed: int | None = field(
        # None: a random seed, logged at start
        default=None,
        metadata={
            "option": Option(
                "--chaos-seed",
                "seed of the chaos decisions: the same seed and SMTP events give the same failures",
                metavar="N",
                read_env=False,
                shown="random, logged at start",
                doc="seed of the chaos decisions: the same seed and SMTP events give the same "
                "failures",
                doc_default="random (logged)",
            )
        },
    )

    @property
    def location(self) -> StoreLocation:
        """Where the store is: ``--store`` when given, else ``--db``."""
        return self.store if self.store is not None else StoreLocation.of_path(self.db)


def options() -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """Every declared setting with its option, in declaration order (the help's order)."""
    for f in dataclasses.fields(Settings):
        option = f.metadata.get("option")
        if isinstance(option, Option):
            yield f, option


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return None  # a computed default (default_factory): filled in when Settings is built


def _shown(f: dataclasses.Field[Any], option: Option) -> str:
    if option.shown is not None:
        return option.shown
    default = _default_of(f)
    if default is None or option.kind != "value":
        return ""
    return f"{default:g}" if isinstance(default, float) else str(default)


def help_of(f: dataclasses.Field[Any], option: Option) -> str:
    """The option's help: its text, then what repeats, the default and the variable."""
    notes = []
    if option.kind == "list":
        notes.append("repeatable")
    shown = _shown(f, option)
    if shown:
        notes.append(f"default {shown}")
    variable = option.variable
    if option.kind == "switch":
        variable += "=1"
    elif option.kind == "list":
        variable += ", comma-separated"
    notes.append(f"env {variable}")
    return f"{option.help} ({'; '.join(notes)})"


def _env_error(option: Option, text: str, problem: str) -> ConfigError:
    return ConfigError(f"{option.variable}={text!r}: {problem}")


def _parse_one(option: Option, item: str, text: str) -> Any:
    """One item of a variable, read with the option's own parser."""
    if option.choices is not None and item not in option.choices:
        *rest, last = option.choices
        raise _env_error(option, text, f"expected {', '.join(rest)} or {last}")
    if option.parse is None:
        return item
    try:
        return option.parse(item)
    except argparse.ArgumentTypeError as exc:
        raise _env_error(option, text, str(exc)) from None
    except ValueError:
        raise _env_error(option, text, f"expected {option.expected}") from None


def from_environment(
    f: dataclasses.Field[Any], option: Option, environ: Mapping[str, str] | None = None
) -> Any:
    """The value the option's variable gives (the option's default on the command line), or
    the declared default when the variable is unset or empty."""
    if not option.read_env:
        return None  # read by from_namespace, which names where a bad value came from
    environ = os.environ if environ is None else environ
    text = environ.get(option.variable, "")
    if option.kind == "switch":
        return text.lower() in ("1", "true", "yes", "on")
    if option.kind == "list":
        items = [item.strip() for item in _split(text, option.split)]
        return [_parse_one(option, item, text) for item in items if item]
    if not text:
        return _default_of(f)
    return _parse_one(option, text, text)


def _split(text: str, separators: str) -> list[str]:
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return text.split(separators[0])


def add_options(parser: argparse.ArgumentParser, command: str, *names: str) -> None:
    """Add the options of ``command`` to its parser, with their variables' values as defaults:
    every one it takes, or only those of ``names`` (in that order)."""
    declared = {f.name: (f, option) for f, option in options()}
    chosen = [declared[name] for name in names] if names else list(declared.values())
    for f, option in chosen:
        if command not in option.commands:
            continue
        kwargs: dict[str, Any] = {
            "dest": option.name,
            "default": from_environment(f, option),
            "help": help_of(f, option),
        }
        if option.kind == "switch":
            kwargs["action"] = "store_true"
        else:
            if option.kind == "list":
                kwargs["action"] = "append"
            if option.parse is not None:
                kwargs["type"] = option.parse
            if option.choices is not None:
                kwargs["choices"] = list(option.choices)
            if option.metavar is not None:
                kwargs["metavar"] = option.metavar
        parser.add_argument(option.flag, **kwargs)


def from_namespace(args: argparse.Namespace) -> Settings:
    """``Settings`` from a parsed ``serve`` command line (options and variables); a
    ``ConfigError`` names what is wrong (exit 2). The one step from argv to settings."""
    values: dict[str, Any] = {}
    for f, option in options():
        if "serve" not in option.commands or not option.read_env:
            continue
        value = getattr(args, option.name)
        if option.convert is not None:
            value = option.convert(value)
        if value is None and f.default is dataclasses.MISSING:
            continue  # computed when Settings is built (the store path, this host's name)
        values[f.name] = value
    values["chaos_triggers"], values["chaos_seed"] = _chaos(args)
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    """What no single option can say alone."""
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if (s.auth_user is None) != (s.auth_password is None):
        raise ConfigError("--auth-user and --auth-password go together")
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"--port {s.port}: expected 0..65535")
    if not 0 <= s.http_port <= 65535:
        raise ConfigError(f"--http-port {s.http_port}: expected 0..65535")
    if (s.relay_user is None) != (s.relay_password is None):
        raise ConfigError("--relay-user and --relay-password go together")
    if s.relay_ca is not None and not s.relay_ca.is_file():
        raise ConfigError(f"--relay-ca {s.relay_ca}: no such file")


def _chaos(args: argparse.Namespace) -> tuple[tuple[ChaosTrigger, ...], int | None]:
    """--chaos-triggers and --chaos-seed (or their variables); errors name the bad part and
    where it was given."""
    spec, spec_from = args.chaos_triggers, "--chaos-triggers"
    if spec is None:
        spec, spec_from = os.environ.get("SINKD_CHAOS_TRIGGERS", ""), "SINKD_CHAOS_TRIGGERS"
    seed, seed_from = args.chaos_seed, "--chaos-seed"
    if seed is None:
        seed, seed_from = os.environ.get("SINKD_CHAOS_SEED"), "SINKD_CHAOS_SEED"
    try:
        triggers = tuple(parse_triggers(spec))
    except ConfigError as exc:
        raise ConfigError(f"{spec_from}: {exc}") from None
    if seed is not None and not (seed.isascii() and seed.isdigit()):
        raise ConfigError(f"{seed_from} {seed!r}: expected a whole number >= 0")
    config = ChaosConfig(triggers, None if seed is None else int(seed))
    return config.triggers, config.seed


# --- the option table of docs/cli.md -------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(command: str = "serve") -> str:
    """The table of ``command``'s options docs/cli.md shows, generated from the declarations (a test
    holds docs/cli.md to it): option, variable, default, meaning."""
    rows = ["| option | env | default | meaning |", "|---|---|---|---|"]
    for f, option in options():
        if command not in option.commands:
            continue
        argument = "|".join(option.choices) if option.choices else option.metavar
        flag = f"`{option.flag}{' ' + argument if argument else ''}`"
        variable = f"`{option.variable}`"
        if option.kind == "switch":
            variable = f"`{option.variable}=1`"
        elif option.kind == "list":
            variable += " (comma-separated)"
        default = option.doc_default
        if default is None:
            shown = _shown(f, option)
            default = f"`{shown}`" if shown else ("off" if option.kind == "switch" else "–")
        meaning = option.doc or option.help
        rows.append(f"| {' | '.join(_cell(c) for c in (flag, variable, default, meaning))} |")
    return "\n".join(rows) + "\n"
