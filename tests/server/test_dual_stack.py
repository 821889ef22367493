"""``localhost:2525`` whichever address a client's resolver gives first: by default sinkd listens
on both loopback addresses, 127.0.0.1 and ::1, on one port, for SMTP and HTTP (RFC 6761 §6.3
lets ``localhost`` resolve to either). Real clients connect over each: smtplib sends a message
and gets 250, httpx asks ``/livez``; with ``--workers 2`` the primary accepts on both sockets.
An explicit ``--host`` binds exactly that address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import smtplib
import socket
import sys
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from sinkd import listen
from sinkd.cli import build_parser
from sinkd.errors import ConfigError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings, from_namespace
from tests.conftest import StartServer
from tests.support.loopback import require_ipv6_loopback
from tests.support.servers import QUEUED, READY, START_TIMEOUT, TIMEOUT, clean_env

LOOPBACKS = ("127.0.0.1", "::1")


def mail(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@sender.example"
    msg["To"] = "bob@corp.example"
    msg["Subject"] = f"over loopback {n}"
    msg["Message-ID"] = f"<loopback-{n}@sender.example>"
    msg.set_content("Hello over both loopback addresses.\n")
    return msg


def send_over(host: str, port: int, n: int) -> str:
    """Send one message with smtplib to ``host:port``; the id its 250 names."""
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("alice@sender.example")
        smtp.rcpt("bob@corp.example")
        code, reply = smtp.data(mail(n).as_bytes())
    assert code == 250, reply
    match = QUEUED.match(reply.decode())
    assert match, reply
    return match.group(1)


async def stored_subjects(app: Sinkd, ids: list[str]) -> list[str]:
    assert app.store is not None
    return [str((await app.store.get(i)).data["subject"]) for i in ids]


def test_serve_listens_on_localhost_by_default_for_smtp_and_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in clean_env() if n.startswith("SINKD_")]:
        monkeypatch.delenv(name, raising=False)
    settings = from_namespace(build_parser().parse_args(["serve"]))
    assert (settings.host, settings.http_host) == ("localhost", "localhost")
    assert Settings.host == Settings.http_host == "localhost"  # the dataclass defaults too


async def test_by_default_smtp_takes_mail_over_127_0_0_1_and_ipv6_loopback_on_one_port(
    start_server: StartServer,
) -> None:
    require_ipv6_loopback()
    app = await start_server(host="localhost", profile="no-filter")
    assert app.smtp_address is not None
    port = app.smtp_address[1]
    assert app.smtp_address == ("127.0.0.1", port)  # what tests and the plugin connect to
    assert app.smtp_addresses == [("127.0.0.1", port), ("::1", port)]
    ids = [await asyncio.to_thread(send_over, host, port, n) for n, host in enumerate(LOOPBACKS)]
    assert await stored_subjects(app, ids) == ["over loopback 0", "over loopback 1"]
    assert app.smtp_serving()


async def test_by_default_http_answers_over_127_0_0_1_and_ipv6_loopback_on_one_port(
    start_server: StartServer,
) -> None:
    require_ipv6_loopback()
    app = await start_server(host="localhost", http=True, http_host="localhost")
    assert app.http_address is not None
    port = app.http_address[1]
    assert app.http_address == ("127.0.0.1", port)
    assert app.http_addresses == [("127.0.0.1", port), ("::1", port)]
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for url in (f"http://127.0.0.1:{port}/livez", f"http://[::1]:{port}/livez"):
            response = await client.get(url)
            assert response.status_code == 200, url
        ready = await client.get(f"http://[::1]:{port}/readyz")
        assert ready.status_code == 200
        # The API too: the Host guard and the same-origin guard take [::1] and localhost as
        # sinkd's own, as a browser on http://localhost:PORT sends them over ::1.
        listed = await client.get(f"http://[::1]:{port}/api/v1/messages")
        assert listed.status_code == 200
        by_name = await client.get(
            f"http://[::1]:{port}/api/v1/messages", headers={"Host": f"localhost:{port}"}
        )
        assert by_name.status_code == 200
        for origin in (f"http://[::1]:{port}", f"http://localhost:{port}"):
            changed = await client.put(
                f"http://[::1]:{port}/api/v1/chaos",
                json={"triggers": ""},
                headers={"Origin": origin},
            )
            assert changed.status_code == 200, (origin, changed.text)


async def test_with_two_workers_the_primary_accepts_over_both_loopback_addresses(
    start_server: StartServer,
) -> None:
    require_ipv6_loopback()
    app = await start_server(host="localhost", profile="no-filter", workers=2)
    assert app.workers is not None and app.workers.count == 2
    assert app.smtp_address is not None
    port = app.smtp_address[1]
    assert app.smtp_addresses == [("127.0.0.1", port), ("::1", port)]
    ids = [
        await asyncio.to_thread(send_over, host, port, n)
        for n, host in enumerate(LOOPBACKS * 2)  # both workers take connections from both
    ]
    assert len(set(ids)) == 4
    subjects = await stored_subjects(app, ids)
    assert subjects == [f"over loopback {n}" for n in range(4)]


async def test_an_explicit_ipv4_host_listens_on_ipv4_only(start_server: StartServer) -> None:
    require_ipv6_loopback()
    app = await start_server(host="127.0.0.1", http=True, http_host="127.0.0.1")
    assert app.smtp_address is not None and app.http_address is not None
    assert app.smtp_addresses == [app.smtp_address]
    assert app.http_addresses == [app.http_address]
    for _, port in (app.smtp_address, app.http_address):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("::1", port)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()


async def test_a_client_of_localhost_reaches_sinkd_at_every_address_its_resolver_gives(
    start_server: StartServer,
) -> None:
    require_ipv6_loopback()
    app = await start_server(host="localhost")
    assert app.smtp_address is not None
    port = app.smtp_address[1]
    # Whichever family getaddrinfo gives first (/etc/hosts, gai.conf), every answer connects.
    answers = await asyncio.get_running_loop().getaddrinfo(
        "localhost", port, type=socket.SOCK_STREAM
    )
    assert answers
    for family, kind, proto, _, address in answers:
        reader, writer = await asyncio.open_connection(
            sock=_connected(socket.socket(family, kind, proto), address)
        )
        greeting = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert greeting.startswith(b"220 "), (address, greeting)
        writer.close()
        await writer.wait_closed()
    # And as an application would: smtplib resolving the name itself.
    assert await asyncio.to_thread(send_over, "localhost", port, 0)


def _connected(sock: socket.socket, address: tuple[object, ...]) -> socket.socket:
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    sock.setblocking(False)
    return sock


async def test_a_port_given_and_taken_on_ipv6_loopback_is_an_error_not_ipv4_alone(
    start_server: StartServer,
) -> None:
    require_ipv6_loopback()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as smtp_error:
            await start_server(host="localhost", port=port)
        assert smtp_error.value.errno == errno.EADDRINUSE
        with pytest.raises(ConfigError, match=f"--http-port {port}: cannot listen"):
            await start_server(http=True, http_host="localhost", http_port=port)


def test_port_0_takes_another_port_when_the_free_ipv4_one_is_taken_on_ipv6_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_bind = listen._bind
    refused: list[int] = []

    def bind(host: str, port: int, backlog: int) -> socket.socket:
        if host == "::1" and not refused:  # as if another program held [::1]:port
            refused.append(port)
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return real_bind(host, port, backlog)

    monkeypatch.setattr(listen, "_bind", bind)
    sockets = listen.listen("localhost", 0, backlog=10)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) in (1, 2) and len(ports) == 1  # 1: this machine has no ::1
        assert refused and refused[0] not in ports
    finally:
        for sock in sockets:
            sock.close()


def test_without_an_ipv6_loopback_localhost_is_127_0_0_1_alone_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_bind = listen._bind

    def bind(host: str, port: int, backlog: int) -> socket.socket:
        if host == "::1":  # what Linux says with net.ipv6.conf.lo.disable_ipv6=1
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        return real_bind(host, port, backlog)

    monkeypatch.setattr(listen, "_bind", bind)
    monkeypatch.setattr(listen, "_said_no_ipv6", False)
    opened: list[socket.socket] = []
    with caplog.at_level(logging.INFO, logger="sinkd.listen"):
        for _ in range(2):
            opened += listen.listen("localhost", 0, backlog=10)
    try:
        assert [sock.family for sock in opened] == [socket.AF_INET, socket.AF_INET]
        said = [r.getMessage() for r in caplog.records if r.name == "sinkd.listen"]
        assert len(said) == 1 and "listening on 127.0.0.1 only" in said[0]
    finally:
        for sock in opened:
            sock.close()


async def test_serve_logs_both_addresses_and_its_readiness_line_names_127_0_0_1(
    tmp_path: Path,
) -> None:
    require_ipv6_loopback()
    env = clean_env(SINKD_NO_HTTP="", SINKD_HTTP_PORT="0")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sinkd", "serve", "--port", "0", "--db", str(tmp_path / "s.db"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match, line
        assert (match["host"], match["http_host"]) == ("127.0.0.1", "127.0.0.1")
        smtp, http = match["port"], match["http_port"]
    finally:
        process.terminate()
        async with asyncio.timeout(TIMEOUT):
            _, err = await process.communicate()
    logged = err.decode()
    assert f"listening on 127.0.0.1:{smtp} and [::1]:{smtp} " in logged
    assert f"http api on 127.0.0.1:{http} and [::1]:{http}" in logged
