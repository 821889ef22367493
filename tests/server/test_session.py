"""The per-connection session (``sinkd.server.session``): the effective client identity is
computed there alone, from XCLIENT, the PROXY header, the configured options and the
connection, in that order; XCLIENT's LOGIN and AUTH give the authenticated user."""

from __future__ import annotations

import asyncio
import ipaddress

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import LoginPassword, Session

from sinkd.server.options import ServerOptions
from sinkd.server.session import ConnectionSession
from sinkd.server.xclient import XclientAttributes


def _smtp_session(helo: str | None = "client.example", proxy_ip: str | None = None) -> Session:
    session = Session(asyncio.get_running_loop())
    session.peer = ("127.0.0.1", 40000)  # type: ignore[assignment]  # aiosmtpd's own shape
    session.host_name = helo
    if proxy_ip is not None:
        session.proxy_data = ProxyData(version=1)
        session.proxy_data.src_addr = ipaddress.ip_address(proxy_ip)
    return session


async def test_without_anything_set_the_identity_is_the_connection() -> None:
    client = ConnectionSession().client(_smtp_session(), ServerOptions())
    assert (client.ip, client.source, client.helo, client.peer) == (
        "127.0.0.1",
        "connection",
        "client.example",
        "127.0.0.1",
    )


async def test_the_client_ip_option_is_the_identity_when_the_client_sets_none() -> None:
    client = ConnectionSession().client(_smtp_session(), ServerOptions(client_ip="192.0.2.25"))
    assert (client.ip, client.source) == ("192.0.2.25", "option")


async def test_a_proxy_header_wins_over_the_option() -> None:
    options = ServerOptions(client_ip="192.0.2.25")
    client = ConnectionSession().client(_smtp_session(proxy_ip="203.0.113.9"), options)
    assert (client.ip, client.source) == ("203.0.113.9", "proxy")


async def test_xclient_wins_over_the_proxy_header_and_gives_name_and_helo() -> None:
    connection = ConnectionSession()
    connection.take_xclient(XclientAttributes(addr="192.0.2.7", name="mx.example", helo="mx"))
    options = ServerOptions(client_ip="192.0.2.25", helo="configured.example")
    client = connection.client(_smtp_session(proxy_ip="203.0.113.9"), options)
    assert (client.ip, client.source, client.name, client.helo, client.peer) == (
        "192.0.2.7",
        "xclient",
        "mx.example",
        "mx",
        "127.0.0.1",
    )


async def test_the_configured_helo_wins_over_the_one_the_client_said() -> None:
    client = ConnectionSession().client(_smtp_session(), ServerOptions(helo="configured.example"))
    assert client.helo == "configured.example"


async def test_xclient_login_wins_over_auth_as_the_authenticated_user() -> None:
    session = _smtp_session()
    session.auth_data = LoginPassword(b"bob", b"secret")
    connection = ConnectionSession()
    assert connection.identity(session, ServerOptions(), tls=False).auth_user == "bob"
    connection.take_xclient(XclientAttributes(login="alice"))
    identity = connection.identity(session, ServerOptions(), tls=True)
    assert (identity.auth_user, identity.tls) == ("alice", True)


async def test_xclient_ends_any_transaction_but_the_connection_stays_counted() -> None:
    connection = ConnectionSession(transaction_id="abc", counted="127.0.0.1")
    connection.take_xclient(XclientAttributes(addr="192.0.2.7"))
    assert (connection.transaction, connection.transaction_id) == (None, "")
    assert connection.counted == "127.0.0.1"
