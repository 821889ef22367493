"""The ``sinkd`` command line: serve, check, report, profiles, messages and readyz.

Owns parsing arguments (each ``serve`` option also read from a ``SINKD_*`` variable), exit
codes and human or JSON output. It holds no policy: checks go through the same engine
``Transaction`` the server uses, and reads go through the store. Message *files* are judged as
an SMTP client would send them (``sinkd.core.as_sent``); a file that is no message, or an option
that is no address, stops ``check`` and ``report`` with exit 2 and a line naming it.

Exit codes of ``sinkd check``:

- without ``--fail-on``: 0 accept, 3 quarantine, 4 reject (the strictest verdict);
- with ``--fail-on LEVEL``: 0 no file at or above LEVEL, 1 at least one;
- 5 (``EXIT_INCOMPLETE``): a verdict was reached without a check its profile needs (spamd did
  not answer, a live DNS lookup timed out, a filter raised: ``Verdict.incomplete``). It wins
  over 0, 3 and 4, because a verdict code stated for a message that was not fully judged would
  be trusted as if it had been; with ``--fail-on`` a gate failure (1) wins over it: the build
  fails either way, and 1 points at a message to fix. A CI job never passes on a message that
  was not judged. Checks offline DNS left without data are reported, never exit 5 (that is
  offline mode's designed state, see ``Unjudged``);
- 2: bad options or input, before anything is judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import enum
import ipaddress
import json
import os
import re
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import yaml

from sinkd import __version__
from sinkd.core.as_sent import as_sent, not_a_message
from sinkd.core.chaos import ChaosConfig, ChaosTrigger, parse_triggers
from sinkd.core.engine import Transaction
from sinkd.core.model import Action, ClientIdentity, Verdict, VerdictAction
from sinkd.core.population import Population, load_population
from sinkd.core.ports import Lookups, Resolver
from sinkd.core.profiles import (
    CATALOGUE_FILE,
    DEFAULT_PROFILE,
    LoadedProfile,
    ProfileSet,
    dns_zones_of,
    load_catalogue,
)
from sinkd.core.schema import Origin, Spec, dump
from sinkd.errors import ConfigError, InputError, NotFound, ProfileError, SinkdError, StoreError
from sinkd.lookups.dns import build_resolver
from sinkd.lookups.spamd import SpamdService
from sinkd.reports.deliverability import MessageReport, render_html, write_text
from sinkd.reports.gate import (
    FAIL_ON_CHOICES,
    INCOMPLETE,
    Checked,
    Level,
    junit_xml,
    unjudged_notes,
    write_table,
)
from sinkd.server.logs import setup as setup_logging
from sinkd.server.runtime import Settings, Sinkd, build_router, default_db_path, dns_resolver
from sinkd.store import Query
from sinkd.store.sqlite import open_sqlite

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GATE_FAILED = 1  # check --fail-on: a file at or above the level (a CI failure, not a crash)
EXIT_USAGE = 2
EXIT_QUARANTINE = 3
EXIT_REJECT = 4
EXIT_INCOMPLETE = 5  # check: a verdict reached without a check its profile needs
_EXIT_OF = {
    VerdictAction.ACCEPT: EXIT_OK,
    VerdictAction.QUARANTINE: EXIT_QUARANTINE,
    VerdictAction.REJECT: EXIT_REJECT,
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns every exit code."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


T = TypeVar("T")
D = TypeVar("D")


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"SINKD_{name}", default)


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"SINKD_{name}={value!r}: expected a whole number") from None


def _env_bool(name: str) -> bool:
    return str(_env(name, "")).lower() in ("1", "true", "yes", "on")


def _env_parsed(name: str, parse: Callable[[str], T], default: D) -> T | D:
    """``SINKD_<name>`` read with the same parser as its option; unset or empty: ``default``.
    A bad value is a ConfigError naming the variable (exit 2), as a bad option is."""
    value = _env(name)
    if value is None or value == "":
        return default
    try:
        return parse(value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"SINKD_{name}={value!r}: {exc}") from None


def _env_list(name: str) -> list[str]:
    value = _env(name)
    return [v for v in value.replace(",", " ").split() if v] if value else []


def _route(text: str) -> tuple[str, str]:
    domain, eq, profile = text.partition("=")
    if not eq or not domain or not profile:
        raise argparse.ArgumentTypeError(f"expected DOMAIN=PROFILE, got {text!r}")
    return domain.strip().lower(), profile.strip()


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected profile ids separated by commas")
    return names


def _size(text: str) -> int:
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


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 5 or 0.5, got {text!r}"
        ) from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 3600, got {text!r}")
    return value


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 300 or 0.5, got {text!r}"
        ) from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 <= seconds <= 86400, got {text!r}")
    return value


def _ip(text: str) -> str:
    """--client-ip: an IPv4 or IPv6 address, as the filters (SPF, DNSBL) will use it."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 or IPv6 address such as 192.0.2.10 or 2001:db8::10, got {text!r}"
        ) from None


# RFC 5321 §4.1.2: Mailbox = Local-part "@" ( Domain / address-literal ), Local-part =
# Dot-string / Quoted-string; RFC 6531 §3.3 adds UTF-8 to atext and to domain labels.
_U = r"\u0080-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_U}]+"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_MAILBOX = re.compile(
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*|{_QUOTED})"
    rf"@(?:{_LABEL}(?:\.{_LABEL})*|\[(?P<literal>[^\[\]\\\s]+)\])"
)
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


def _mailbox_problem(text: str) -> str | None:
    found = _MAILBOX.fullmatch(text)
    if found is None:
        return "not an address (RFC 5321 §4.1.2: local-part@domain)"
    if len(found["local"].encode()) > 64:  # RFC 5321 §4.5.3.1.1
        return "its local part is longer than 64 octets (RFC 5321 §4.5.3.1.1)"
    literal = found["literal"]
    if literal is not None:
        try:  # RFC 5321 §4.1.3: IPv4, "IPv6:" address, or a registered tag
            if literal.lower().startswith("ipv6:"):
                ipaddress.IPv6Address(literal[5:])
            elif not _GENERAL_LITERAL.fullmatch(literal):
                ipaddress.IPv4Address(literal)
        except ValueError:
            return f"[{literal}] is not an address literal (RFC 5321 §4.1.3)"
    return None


