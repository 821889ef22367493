"""``sinkd.testing.client.SinkdClient`` against a real sinkd in a background thread (SMTP and
HTTP on free ports): typed results, typed errors and the event stream, as a test suite or a script
uses them."""

from __future__ import annotations

import contextlib
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinkd.errors import HttpApiError, HttpApiUnreachable
from sinkd.server.runtime import ServerThread, Sinkd
from sinkd.services.settings import Settings, parse_relay_url
from sinkd.testing.client import Message, Relay, SinkdClient
from tests.conftest import refused_port
from tests.support.smtp import GTUBE_MESSAGE, SPAMMY_MESSAGE, TIMEOUT, message


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Sinkd]:
    settings = Settings(port=0, http_port=0, db=tmp_path / "sinkd.db", hostname="sinkd.test")
    with ServerThread(settings) as sinkd:
        yield sinkd


@pytest.fixture
def client(server: Sinkd) -> Iterator[SinkdClient]:
    assert server.http_address is not None
    with SinkdClient("http://{}:{}".format(*server.http_address), timeout=TIMEOUT) as client:
        yield client


def send(server: Sinkd, raw: bytes, rcpt: str = "bob@corp.example") -> None:
    assert server.smtp_address is not None
    smtp = smtplib.SMTP(*server.smtp_address, timeout=TIMEOUT)
    with smtp, contextlib.suppress(smtplib.SMTPDataError):  # a refused message is stored too
        smtp.sendmail("alice@sender.example", [rcpt], raw)


def test_messages_come_back_typed_in_the_one_json_shape(server: Sinkd, client: SinkdClient) -> None:
    send(server, SPAMMY_MESSAGE)
    page = client.messages()
    assert (page.total, page.limit, page.offset) == (1, 50, 0)
    (m,) = page.messages
    assert isinstance(m, Message)
    assert (m.verdict, m.disposition, m.profile) == (
        "quarantine",
        "quarantined",
        "typical-corporate",
    )
    assert m.envelope.rcpt_to == ("bob@corp.example",) and m.subject == "Win the lottery"
    assert m.reply.code == 250 and str(m.reply).startswith("250 2.0.0 Ok: queued as")
    assert "CONTENT_TRIGGER_WORD" in m.codes
    assert [f.code for f in m.deciding] == ["SCORE_QUARANTINE"] and m.reasons
    assert m.received_at is not None and m.received_at.tzinfo is not None
    assert client.message(m.id) == m
    assert client.findings(m.id) == list(m.findings)
    assert client.raw(m.id) == SPAMMY_MESSAGE


def test_filters_select_like_the_api_and_all_messages_pages_through(
    server: Sinkd, client: SinkdClient
) -> None:
    send(server, message(), "bob@corp.example")
    send(server, GTUBE_MESSAGE, "carol@other.example")
    assert [m.verdict for m in client.messages(verdict="reject").messages] == ["reject"]
    assert [m.envelope.rcpt_to for m in client.all_messages(to="BOB@")] == [("bob@corp.example",)]
    assert len(client.all_messages(sender="alice@")) == 2
    assert client.messages(limit=1).total == 2


def test_delete_clear_release_and_evaluate(server: Sinkd, client: SinkdClient) -> None:
    send(server, SPAMMY_MESSAGE)
    (quarantined,) = client.messages().messages
    released = client.release(quarantined.id)
    assert released.released_at is not None
    evaluation = client.evaluate(quarantined.id, "no-filter")
    assert (evaluation.profile, evaluation.stored) == ("no-filter", False)
    assert [v.verdict for v in evaluation.verdicts] == ["accept"]
    client.delete(quarantined.id)
    send(server, message())
    send(server, message())
    assert client.clear() == 2
    assert client.messages().total == 0


def test_api_errors_are_typed_with_the_status_and_the_json_error(client: SinkdClient) -> None:
    with pytest.raises(HttpApiError) as missing:
        client.message("0123456789ABCDEF01")
    assert (missing.value.status, missing.value.error) == (404, "not found")
    assert "0123456789ABCDEF01" in str(missing.value.detail)
    with pytest.raises(HttpApiError) as unknown:
        client.set_routing("no-such-profile")
    assert (unknown.value.status, unknown.value.error) == (422, "unknown profile")
    assert "strict-finance" in str(unknown.value)


