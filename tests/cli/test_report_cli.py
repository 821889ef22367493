"""``sinkd report``: text, JSON and HTML output, and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sinkd.cli import EXIT_OK, EXIT_USAGE, main
from tests.conftest import SpamdProcess

HOSTILE_SUBJECT = "<script>alert(1)</script> & <b>bold</b>"


def write(path: Path, subject: str, html: str) -> Path:
    path.write_bytes(
        (
            f"From: News <news@shop.example>\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"<html><body>{html}</body></html>\r\n"
        ).encode()
    )
    return path


@pytest.fixture
def newsletter(tmp_path: Path) -> Path:
    return write(
        tmp_path / "newsletter.eml",
        "October news",
        # A script, not a hidden preheader: typical-corporate strips the one, keeps the other.
        '<script>track("open")</script><p>Casino lottery. Hello, bitcoin news.</p>',
    )


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["report", *argv], out=out), out.getvalue()


def test_the_text_report_lists_profiles_shares_causes_fixes_and_the_model(
    newsletter: Path,
) -> None:
    code, text = run(str(newsletter))
    assert code == EXIT_OK
    assert "typical-corporate" in text and "no-filter" in text and "QUARANTINE" in text
    assert "quarantine   77.6%" in text  # 0.97 * 0.8 of the recipients
    assert "remove scripts, forms and event handlers from the HTML: +12.4 points intact" in text
    assert "reword: avoid 'bitcoin', 'casino', 'lottery'" in text
    assert "3% have no spam filtering at all" in text
    assert "The features are independent" in text


def test_the_json_report_has_the_documented_shape(newsletter: Path) -> None:
    code, text = run(str(newsletter), "--profiles", "typical-corporate,no-filter", "--json")
    assert code == EXIT_OK
    data = json.loads(text)
    assert set(data) == {
        "message",
        "profiles",
        "population",
        "causes",
        "gain_all_intact",
        "model",
        "without_dns_data",
        "dns_note",
    }
    assert data["message"] == str(newsletter)
    assert [p["profile"] for p in data["profiles"]] == ["typical-corporate", "no-filter"]
    corporate = data["profiles"][0]
    assert set(corporate) == {
        "profile",
        "verdict",
        "stage",
        "reply",
        "reasons",
        "stripped",
        "fully_judged",
        "without_dns_data",
    }
    assert corporate["verdict"] == "quarantine" and corporate["stage"] == "data"
    assert corporate["reply"].startswith("250 2.0.0")
    assert corporate["stripped"]
    assert set(data["population"]) == {"intact", "stripped", "quarantine", "reject"}
    assert sum(data["population"].values()) == pytest.approx(1.0)
    assert set(data["causes"][0]) == {"code", "share_lost", "fix", "gain_intact"}
    assert data["causes"][0]["code"] == "CONTENT_TRIGGER_WORD"
    assert set(data["model"]) == {"source", "assumptions"}


def test_several_files_give_a_json_list(newsletter: Path, tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.eml", "Statement", "<p>Your statement is ready.</p>")
    code, text = run(str(newsletter), str(plain), "--profiles", "no-filter", "--json")
    assert code == EXIT_OK
    data = json.loads(text)
    assert [d["message"] for d in data] == [str(newsletter), str(plain)]
    assert data[1]["population"]["intact"] == 1.0
    assert data[1]["causes"] == []


def test_the_html_report_escapes_everything_from_the_message(tmp_path: Path) -> None:
    raw = write(
        tmp_path / "evil.eml",
        HOSTILE_SUBJECT,
        '<div style="display:none"><img src=x onerror=alert(2)></div><p>casino</p>',
    )
    out = tmp_path / "report.html"
    code, _ = run(str(raw), "--profiles", "typical-corporate", "--html", str(out))
    assert code == EXIT_OK
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()  # the hidden <img onerror> appears only escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<svg" in page and 'id="profiles"' in page and 'id="causes"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_a_missing_file_exits_2_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(str(tmp_path / "nope.eml"))
    assert code == EXIT_USAGE
    assert "nope.eml: no such file" in capsys.readouterr().err


def test_an_unknown_profile_exits_2(newsletter: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(str(newsletter), "--profiles", "typical-corporate,nonesuch")
    assert code == EXIT_USAGE
    assert "unknown profile 'nonesuch'" in capsys.readouterr().err


def test_offline_dns_without_data_never_refuses_and_the_report_says_how_to_give_it(
    newsletter: Path,
) -> None:
    code, text = run(str(newsletter), "--profiles", "legacy-sender-id")
    assert code == EXIT_OK
    assert "REJECT" not in text and "does not exist" not in text
    assert "Judged without DNS data" in text
    assert "shop.example" in text
    assert "--dns-zone FILE" in text and "--dns live" in text
    code, text = run(str(newsletter), "--profiles", "legacy-sender-id", "--json")
    data = json.loads(text)
    assert data["profiles"][0]["verdict"] != "reject"
    assert {"code": "SENDERID_NONE", "dns_names": ["shop.example"]} in data["without_dns_data"]
    assert data["dns_note"].startswith("Judged without DNS data")


def test_a_fixture_that_says_the_pra_domain_does_not_exist_still_refuses(
    newsletter: Path, tmp_path: Path
) -> None:
    zone = tmp_path / "gone.yaml"
    zone.write_text("shop.example: {rcode: NXDOMAIN}\n")
    code, text = run(str(newsletter), "--profiles", "legacy-sender-id", "--dns-zone", str(zone))
    assert code == EXIT_OK
    assert "REJECT" in text and "that domain does not exist" in text
    assert "550 5.7.1 Sender ID (PRA) Not Permitted" in text


def test_the_html_report_says_when_checks_were_judged_without_dns_data(
    newsletter: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    code, _ = run(str(newsletter), "--profiles", "legacy-sender-id", "--html", str(out))
    assert code == EXIT_OK
    page = out.read_text(encoding="utf-8")
    assert '<p class="note dns-note">Judged without DNS data' in page
    assert "not judged: no-dns-data" in page


def test_spamd_gives_the_spamassassin_profile_its_scanner(
    newsletter: Path, spamd: SpamdProcess
) -> None:
    # Without --spamd the profile's own address (127.0.0.1:783) is used, where none listens.
    args = (str(newsletter), "--profiles", "spamassassin-default", "--json")
    code, text = run(*args, "--spamd", f"{spamd.host}:{spamd.port}")
    assert code == EXIT_OK
    (judged,) = json.loads(text)["profiles"]
    assert judged["fully_judged"] is True