def _recipient(text: str) -> str:
    """--rcpt: one mailbox, with or without angle brackets."""
    address = text.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    problem = _mailbox_problem(address)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {problem}; expected an address such as bob@example.com"
        )
    return address


def _sender(text: str) -> str:
    """--mail-from: one mailbox, or '' (or '<>') for the null reverse-path of bounces
    (RFC 5321 §4.5.5)."""
    if text.strip() in ("", "<>"):
        return ""
    try:
        return _recipient(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or '' for the null sender") from None


def _add_dns_options(p: argparse.ArgumentParser) -> None:
    mode = _env("DNS", "offline")
    if mode not in ("offline", "live"):
        raise ConfigError(f"SINKD_DNS={mode!r}: expected offline or live")
    p.add_argument(
        "--dns",
        choices=["offline", "live"],
        default=mode,
        help="offline (default): DNS answers come only from --dns-zone fixtures and nothing "
        "leaves this machine; live: fixtures first, then real DNS (env SINKD_DNS)",
    )
    p.add_argument(
        "--dns-server",
        type=_address,
        default=_env_parsed("DNS_SERVER", _address, None),
        metavar="HOST:PORT",
        help="ask this DNS server instead of the system's; implies --dns live "
        "(env SINKD_DNS_SERVER)",
    )
    zones = _env("DNS_ZONE")
    p.add_argument(
        "--dns-zone",
        action="append",
        type=Path,
        default=[Path(z.strip()) for z in zones.split(",") if z.strip()] if zones else [],
        metavar="FILE",
        help="DNS fixture: an RFC 1035 master file, or a .yaml record map (repeatable; "
        "env SINKD_DNS_ZONE, comma-separated)",
    )
    p.add_argument(
        "--dns-timeout",
        type=_seconds,
        default=_env_parsed("DNS_TIMEOUT", _seconds, 5.0),
        metavar="SECONDS",
        help="time for each live DNS lookup, retries included (default 5; env SINKD_DNS_TIMEOUT)",
    )


def _add_profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=_env("PROFILE", DEFAULT_PROFILE),
        help=f"profile id or YAML path (default {DEFAULT_PROFILE}; env SINKD_PROFILE)",
    )
    p.add_argument(
        "--profiles-dir",
        action="append",
        type=Path,
        default=[Path(d) for d in _env_list("PROFILES_DIR")],
        help="extra directory of profiles, loaded over the built-in ones "
        "(repeatable; env SINKD_PROFILES_DIR)",
    )
    p.add_argument(
        "--route",
        action="append",
        type=_route,
        default=[_route(r) for r in _env_list("ROUTE")],
        metavar="DOMAIN=PROFILE",
        help="judge recipients of DOMAIN (or *.DOMAIN) with PROFILE (repeatable; env SINKD_ROUTE)",
    )
    p.add_argument(
        "--spamd",
        type=_address,
        default=_env_parsed("SPAMD", _address, None),
        metavar="HOST:PORT",
        help="spamd for every spamassassin filter, whatever the profile says (env SINKD_SPAMD)",
    )
    _add_dns_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sinkd",
        description="A local SMTP test sink that judges mail like a corporate filter.",
    )
    parser.add_argument("--version", action="version", version=f"sinkd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the SMTP sink")
    serve.add_argument(
        "--host",
        default=_env("HOST", "localhost"),
        help="SMTP listen address; localhost (the default): both 127.0.0.1 and ::1 on the one "
        "port, whichever a client's resolver gives first (env SINKD_HOST)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_int("PORT", 2525),
        help="SMTP port; 0 picks a free one (env SINKD_PORT)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=_env("WORKERS", "1"),  # a string default goes through type= like an argument
        metavar="N|auto",
        help="SMTP worker processes taking the port's connections in turn; auto: one per "
        "core up to 4, or 1 when a profile greylists or rate-limits (default 1; env "
        "SINKD_WORKERS)",
    )
    serve.add_argument(
        "--http-host",
        default=_env("HTTP_HOST", "localhost"),
        help="HTTP API listen address (default localhost: both 127.0.0.1 and ::1; env "
        "SINKD_HTTP_HOST)",
    )
    serve.add_argument(
        "--http-port",
        type=int,
        default=_env_int("HTTP_PORT", 8025),
        help="HTTP API port (default 8025); 0 picks a free one (env SINKD_HTTP_PORT)",
    )
    serve.add_argument(
        "--no-http",
        action="store_true",
        default=_env_bool("NO_HTTP"),
        help="serve no HTTP API, only SMTP (env SINKD_NO_HTTP=1)",
    )
    serve.add_argument(
        "--http-auth",
        metavar="USER:PASS",
        default=_env("HTTP_AUTH"),
        help="require these HTTP Basic credentials on the API, except /livez and /readyz"
        " (env SINKD_HTTP_AUTH)",
    )
    serve.add_argument(
        "--http-allowed-host",
        dest="http_allowed_hosts",
        action="append",
        metavar="NAME",
        default=_env_list("HTTP_ALLOWED_HOSTS"),
        help="also serve requests whose Host is NAME (repeatable), e.g. a container's service "
        "name; loopback names, IP literals and --http-host always pass; '*' turns the DNS "
        "rebinding check off (unsafe) (env SINKD_HTTP_ALLOWED_HOSTS, comma-separated)",
    )
    _add_profile_options(serve)
    serve.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"SQLite store (default {default_db_path()}; env SINKD_DB)",
    )
    serve.add_argument(
        "--max-message-size",
        type=_size,
        default=_size(str(_env("MAX_MESSAGE_SIZE", "52428800"))),
        help="largest DATA the server takes, bytes or 10M "
        "(default 50 MiB; env SINKD_MAX_MESSAGE_SIZE)",
    )
    serve.add_argument(
        "--max-recipients",
        type=int,
        default=_env_int("MAX_RECIPIENTS", 1000),
        help="recipients per message (default 1000, like Postfix)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=_env("TLS_CERT"),
        help="PEM certificate for STARTTLS (env SINKD_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=_env("TLS_KEY"),
        help="PEM key for STARTTLS (env SINKD_TLS_KEY)",
    )
    serve.add_argument(
        "--auth",
        choices=["any", "required", "off"],
        default=_env("AUTH", "any"),
        help="AUTH PLAIN/LOGIN: any (default), required, off (env SINKD_AUTH)",
    )
    serve.add_argument(
        "--auth-user", default=_env("AUTH_USER"), help="accept only this user (env SINKD_AUTH_USER)"
    )
    serve.add_argument(
        "--auth-password",
        default=_env("AUTH_PASSWORD"),
        help="and this password (env SINKD_AUTH_PASSWORD)",
    )
    serve.add_argument(
        "--client-ip",
        default=_env("CLIENT_IP"),
        help="simulated client IP when the client sets none via XCLIENT/PROXY "
        "(env SINKD_CLIENT_IP)",
    )
    serve.add_argument("--helo", default=_env("HELO"), help="simulated HELO name (env SINKD_HELO)")
    serve.add_argument(
        "--proxy-protocol",
        action="store_true",
        default=_env_bool("PROXY_PROTOCOL"),
        help="expect a PROXY protocol header on every connection (env SINKD_PROXY_PROTOCOL)",
    )
    serve.add_argument(
        "--hostname",
        default=_env("HOSTNAME_SMTP"),
        help="name in the greeting (default: this host's FQDN)",
    )
    serve.add_argument(
        "--greylist-delay",
        type=_delay,
        default=_env_parsed("GREYLIST_DELAY", _delay, None),
        metavar="SECONDS",
        help="greylisting delay for every profile's greylist filter, 0 allowed: the first "
        "attempt is still deferred, any retry passes (env SINKD_GREYLIST_DELAY)",
    )
    serve.add_argument(
        "--verdict-log",
        type=Path,
        default=_env("VERDICT_LOG") or None,
        metavar="PATH",
        help="append one JSON line per stored verdict (the API's message object) to PATH, "
        "written after the store commit and before the reply (env SINKD_VERDICT_LOG)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=_env("LOG_FORMAT", "text"),
        help="log lines as text or JSON (env SINKD_LOG_FORMAT)",
    )
    serve.add_argument(
        "--chaos-triggers",
        metavar="SPEC",
        help="inject failures: STAGE:CODE|disconnect:PERCENT[:TEXT],... with stages connect, "
        "ehlo, auth, mail, rcpt, data, or Mailpit's Sender:451:50,Recipient:550:10,"
        "Authentication:535:100 (env SINKD_CHAOS_TRIGGERS)",
    )
    serve.add_argument(
        "--chaos-seed",
        metavar="N",
        help="seed of the chaos decisions: the same seed and SMTP events give the same "
        "failures (default: random, logged at start; env SINKD_CHAOS_SEED)",
    )

    check = commands.add_parser("check", help="judge message files without a server")
    check.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE.eml",
        help="message files ('-' reads standard input); a directory stands for every *.eml "
        "file in it, in name order",
    )
    _add_profile_options(check)
    check.add_argument(
        "--mail-from",
        type=_sender,
        help="envelope sender; '' for the null sender (default: the header From address)",
    )
    check.add_argument(
        "--rcpt",
        action="append",
        type=_recipient,
        default=[],
        help="envelope recipient (repeatable; default: the header To/Cc addresses)",
    )
    check.add_argument(
        "--client-ip",
        type=_ip,
        default="127.0.0.1",
        help="sending server's IPv4 or IPv6 address (default 127.0.0.1)",
    )
    check.add_argument("--helo", default="localhost", help="sending server's HELO name")
    check.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    check.add_argument(
        "--write-filtered",
        type=Path,
        metavar="PATH",
        help="write the message as delivered, after strip actions (a directory for several "
        "files: <name>.filtered.eml in it)",
    )
    check.add_argument(
        "--fail-on",
        choices=FAIL_ON_CHOICES,
        metavar="{" + ",".join(FAIL_ON_CHOICES) + "}",
        help="CI gate: print a summary table and exit 1 if any file's verdict is at or above "
        "this level, else 0. Levels, by how much of the message its reader sees: intact < "
        "tagged (inbox, marked as spam) < stripped (inbox, parts removed) < junk (junk "
        "folder) < quarantine (held, or discarded) < reject (refused or deferred)",
    )
    check.add_argument(
        "--junit-xml",
        type=Path,
        metavar="PATH",
        help="write a JUnit XML report: one testsuite per profile, one testcase per file, a "
        "failure for each at or above --fail-on (default quarantine) or not fully judged",
    )
    check.epilog = (
        "Files are judged as an SMTP client sends them: a file with LF line endings "
        "throughout is judged as the CRLF message, a leading mbox 'From ' line is dropped; "
        "mixed line endings are kept. Exit codes: 0 accepted (with --fail-on: no file at or "
        "above the level); 1 with --fail-on: a file at or above the level; 3 quarantined; 4 "
        "refused or deferred; 5 not fully judged: a check the profile needs could not answer "
        "(spamd down, a live DNS timeout, a filter error) - wins over 0/3/4, while a failed "
        "gate (1) wins over it; 2 bad options or input (empty, headerless or binary file)."
    )

    report = commands.add_parser(
        "report",
        help="deliverability report: every profile's verdict and the survey population estimate",
    )
    report.add_argument("files", nargs="+", type=Path, metavar="FILE.eml", help="message files")
    report.add_argument(
        "--profiles",
        type=_names,
        default=None,
        metavar="A,B,...",
        help="profiles for the per-profile table (default: every built-in profile)",
    )
    report.add_argument(
        "--profiles-dir",
        action="append",
        type=Path,
        default=[Path(d) for d in _env_list("PROFILES_DIR")],
        help="extra directory of profiles (and population.yaml), loaded over the built-in ones",
    )
    report.add_argument(
        "--mail-from",
        type=_sender,
        help="envelope sender; '' for the null sender (default: the header From address)",
    )
    report.add_argument(
        "--client-ip",
        type=_ip,
        default="127.0.0.1",
        help="sending server's IPv4 or IPv6 address (default 127.0.0.1)",
    )
    report.add_argument("--helo", default="localhost", help="sending server's HELO name")
    _add_dns_options(report)
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write one self-contained HTML page"
    )

    profiles = commands.add_parser("profiles", help="list, show and validate profiles")
    profile_commands = profiles.add_subparsers(
        dest="profiles_command", required=True, parser_class=_Parser
    )
    for name, help_text in (
        ("list", "list available profiles"),
        ("show", "show one profile"),
        ("validate", "validate profile files"),
    ):
        sub = profile_commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--profiles-dir",
            action="append",
            type=Path,
            default=[Path(d) for d in _env_list("PROFILES_DIR")],
        )
        if name == "show":
            sub.add_argument("name", help="profile id or YAML path")
            sub.add_argument("--json", action="store_true")
        elif name == "validate":
            sub.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        else:
            sub.add_argument("--json", action="store_true")

    readyz = commands.add_parser(
        "readyz",
        help="is a running sinkd ready? exit 0 if it is, 1 if not (health checks, CI scripts)",
    )
    readyz.add_argument(
        "--url",
        default=_env("URL", "http://127.0.0.1:8025"),
        help="its HTTP API, http://USER:PASS@HOST:PORT under --http-auth "
        "(default http://127.0.0.1:8025; env SINKD_URL)",
    )
    readyz.add_argument(
        "--wait",
        action="store_true",
        help="retry (short backoff, up to 1 s apart) until it is ready or --timeout passes",
    )
    readyz.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --wait: how long to wait in all (default {READYZ_WAIT:g}); "
        f"without: how long the one request may take (default {READYZ_REQUEST:g})",
    )

    messages = commands.add_parser("messages", help="read the store")
    message_commands = messages.add_subparsers(
        dest="messages_command", required=True, parser_class=_Parser
    )
    listing = message_commands.add_parser("list", help="stored verdicts, newest first")
    listing.add_argument("--db", type=Path, default=None)
    listing.add_argument("--verdict", choices=[v.value for v in VerdictAction])
    listing.add_argument("--profile")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = message_commands.add_parser("show", help="one stored verdict")
    show.add_argument("id")
    show.add_argument("--db", type=Path, default=None)
    show.add_argument("--json", action="store_true")
    show.add_argument("--raw", action="store_true", help="print the original message bytes")
    show.add_argument(
        "--filtered",
        action="store_true",
        help="print the message as delivered, after strip actions",
    )
    return parser


