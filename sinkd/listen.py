"""Listening sockets for ``--host`` and ``--http-host``: which addresses a value means, and
binding them on one port.

Owns the meaning of the default, ``localhost``: both loopback addresses, 127.0.0.1 and ::1, on
the same port. RFC 6761 §6.3 lets a resolver answer ``localhost`` with either loopback address
and many give ::1 first (macOS, many Linux and Java set-ups), so a server on 127.0.0.1 alone
refuses them. Any other value is bound exactly as given (``0.0.0.0``, ``::``, one address).
It holds no policy and starts no server: ``runtime`` (SMTP) and ``sinkd.web.server`` (HTTP)
serve the sockets it returns.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

LOOPBACK_NAME = "localhost"  # the default --host and --http-host: both loopback addresses
LOOPBACKS = ("127.0.0.1", "::1")
PORT_ATTEMPTS = 20  # port 0: a free IPv4 port that is taken on ::1 is given up for another

_NO_IPV6 = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})
_said_no_ipv6 = False  # logged once per process, not once per listener


def both_loopbacks(host: str) -> bool:
    """Whether ``host`` means both loopback addresses (``localhost``, in any case)."""
    return host.rstrip(".").lower() == LOOPBACK_NAME


def show(address: tuple[str, int]) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:2525``)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int, *, backlog: int) -> list[socket.socket]:
    """Non-blocking listening sockets for ``host`` on ``port`` (0: a free one), the IPv4 one
    first: two for ``localhost`` (one where the machine has no IPv6 loopback), else one.
    ``OSError`` says why not (the port is taken, the address is not this machine's)."""
    if not both_loopbacks(host):
        return [_bind(host, port, backlog)]
    for _ in range(PORT_ATTEMPTS):
        first = _bind(LOOPBACKS[0], port, backlog)
        chosen: int = first.getsockname()[1]
        try:
            second = _bind(LOOPBACKS[1], chosen, backlog)
        except OSError as exc:
            if exc.errno in _NO_IPV6:
                _say_no_ipv6(exc)
                return [first]
            first.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # free on 127.0.0.1, taken on ::1: another free port
            raise
        return [first, second]
    raise OSError(
        errno.EADDRINUSE,
        f"no port free on both 127.0.0.1 and ::1 in {PORT_ATTEMPTS} attempts",
    )


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    if host in LOOPBACKS:  # no resolver call: a machine without IPv6 fails at socket() or bind()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        address: tuple[Any, ...] = (host, port)
    else:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if host == LOOPBACKS[1]:
            # ::1 alone (RFC 3493 §5.3, Linux ipv6(7) IPV6_V6ONLY): the IPv4 loopback is the
            # other socket's, whatever net.ipv6.bindv6only says. ``::`` is left to the kernel.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _say_no_ipv6(exc: OSError) -> None:
    global _said_no_ipv6
    if not _said_no_ipv6:
        _said_no_ipv6 = True
        log.info("no IPv6 loopback on this machine (%s): listening on 127.0.0.1 only", exc)
