"""The pytest plugin as a user meets it: test files run by pytester, each in a pytest process
of its own (the ``pytest11`` entry point must load the plugin by itself, and pytester's inline
mode would re-import httpcore under httpx's feet), sending mail
with smtplib to the ``sinkd`` fixture, locally and against a sinkd started here (remote mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sinkd.server.runtime import ServerThread, Sinkd
from sinkd.services.settings import Settings
from sinkd.testing.client import SinkdClient
from tests.conftest import refused_port
from tests.support.smtp import TIMEOUT

pytest_plugins = ["pytester"]

RUN_TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def quiet_ini(pytester: pytest.Pytester) -> None:
    """The inner runs' ini: pytest-asyncio (installed here) warns without its loop scope."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


HELPERS = """
import smtplib
import threading

import pytest


def send(sinkd, to, subject, body="The figures are attached.", sender="alice@shop.example"):
    raw = f"From: {sender}\\r\\nTo: {to}\\r\\nSubject: {subject}\\r\\n\\r\\n{body}\\r\\n"
    with smtplib.SMTP(sinkd.host, sinkd.port, timeout=10) as smtp:
        smtp.sendmail(sender, [to], raw)


SPAM = "Pay the casino in bitcoin today."
"""

USER_TESTS = (
    HELPERS
    + """

def test_an_accepted_message_is_found_by_wait_for(sinkd):
    send(sinkd, "bob@corp.example", "Quarterly figures")
    message = sinkd.wait_for(to="bob@corp.example", subject="quarterly")
    assert message.verdict == "accept" and message.profile == "typical-corporate"
    assert sinkd.assert_accepted(to="bob@corp.example") == message


def test_each_test_starts_empty(sinkd):
    assert sinkd.messages() == []


def test_wait_for_sees_a_message_sent_while_it_waits(sinkd):
    args = (sinkd, "carol@corp.example", "Win the lottery", SPAM)
    later = threading.Thread(target=send, args=args)
    later.start()
    message = sinkd.wait_for(to="carol@", verdict="quarantine", timeout=10)
    later.join()
    assert message.subject == "Win the lottery"


@pytest.mark.sinkd_profile("no-filter")
def test_the_profile_marker_switches_the_profile(sinkd):
    send(sinkd, "bob@corp.example", "Win the lottery", SPAM)
    assert sinkd.assert_accepted(to="bob@").profile == "no-filter"


@pytest.mark.sinkd_routes({"partner.example": "no-filter"})
def test_the_routes_marker_routes_a_domain(sinkd):
    send(sinkd, "dave@partner.example", "Win the lottery", SPAM)
    send(sinkd, "erin@corp.example", "Win the lottery", SPAM)
    assert sinkd.assert_accepted(to="@partner.example").profile == "no-filter"
    assert sinkd.assert_quarantined(to="@corp.example").profile == "typical-corporate"


def test_an_unmarked_test_after_marked_ones_gets_the_default_again(sinkd):
    send(sinkd, "bob@corp.example", "Win the lottery", SPAM)
    sinkd.assert_quarantined(to="bob@", profile="typical-corporate")


def test_a_gtube_message_is_rejected(sinkd):
    gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    with pytest.raises(smtplib.SMTPDataError):
        send(sinkd, "bob@corp.example", "test", gtube)
    rejected = sinkd.assert_rejected(to="bob@")
    assert rejected.reply.code == 554


def test_a_test_may_inject_failures(sinkd):
    sinkd.client.set_chaos("rcpt:550:100")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(sinkd, "bob@corp.example", "Quarterly figures")


def test_the_next_test_gets_the_server_without_them(sinkd):
    send(sinkd, "bob@corp.example", "Quarterly figures")
    sinkd.assert_accepted(to="bob@")


def test_a_near_miss_is_reported(sinkd):
    send(sinkd, "bob@corp.example", "Quarterly figures")
    send(sinkd, "bob@corp.example", "Win the lottery", SPAM)
    sinkd.assert_accepted(subject="lottery")
"""
)


def test_a_user_suite_sends_waits_routes_and_reads_a_near_miss_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_mail=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_near_miss_is_reported*",
            "E * expected a message (subject='lottery', verdict='accept'), but it got quarantine",
            "E * received 2 messages since the test started (oldest first; > marks near misses):",
            "E *   ACCEPT * to=bob@corp.example subject='Quarterly figures'",
            "E * > QUARANTINE * to=bob@corp.example subject='Win the lottery'",
            "E *     profile=typical-corporate stage=data score=* reply: 250 2.0.0 Ok: queued as *",
            "E *     deciding SCORE_QUARANTINE: *quarantine threshold*",
            "E *     also     CONTENT_TRIGGER_WORD *'lottery' in the subject; 'bitcoin', 'casino'*",
            "test_mail.py:*: AssertionError",
        ]
    )