# --- serve ----------------------------------------------------------------------------------


def _http_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise ConfigError("--http-auth: expected USER:PASS, both non-empty")
    return user, password


def _allowed_hosts(names: list[str]) -> list[str]:
    """--http-allowed-host names: host names only (a Host's port is not checked, so one given
    here would never match)."""
    for name in names:
        if name != "*" and (not name or "/" in name or name.count(":") == 1):
            raise ConfigError(
                f"--http-allowed-host {name!r}: expected a host name such as sinkd, without "
                "scheme or port (or '*')"
            )
    return list(names)


def _workers(text: str) -> int:
    """--workers N (1..64) or auto (0)."""
    if text == "auto":
        return 0
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a number of processes 1..64, or auto")


def _settings(args: argparse.Namespace) -> Settings:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if (args.auth_user is None) != (args.auth_password is None):
        raise ConfigError("--auth-user and --auth-password go together")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0..65535")
    if not 0 <= args.http_port <= 65535:
        raise ConfigError(f"--http-port {args.http_port}: expected 0..65535")
    settings = Settings(
        host=args.host,
        port=args.port,
        profile=args.profile,
        profiles_dirs=list(args.profiles_dir),
        routes=dict(args.route),
        db=args.db or default_db_path(),
        max_message_size=args.max_message_size,
        max_recipients=args.max_recipients,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth=args.auth,
        auth_user=args.auth_user,
        auth_password=args.auth_password,
        client_ip=args.client_ip,
        helo=args.helo,
        proxy_protocol=args.proxy_protocol,
        spamd=args.spamd,
        dns=args.dns,
        dns_server=args.dns_server,
        dns_zones=list(args.dns_zone),
        dns_timeout=args.dns_timeout,
        greylist_delay=args.greylist_delay,
        http=not args.no_http,
        http_host=args.http_host,
        http_port=args.http_port,
        http_auth=_http_auth(args.http_auth),
        http_allowed_hosts=_allowed_hosts(args.http_allowed_hosts),
        verdict_log=args.verdict_log,
        workers=args.workers,
    )
    if args.hostname:
        settings.hostname = args.hostname
    settings.chaos_triggers, settings.chaos_seed = _chaos(args)
    return settings


