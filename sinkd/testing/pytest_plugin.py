"""The pytest plugin (entry point ``pytest11``: ``sinkd``): a sinkd per test session and a
``sinkd`` fixture per test, to send mail to and assert on its verdicts.

Owns the options (``--sinkd-url``, ``--sinkd-profile``, ...), the markers (``sinkd_profile``,
``sinkd_routes``), the session server and the per-test fixture: clearing, routing, waiting for
messages through the event stream and the near-miss reports of failed assertions. Everything
goes through the HTTP API (``sinkd.testing.client``), so that a local server and a remote one
(Docker, ``--sinkd-url``) behave the same. It holds no policy.

The local server runs in this process, in a background thread with its own event loop
(``runtime.ServerThread``): no second interpreter to start (the session starts in well under a
second), and a failure to start is a Python exception here, not a line on a pipe. Importing
this module is cheap and starts nothing: a suite that never asks for ``sinkd`` pays nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from sinkd.errors import HttpApiError, SinkdError
from sinkd.services.settings import DEFAULT_PROFILE, DEFAULT_SMTP_PORT, DEFAULT_URL, Settings

if TYPE_CHECKING:
    from sinkd.server.runtime import ServerThread
    from sinkd.testing.client import EventStream, Finding, Message, Routing, SinkdClient

DEFAULT_TIMEOUT = 5.0  # seconds wait_for and the assertions wait for a message
REPORT_LIMIT = 20  # messages listed in a near-miss report
VERDICTS = ("accept", "quarantine", "reject")


# --- options and markers ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sinkd", "sinkd mail sink (fixture 'sinkd')")
    group.addoption(
        "--sinkd-url",
        default=None,
        metavar="URL",
        help=f"use the sinkd whose HTTP API is at URL (e.g. {DEFAULT_URL}) instead of "
        "starting one; env SINKD_URL, ini sinkd_url",
    )
    group.addoption(
        "--sinkd-smtp",
        default=None,
        metavar="HOST:PORT",
        help=f"the SMTP address of the sinkd at --sinkd-url (default: its host, port "
        f"{DEFAULT_SMTP_PORT}); env SINKD_SMTP, ini sinkd_smtp",
    )
    group.addoption(
        "--sinkd-profile",
        default=None,
        metavar="ID",
        help=f"default profile of the local server (default {DEFAULT_PROFILE}; ini sinkd_profile)",
    )
    group.addoption(
        "--sinkd-profiles-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="extra profiles for the local server (repeatable; ini sinkd_profiles_dirs)",
    )
    group.addoption(
        "--sinkd-dns-zone",
        action="append",
        default=[],
        metavar="FILE",
        help="DNS fixture file for the local server (repeatable; ini sinkd_dns_zones)",
    )
    group.addoption(
        "--sinkd-greylist-delay",
        default=None,
        type=float,
        metavar="SECONDS",
        help="the local server's --greylist-delay (ini sinkd_greylist_delay)",
    )
    parser.addini("sinkd_url", "URL of a running sinkd's HTTP API (see --sinkd-url)")
    parser.addini("sinkd_smtp", "HOST:PORT of that sinkd's SMTP listener (see --sinkd-smtp)")
    parser.addini("sinkd_profile", "default profile of the local sinkd")
    parser.addini("sinkd_profiles_dirs", "extra profile directories", type="paths", default=[])
    parser.addini(
        "sinkd_dns_zones", "DNS fixture files of the local sinkd", type="paths", default=[]
    )
    parser.addini("sinkd_greylist_delay", "the local sinkd's --greylist-delay in seconds")
    parser.addini("sinkd_timeout", f"seconds wait_for waits by default ({DEFAULT_TIMEOUT:g})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sinkd_profile(profile_id): judge this test's mail with that sinkd profile",
    )
    config.addinivalue_line(
        "markers",
        "sinkd_routes(mapping): judge recipients of these domains with these profiles, "
        'e.g. {"partner.example": "no-filter", "*.finance.example": "strict-finance"}',
    )


def _setting(config: pytest.Config, option: str, ini: str, env: str | None = None) -> Any:
    """The command line first, then the environment, then the ini file."""
    value = config.getoption(option)
    if value not in (None, []):
        return value
    if env and os.environ.get(env):
        return os.environ[env]
    return config.getini(ini) or None


# --- the session server -----------------------------------------------------------------------


@dataclass
class SinkdServer:
    """The sinkd of this session: local (started here) or remote (``--sinkd-url``)."""

    url: str
    smtp_host: str
    smtp_port: int
    client: SinkdClient
    baseline: Routing  # the routing the session started with, restored after marked tests
    chaos_baseline: tuple[str, int | None] | None  # the chaos it started with (None: no API)
    current: tuple[str, tuple[tuple[str, str], ...]]  # what the server has now
    timeout: float
    thread: ServerThread | None = None  # the local server's; None for a remote one

    @property
    def remote(self) -> bool:
        return self.thread is None

    def route(self, profile: str, routes: Mapping[str, str]) -> None:
        wanted = (profile, tuple(sorted(routes.items())))
        if wanted == self.current:
            return  # nothing to change: most tests cost no routing request at all

        try:
            self.client.set_routing(profile, routes)
        except HttpApiError as exc:
            raise pytest.UsageError(f"sinkd could not route this test: {exc}") from None
        self.current = wanted


@pytest.fixture(scope="session")
def sinkd_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SinkdServer]:
    """The session's sinkd: started on free ports (store in a temporary directory) unless
    ``--sinkd-url`` / ``SINKD_URL`` names a running one."""
    # Imported when a session asks for sinkd: the client brings httpx.
    from sinkd.testing.client import SinkdClient

    config = pytestconfig
    timeout = float(config.getini("sinkd_timeout") or DEFAULT_TIMEOUT)
    url = _setting(config, "sinkd_url", "sinkd_url", "SINKD_URL")
    thread = None
    if url:
        smtp = _setting(config, "sinkd_smtp", "sinkd_smtp", "SINKD_SMTP")
        host, port = _smtp_address(smtp, url)
        client = SinkdClient(url)
        try:
            readiness = client.readyz()
        except HttpApiError as exc:
            client.close()
            pytest.fail(f"sinkd at {url} (--sinkd-url/SINKD_URL): {exc}", pytrace=False)
        if not readiness.ready:
            client.close()
            pytest.fail(f"sinkd at {url}: {readiness.why_not}", pytrace=False)
    else:
        thread = _start_local(config, tmp_path_factory.mktemp("sinkd"))
        sinkd = thread.sinkd
        assert sinkd.smtp_address is not None and sinkd.http_address is not None
        host, port = sinkd.smtp_address
        url = "http://{}:{}".format(*sinkd.http_address)
        client = SinkdClient(url)
    try:
        baseline = client.routing()
        chaos_baseline = _chaos_of(client)
        server = SinkdServer(
            url=url,
            smtp_host=host,
            smtp_port=port,
            client=client,
            baseline=baseline,
            chaos_baseline=chaos_baseline,
            current=(baseline.profile, tuple(sorted(baseline.routes.items()))),
            timeout=timeout,
            thread=thread,
        )
        yield server
        if server.remote:  # leave a shared server as it was found
            server.route(baseline.profile, baseline.routes)
    finally:
        client.close()
        if thread is not None:
            thread.stop()


def _chaos_of(client: SinkdClient) -> tuple[str, int | None] | None:
    """The server's chaos (triggers, seed); None for a sinkd without the chaos endpoint."""

    try:
        chaos = client.chaos()
    except HttpApiError as exc:
        if exc.status == 404:
            return None
        raise
    return chaos.triggers, chaos.seed


