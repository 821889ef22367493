"""What ``sinkd check`` and ``sinkd report`` share: reading message files as an SMTP client
sends them, their envelope and client options, and judging one message without a server.

Owns building a command's ``Judge`` (the service the server judges with too), the address and
IP option parsers and the envelope taken from the headers when no option gives one. Must not
import the server, the web app or the store: ``sinkd check`` starts without them.
"""

from __future__ import annotations

import argparse
import email.utils
import functools
import ipaddress
import itertools
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from sinkd.core.as_sent import as_sent, not_a_message
from sinkd.core.message import ParsedMessage
from sinkd.core.model import ClientIdentity, Verdict
from sinkd.core.profiles import LoadedProfile, ProfileSet
from sinkd.errors import InputError
from sinkd.services.judge import DEFAULT_RECIPIENT, DnsOptions, Identity, Judge, MailEnvelope

CLIENT_IP = "127.0.0.1"  # the sending server check and report assume
CLIENT_HELO = "localhost"


def add_sender_option(parser: argparse.ArgumentParser) -> None:
    """--mail-from: the envelope sender a file is judged with."""
    parser.add_argument(
        "--mail-from",
        type=sender,
        help="envelope sender; '' for the null sender (default: the header From address)",
    )


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """--client-ip and --helo: the sending server a file is judged as coming from."""
    parser.add_argument(
        "--client-ip",
        type=ip_address,
        default=CLIENT_IP,
        help=f"sending server's IPv4 or IPv6 address (default {CLIENT_IP})",
    )
    parser.add_argument("--helo", default=CLIENT_HELO, help="sending server's HELO name")


def ip_address(text: str) -> str:
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
_MAILBOX = (
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*|{_QUOTED})"
    rf"@(?:{_LABEL}(?:\.{_LABEL})*|\[(?P<literal>[^\[\]\\\s]+)\])"
)
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


@functools.cache
def _mailbox() -> re.Pattern[str]:
    # Compiled on first use: its Unicode classes take ~20 ms to compile, which every
    # ``sinkd check`` paid at start-up although only --mail-from and --rcpt need it.
    return re.compile(_MAILBOX)


def mailbox_problem(text: str) -> str | None:
    found = _mailbox().fullmatch(text)
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


def recipient(text: str) -> str:
    """--rcpt: one mailbox, with or without angle brackets."""
    address = text.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    problem = mailbox_problem(address)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {problem}; expected an address such as bob@example.com"
        )
    return address


def sender(text: str) -> str:
    """--mail-from: one mailbox, or '' (or '<>') for the null reverse-path of bounces
    (RFC 5321 §4.5.5)."""
    if text.strip() in ("", "<>"):
        return ""
    try:
        return recipient(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or '' for the null sender") from None


def read_message(path: Path) -> bytes:
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


def header_addresses(parsed: ParsedMessage, *names: str) -> list[str]:
    message = parsed.message
    values: list[str] = []
    for name in names:
        values.extend(str(v) for v in message.get_all(name, []))
    return [addr for _, addr in email.utils.getaddresses(values) if "@" in addr]


def command_judge(
    args: argparse.Namespace, profiles: ProfileSet, *, profile: str, routes: dict[str, str]
) -> Judge:
    """The one ``Judge`` of a ``check`` run: its routing and the DNS options it was given.
    Built before any file is read, so a bad zone file stops the command first."""
    dns = DnsOptions(args.dns, args.dns_server, tuple(args.dns_zone), args.dns_timeout)
    return Judge(profiles, profile=profile, routes=routes, dns=dns, spamd=args.spamd)


def file_envelope(
    parsed: ParsedMessage, mail_from: str | None, rcpts: Sequence[str]
) -> MailEnvelope:
    """The envelope a file is judged with: the options', else the header addresses (From;
    To and Cc), else a placeholder recipient."""
    if mail_from is None:
        mail_from = next(iter(header_addresses(parsed, "From")), "")
    recipients = list(rcpts) or header_addresses(parsed, "To", "Cc") or [DEFAULT_RECIPIENT]
    return MailEnvelope(mail_from, tuple(recipients))


def option_identity(client_ip: str, helo: str) -> Identity:
    """--client-ip and --helo as the filters see them (no AUTH, no TLS)."""
    return Identity(ClientIdentity(ip=client_ip, helo=helo, source="option"))


async def check_message(
    judge: Judge,
    raw: bytes,
    envelope: MailEnvelope,
    identity: Identity,
    *,
    profile: str | LoadedProfile | None = None,
) -> list[Verdict]:
    """Run one message through the judge's staged transaction, the one the server runs: with
    its routing in force, or ``profile`` alone. Verdict ids count ``check-1``, ``check-2`` …
    per message."""
    counter = itertools.count(1)
    return await judge.evaluate(
        raw, envelope, identity, profile=profile, new_id=lambda: f"check-{next(counter)}"
    )