def _chaos(args: argparse.Namespace) -> tuple[tuple[ChaosTrigger, ...], int | None]:
    """--chaos-triggers and --chaos-seed (or their variables); errors name the bad part."""
    spec, spec_from = args.chaos_triggers, "--chaos-triggers"
    if spec is None:
        spec, spec_from = _env("CHAOS_TRIGGERS", ""), "SINKD_CHAOS_TRIGGERS"
    seed, seed_from = args.chaos_seed, "--chaos-seed"
    if seed is None:
        seed, seed_from = _env("CHAOS_SEED"), "SINKD_CHAOS_SEED"
    try:
        triggers = tuple(parse_triggers(spec))
    except ConfigError as exc:
        raise ConfigError(f"{spec_from}: {exc}") from None
    if seed is not None and not (seed.isascii() and seed.isdigit()):
        raise ConfigError(f"{seed_from} {seed!r}: expected a whole number >= 0")
    config = ChaosConfig(triggers, None if seed is None else int(seed))
    return config.triggers, config.seed


async def _serve(settings: Settings, out: TextIO) -> int:
    app = Sinkd(settings)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    assert app.smtp_address is not None
    host, port = app.smtp_address
    # The readiness line: scripts and tests wait for it instead of sleeping. smtp= stays first.
    ready = f"sinkd ready smtp={host}:{port}"
    if app.http_address is not None:
        ready += " http={}:{}".format(*app.http_address)
    print(ready, file=out, flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop()
    return EXIT_OK


# --- check ----------------------------------------------------------------------------------


def _read_message(path: Path) -> bytes:
    """The file's message as an SMTP client would send it (``sinkd.core.as_sent``); a file that is
    not a message is an InputError naming the file and the problem (exit 2)."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, not a message file") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    raw = as_sent(data)
    problem = not_a_message(raw)
    if problem is not None:
        name = "standard input" if str(path) == "-" else str(path)
        raise InputError(f"{name}: {problem}")
    return raw


def _header_addresses(raw: bytes, *names: str) -> list[str]:
    from sinkd.core.message import parse

    message = parse(raw).message
    values: list[str] = []
    for name in names:
        values.extend(str(v) for v in message.get_all(name, []))
    return [addr for _, addr in email.utils.getaddresses(values) if "@" in addr]


async def check_message(
    raw: bytes,
    *,
    profiles: ProfileSet,
    profile: str,
    routes: dict[str, str],
    mail_from: str | None,
    rcpts: Sequence[str],
    client_ip: str,
    helo: str,
    spamd: tuple[str, int] | None = None,
    resolver: Resolver | None = None,
) -> list[Verdict]:
    """Run one message through the same staged transaction the server runs.

    Without ``resolver``, DNS is offline: the fixtures the profiles name, nothing else.
    """
    router = build_router(profiles, profile, routes)
    if resolver is None:
        resolver = dns_resolver(profiles, profile, routes)
    counter = iter(range(1, 1_000_000))
    transaction = Transaction(
        router,
        ClientIdentity(ip=client_ip, helo=helo, source="option"),
        lambda: f"check-{next(counter)}",
        lookups=Lookups(spamd=SpamdService(override=spamd), resolver=resolver),
    )
    sender = mail_from if mail_from is not None else next(iter(_header_addresses(raw, "From")), "")
    recipients = list(rcpts) or _header_addresses(raw, "To", "Cc") or ["recipient@example.com"]
    return await transaction.run(sender, recipients, raw)


_MARK = {"reject": "x", "tempfail": "x", "quarantine": "!", "discard": "!", "junk": "~", "tag": "~"}


def _print_verdict(name: str, verdict: Verdict, out: TextIO) -> None:
    reply = verdict.reply
    print(
        f"{name}: {verdict.verdict.value.upper()} ({verdict.disposition.value}) "
        f"profile={verdict.profile} stage={verdict.stage.value} score={verdict.score:g}",
        file=out,
    )
    print(f"  reply: {reply.code} {reply.enhanced} {reply.text}", file=out)
    env = verdict.envelope
    print(
        f"  envelope: from=<{env.mail_from or ''}> to={', '.join(env.rcpt_to) or '-'} "
        f"client={env.client.ip}",
        file=out,
    )
    for item in verdict.stripped:
        print(f"  stripped: {item}", file=out)
    if not verdict.findings:
        print("  findings: none", file=out)
    for finding in verdict.findings:
        mark = "*" if finding.decided else _MARK.get(finding.action.value, "-")
        if finding.unjudged is not None and not finding.decided:
            mark = "?"  # the check could not reach its own answer
        score = f"{finding.score:+g}" if finding.score else ""
        print(
            f"  {mark} {finding.code:<28} {finding.action.value:<10} {score:>6}  {finding.reason}",
            file=out,
        )
    for note in unjudged_notes(verdict):
        print(f"  {note}", file=out)


def _write_filtered(
    target: Path, source: Path, raw: bytes, verdicts: list[Verdict], *, many: bool
) -> None:
    """Write what each accepting profile would deliver (the original when nothing was stripped)."""
    if many:
        if not target.is_dir():
            raise InputError(
                f"--write-filtered {target}: with several files this must be a directory"
            )
        stem = "stdin" if str(source) == "-" else source.stem
        target = target / f"{stem}.filtered.eml"
    delivered = [v for v in verdicts if v.verdict is not VerdictAction.REJECT]
    if not delivered:
        print(f"sinkd check: {source}: refused by every profile; nothing to write", file=sys.stderr)
        return
    for verdict in delivered:
        path = target
        if len(delivered) > 1:
            path = target.with_name(f"{target.stem}.{verdict.profile}{target.suffix}")
        try:
            path.write_bytes(verdict.filtered if verdict.filtered is not None else raw)
        except OSError as exc:
            raise InputError(f"--write-filtered {path}: cannot write: {exc.strerror}") from None


def _message_files(paths: Sequence[Path]) -> list[Path]:
    """The files to check: each path as given, a directory as its *.eml files in name order."""
    files: list[Path] = []
    for path in paths:
        if str(path) != "-" and path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".eml" and p.is_file())
            if not found:
                raise InputError(f"{path}: a directory with no *.eml files in it")
            files.extend(found)
        else:
            files.append(path)
    return files


def _check(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: without --fail-on the strictest verdict (0 accept, 3 quarantine, 4 reject);
    with --fail-on, 1 if any file is at or above that level, else 0; 5 when a verdict is
    incomplete, unless the gate failed (see the module docstring); 2 for bad input."""
    profiles = ProfileSet(args.profiles_dir)
    routes = dict(args.route)
    resolver = dns_resolver(  # built once: zone errors stop the command before any file
        profiles,
        args.profile,
        routes,
        mode=args.dns,
        server=args.dns_server,
        zones=args.dns_zone,
        timeout=args.dns_timeout,
    )
    files = _message_files(args.files)
    # A directory argument counts as several files, even holding one: --write-filtered PATH is
    # then a directory too.
    many = len(files) > 1 or any(str(p) != "-" and p.is_dir() for p in args.files)
    raws = [(path, _read_message(path)) for path in files]  # unreadable files: exit 2 first
    worst = EXIT_OK
    results: list[dict[str, Any]] = []
    checked: list[Checked] = []
    for path, raw in raws:
        started = time.perf_counter()
        verdicts = asyncio.run(
            check_message(
                raw,
                profiles=profiles,
                profile=args.profile,
                routes=routes,
                mail_from=args.mail_from,
                rcpts=args.rcpt,
                client_ip=args.client_ip,
                helo=args.helo,
                spamd=args.spamd,
                resolver=resolver,
            )
        )
        checked.append(Checked(str(path), verdicts, time.perf_counter() - started))
        for verdict in verdicts:
            worst = max(worst, _EXIT_OF[verdict.verdict])
        if args.write_filtered is not None:
            _write_filtered(args.write_filtered, path, raw, verdicts, many=many)
        if args.json:
            results.extend({"file": str(path)} | v.to_json() for v in verdicts)
        elif args.fail_on is None:
            for verdict in verdicts:
                _print_verdict(str(path), verdict, out)
    # Without --fail-on the XML marks what makes the exit code non-zero: quarantine and worse.
    fail_on = Level(args.fail_on or Level.QUARANTINE.value)
    if args.junit_xml is not None:
        command = " ".join(["sinkd", "check", *map(str, args.files), "--profile", args.profile])
        xml = junit_xml(checked, fail_on, timestamp=datetime.now(UTC), command=command)
        try:
            args.junit_xml.write_bytes(xml)
        except OSError as exc:
            raise InputError(
                f"--junit-xml {args.junit_xml}: cannot write: {exc.strerror}"
            ) from None
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False), file=out)
    elif args.fail_on is not None:
        write_table(checked, fail_on, out)
    unjudged = [c.file for c in checked if c.incomplete]
    if unjudged:
        print(
            f"sinkd check: {len(unjudged)} of {len(checked)} file(s) not fully judged ("
            f"{INCOMPLETE}, exit {EXIT_INCOMPLETE} unless the gate failed): {', '.join(unjudged)}",
            file=sys.stderr,
        )
    if args.fail_on is not None and any(c.fails(fail_on) for c in checked):
        return EXIT_GATE_FAILED  # the build fails either way; 1 names a message to fix
    if unjudged:
        return EXIT_INCOMPLETE
    return EXIT_OK if args.fail_on is not None else worst