def _smtp_address(spec: str | None, url: str) -> tuple[str, int]:
    if spec:
        host, _, port = spec.rpartition(":")
        if not host or not port.isdigit():
            raise pytest.UsageError(f"--sinkd-smtp/SINKD_SMTP {spec!r}: expected HOST:PORT")
        return host.strip("[]"), int(port)
    return urlsplit(url).hostname or "127.0.0.1", DEFAULT_SMTP_PORT


def _start_local(config: pytest.Config, directory: Path) -> ServerThread:
    # Imported when a session starts a server: the plugin loads in every pytest run, most of
    # which never ask for one (the server brings aiosmtpd, starlette and the store).
    from sinkd.server.runtime import ServerThread

    settings = Settings(
        host="127.0.0.1",
        port=0,
        http_port=0,
        db=directory / "sinkd.db",
        hostname="sinkd.test",  # socket.getfqdn() could ask DNS; nothing leaves the machine
    )
    profile = _setting(config, "sinkd_profile", "sinkd_profile")
    if profile:
        settings.profile = str(profile)
    dirs = _setting(config, "sinkd_profiles_dir", "sinkd_profiles_dirs") or []
    settings.profiles_dirs = [Path(p) for p in dirs]
    zones = _setting(config, "sinkd_dns_zone", "sinkd_dns_zones") or []
    settings.dns_zones = [Path(p) for p in zones]
    delay = _setting(config, "sinkd_greylist_delay", "sinkd_greylist_delay")
    if delay is not None:
        settings.greylist_delay = float(delay)
    thread = ServerThread(settings)
    try:
        thread.start()
    except SinkdError as exc:
        raise pytest.UsageError(f"sinkd could not start: {exc}") from None
    return thread


