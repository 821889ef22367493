"""SpamAssassin through spamd: the REPORT parser, the ``SpamdService`` adapter against Debian's
real spamd, the ``spamassassin`` filter inside a real sinkd over SMTP, what happens when spamd
dies, hangs, talks nonsense or is absent, the concurrency limit, ``sinkd check --spamd`` and
``max_size``.

The real spamd is the session's ``spamd`` fixture (tests/conftest.py); tests that kill spamd
start their own. Misbehaving spamds are small asyncio servers in this file. Nothing sleeps:
waits are bounded by ``asyncio.wait_for`` / ``asyncio.timeout`` guards only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.core.ports import SpamdTarget
from sinkd.lookups.spamd import SpamdService, parse_report
from sinkd.server.runtime import Sinkd
from sinkd.store import Query, StoredMessage
from tests.conftest import (
    SpamdProcess,
    StartServer,
    in_ci,
    spamd_port_unused,
    start_spamd,
)
from tests.support.paths import PROFILES
from tests.support.smtp import GTUBE_MESSAGE, message, raw_client

GUARD = 10.0  # a generous bound on anything that must merely not hang
SAMPLES = Path("/usr/share/doc/spamassassin/examples")
NONSPAM = SAMPLES / "sample-nonspam.txt"

# spamd 4.0.1's REPORT body for a bare HTML message that came through one trusted relay, as
# aiospamc received it: a negative score (ALL_TRUSTED), 0.0 scores, a rule name longer than its
# column and a description wrapped onto an indented second line.
REPORT_WRAPPED = (
    'Spam detection software, running on the system "vm",\n'
    "has identified this incoming email as possible spam.  The original\n"
    "message has been attached to this so you can view it or label\n"
    "similar future email.  If you have any questions, see\n"
    "@@CONTACT_ADDRESS@@ for details.\n"
    "\n"
    "Content preview:  Click here http://www.paypal.com/ \n"
    "\n"
    "Content analysis details:   (5.7 points, 5.0 required)\n"
    "\n"
    " pts rule name              description\n"
    "---- ---------------------- --------------------------------------------------\n"
    " 0.6 MISSING_MID            Missing Message-Id: header\n"
    " 1.0 MISSING_FROM           Missing From: header\n"
    " 2.7 MISSING_DATE           Missing Date: header\n"
    "-1.0 ALL_TRUSTED            Passed through trusted hosts only via SMTP\n"
    " 0.1 ACT_NOW_CAPS           BODY: Talks about 'acting now' with capitals\n"
    " 0.5 SUBJ_ALL_CAPS          Subject is all capitals\n"
    " 0.1 MIME_HTML_ONLY         BODY: Message only has text/html MIME parts\n"
    " 1.7 HTML_IMAGE_ONLY_04     BODY: HTML: images with 0-400 bytes of words\n"
    " 0.0 HTML_MESSAGE           BODY: HTML included in message\n"
    " 0.0 HTML_FONT_SIZE_HUGE    BODY: HTML font size is huge\n"
    " 0.0 T_PDS_SHORT_SPOOFED_URL HTML message short and T_SPOOFED_URL (S_U_FP)\n"
    " 0.0 T_REMOTE_IMAGE         Message contains an external image\n"
    " 0.0 T_PDS_NO_FULL_NAME_SPOOFED_URL HTML message short, T_SPOOFED_URL and\n"
    "                            T_KHOP_NO_FULL_NAME\n"
    "\n"
)

# spamd 4.0.1's REPORT body for sample-spam.txt (GTUBE): "-0.0" scores and a 4-digit one; the
# content preview has indented lines of its own before the table.
REPORT_GTUBE = (
    'Spam detection software, running on the system "vm",\n'
    "has identified this incoming email as possible spam.  The original\n"
    "message has been attached to this so you can view it or label\n"
    "similar future email.  If you have any questions, see\n"
    "@@CONTACT_ADDRESS@@ for details.\n"
    "\n"
    "Content preview:  This is the GTUBE, the Generic Test for Unsolicited Bulk Email\n"
    "   If your spam filter supports it, the GTUBE provides a test by which you can\n"
    "   verify that the filter is installed correctly and is detecting incoming spam.\n"
    "   You can send yourself a test mail containing t [...] \n"
    "\n"
    "Content analysis details:   (1000.0 points, 5.0 required)\n"
    "\n"
    " pts rule name              description\n"
    "---- ---------------------- --------------------------------------------------\n"
    "-0.0 NO_RECEIVED            Informational: message has no Received headers\n"
    "1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
    "-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
    "\n"
)


# However spamd misbehaves, sinkd itself must not fail: no ERROR from its loggers.
pytestmark = pytest.mark.usefixtures("no_internal_errors")


# --- helpers -----------------------------------------------------------------------------------


def sample_nonspam() -> bytes:
    """SpamAssassin's own ham sample, with CRLF line ends as an MTA would send it."""
    if not NONSPAM.is_file():
        reason = f"{NONSPAM} not found: install the Debian package 'spamassassin' (.ci/run does)"
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)
    return re.sub(rb"\r?\n", b"\r\n", NONSPAM.read_bytes())