# --- report ---------------------------------------------------------------------------------


def _report(args: argparse.Namespace, out: TextIO) -> int:
    """Every chosen profile's verdict plus the population estimate, per message. Exit 0 once
    the report is written (it describes outcomes, it is not one); 2 for bad input."""
    profiles = ProfileSet(args.profiles_dir)
    names = args.profiles or profiles.names()
    for name in names:
        profiles.resolve(name)  # unknown ids stop the command before any file
    population = load_population(profiles)
    zones = dns_zones_of(profiles.resolve(name) for name in (*names, *population.profile_ids))
    resolver = build_resolver(args.dns, args.dns_server, [*zones, *args.dns_zone], args.dns_timeout)
    raws = [(path, _read_message(path)) for path in args.files]  # missing files: exit 2 first
    reports: list[MessageReport] = []
    for path, raw in raws:
        reports.append(
            asyncio.run(_report_one(args, path, raw, profiles, names, population, resolver))
        )
    if args.html is not None:
        try:
            args.html.write_text(render_html(reports), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html {args.html}: cannot write: {exc.strerror}") from None
    if args.json:
        data: Any = [r.to_json() for r in reports]
        print(
            json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False), file=out
        )
    else:
        for report in reports:
            write_text(report, out)
        if args.html is not None:
            print(f"HTML report: {args.html}", file=out)
    return EXIT_OK