def test_a_suite_that_does_not_use_the_fixture_starts_no_sinkd(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys
        import threading

        def test_nothing_started():
            assert "sinkd.server.runtime" not in sys.modules
            assert not [t for t in threading.enumerate() if t.name.startswith("sinkd")]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=1)


def test_a_wait_that_times_out_reports_that_nothing_arrived(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_waits(sinkd):
            sinkd.wait_for(to="nobody@corp.example", timeout=0.2)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * no message (to='nobody@corp.example') arrived within 0.2 s",
            "E * sinkd (profile typical-corporate) received nothing since the test started.",
        ]
    )


def test_an_unknown_profile_in_a_marker_is_an_error_listing_the_profiles(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.sinkd_profile("strict-finanse")
        def test_typo(sinkd):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no profile 'strict-finanse'; available: *strict-finance*"])


def test_the_local_server_takes_its_profile_from_the_command_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HELPERS
        + """
def test_default(sinkd):
    send(sinkd, "bob@corp.example", "Win the lottery", SPAM)
    sinkd.assert_verdict("accept", to="bob@", profile="no-filter")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sinkd-profile", "no-filter")
    result.assert_outcomes(passed=1)


SPAMD_DOWN = """\
schema: sinkd.profile/v1
id: spamd-down
title: A spamd that does not answer, mail passed through unscored
models:
  - {{what: "a test profile", source: "tests/testing/test_pytest_plugin.py"}}
filters:
  - kind: spamassassin
    name: spamd
    host: 127.0.0.1
    port: {port}
    timeout: 5
    on_error: {{action: none}}
"""


def test_an_assertion_does_not_pass_on_a_verdict_that_was_not_fully_judged(
    pytester: pytest.Pytester,
) -> None:
    folder = pytester.mkdir("profiles")
    pytester.makepyfile(
        HELPERS
        + """
def test_unjudged(sinkd):
    send(sinkd, "bob@corp.example", "Quarterly figures")
    with pytest.raises(AssertionError) as failed:
        sinkd.assert_accepted(to="bob@")
    text = str(failed.value)
    assert "it got accept, but not fully judged: SPAMASSASSIN_ERROR could not answer" in text
    assert "not judged SPAMASSASSIN_ERROR (unavailable):" in text
    message = sinkd.assert_accepted(to="bob@", fully_judged=False)
    assert message.fully_judged is False
    [error] = [f for f in message.findings if f.code == "SPAMASSASSIN_ERROR"]
    assert error.unjudged == "unavailable"
"""
    )
    with refused_port() as port:
        (folder / "spamd-down.yaml").write_text(SPAMD_DOWN.format(port=port), encoding="utf-8")
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--sinkd-profiles-dir", str(folder),
            "--sinkd-profile", "spamd-down", timeout=RUN_TIMEOUT,
        )  # fmt: skip
    result.assert_outcomes(passed=1)


# --- remote mode --------------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Sinkd]:
    """A sinkd started here on free ports, as a container would run it."""
    settings = Settings(port=0, http_port=0, db=tmp_path / "remote.db", hostname="sinkd.test")
    with ServerThread(settings) as sinkd:
        yield sinkd


REMOTE_TESTS = (
    HELPERS
    + """
import os


def test_the_fixture_points_at_the_remote_sinkd(sinkd):
    assert sinkd.url == os.environ["EXPECTED_URL"]
    send(sinkd, "bob@corp.example", "Quarterly figures")
    sinkd.assert_accepted(to="bob@")


@pytest.mark.sinkd_profile("strict-finance")
@pytest.mark.sinkd_routes({"partner.example": "no-filter"})
def test_markers_route_the_remote_sinkd(sinkd):
    send(sinkd, "dave@partner.example", "Win the lottery", SPAM)
    assert sinkd.assert_accepted(to="partner").profile == "no-filter"
    assert sinkd.client.routing().profile == "strict-finance"
"""
)


def test_remote_mode_uses_a_running_sinkd_and_leaves_its_routing_as_found(
    pytester: pytest.Pytester, remote: Sinkd, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert remote.http_address is not None and remote.smtp_address is not None
    url = "http://{}:{}".format(*remote.http_address)
    monkeypatch.setenv("EXPECTED_URL", url)
    monkeypatch.setenv("SINKD_URL", url)
    monkeypatch.setenv("SINKD_SMTP", "{}:{}".format(*remote.smtp_address))
    pytester.makepyfile(test_remote=REMOTE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=2)
    with SinkdClient(url, timeout=TIMEOUT) as client:
        routing = client.routing()
        assert (routing.profile, routing.routes) == ("typical-corporate", {})
        assert [m.profile for m in client.all_messages()] == ["no-filter"]  # the last test's


def test_remote_mode_with_the_option_and_an_unreachable_url_fails_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_uses(sinkd):\n    pass\n")
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--sinkd-url={url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*sinkd at {url} (--sinkd-url/SINKD_URL): *connection refused*"])