def spamd_profile(
    directory: Path, profile_id: str, *, extends: str = "typical-corporate", **spamd: Any
) -> str:
    """A profile file: ``extends`` plus a spamassassin filter named ``spamd``; its path."""
    options: dict[str, Any] = {"mode": "add", "on_error": {"action": "tempfail"}} | spamd
    data = {
        "schema": "sinkd.profile/v1",
        "id": profile_id,
        "title": f"{extends} with spamd ({profile_id})",
        "extends": extends,
        "filters": [{"kind": "spamassassin", "name": "spamd", **options}],
    }
    path = directory / f"{profile_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


@dataclass
class Sent:
    """What one SMTP transaction got back and what the store made of it."""

    code: int
    line: str
    record: StoredMessage

    @property
    def codes(self) -> list[str]:
        return [f["code"] for f in self.record.data["findings"]]

    def finding(self, code: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [f for f in self.record.data["findings"] if f["code"] == code]
        assert len(found) == 1, (code, self.codes)
        return found[0]


async def send(app: Sinkd, body: bytes, rcpt: str = "bob@corp.example") -> Sent:
    """One message over SMTP (raw client); the reply to DATA and the newest stored record."""
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", rcpt)
        await client.quit()
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    record = await app.store.get(newest.id, with_raw=False)
    return Sent(answer.code, answer.line, record)


def spamd_answer(score: float = 1.5, threshold: float = 5.0, body: bytes = b"") -> bytes:
    """A well-formed spamd REPORT response."""
    spam = "True" if score >= threshold else "False"
    return (
        f"SPAMD/1.1 0 EX_OK\r\nContent-length: {len(body)}\r\n"
        f"Spam: {spam} ; {score} / {threshold}\r\n\r\n"
    ).encode() + body


Handler = Callable[["FakeSpamd", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeSpamd:
    """An asyncio server on a free loopback port, speaking as much spamd as a test needs.

    It counts connections (``seen``), those open at once (``in_flight``, ``most_in_flight``),
    and every handler can wait on ``closing``, which is set when the test is done with it.
    """

    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    seen: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    requests: list[bytes] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            # aiospamc sends the request, then half-closes: the request is all until EOF.
            self.requests.append(await reader.read())
            await self.handler(self, reader, writer)
        finally:
            self.in_flight -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def fake_spamd(handler: Handler) -> AsyncIterator[FakeSpamd]:
    fake = FakeSpamd(handler)
    server = await asyncio.start_server(fake._serve, fake.host, 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        fake.closing.set()  # lets hanging handlers finish and close their connections
        server.close()
        await server.wait_closed()


async def answers_fine(fake: FakeSpamd, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(spamd_answer(body=REPORT_WRAPPED.encode()))
    await w.drain()


async def never_answers(fake: FakeSpamd, _: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
    await fake.closing.wait()


async def talks_garbage(fake: FakeSpamd, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"\x00\xffHTTP/1.0 418 I'm a teapot\r\n\r\n\xde\xad\xbe\xef")
    await w.drain()


# --- parse_report on spamd's real REPORT bodies ------------------------------------------------


def test_parse_report_reads_gtube_with_its_minus_zero_neighbours() -> None:
    rules = parse_report(REPORT_GTUBE)
    assert [(r.name, r.score) for r in rules] == [
        ("NO_RECEIVED", 0.0),
        ("GTUBE", 1000.0),
        ("NO_RELAYS", 0.0),
    ]
    assert rules[0].score == -0.0 and str(rules[0].score) == "-0.0"  # kept as spamd wrote it
    assert rules[1].description == "BODY: Generic Test for Unsolicited Bulk Email"
    assert rules[2].description == "Informational: message was not relayed via SMTP"


def test_parse_report_reads_negative_scores_long_names_and_wrapped_descriptions() -> None:
    rules = {r.name: r for r in parse_report(REPORT_WRAPPED)}
    assert len(rules) == 13
    assert rules["ALL_TRUSTED"].score == -1.0
    assert rules["ALL_TRUSTED"].description == "Passed through trusted hosts only via SMTP"
    assert rules["MISSING_DATE"].score == 2.7
    assert rules["HTML_MESSAGE"].score == 0.0
    assert rules["T_PDS_SHORT_SPOOFED_URL"].description == (
        "HTML message short and T_SPOOFED_URL (S_U_FP)"
    )
    # The second line of a wrapped description joins the first; it is no rule of its own.
    assert rules["T_PDS_NO_FULL_NAME_SPOOFED_URL"].description == (
        "HTML message short, T_SPOOFED_URL and T_KHOP_NO_FULL_NAME"
    )
    assert "T_KHOP_NO_FULL_NAME" not in rules
    assert round(sum(r.score for r in rules.values()), 1) == 5.7  # the report's own total


def test_parse_report_ignores_everything_before_the_rule_table() -> None:
    preview = REPORT_GTUBE.replace(
        "   You can send yourself", "   1000 GTUBE twice, and\n   You can send yourself"
    )
    assert [r.name for r in parse_report(preview)] == ["NO_RECEIVED", "GTUBE", "NO_RELAYS"]
    header_only = REPORT_GTUBE[: REPORT_GTUBE.index("----")]
    assert parse_report(header_only) == ()


# --- SpamdService against the real spamd -------------------------------------------------------


def target(spamd: SpamdProcess | FakeSpamd, timeout: float = 30.0, limit: int = 4) -> SpamdTarget:
    return SpamdTarget(spamd.host, spamd.port, timeout, limit)


async def test_spamd_scores_gtube_1000_with_the_gtube_rule_and_its_description(
    spamd: SpamdProcess,
) -> None:
    report = await SpamdService().report(GTUBE_MESSAGE, target(spamd))
    assert report.score >= 1000
    assert report.required == 5.0
    assert report.is_spam is True
    assert report.address == spamd.spec
    gtube = [r for r in report.rules if r.name == "GTUBE"]
    assert len(gtube) == 1, report.rules
    assert gtube[0].score == 1000
    assert "Generic Test for Unsolicited Bulk Email" in gtube[0].description
    assert "Content analysis details" in report.report


async def test_spamd_scores_the_sample_ham_below_the_threshold(spamd: SpamdProcess) -> None:
    report = await SpamdService().report(sample_nonspam(), target(spamd))
    assert report.score < 5
    assert report.is_spam is False
    assert "GTUBE" not in [r.name for r in report.rules]
    assert "Content analysis details" in report.report


# --- the spamassassin filter in a real sinkd, over SMTP ---------------------------------------


async def test_gtube_through_corporate_plus_spamd_is_refused_with_spamassassins_findings(
    start_server: StartServer, spamd: SpamdProcess, tmp_path: Path
) -> None:
    app = await start_server(
        profile=spamd_profile(tmp_path, "corporate-spamd"), spamd=spamd.address
    )
    sent = await send(app, GTUBE_MESSAGE)
    assert 500 <= sent.code < 600, sent.line
    assert sent.record.data["verdict"] == "reject"
    assert sent.record.data["score"] >= 1000
    score = sent.finding("SPAMASSASSIN_SCORE")
    assert score["score"] >= 1000
    assert score["detail"]["spamd"] == spamd.spec
    assert "Content analysis details" in score["detail"]["report"]
    assert "GTUBE" in score["detail"]["tests"]
    gtube = sent.finding("SPAMASSASSIN_GTUBE")
    assert gtube["score"] == 0  # the rule is evidence; its points are in SPAMASSASSIN_SCORE
    assert gtube["detail"]["points"] == 1000
    assert "Generic Test for Unsolicited Bulk Email" in gtube["reason"]


async def test_sample_ham_through_corporate_plus_spamd_is_accepted(
    start_server: StartServer, spamd: SpamdProcess, tmp_path: Path
) -> None:
    app = await start_server(
        profile=spamd_profile(tmp_path, "corporate-spamd"), spamd=spamd.address
    )
    sent = await send(app, sample_nonspam(), rcpt="tbtf@world.std.com")
    assert sent.code == 250, sent.line
    assert sent.record.data["verdict"] == "accept"
    score = sent.finding("SPAMASSASSIN_SCORE")
    assert score["score"] < 5
    assert "Content analysis details" in score["detail"]["report"]


async def test_spamassassin_default_tags_gtube_and_delivers_the_sample_ham_to_the_inbox(
    start_server: StartServer, spamd: SpamdProcess
) -> None:
    app = await start_server(profile="spamassassin-default", spamd=spamd.address)
    spam = await send(app, GTUBE_MESSAGE)
    assert spam.code == 250, spam.line
    assert spam.record.data["verdict"] == "accept"
    assert spam.record.data["disposition"] == "tagged"
    assert spam.finding("SPAMASSASSIN_SCORE")["action"] == "tag"
    assert "SPAMASSASSIN_GTUBE" in spam.codes
    ham = await send(app, sample_nonspam(), rcpt="tbtf@world.std.com")
    assert ham.code == 250, ham.line
    assert ham.record.data["disposition"] == "inbox"
    assert ham.finding("SPAMASSASSIN_SCORE")["action"] == "none"


# --- failures: killed, hung, garbage, absent ---------------------------------------------------


@pytest.fixture
def own_spamd() -> Iterator[SpamdProcess]:
    """A spamd of this test alone, which it may kill."""
    process = start_spamd()
    try:
        yield process
    finally:
        process.stop()


async def test_spamd_killed_mid_run_defers_the_next_message_with_a_tempfail(
    start_server: StartServer, own_spamd: SpamdProcess, tmp_path: Path
) -> None:
    app = await start_server(
        profile=spamd_profile(tmp_path, "defers", timeout=30), spamd=own_spamd.address
    )
    first = await send(app, message("before the crash"))
    assert first.code == 250, first.line
    assert "SPAMASSASSIN_SCORE" in first.codes
    own_spamd.kill()
    second = await asyncio.wait_for(send(app, message("after the crash")), GUARD)
    assert second.line == "451 4.7.1 Try again later"
    assert second.record.data["disposition"] == "deferred"
    error = second.finding("SPAMASSASSIN_ERROR")
    assert error["action"] == "tempfail"
    assert own_spamd.spec in error["detail"]["error"]
    assert "SPAMASSASSIN_SCORE" not in second.codes


async def test_spamd_killed_mid_run_with_on_error_none_accepts_with_a_warning(
    start_server: StartServer, own_spamd: SpamdProcess, tmp_path: Path
) -> None:
    profile = spamd_profile(tmp_path, "tolerates", on_error={"action": "none"})
    app = await start_server(profile=profile, spamd=own_spamd.address)
    first = await send(app, message("before the crash"))
    assert "SPAMASSASSIN_SCORE" in first.codes
    own_spamd.kill()
    second = await asyncio.wait_for(send(app, message("after the crash")), GUARD)
    assert second.code == 250, second.line
    assert second.record.data["verdict"] == "accept"
    assert second.finding("SPAMASSASSIN_ERROR")["action"] == "none"


async def test_a_spamd_that_never_answers_costs_the_session_only_the_timeout(
    start_server: StartServer, tmp_path: Path
) -> None:
    async with fake_spamd(never_answers) as fake:
        profile = spamd_profile(tmp_path, "hung", timeout=1)
        app = await start_server(profile=profile, spamd=fake.address)
        sent = await asyncio.wait_for(send(app, message("into the void")), GUARD)
        assert fake.seen == 1  # it was asked, and kept the connection open
    assert sent.line == "451 4.7.1 Try again later"
    error = sent.finding("SPAMASSASSIN_ERROR")
    assert error["detail"]["error"] == f"spamd at {fake.host}:{fake.port} did not answer within 1 s"


async def test_a_spamd_talking_garbage_is_an_error_finding(
    start_server: StartServer, tmp_path: Path
) -> None:
    async with fake_spamd(talks_garbage) as fake:
        profile = spamd_profile(tmp_path, "garbage", on_error={"action": "none"})
        app = await start_server(profile=profile, spamd=fake.address)
        sent = await asyncio.wait_for(send(app, message("nonsense back")), GUARD)
    assert fake.seen == 1
    assert sent.code == 250, sent.line
    error = sent.finding("SPAMASSASSIN_ERROR")
    assert error["detail"]["error"].startswith(f"spamd at {fake.host}:{fake.port} failed")
    assert "SPAMASSASSIN_SCORE" not in sent.codes


async def test_no_spamd_listening_is_an_error_finding(
    start_server: StartServer, tmp_path: Path
) -> None:
    address = spamd_port_unused()
    profile = spamd_profile(tmp_path, "absent", on_error={"action": "none"})
    app = await start_server(profile=profile, spamd=address)
    sent = await asyncio.wait_for(send(app, message("nobody home")), GUARD)
    assert sent.code == 250, sent.line
    error = sent.finding("SPAMASSASSIN_ERROR")
    assert error["detail"]["error"].startswith(f"spamd at {address[0]}:{address[1]} failed")


# --- concurrency ---------------------------------------------------------------------------


async def test_twenty_concurrent_messages_all_get_spamds_verdict(
    start_server: StartServer, spamd: SpamdProcess, tmp_path: Path
) -> None:
    profile = spamd_profile(tmp_path, "busy", max_concurrency=4)
    app = await start_server(profile=profile, spamd=spamd.address)

    async def one(n: int) -> int:
        async with raw_client(app) as client:
            answer = await client.mail(
                message(f"Report {n}"), "alice@sender.example", "bob@corp.example"
            )
            await client.quit()
        return answer.code

    codes = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(20))), 4 * GUARD)
    assert codes == [250] * 20
    assert app.store is not None
    records = await app.store.list(Query(limit=100))
    assert len(records) == 20
    for row in records:
        stored = await app.store.get(row.id)
        assert stored.data["disposition"] != "deferred"
        assert "SPAMASSASSIN_SCORE" in [f["code"] for f in stored.data["findings"]]


async def test_no_more_than_max_concurrency_requests_reach_spamd_at_once() -> None:
    """The fake holds each request until four are open (or all that are left), then answers
    the oldest: a limit of four reaches exactly four; no limit would reach up to twelve."""
    total, limit = 12, 4
    held: list[asyncio.Future[None]] = []
    answered = 0

    def release() -> None:
        if held and (len(held) >= limit or len(held) == total - answered):
            held.pop(0).set_result(None)

    async def holds(fake: FakeSpamd, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal answered
        gate = asyncio.get_running_loop().create_future()
        held.append(gate)
        release()
        await gate
        w.write(spamd_answer())
        await w.drain()
        answered += 1
        release()

    service = SpamdService()
    async with fake_spamd(holds) as fake:
        reports = await asyncio.wait_for(
            asyncio.gather(
                *(service.report(message(f"m{n}"), target(fake, limit=limit)) for n in range(total))
            ),
            GUARD,
        )
    assert [r.score for r in reports] == [1.5] * total
    assert fake.seen == total
    assert fake.most_in_flight == limit


async def test_filters_sharing_a_spamd_with_different_limits_keep_one_client_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sinkd.lookups.spamd_client

    built: list[object] = []
    real_client = sinkd.lookups.spamd_client.Client

    def counting_client(manager: object) -> object:
        built.append(manager)
        return real_client(manager)

    monkeypatch.setattr(sinkd.lookups.spamd_client, "Client", counting_client)
    service = SpamdService()
    async with fake_spamd(answers_fine) as fake:
        for _ in range(3):
            for limit in (2, 4):
                await service.report(message(), target(fake, limit=limit))
    assert fake.seen == 6
    assert len(built) == 2  # one per limit, built once: not one per call


# --- sinkd check --spamd -----------------------------------------------------------------------


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    return subprocess.run(
        [sys.executable, "-m", "sinkd", "check", *args],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        timeout=60,
        check=False,
    )


def gtube_file(tmp_path: Path) -> Path:
    path = tmp_path / "gtube.eml"
    path.write_bytes(GTUBE_MESSAGE)
    return path


def test_check_with_spamd_shows_spamassassins_score(spamd: SpamdProcess, tmp_path: Path) -> None:
    result = check(
        str(gtube_file(tmp_path)),
        "--profile",
        "spamassassin-default",
        "--spamd",
        spamd.spec,
        "--json",
    )
    assert result.returncode == 0, result.stderr  # spamassassin-default only tags
    [verdict] = json.loads(result.stdout)
    scores = [f for f in verdict["findings"] if f["code"] == "SPAMASSASSIN_SCORE"]
    assert len(scores) == 1, verdict["findings"]
    assert scores[0]["detail"]["score"] >= 1000
    assert scores[0]["detail"]["spamd"] == spamd.spec
    assert verdict["disposition"] == "tagged"
    # The verdict's score is SpamAssassin's, not 0 (own mode: SpamAssassin's thresholds).
    assert verdict["score"] >= 1000
    assert verdict["fully_judged"] is True


def test_check_with_spamd_stopped_exits_5_and_names_the_check_that_did_not_answer(
    own_spamd: SpamdProcess, tmp_path: Path
) -> None:
    address = own_spamd.spec
    own_spamd.stop()
    result = check(str(gtube_file(tmp_path)), "--profile", "spamassassin-default",
                   "--spamd", address)  # fmt: skip
    assert result.returncode == 5, result.stdout + result.stderr
    # spamassassin-default passes mail through unscored, as its gateways do ...
    assert "ACCEPT (inbox)" in result.stdout.splitlines()[0]
    # ... and says that the verdict was reached without SpamAssassin.
    assert "  not fully judged: SPAMASSASSIN_ERROR could not answer (unavailable): " in (
        result.stdout
    )
    assert address in result.stdout
    assert "not fully judged" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_json_with_spamd_stopped_marks_the_verdict_not_fully_judged(
    own_spamd: SpamdProcess, tmp_path: Path
) -> None:
    address = own_spamd.spec
    own_spamd.stop()
    result = check(str(gtube_file(tmp_path)), "--profile", "spamassassin-default",
                   "--spamd", address, "--json", "--fail-on", "reject")  # fmt: skip
    assert result.returncode == 5, result.stderr
    [verdict] = json.loads(result.stdout)
    assert verdict["fully_judged"] is False
    [error] = [f for f in verdict["findings"] if f["code"] == "SPAMASSASSIN_ERROR"]
    assert (error["unjudged"], error["action"]) == ("unavailable", "none")


def test_no_built_in_profile_applies_spamassassins_own_score_twice() -> None:
    # In own mode the SpamAssassin score is the verdict's score: thresholds of the profile's
    # own would judge the same points again.
    folder = PROFILES
    own = []
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "filters" not in data:
            continue
        for spec in data["filters"]:
            if spec.get("kind") == "spamassassin" and spec.get("mode") == "own":
                own.append(path.stem)
                thresholds = (data.get("scoring") or {}).get("thresholds") or {}
                assert not any(v is not None for v in thresholds.values()), path
    assert "spamassassin-default" in own


def test_check_refuses_a_spamd_address_without_a_port(tmp_path: Path) -> None:
    result = check(str(gtube_file(tmp_path)), "--spamd", "notaport")
    assert result.returncode == 2
    assert "expected HOST:PORT, got 'notaport'" in result.stderr
    assert result.stdout == ""


def test_check_takes_spamd_from_the_environment(spamd: SpamdProcess, tmp_path: Path) -> None:
    result = check(
        str(gtube_file(tmp_path)),
        "--profile",
        "spamassassin-default",
        "--json",
        env={"SINKD_SPAMD": spamd.spec},
    )
    assert result.returncode == 0, result.stderr
    [verdict] = json.loads(result.stdout)
    codes = [f["code"] for f in verdict["findings"]]
    assert "SPAMASSASSIN_ERROR" not in codes
    [score] = [f for f in verdict["findings"] if f["code"] == "SPAMASSASSIN_SCORE"]
    assert score["detail"]["spamd"] == spamd.spec


# --- max_size ----------------------------------------------------------------------------------


async def test_a_message_over_max_size_is_skipped_without_asking_spamd(
    start_server: StartServer, tmp_path: Path
) -> None:
    async with fake_spamd(answers_fine) as fake:
        profile = spamd_profile(tmp_path, "small", max_size=2000)
        app = await start_server(profile=profile, spamd=fake.address)
        big = await send(app, message("big", "All work and no play.\r\n" * 200))
        assert fake.seen == 0
        small = await send(app, message("small"))
        assert fake.seen == 1  # the same filter does ask spamd about a small message
    assert big.code == 250, big.line
    skipped = big.finding("SPAMASSASSIN_SKIPPED")
    assert skipped["detail"]["max_size"] == 2000
    assert skipped["detail"]["size"] > 2000
    assert "SPAMASSASSIN_SCORE" not in big.codes
    assert "SPAMASSASSIN_SCORE" in small.codes
    assert "SPAMASSASSIN_SKIPPED" not in small.codes