async def _report_one(
    args: argparse.Namespace,
    path: Path,
    raw: bytes,
    profiles: ProfileSet,
    names: Sequence[str],
    population: Population,
    resolver: Resolver,
) -> MessageReport:
    sender = args.mail_from
    if sender is None:
        sender = next(iter(_header_addresses(raw, "From")), "")
    rcpt = next(iter(_header_addresses(raw, "To", "Cc")), "recipient@example.com")
    verdicts: list[Verdict] = []
    for name in names:
        found = await check_message(
            raw,
            profiles=profiles,
            profile=name,
            routes={},
            mail_from=sender,
            rcpts=[rcpt],
            client_ip=args.client_ip,
            helo=args.helo,
            resolver=resolver,
        )
        verdicts.extend(found)
    from sinkd.core.message import parse

    estimate = await population.estimate(
        raw,
        mail_from=sender,
        rcpt=rcpt,
        client=ClientIdentity(ip=args.client_ip, helo=args.helo, source="option"),
        lookups=Lookups(spamd=SpamdService(), resolver=resolver),
    )
    return MessageReport(str(path), parse(raw).subject, verdicts, estimate)


# --- profiles -------------------------------------------------------------------------------


def _profiles(args: argparse.Namespace, out: TextIO) -> int:
    if args.profiles_command == "validate":
        failed = 0
        profiles = ProfileSet(args.profiles_dir)
        for path in args.paths:
            try:
                if path.name == CATALOGUE_FILE:
                    count = len(load_catalogue([path]))
                    print(f"ok: {path} (reply catalogue, {count} replies)", file=out)
                    continue
                loaded = profiles.load(path)
            except ProfileError as exc:
                failed += 1
                print(f"invalid: {exc}", file=sys.stderr)
            else:
                print(f"ok: {path} ({loaded.profile.id}: {loaded.profile.title})", file=out)
        return EXIT_USAGE if failed else EXIT_OK
    profiles = ProfileSet(args.profiles_dir)
    if args.profiles_command == "list":
        rows = [(p.profile.id, p.profile.title, str(p.path)) for p in profiles]
        if args.json:
            print(
                json.dumps([{"id": i, "title": t, "path": p} for i, t, p in rows], indent=2),
                file=out,
            )
        else:
            width = max(len(i) for i, _, _ in rows)
            for ident, title, _ in rows:
                print(f"{ident:<{width}}  {title}", file=out)
        return EXIT_OK
    loaded = profiles.resolve(args.name)
    if args.json:
        print(json.dumps(dump(loaded.profile), indent=2, ensure_ascii=False), file=out)
    else:
        out.write(_show_profile(loaded, profiles.catalogue_provenance))
    return EXIT_OK