# --- the per-test fixture ---------------------------------------------------------------------


def _wanted_routing(node: pytest.Item, baseline: Routing) -> tuple[str, dict[str, str]]:
    profile = baseline.profile
    marker = node.get_closest_marker("sinkd_profile")
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], str) or marker.kwargs:
            raise pytest.UsageError(
                f"{node.nodeid}: use @pytest.mark.sinkd_profile('profile-id'), "
                f"not sinkd_profile{marker.args!r}"
            )
        profile = marker.args[0]
    routes = dict(baseline.routes)
    # Markers closer to the test win: apply the module's first, the function's last.
    for mark in reversed(list(node.iter_markers("sinkd_routes"))):
        if len(mark.args) != 1 or not isinstance(mark.args[0], Mapping) or mark.kwargs:
            raise pytest.UsageError(
                f"{node.nodeid}: use @pytest.mark.sinkd_routes({{'domain': 'profile-id'}})"
            )
        routes.update({str(d).lower().rstrip("."): str(p) for d, p in mark.args[0].items()})
    return profile, routes


@pytest.fixture
def sinkd(request: pytest.FixtureRequest, sinkd_server: SinkdServer) -> Iterator[SinkdFixture]:
    """The session's sinkd, emptied for this test (messages, greylist and rate-limit memory),
    with the chaos it had when the session began (a test that injects failures does not leak
    them into the next), and routed as the test's ``sinkd_profile`` / ``sinkd_routes`` markers
    say."""

    profile, routes = _wanted_routing(request.node, sinkd_server.baseline)
    sinkd_server.route(profile, routes)
    client = sinkd_server.client
    client.clear()
    try:
        client.reset_delivery_state()
    except HttpApiError as exc:
        if exc.status != 404:  # an older sinkd without the endpoint: nothing to reset there
            raise
    wanted = sinkd_server.chaos_baseline
    if wanted is not None:
        current = _chaos_of(client)
        if current is not None and current[0] != wanted[0]:
            client.set_chaos(*wanted)
    fixture = SinkdFixture(sinkd_server, profile, routes)
    try:
        yield fixture
    finally:
        fixture.close()


