"""XCLIENT (Postfix XCLIENT_README): the attributes a client may set and how a command's
arguments become them.

Owns the attribute record, the command's parsing (RFC 3461 xtext decoding, the IPv4/IPv6
address forms, "[UNAVAILABLE]"/"[TEMPUNAVAIL]") and its 501 refusals, and the EHLO keyword
line that advertises it. It speaks no SMTP itself: the protocol decides when XCLIENT is allowed
and answers; the session keeps the attributes; the handler reads them through the session.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

# The EHLO keyword and the attributes sinkd advertises (Postfix's spelling and order).
EHLO_KEYWORD = "XCLIENT NAME ADDR HELO LOGIN PROTO PORT DESTADDR DESTPORT"
# Every attribute Postfix defines that sinkd accepts; PORT, PROTO and the DEST* ones are taken
# and ignored (nothing sinkd judges depends on them).
ATTRIBUTES = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT"})
_UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XTEXT_OCTET = re.compile(r"\+([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class XclientAttributes:
    """Attributes a client set with XCLIENT; None where it set none (or "[UNAVAILABLE]")."""

    addr: str | None = None
    name: str | None = None
    helo: str | None = None
    login: str | None = None


def xtext_decode(value: str) -> str:
    """RFC 3461 §4 xtext: "+" followed by two hex digits encodes one octet."""
    return _XTEXT_OCTET.sub(lambda m: chr(int(m.group(1), 16)), value)


def address(value: str) -> str | None:
    """An ADDR value as an IP address (IPv6 with or without Postfix's "IPV6:" prefix), in
    its canonical text form; None when it is not one."""
    text = value[5:] if value.upper().startswith("IPV6:") else value
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse(arg: str | None, current: XclientAttributes) -> XclientAttributes | str:
    """``current`` updated by the command's ``name=value`` pairs, or the 501 reply line that
    refuses the whole command (then nothing of it applies)."""
    if not arg:
        return "501 5.5.4 Syntax: XCLIENT attribute=value [attribute=value ...]"
    update = current
    for item in arg.split():
        name, eq, raw_value = item.partition("=")
        name = name.upper()
        if not eq or name not in ATTRIBUTES:
            return f"501 5.5.4 Bad XCLIENT attribute name: {name[:64]}"
        value = xtext_decode(raw_value)
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
            # xtext may encode any octet; a name or HELO with controls or spaces is bogus.
            return f"501 5.5.4 Bad XCLIENT {name} syntax"
        unavailable = value.upper() in _UNAVAILABLE
        if name == "ADDR":
            addr = None if unavailable else address(value)
            if addr is None and not unavailable:
                return f"501 5.5.4 Bad XCLIENT ADDR syntax: {value[:64]}"
            update = replace(update, addr=addr)
        elif name == "NAME":
            update = replace(update, name=None if unavailable else value)
        elif name == "HELO":
            update = replace(update, helo=None if unavailable else value)
        elif name == "LOGIN":
            update = replace(update, login=None if unavailable else value)
    return update