# Fields a node's one-line summary leaves out: they name it, or are printed on their own lines.
_NOT_SETTINGS = frozenset({"kind", "name", "id", "source", "assumption", "describe"})
_STAGES = {"mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "the end of DATA"}


def _show_profile(loaded: LoadedProfile, origins: dict[str, Origin | None]) -> str:
    """``sinkd profiles show``: every rule, threshold, limit, reply and stage of a profile on a
    line of its own, each followed by the source or assumption the profile gives for it."""
    profile = loaded.profile
    lines = [f"# {profile.title}", f"# from {loaded.path}"]
    if profile.description:
        lines += ["", *_wrap(" ".join(profile.description.split()), 0, 0)]
    lines += ["", "What it models:"]
    for model in profile.models:
        lines += _wrap(f"- {model.what}", 2, 4)
        lines += _origin_lines(model.provenance, 6)
    smtp = profile.smtp
    stage = _STAGES[smtp.envelope_reply_stage]
    settings = _node_settings(smtp, {"envelope_reply_stage"})
    lines += ["", f"SMTP: envelope refusals answered at {stage}{settings}"]
    lines += _origin_lines(smtp.provenance, 6)
    thresholds = profile.scoring.thresholds
    levels = [(k, getattr(thresholds, k)) for k in ("tag", "junk", "quarantine", "reject")]
    given = [f"{k} at {v:g}" for k, v in levels if v is not None]
    lines.append(
        f"Scoring: {', '.join(given) or 'no thresholds'}; "
        f"reject reply {profile.scoring.reject_reply}"
    )
    lines += _origin_lines(profile.scoring.provenance, 6)
    if profile.lists:
        lines += ["", "Lists:"]
        for name, listed in profile.lists.items():
            entries = ", ".join(listed.entries) or "(empty)"
            lines += _wrap(f"{name} ({listed.kind}, {len(listed.entries)}): {entries}", 2, 6)
            lines += _origin_lines(listed.provenance, 6)
    lines += ["", "Filters:"]
    for spec in profile.filters:
        name = getattr(spec, "name", "?")
        kind = getattr(spec, "kind", "?")
        lines.append(f"  {name} ({kind}){_node_settings(spec)}")
        lines += _origin_lines(spec.provenance, 6)
        lines += _children(spec, 4)
    used = _reply_keys(dump(profile))
    if used:
        lines += ["", "Replies:"]
        for key in used:
            template = loaded.catalogue.get(key)
            if template is None:
                continue
            lines += _wrap(f"{key}: {template.code} {template.enhanced} {template.template}", 2, 6)
            lines += _origin_lines(origins.get(key), 6)
    return "\n".join(lines) + "\n"


def _origin_lines(origin: Origin | None, indent: int) -> list[str]:
    if origin is None:
        return []
    label, text = origin
    return _wrap(f"{label}: {' '.join(text.split())}", indent, indent + 2)


def _wrap(text: str, indent: int, hanging: int) -> list[str]:
    """Lines of at most 100 characters; paths and URLs are never broken."""
    return textwrap.wrap(
        text,
        100,
        initial_indent=" " * indent,
        subsequent_indent=" " * hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_node(value: object) -> bool:
    if isinstance(value, Spec):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Spec) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, Spec) for v in value.values())
    return False


def _node_settings(node: Spec, skip: set[str] | frozenset[str] = frozenset()) -> str:
    """The scalar fields the profile writes on a node, as ``key=value``."""
    fields = type(node).model_fields
    parts = [
        f"{fields[f].alias or f}={_value(getattr(node, f))}"
        for f in fields
        if f in node.model_fields_set
        and f not in _NOT_SETTINGS
        and f not in skip
        and not _is_node(getattr(node, f))
    ]
    return (": " + " ".join(parts)) if parts else ""


def _children(node: Spec, indent: int, prefix: str = "") -> list[str]:
    """One line per sub-node the profile writes (rules, outcomes, zones, ...), with its
    settings and its source or assumption, recursively."""
    lines: list[str] = []
    fields = type(node).model_fields
    for field in fields:
        if field not in node.model_fields_set:
            continue
        value = getattr(node, field)
        if not _is_node(value):
            continue
        label = prefix + (fields[field].alias or field)
        if isinstance(value, Spec):
            items: list[tuple[str, Spec]] = [(label, value)]
        elif isinstance(value, dict):
            items = [(f"{label}.{k}", v) for k, v in value.items() if isinstance(v, Spec)]
        else:
            items = [
                (getattr(v, "id", None) or f"{label}[{i}]", v)
                for i, v in enumerate(value)
                if isinstance(v, Spec)
            ]
        for item_label, item in items:
            ident = getattr(item, "id", None)
            shown = item_label if ident is None or ident == item_label else f"{item_label} {ident}"
            lines.append(" " * indent + f"{shown}{_node_settings(item)}")
            describe = getattr(item, "describe", None)
            if describe:
                lines += _wrap(str(describe), indent + 2, indent + 2)
            lines += _origin_lines(item.provenance, indent + 2)
            lines += _children(item, indent + 2)
    return lines


