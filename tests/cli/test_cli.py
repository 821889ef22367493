"""The command line: check exit codes and output, profiles list/show/validate, messages."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sinkd.cli import main
from sinkd.core.model import (
    ClientIdentity,
    Disposition,
    Envelope,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.store import MessageRecord
from sinkd.store.sqlite import open_sqlite
from tests.support.judging import HEAD
from tests.support.paths import MESSAGES, PROFILES

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


def eml(
    tmp_path: Path, name: str, subject: str = "Lunch on Friday", body: str = "See you at noon."
) -> Path:
    path = tmp_path / name
    path.write_bytes(
        (
            "From: Alice <alice@sender.example>\r\nTo: Bob <bob@corp.example>\r\n"
            f"Subject: {subject}\r\n\r\n{body}\r\n"
        ).encode()
    )
    return path


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


@pytest.fixture
def ham(tmp_path: Path) -> Path:
    return eml(tmp_path, "ham.eml")


@pytest.fixture
def quarantined(tmp_path: Path) -> Path:
    # typical-corporate: three trigger words score 9, and SPF none (offline DNS) 0.5, over the
    # quarantine threshold of 8.
    return eml(tmp_path, "quarantine.eml", "Casino night", "Win the lottery with bitcoin")


@pytest.fixture
def rejected(tmp_path: Path) -> Path:
    return eml(tmp_path, "gtube.eml", "Test", GTUBE)


# --- check ----------------------------------------------------------------------------------


def test_check_exits_0_for_ham_and_prints_the_verdict(ham: Path) -> None:
    code, out = run("check", ham)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{ham}: ACCEPT (inbox) profile=typical-corporate stage=data score=")
    assert lines[1] == "  reply: 250 2.0.0 Ok: queued as check-1"
    assert (
        lines[2] == "  envelope: from=<alice@sender.example> to=bob@corp.example client=127.0.0.1"
    )
    codes = [line.split()[1] for line in lines[3:] if line[2] in "-?*~!x"]
    assert {"DKIM_NONE", "DMARC_NONE"} <= set(codes)
    assert any(code.startswith("SPF_") for code in codes)


def test_check_exits_3_for_a_quarantined_message(quarantined: Path) -> None:
    code, out = run("check", quarantined)
    assert code == 3
    assert ": QUARANTINE (quarantined) profile=typical-corporate stage=data score=" in out
    assert "* SCORE_QUARANTINE" in out


def test_check_exits_4_for_a_rejected_message(rejected: Path) -> None:
    code, out = run("check", rejected)
    assert code == 4
    assert "REJECT (rejected)" in out
    assert "  reply: 554 5.7.1 Gtube pattern" in out


def test_check_exits_with_the_worst_verdict_of_several_files(
    ham: Path, quarantined: Path, rejected: Path
) -> None:
    assert run("check", ham, quarantined)[0] == 3
    assert run("check", rejected, ham, quarantined)[0] == 4


def test_check_of_a_missing_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.eml"
    assert run("check", missing)[0] == 2
    assert capsys.readouterr().err == f"sinkd check: {missing}: no such file\n"


def test_check_with_a_bad_option_exits_2(ham: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", "--bogus", ham)[0] == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_check_with_an_unknown_profile_exits_2(
    ham: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", ham, "--profile", "nope")[0] == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_check_json_is_an_array_of_verdicts_each_naming_its_file(ham: Path, rejected: Path) -> None:
    code, out = run("check", ham, rejected, "--json")
    assert code == 4
    data = json.loads(out)
    assert isinstance(data, list)
    assert [item["file"] for item in data] == [str(ham), str(rejected)]
    assert [item["verdict"] for item in data] == ["accept", "reject"]
    assert data[1]["reply"] == {"code": 554, "enhanced": "5.7.1", "text": "Gtube pattern"}
    for item in data:
        assert {"id", "profile", "disposition", "score", "stage", "envelope", "findings"} <= set(
            item
        )


def test_check_uses_the_envelope_options(tmp_path: Path, ham: Path) -> None:
    code, out = run(
        "check", ham, "--json",
        "--mail-from", "bounce@esp.example",
        "--rcpt", "x@corp.example", "--rcpt", "y@corp.example",
        "--client-ip", "198.51.100.9",
        "--helo", "mx.esp.example",
    )  # fmt: skip
    assert code == 0
    [verdict] = json.loads(out)
    assert verdict["envelope"] == {
        "client_ip": "198.51.100.9",
        "helo": "mx.esp.example",
        "mail_from": "bounce@esp.example",
        "rcpt_to": ["x@corp.example", "y@corp.example"],
    }
    assert verdict["identity"]["source"] == "option"


def _blocking_profile(tmp_path: Path) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "blocker.yaml").write_text(
        HEAD.format(id="blocker")
        + textwrap.dedent(
            """\
            filters:
              - kind: envelope
                name: access
                rules:
                  - {id: BLOCK_IP, match: client_ip, entries: [192.0.2.0/24], action: reject}
                  - {id: BAD_HELO, match: helo, entries: ["*.dyn.example"], action: reject}
                  - {id: BLOCK_SENDER, match: mail_from, entries: [spam.example], action: reject}
            """
        ),
        encoding="utf-8",
    )
    return profiles


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--client-ip", "192.0.2.44", "ENVELOPE_BLOCK_IP"),
        ("--helo", "host7.dyn.example", "ENVELOPE_BAD_HELO"),
        ("--mail-from", "x@spam.example", "ENVELOPE_BLOCK_SENDER"),
    ],
)
def test_a_custom_profile_blocking_the_given_envelope_rejects_at_rcpt_with_exit_4(
    tmp_path: Path, ham: Path, option: str, value: str, code: str
) -> None:
    profiles = _blocking_profile(tmp_path)
    exit_code, out = run(
        "check", ham, "--profiles-dir", profiles, "--profile", "blocker",
        "--rcpt", "ceo@corp.example", option, value, "--json",
    )  # fmt: skip
    assert exit_code == 4
    [verdict] = json.loads(out)
    assert verdict["profile"] == "blocker"
    assert verdict["stage"] == "rcpt"
    assert verdict["envelope"]["rcpt_to"] == ["ceo@corp.example"]
    assert [f["code"] for f in verdict["findings"]] == [code]
    assert verdict["reply"]["code"] == 554


def test_the_same_custom_profile_accepts_a_clean_envelope(tmp_path: Path, ham: Path) -> None:
    profiles = _blocking_profile(tmp_path)
    code, _ = run("check", ham, "--profiles-dir", profiles, "--profile", "blocker")
    assert code == 0


def test_a_profile_may_be_given_as_a_path(tmp_path: Path, ham: Path) -> None:
    profiles = _blocking_profile(tmp_path)
    code, out = run(
        "check", ham, "--profile", profiles / "blocker.yaml", "--client-ip", "192.0.2.1"
    )
    assert code == 4
    assert "profile=blocker stage=rcpt" in out


def test_check_routes_recipient_domains_to_other_profiles(rejected: Path) -> None:
    code, out = run(
        "check", rejected, "--json", "--profile", "no-filter",
        "--route", "secure.example=typical-corporate",
        "--rcpt", "a@corp.example", "--rcpt", "b@secure.example",
    )  # fmt: skip
    assert code == 4
    data = json.loads(out)
    assert [(v["profile"], v["verdict"]) for v in data] == [
        ("no-filter", "accept"),
        ("typical-corporate", "reject"),
    ]
    assert data[1]["envelope"]["rcpt_to"] == ["b@secure.example"]


def test_a_malformed_route_is_a_usage_error(ham: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", ham, "--route", "no-equals-sign")[0] == 2
    assert "expected DOMAIN=PROFILE" in capsys.readouterr().err


def test_python_dash_m_sinkd_check_exits_with_the_verdict_code(rejected: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    result = subprocess.run(
        [sys.executable, "-m", "sinkd", "check", str(rejected), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    [verdict] = json.loads(result.stdout)
    assert verdict["file"] == str(rejected)
    assert verdict["reply"]["text"] == "Gtube pattern"


# --- files as an SMTP client sends them -----------------------------------------------------

NEWSLETTER = MESSAGES / "content" / "newsletter.html"


def newsletter(line_end: bytes) -> bytes:
    """A newsletter as ESPs send it (List-Unsubscribe, HTML with a preheader), with the given
    line ends throughout."""
    html = NEWSLETTER.read_text(encoding="utf-8").replace("\r\n", "\n").strip()
    text = (
        "From: Shop News <news@shop.example>\nTo: Bob <bob@corp.example>\n"
        "Subject: Our spring collection is here\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n"
        "Message-ID: <spring-2026@shop.example>\nMIME-Version: 1.0\n"
        "List-Unsubscribe: <https://shop.example/unsubscribe?u=42>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        f"{html}\n"
    )
    return text.encode().replace(b"\n", line_end)


def builtin_profiles() -> list[str]:
    code, out = run("profiles", "list", "--json")
    assert code == 0
    return [p["id"] for p in json.loads(out)]


@pytest.mark.parametrize("profile", builtin_profiles())
def test_a_newsletter_saved_with_lf_gets_the_verdict_of_its_crlf_copy(
    tmp_path: Path, profile: str
) -> None:
    lf, crlf = tmp_path / "lf.eml", tmp_path / "crlf.eml"
    lf.write_bytes(newsletter(b"\n"))
    crlf.write_bytes(newsletter(b"\r\n"))
    code_lf, out_lf = run("check", lf, "--profile", profile, "--json")
    code_crlf, out_crlf = run("check", crlf, "--profile", profile, "--json")
    [from_lf], [from_crlf] = json.loads(out_lf), json.loads(out_crlf)
    assert code_lf == code_crlf
    assert from_lf.pop("file") == str(lf) and from_crlf.pop("file") == str(crlf)
    assert from_lf == from_crlf
    assert "FORMAT_BARE_LINE_ENDING" not in [f["code"] for f in from_lf["findings"]]


BARE_LF_REFUSED = """\
filters:
  - kind: format
    name: hygiene
    bare_lf: {action: reject, reply: "550 5.5.2 Error: bare <LF> received"}