def test_profiles_routing_delivery_state_and_chaos(client: SinkdClient) -> None:
    assert "strict-finance" in [p.id for p in client.profiles()]
    assert client.profile("strict-finance")["id"] == "strict-finance"
    routing = client.set_routing("strict-finance", {"partner.example": "no-filter"})
    assert (routing.profile, routing.routes) == ("strict-finance", {"partner.example": "no-filter"})
    assert client.routing() == routing
    assert client.delivery_state() == 0 and client.reset_delivery_state() == 0
    assert client.set_chaos("rcpt:451:100", seed=7).seed == 7
    assert client.chaos().triggers == "rcpt:451:100"
    assert "/api/v1/routing" in client.openapi()["paths"]


def test_readyz_and_livez_of_a_serving_sinkd(client: SinkdClient) -> None:
    ready = client.readyz()
    assert ready.ready and ready.checks == {"smtp": True, "store": True}
    assert client.livez()


def test_a_closed_port_is_unreachable_naming_the_url() -> None:
    with (
        refused_port() as port,
        SinkdClient(url := f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client,
        pytest.raises(HttpApiUnreachable) as err,
    ):
        client.readyz()
    assert url in str(err.value) and "connection refused" in str(err.value)
    assert isinstance(err.value, ConnectionError)


def test_credentials_in_the_url_are_sent_as_basic_auth(tmp_path: Path) -> None:
    settings = Settings(
        port=0, http_port=0, db=tmp_path / "a.db", hostname="sinkd.test", http_auth=("ann", "pw")
    )
    with ServerThread(settings) as server:
        assert server.http_address is not None
        host, port = server.http_address
        with SinkdClient(f"http://ann:pw@{host}:{port}", timeout=TIMEOUT) as client:
            assert client.messages().total == 0
            assert client.url == f"http://{host}:{port}"
        with SinkdClient(f"http://{host}:{port}", timeout=TIMEOUT) as anonymous:
            with pytest.raises(HttpApiError) as refused:
                anonymous.messages()
            assert refused.value.status == 401


def test_the_event_stream_delivers_a_verdict_stored_after_subscribing(
    server: Sinkd, client: SinkdClient
) -> None:
    with client.events() as stream:
        assert stream.get(timeout=0.05) is None  # nothing yet: a quiet stream times out
        sender = threading.Thread(target=send, args=(server, SPAMMY_MESSAGE))
        sender.start()
        event = stream.get(timeout=TIMEOUT)
        sender.join(TIMEOUT)
    assert event is not None and event.name == "verdict"
    assert event.message == client.messages().messages[0]
    assert stream.ended  # closing ended the reader thread at once


def test_the_event_stream_ends_when_the_server_stops(tmp_path: Path) -> None:
    settings = Settings(port=0, http_port=0, db=tmp_path / "b.db", hostname="sinkd.test")
    thread = ServerThread(settings)
    server = thread.start()
    assert server.http_address is not None
    with SinkdClient("http://{}:{}".format(*server.http_address), timeout=TIMEOUT) as client:
        stream = client.events()
        thread.stop()
        assert stream.get(timeout=TIMEOUT) is None
        assert stream.ended
        stream.close()


def test_a_message_queued_for_relaying_onward_carries_its_relay_state_typed(
    tmp_path: Path,
) -> None:
    with refused_port() as port:  # the target is down: the relay stays queued
        settings = Settings(
            port=0,
            http_port=0,
            db=tmp_path / "sinkd.db",
            relay=parse_relay_url(f"smtp://127.0.0.1:{port}"),
            relay_backoff=(60.0, 60.0),
        )
        with ServerThread(settings) as server:
            assert server.http_address is not None
            send(server, message())  # accepted: queued in the same commit as its verdict
            send(server, GTUBE_MESSAGE)  # rejected: never relayed
            url = "http://{}:{}".format(*server.http_address)
            with SinkdClient(url, timeout=TIMEOUT) as client:
                rejected, accepted = client.messages().messages
    assert rejected.verdict == "reject" and rejected.relay is None
    assert isinstance(accepted.relay, Relay)
    assert accepted.relay.status == "queued" and accepted.relay.queued_at is not None
    assert [(r.address, r.status) for r in accepted.relay.recipients] == [
        ("bob@corp.example", "queued")
    ]