class SinkdFixture:
    """What a test gets as ``sinkd``: where to send (``host``, ``port``), the API (``url``,
    ``client``), the stored messages, ``wait_for`` and assertions with near-miss reports."""

    def __init__(self, server: SinkdServer, profile: str, routes: Mapping[str, str]) -> None:
        self.server = server
        self.client = server.client
        self.host = server.smtp_host
        self.port = server.smtp_port
        self.url = server.url
        self.profile = profile
        self.routes = dict(routes)
        self.timeout = server.timeout
        self._stream: EventStream | None = None

    def __repr__(self) -> str:
        return f"<sinkd smtp={self.host}:{self.port} url={self.url} profile={self.profile}>"

    @property
    def smtp_address(self) -> tuple[str, int]:
        return self.host, self.port

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def messages(self, **filters: Any) -> list[Message]:
        """Stored messages of this test, newest first; filters as ``SinkdClient.messages``
        (``to``, ``sender``, ``subject``, ``verdict``, ``profile``, ``code``)."""
        return self.client.all_messages(**filters)

    # --- waiting ---

    def wait_for(
        self,
        *,
        to: str | None = None,
        subject: str | None = None,
        sender: str | None = None,
        verdict: str | None = None,
        profile: str | None = None,
        code: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """The newest stored message matching every filter given, or the first such message to
        arrive within ``timeout`` seconds (default 5, ini ``sinkd_timeout``); AssertionError
        with a near-miss report if none does. Text filters match substrings ignoring case.

        Event-driven: it subscribes to the event stream first and only then asks the store, so
        that a message stored in between is in one or the other, never in neither."""
        __tracebackhide__ = True  # the failure is the test's line, not this one
        wanted = _Filter(to, subject, sender, verdict, profile, code)
        seconds = self.timeout if timeout is None else timeout
        found = self._wait(wanted, seconds)
        if found is None:
            raise AssertionError(
                self.near_miss_report(f"no message {wanted} arrived within {seconds:g} s", wanted)
            )
        return found

    def _wait(self, wanted: _Filter, timeout: float) -> Message | None:
        deadline = time.monotonic() + timeout
        stream = self._events()
        page = self.client.messages(**wanted.query(), limit=1)
        if page.messages:
            return page.messages[0]
        while (left := deadline - time.monotonic()) > 0:
            event = stream.get(timeout=left)
            if event is None:
                if stream.ended:
                    self._stream = None
                    raise AssertionError(
                        f"sinkd's event stream ended while waiting: {stream.error or 'closed'}"
                    )
                return None
            if event.name == "verdict":
                message = event.message
                if wanted.matches(message):
                    return message
        return None

    def _events(self) -> EventStream:
        if self._stream is None or self._stream.ended:
            self._stream = self.client.events()
        return self._stream

    # --- assertions ---

    def assert_verdict(
        self,
        verdict: str,
        *,
        to: str | None = None,
        subject: str | None = None,
        sender: str | None = None,
        profile: str | None = None,
        timeout: float | None = None,
        fully_judged: bool = True,
    ) -> Message:
        """Wait for a message matching ``to``/``subject``/``sender``/``profile`` (as
        ``wait_for``), then assert that one of the matching messages got ``verdict``;
        AssertionError with a near-miss report if none did. Returns that message.

        A verdict reached without a check its profile needs (spamd down, a filter error:
        ``Message.fully_judged`` is False) does not pass, as ``sinkd check`` exits 5 for it: a
        test must not pass on a message that was not judged. ``fully_judged=False`` accepts
        such a verdict (for tests of exactly that fallback)."""
        __tracebackhide__ = True  # the failure is the test's line, not this one
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        where = _Filter(to, subject, sender, None, profile, None)
        wanted = _Filter(to, subject, sender, verdict, profile, None)
        seconds = self.timeout if timeout is None else timeout
        if self._wait(where, seconds) is None:
            raise AssertionError(
                self.near_miss_report(
                    f"expected a message {wanted}, but no message {where} arrived within "
                    f"{seconds:g} s",
                    where,
                )
            )
        matching = self.client.all_messages(**where.query())
        unjudged: list[Message] = []
        for message in matching:
            if message.verdict == verdict:
                if fully_judged and not message.fully_judged:
                    unjudged.append(message)
                    continue
                return message
        if unjudged:
            checks = ", ".join(
                sorted({f.code for m in unjudged for f in m.findings if _incomplete(f)})
            )
            raise AssertionError(
                self.near_miss_report(
                    f"expected a message {wanted}; it got {verdict}, but not fully judged: "
                    f"{checks} could not answer (pass fully_judged=False to accept that)",
                    where,
                )
            )
        got = ", ".join(sorted({m.verdict for m in matching}))
        raise AssertionError(
            self.near_miss_report(f"expected a message {wanted}, but it got {got}", where)
        )

    def assert_accepted(self, **filters: Any) -> Message:
        __tracebackhide__ = True
        return self.assert_verdict("accept", **filters)

    def assert_quarantined(self, **filters: Any) -> Message:
        __tracebackhide__ = True
        return self.assert_verdict("quarantine", **filters)

    def assert_rejected(self, **filters: Any) -> Message:
        __tracebackhide__ = True
        return self.assert_verdict("reject", **filters)

    def near_miss_report(self, headline: str, near: _Filter | None = None) -> str:
        """``headline``, then what did arrive since the test started, oldest first, with
        verdicts and deciding reasons; ``>`` marks the messages that match ``near``."""
        arrived = list(reversed(self.client.all_messages()))
        lines = [headline]
        routing = f"profile {self.profile}"
        if self.routes:
            routing += ", routes " + ", ".join(f"{d}={p}" for d, p in self.routes.items())
        if not arrived:
            lines.append(f"sinkd ({routing}) received nothing since the test started.")
            return "\n".join(lines)
        count = len(arrived)
        lines.append(
            f"sinkd ({routing}) received {count} message{'s' if count != 1 else ''}"
            " since the test started (oldest first; > marks near misses):"
        )
        for message in arrived[-REPORT_LIMIT:]:
            mark = ">" if near is not None and near.matches(message, ignore_verdict=True) else " "
            lines.extend(_describe(message, mark))
        if count > REPORT_LIMIT:
            lines.append(f"  ... and {count - REPORT_LIMIT} earlier ones")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Filter:
    to: str | None = None
    subject: str | None = None
    sender: str | None = None
    verdict: str | None = None
    profile: str | None = None
    code: str | None = None

    def query(self) -> dict[str, Any]:
        fields = {
            "to": self.to,
            "subject": self.subject,
            "sender": self.sender,
            "verdict": self.verdict,
            "profile": self.profile,
            "code": self.code,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def matches(self, message: Message, *, ignore_verdict: bool = False) -> bool:
        """The store's semantics (``Query``): substrings ignoring case, the rest exact."""

        def has(part: str | None, whole: str | None) -> bool:
            return part is None or (whole is not None and part.lower() in whole.lower())

        return (
            (self.to is None or any(has(self.to, r) for r in message.envelope.rcpt_to))
            and has(self.subject, message.subject)
            and has(self.sender, message.envelope.mail_from)
            and (ignore_verdict or self.verdict is None or message.verdict == self.verdict)
            and (self.profile is None or message.profile == self.profile)
            and (self.code is None or self.code in message.codes)
        )

    def __str__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.query().items()]
        return "(" + ", ".join(parts) + ")" if parts else "(any)"


def _incomplete(finding: Finding) -> bool:
    """A check that could not answer (scanner down, filter error); offline DNS without data
    is the designed default, not counted (``sinkd.core.model.Unjudged``)."""
    return finding.unjudged is not None and finding.unjudged != "no-dns-data"


def _describe(message: Message, mark: str) -> list[str]:
    env = message.envelope
    subject = "-" if message.subject is None else repr(message.subject)
    lines = [
        f"{mark} {message.verdict.upper():<10} ({message.disposition}) "
        f"from=<{env.mail_from or ''}> to={','.join(env.rcpt_to) or '-'} subject={subject}",
        f"    profile={message.profile} stage={message.stage} score={message.score:g} "
        f"reply: {message.reply}  id={message.id}",
    ]
    for finding in message.deciding:
        lines.append(f"    deciding {finding.code}: {finding.reason}")
    for finding in message.findings:
        if _incomplete(finding):
            lines.append(f"    not judged {finding.code} ({finding.unjudged}): {finding.reason}")
    others = [f for f in message.findings if not f.decided and (f.score or f.action != "none")]
    for finding in others[:5]:
        score = f" {finding.score:+g}" if finding.score else ""
        lines.append(f"    also     {finding.code} ({finding.action}{score}): {finding.reason}")
    return lines