"""


def test_a_file_with_mixed_line_endings_is_judged_with_its_bare_line_endings(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "strict-format.yaml"
    profile.write_text(HEAD.format(id="strict-format") + BARE_LF_REFUSED, encoding="utf-8")
    mixed = tmp_path / "mixed.eml"
    mixed.write_bytes(newsletter(b"\r\n").replace(b"</html>\r\n", b"</html>\n"))
    code, out = run("check", mixed, "--profile", profile, "--json")
    assert code == 4
    [verdict] = json.loads(out)
    assert "FORMAT_BARE_LINE_ENDING" in [f["code"] for f in verdict["findings"]]
    # The same message with LF throughout is the CRLF message a client sends: accepted.
    lf = tmp_path / "lf.eml"
    lf.write_bytes(newsletter(b"\n"))
    assert run("check", lf, "--profile", profile)[0] == 0


def test_a_file_with_an_mbox_from_line_is_judged_without_it(tmp_path: Path) -> None:
    path = tmp_path / "mbox.eml"
    path.write_bytes(b"From news@shop.example  Mon Mar  2 09:00:00 2026\n" + newsletter(b"\n"))
    code, out = run("check", path, "--profile", "no-filter", "--json")
    assert code == 0
    [verdict] = json.loads(out)
    assert verdict["subject"] == "Our spring collection is here"


def test_the_message_written_for_an_lf_file_is_the_crlf_message(tmp_path: Path) -> None:
    lf, written = tmp_path / "lf.eml", tmp_path / "out.eml"
    lf.write_bytes(newsletter(b"\n"))
    assert run("check", lf, "--profile", "no-filter", "--write-filtered", written)[0] == 0
    assert written.read_bytes() == newsletter(b"\r\n")


def test_report_judges_an_lf_file_as_its_crlf_copy(tmp_path: Path) -> None:
    lf, crlf = tmp_path / "lf.eml", tmp_path / "crlf.eml"
    lf.write_bytes(newsletter(b"\n"))
    crlf.write_bytes(newsletter(b"\r\n"))
    reports = []
    for path in (lf, crlf):
        code, out = run("report", path, "--profiles", "strict-finance,typical-corporate", "--json")
        assert code == 0
        data = json.loads(out)
        data.pop("message")
        reports.append(data)
    assert reports[0] == reports[1]
    assert "bare LF" not in json.dumps(reports[0])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b"Hello world\nno headers here\n", "no header block: the first line is not a header"),
        (b"\n\nSubject: late\n", "no header block: the file begins with an empty line"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary data, not a message file"),
        (b"\xef\xbb\xbfSubject: x\n\nbody\n", "no header block: the file begins with a UTF-8 byte"),
    ],
)
@pytest.mark.parametrize("command", ["check", "report"])
def test_a_file_that_is_no_message_exits_2_naming_the_file_and_the_problem(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: bytes,
    problem: str,
) -> None:
    path = tmp_path / "bad.eml"
    path.write_bytes(content)
    code, out = run(command, path)
    assert code == 2
    assert out == ""
    err = capsys.readouterr().err
    assert err.startswith(f"sinkd {command}: {path}: {problem}")
    assert err.count("\n") == 1


def test_a_bad_file_among_good_ones_stops_check_before_any_verdict(
    ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    assert run("check", ham, empty) == (2, "")
    assert capsys.readouterr().err.startswith(f"sinkd check: {empty}: the file is empty")


def test_empty_standard_input_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert run("check", "-")[0] == 2
    assert capsys.readouterr().err.startswith("sinkd check: standard input: the file is empty")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--client-ip", "999.1.1.1", "expected an IPv4 or IPv6 address"),
        ("--client-ip", "mail.example.com", "expected an IPv4 or IPv6 address"),
        ("--rcpt", "notanaddress", "'notanaddress': not an address (RFC 5321 §4.1.2"),
        ("--rcpt", "bob@", "'bob@': not an address"),
        ("--rcpt", "a b@corp.example", "not an address"),
        ("--rcpt", "bob@[999.1.1.1]", "is not an address literal"),
        ("--rcpt", "x" * 65 + "@corp.example", "longer than 64 octets"),
        ("--mail-from", "notanaddress", "or '' for the null sender"),
    ],
)
def test_a_bad_address_option_exits_2_naming_the_option_and_the_value(
    ham: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    assert run("check", ham, option, value) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith(f"sinkd check: argument {option}: ")
    assert expected in err


def test_report_refuses_a_bad_client_ip_too(ham: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("report", ham, "--client-ip", "999.1.1.1") == (2, "")
    assert capsys.readouterr().err.startswith("sinkd report: argument --client-ip: ")


@pytest.mark.parametrize(
    "address",
    ["bob@corp.example", "<bob@corp.example>", '"bob smith"@corp.example', "bob@[192.0.2.1]",
     "bob@[IPv6:2001:db8::1]", "jörg@bücher.example", "postmaster@localhost"],
)  # fmt: skip
def test_valid_recipients_are_taken(ham: Path, address: str) -> None:
    code, out = run("check", ham, "--profile", "no-filter", "--rcpt", address, "--json")
    assert code == 0
    [verdict] = json.loads(out)
    assert verdict["envelope"]["rcpt_to"] == [address.strip("<>")]


@pytest.mark.parametrize("null", ["", "<>"])
def test_the_null_sender_is_taken_for_mail_from(ham: Path, null: str) -> None:
    code, out = run("check", ham, "--profile", "no-filter", "--mail-from", null, "--json")
    assert code == 0
    [verdict] = json.loads(out)
    assert verdict["envelope"]["mail_from"] == ""


def test_an_ipv6_client_ip_is_taken(ham: Path) -> None:
    code, out = run("check", ham, "--profile", "no-filter", "--client-ip", "2001:db8::25", "--json")
    assert code == 0
    assert json.loads(out)[0]["envelope"]["client_ip"] == "2001:db8::25"


def test_check_of_a_binary_file_prints_no_traceback_as_a_process(tmp_path: Path) -> None:
    path = tmp_path / "logo.eml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    result = subprocess.run(
        [sys.executable, "-m", "sinkd", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"sinkd check: {path}: binary data, not a message file " + (
        "(its first line is no header field)\n"
    )


# --- profiles -------------------------------------------------------------------------------


def test_profiles_list_lists_the_builtins() -> None:
    code, out = run("profiles", "list")
    assert code == 0
    ids = [line.split()[0] for line in out.splitlines()]
    assert ids == [
        "deferring-gateway",
        "google-workspace-like",
        "legacy-sender-id",
        "m365-default-like",
        "no-filter",
        "spamassassin-default",
        "strict-finance",
        "typical-corporate",
    ]
    assert "Typical corporate IT policy (survey composite)" in out


def test_profiles_list_json_names_ids_titles_and_paths() -> None:
    code, out = run("profiles", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert [p["id"] for p in data] == [
        "deferring-gateway",
        "google-workspace-like",
        "legacy-sender-id",
        "m365-default-like",
        "no-filter",
        "spamassassin-default",
        "strict-finance",
        "typical-corporate",
    ]
    assert all(p["path"].endswith(f"{p['id']}.yaml") for p in data)


def test_profiles_show_prints_the_profile_readably_with_the_thresholds() -> None:
    code, out = run("profiles", "show", "typical-corporate")
    assert code == 0
    assert out.startswith("# Typical corporate IT policy (survey composite)\n# from ")
    assert "\nScoring: tag at 5, quarantine at 8, reject at 15; reject reply generic.spam\n" in out


def test_profiles_show_json_is_the_profile_as_data() -> None:
    code, out = run("profiles", "show", "strict-finance", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["smtp"] == {
        "source": "postconf(5) smtpd_delay_reject = no "
        "(restrictions answered at the command they judge)",
        "envelope_reply_stage": "mail",
        "max_connections_per_ip": None,
        "connection_limit_reply": "postfix.connection_limit",
        "tarpit": {"banner": 0.0, "rcpt": 0.0, "data": 0.0},
    }
    assert data["scoring"]["thresholds"]["reject"] == 12.0


def test_profiles_validate_exits_0_for_good_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HEAD.format(id="good") + "filters: []\n", encoding="utf-8")
    builtin = PROFILES
    code, out = run("profiles", "validate", good, builtin / "replies.yaml")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"ok: {good} (good: Test profile)"
    assert lines[1].startswith(f"ok: {builtin / 'replies.yaml'} (reply catalogue, ")
    assert capsys.readouterr().err == ""


def test_profiles_validate_exits_2_for_a_bad_file_naming_it_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HEAD.format(id="good"), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD.format(id="bad") + "filters:\n  - {kind: format, name: x, colour: red}\n")
    code, out = run("profiles", "validate", good, bad)
    assert code == 2
    assert out == f"ok: {good} (good: Test profile)\n"
    err = capsys.readouterr().err
    assert err == f"invalid: {bad}:7: filters[0].colour: unknown key\n"


def test_profiles_validate_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("profiles", "validate", tmp_path / "absent.yaml")[0] == 2
    assert f"{tmp_path / 'absent.yaml'}: profile file not found" in capsys.readouterr().err


# --- messages -------------------------------------------------------------------------------

RAW = b"From: alice@sender.example\r\nSubject: Stored one\r\n\r\nBody \xe2\x9c\x93\r\n"


def _record(
    message_id: str, action: VerdictAction, *, raw: bytes | None, second: int
) -> MessageRecord:
    rejected = action is VerdictAction.REJECT
    verdict = Verdict(
        profile="typical-corporate",
        verdict=action,
        disposition=Disposition.REJECTED if rejected else Disposition.INBOX,
        score=0.0,
        stage=Stage.RCPT if rejected else Stage.DATA,
        reply=Reply(554, "5.7.1", "Access denied")
        if rejected
        else Reply(250, "2.0.0", f"Ok: queued as {message_id}"),
        findings=(),
        envelope=Envelope(ClientIdentity("203.0.113.5"), "alice@sender.example", ("b@c.example",)),
        subject=None if rejected else "Stored one",
        id=message_id,
    )
    return MessageRecord(
        id=message_id,
        received_at=datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC),
        transaction_id=f"tx-{message_id}",
        verdict=verdict,
        raw=raw,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"

    async def fill() -> None:
        store = await open_sqlite(path)
        try:
            await store.save(_record("M1", VerdictAction.ACCEPT, raw=RAW, second=1))
            await store.save(_record("M2", VerdictAction.REJECT, raw=None, second=2))
        finally:
            await store.close()

    asyncio.run(fill())
    return path


def test_messages_list_prints_stored_verdicts_newest_first(db: Path) -> None:
    code, out = run("messages", "list", "--db", db)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("M2  2024-05-01T12:00:02.000Z  reject ")
    assert "rcpt 554 5.7.1" in lines[0]
    assert lines[1].startswith("M1  2024-05-01T12:00:01.000Z  accept ")
    assert lines[1].endswith("'Stored one'")


def test_messages_list_filters_by_verdict_and_prints_json(db: Path) -> None:
    code, out = run("messages", "list", "--db", db, "--verdict", "accept", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["id"] == "M1"
    assert row["transaction_id"] == "tx-M1"
    assert row["size"] == len(RAW)


def test_messages_show_prints_the_stored_verdict(db: Path) -> None:
    import yaml

    code, out = run("messages", "show", "M1", "--db", db)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["id"] == "M1"
    assert data["subject"] == "Stored one"
    assert data["reply"] == {"code": 250, "enhanced": "2.0.0", "text": "Ok: queued as M1"}
    code, out = run("messages", "show", "M2", "--db", db, "--json")
    assert code == 0
    assert json.loads(out)["stage"] == "rcpt"


def test_messages_show_raw_prints_the_original_bytes(
    db: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, out = run("messages", "show", "M1", "--db", db, "--raw")
    assert code == 0
    assert out == ""
    assert capsysbinary.readouterr().out == RAW


def test_messages_show_raw_of_a_message_refused_before_data_exits_1(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("messages", "show", "M2", "--db", db, "--raw")[0] == 1
    assert "message M2 has no raw bytes (refused before DATA)" in capsys.readouterr().err


def test_messages_show_of_an_unknown_id_exits_1_with_a_message(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("messages", "show", "NOPE", "--db", db)[0] == 1
    assert capsys.readouterr().err == "sinkd: no message with id 'NOPE'\n"


def test_messages_list_on_a_missing_database_exits_1_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.db"
    assert run("messages", "list", "--db", missing)[0] == 1
    assert capsys.readouterr().err == (
        f"sinkd: {missing}: no store there yet (start 'sinkd serve' or pass --db)\n"
    )
    assert not missing.exists()