# Actions whose outcome is sent as an SMTP reply; other outcomes keep a default reply unused.
_REPLYING = frozenset(action.value for action in Action if action.refuses)


def _reply_keys(data: object) -> list[str]:
    """Catalogue keys the profile may answer with (a ``reply`` of an outcome that refuses,
    ``reject_reply`` with a reject threshold, ``connection_limit_reply`` with a connection
    limit, any other ``*_reply``), in order of first mention."""
    found: dict[str, None] = {}

    def used(node: dict[Any, Any], key: str) -> bool:
        if key == "reply":
            return node.get("action") in _REPLYING or "action" not in node
        if key == "reject_reply":
            return (node.get("thresholds") or {}).get("reject") is not None
        if key == "connection_limit_reply":
            return node.get("max_connections_per_ip") is not None
        return True

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                is_reply = isinstance(key, str) and key.endswith("reply")
                if is_reply and isinstance(item, str) and used(value, key):
                    found.setdefault(item, None)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return list(found)


# --- messages -------------------------------------------------------------------------------


async def _messages(args: argparse.Namespace, out: TextIO) -> int:
    path = args.db or default_db_path()
    if not path.is_file():
        raise StoreError(f"{path}: no store there yet (start 'sinkd serve' or pass --db)")
    store = await open_sqlite(path)
    try:
        if args.messages_command == "list":
            rows = await store.list(
                Query(verdict=args.verdict, profile=args.profile, limit=args.limit)
            )
            if args.json:
                print(json.dumps([r.data for r in rows], indent=2, ensure_ascii=False), file=out)
                return EXIT_OK
            for row in rows:
                d = row.data
                reply = d["reply"]
                print(
                    f"{d['id']}  {d['received_at']}  {d['verdict']:<10} {d['profile']:<18} "
                    f"{d['stage']:<4} {reply['code']} {reply['enhanced']}  "
                    f"{(d.get('subject') or '')[:50]!r}",
                    file=out,
                )
            return EXIT_OK
        stored = await store.get(args.id, with_raw=args.raw or args.filtered)
        if args.raw or args.filtered:
            if stored.raw is None:
                raise NotFound(f"message {args.id} has no raw bytes (refused before DATA)")
            body = stored.raw
            if args.filtered:
                if stored.data["verdict"] == VerdictAction.REJECT.value:
                    raise NotFound(f"message {args.id} was refused; nothing was delivered")
                # Nothing stripped: the original is what was delivered.
                body = stored.filtered if stored.filtered is not None else stored.raw
            out.flush()
            sys.stdout.buffer.write(body)
            sys.stdout.buffer.flush()
        elif args.json:
            print(json.dumps(stored.data, indent=2, ensure_ascii=False), file=out)
        else:
            print(
                yaml.safe_dump(stored.data, sort_keys=False, allow_unicode=True, width=100),
                file=out,
                end="",
            )
        return EXIT_OK
    finally:
        await store.close()


# --- readyz ---------------------------------------------------------------------------------

READYZ_WAIT = 30.0  # seconds --wait waits by default
READYZ_REQUEST = 5.0  # seconds one readiness request may take
READYZ_BACKOFF = (0.05, 1.0)  # first and longest pause between attempts of --wait


def _readyz(args: argparse.Namespace, out: TextIO) -> int:
    """One readiness check, or with ``--wait`` checks until ready or the deadline. Waiting
    pauses between attempts (doubling, at most a second): sinkd is another process, and a
    refused connection has no event to wait on. Only "not there yet" (refused, 503) is retried;
    any other answer (401, 404) will not change by waiting."""
    from sinkd.errors import HttpApiError, HttpApiUnreachable
    from sinkd.testing.client import SinkdClient

    total = args.timeout or (READYZ_WAIT if args.wait else READYZ_REQUEST)
    deadline = time.monotonic() + total
    pause = READYZ_BACKOFF[0]
    with SinkdClient(args.url, timeout=min(total, READYZ_REQUEST)) as client:
        while True:
            try:
                readiness = client.readyz()
            except HttpApiUnreachable as exc:
                why = str(exc.detail)
            except HttpApiError as exc:
                print(f"sinkd: {client.url}: not ready: {exc}", file=sys.stderr)
                return EXIT_ERROR
            else:
                if readiness.ready:
                    print(f"sinkd at {client.url}: ready", file=out)
                    return EXIT_OK
                why = f"{client.url}: {readiness.why_not}"
            left = deadline - time.monotonic()
            if not args.wait or left <= 0:
                waited = f" (waited {total:g} s)" if args.wait else ""
                print(f"sinkd: {why}{waited}", file=sys.stderr)
                return EXIT_ERROR
            time.sleep(min(pause, left))
            pause = min(pause * 2, READYZ_BACKOFF[1])


# --- main -----------------------------------------------------------------------------------


def _prog(argv: Sequence[str] | None) -> str:
    """Who speaks in an input error: ``sinkd check`` / ``sinkd report`` (their errors name a
    file or option of that command), else ``sinkd``."""
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)
    return f"sinkd {command}" if command in ("check", "report") else "sinkd"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            setup_logging(args.log_format)
            return asyncio.run(_serve(_settings(args), out))
        runners: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
            "check": _check,
            "report": _report,
            "profiles": _profiles,
            "messages": lambda a, o: asyncio.run(_messages(a, o)),
            "readyz": _readyz,
        }
        return runners[args.command](args, out)
    except (ConfigError, InputError, ProfileError) as exc:
        print(f"{_prog(argv)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"sinkd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SinkdError as exc:
        print(f"sinkd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout.close()
        return EXIT_OK
