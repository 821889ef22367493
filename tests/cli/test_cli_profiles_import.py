"""``sinkd profiles import``: the behaviour every product shares, shown with the Postfix importer
(the profile written with ``-o`` or to standard output, its id, untranslated items on standard
error and as comments, ``--strict``, bad input with exit 2 naming file and line), and the
imported profile judging a message with ``sinkd check``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.cli import main
from sinkd.core.profiles import ProfileSet
from tests.support.paths import DOCS, ROOT

EXAMPLE = DOCS / "examples" / "postfix"
MESSAGE = ROOT / "tests" / "corpus" / "messages" / "tx-order-receipt.eml"


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def example(tmp_path: Path) -> Path:
    """A copy of the documented example configuration (tests may change it)."""
    target = tmp_path / "postfix"
    shutil.copytree(EXAMPLE, target)
    return target / "main.cf"


def translated_only(tmp_path: Path) -> Path:
    """A configuration the filter kinds translate whole."""
    directory = tmp_path / "clean"
    directory.mkdir()
    (directory / "sender_access").write_text("spam@blocked.example REJECT\n", encoding="utf-8")
    (directory / "main.cf").write_text(
        textwrap.dedent(
            """\
            mynetworks = 127.0.0.0/8
            relay_domains = example.com
            smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/sender_access
            smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
            """
        ),
        encoding="utf-8",
    )
    return directory / "main.cf"


def check(profile: Path, *options: str, message: Path = MESSAGE) -> dict[str, Any]:
    _, out = run("check", "--json", "--profile", profile, *options, message)
    [result] = json.loads(out)  # the exit code says the verdict: the JSON says it all
    return dict(result)


def test_the_example_is_written_to_the_output_file_and_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "my-gateway.yaml"
    code, printed = run("profiles", "import", "postfix", example(tmp_path), "-o", out)
    assert code == 0
    assert printed.startswith(f"wrote {out} (profile my-gateway): ")
    loaded = ProfileSet().load(out)
    assert loaded.profile.id == "my-gateway"
    assert [f.kind for f in loaded.profile.filters] == ["postfix_smtpd", "postfix_cleanup"]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Imported by `sinkd profiles import postfix` from: ")
    stderr = capsys.readouterr().err
    line = (
        "untranslated: main.cf:21: smtpd_helo_required = yes: Postfix refuses MAIL FROM before "
        "HELO/EHLO (503 5.5.1); sinkd accepts it"
    )
    assert line in stderr.splitlines()
    assert "# - main.cf:21: smtpd_helo_required = yes: Postfix refuses MAIL FROM" in text


def test_without_o_the_profile_goes_to_standard_output_with_the_products_default_id(
    tmp_path: Path,
) -> None:
    code, printed = run("profiles", "import", "postfix", translated_only(tmp_path))
    assert code == 0
    document = yaml.safe_load(printed)
    assert document["id"] == "imported-postfix"
    assert "# Everything in the configuration was translated." in printed


def test_id_names_the_profile(tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    code, _ = run(
        "profiles", "import", "postfix", translated_only(tmp_path), "-o", out, "--id", "gw-1"
    )
    assert code == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["id"] == "gw-1"


def test_strict_with_something_untranslated_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "my-gateway.yaml"
    code, printed = run("profiles", "import", "postfix", example(tmp_path), "-o", out, "--strict")
    assert code == 2
    assert not out.exists() and printed == ""
    stderr = capsys.readouterr().err
    assert "untranslated: main.cf:21: smtpd_helo_required" in stderr
    assert "could not be translated and --strict is set: nothing written" in stderr


def test_strict_with_everything_translated_writes_the_profile(tmp_path: Path) -> None:
    out = tmp_path / "clean.yaml"
    code, _ = run("profiles", "import", "postfix", translated_only(tmp_path), "-o", out, "--strict")
    assert code == 0
    assert out.is_file()


def test_a_bad_table_line_exits_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_cf = example(tmp_path)
    with (main_cf.parent / "header_checks").open("a", encoding="utf-8") as table:
        table.write("viagra REJECT\n")
    out = tmp_path / "x.yaml"
    code, _ = run("profiles", "import", "postfix", main_cf, "-o", out)
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err == (
        "sinkd profiles import postfix: header_checks:8: expected '/pattern/flags result', "
        "found 'viagra REJECT'\n"
    )


def test_a_bad_main_cf_line_exits_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text("myhostname = mx.example.com\nsmtpd_recipient_restrictions\n")
    code, _ = run("profiles", "import", "postfix", main_cf)
    assert code == 2
    assert capsys.readouterr().err == (
        "sinkd profiles import postfix: main.cf:2: expected 'name = value', found "
        "'smtpd_recipient_restrictions'\n"
    )


@pytest.mark.parametrize("missing", ["main.cf", "table"])
def test_a_missing_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    main_cf = example(tmp_path)
    if missing == "main.cf":
        main_cf = tmp_path / "nope" / "main.cf"
        expected = f"{main_cf}: no such file"
    else:
        (main_cf.parent / "sender_access").unlink()
        expected = "main.cf:35: table file /etc/postfix/sender_access not found"
    code, _ = run("profiles", "import", "postfix", main_cf)
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_config_dir_is_where_the_tables_are(tmp_path: Path) -> None:
    main_cf = example(tmp_path)
    elsewhere = tmp_path / "main-only"
    elsewhere.mkdir()
    shutil.move(main_cf, elsewhere / "main.cf")
    code, _ = run("profiles", "import", "postfix", elsewhere / "main.cf")
    assert code == 2
    code, _ = run(
        "profiles",
        "import",
        "postfix",
        elsewhere / "main.cf",
        "--config-dir",
        main_cf.parent,
        "--master-cf",
        main_cf.parent / "master.cf",
    )
    assert code == 0


def test_the_imported_profile_refuses_a_blocked_sender_with_postfixs_reply_at_rcpt(
    tmp_path: Path,
) -> None:
    out = tmp_path / "my-gateway.yaml"
    assert run("profiles", "import", "postfix", example(tmp_path), "-o", out)[0] == 0
    envelope = ["--client-ip", "198.18.0.1", "--helo", "mail.sender.example"]
    refused = check(
        out, *envelope, "--mail-from", "spam@blocked.example", "--rcpt", "bob@example.com"
    )
    assert refused["verdict"] == "reject"
    assert refused["stage"] == "rcpt"
    assert refused["reply"] == {
        "code": 554,
        "enhanced": "5.7.1",
        "text": "<spam@blocked.example>: Sender address rejected: Access denied",
    }
    accepted = check(
        out, *envelope, "--mail-from", "alice@sender.example", "--rcpt", "bob@example.com"
    )
    assert accepted["verdict"] != "reject", accepted["findings"]


def test_python_m_sinkd_runs_the_import_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gw.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sinkd",
            "profiles",
            "import",
            "postfix",
            str(example(tmp_path)),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SINKD_")},
    )
    assert result.returncode == 0, result.stderr
    assert "untranslated: " in result.stderr
    assert ProfileSet().load(out).profile.id == "gw"


def test_the_imported_header_checks_refuse_at_the_end_of_data_with_the_tables_text(
    tmp_path: Path,
) -> None:
    out = tmp_path / "my-gateway.yaml"
    assert run("profiles", "import", "postfix", example(tmp_path), "-o", out)[0] == 0
    message = tmp_path / "pills.eml"
    message.write_bytes(MESSAGE.read_bytes().replace(b"Subject: ", b"Subject: Cheap viagra! ", 1))
    result = check(
        out,
        "--client-ip",
        "127.0.0.1",
        "--mail-from",
        "alice@sender.example",
        "--rcpt",
        "bob@example.com",
        message=message,
    )
    assert (result["verdict"], result["stage"]) == ("reject", "data")
    assert result["reply"] == {
        "code": 550,
        "enhanced": "5.7.1",
        "text": "Message content rejected (subject)",
    }
    [finding] = [f for f in result["findings"] if f["filter"] == "cleanup"]
    assert "header_checks:2" in json.dumps(finding)


def test_control_characters_quoted_from_a_table_do_not_break_the_written_comments(
    tmp_path: Path,
) -> None:
    (tmp_path / "clients").write_bytes(b"x\x00y REJECT\n192.0.2.1 REJECT\n")
    (tmp_path / "main.cf").write_text(
        "smtpd_client_restrictions = check_client_access cidr:/etc/postfix/clients\n"
        "smtpd_relay_restrictions = reject_unauth_destination\n",
        encoding="utf-8",
    )
    out = tmp_path / "gw.yaml"
    code, _ = run("profiles", "import", "postfix", tmp_path / "main.cf", "-o", out)
    assert code == 0
    assert "# - clients:1: x\\x00y REJECT: not translatable" in out.read_text(encoding="utf-8")
