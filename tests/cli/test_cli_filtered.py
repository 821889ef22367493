"""``sinkd check --write-filtered``: the message as delivered, written for one file or many.

The files are judged by profiles written here (through ``SINKD_PROFILES_DIR`` and
``SINKD_PROFILE``), so these tests do not move when a built-in profile is re-audited."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import os
from pathlib import Path

import pytest

from sinkd.cli import main
from tests.conftest import MESSAGES
from tests.support.attachments import pe_bytes

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
NOTICE = b"[logo.png (image/png) was removed by the corporate mail policy]"


STRIPPING = """\
schema: sinkd.profile/v1
id: stripping
title: Strips images and hidden text, refuses executables
models:
  - {what: "a test profile", source: "tests/cli/test_cli_filtered.py"}
filters:
  - kind: mime
    name: rich-content
    strip_notice: "[${filename} (${content_type}) was removed by the corporate mail policy]"
    classes:
      images: {action: strip}
      hidden_text: {action: strip}
    attachments:
      - {id: EXECUTABLE_ATTACHMENT, extensions: [exe], action: reject}
"""
LENIENT = """\
schema: sinkd.profile/v1
id: lenient
title: Filters nothing
models:
  - {what: "a test profile", source: "tests/cli/test_cli_filtered.py"}
"""


@pytest.fixture(autouse=True)
def _test_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "stripping.yaml").write_text(STRIPPING, encoding="utf-8")
    (folder / "lenient.yaml").write_text(LENIENT, encoding="utf-8")
    monkeypatch.setenv("SINKD_PROFILES_DIR", str(folder))
    monkeypatch.setenv("SINKD_PROFILE", "stripping")


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def write(path: Path, subject: str, *parts: str) -> Path:
    head = (
        "From: Alice <alice@sender.example>\r\nTo: Bob <bob@corp.example>\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
    )
    if len(parts) == 1:
        raw = head + parts[0]
    else:
        body = "".join(f"--mx\r\n{p}" for p in parts) + "--mx--\r\n"
        raw = head + 'Content-Type: multipart/mixed; boundary="mx"\r\n\r\n' + body
    path.write_bytes(raw.encode())
    return path


def text_part(text: str) -> str:
    return f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"


def file_part(filename: str, content_type: str, data: bytes) -> str:
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (
        f'Content-Type: {content_type}; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}"
    )


def html_part(name: str) -> str:
    html = (MESSAGES / "content" / name).read_text(encoding="utf-8").replace("\n", "\r\n")
    return f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"


@pytest.fixture
def with_image(tmp_path: Path) -> Path:
    return write(
        tmp_path / "with-image.eml",
        "Our logo",
        text_part("The logo is attached."),
        file_part("logo.png", "image/png", PNG),
    )


@pytest.fixture
def preheader(tmp_path: Path) -> Path:
    return write(tmp_path / "statement.eml", "Your statement", html_part("hidden-preheader.html"))


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return write(tmp_path / "clean.eml", "Lunch", text_part("See you at noon."))


@pytest.fixture
def refused(tmp_path: Path) -> Path:
    return write(
        tmp_path / "invoice.eml",
        "Invoice",
        text_part("Please pay."),
        file_part("invoice.pdf", "application/pdf", pe_bytes()),
    )


def test_one_file_writes_the_filtered_message_to_the_path(tmp_path: Path, with_image: Path) -> None:
    target = tmp_path / "out.eml"
    code, out = run("check", with_image, "--write-filtered", target)
    assert code == 0
    assert "  stripped: part 2 'logo.png' (image/png)" in out.splitlines()
    filtered = target.read_bytes()
    original = with_image.read_bytes()
    assert NOTICE in filtered
    assert base64.b64encode(PNG)[:40] not in filtered
    headers, text = filtered.split(b"--mx\r\n")[:2]
    original_headers, original_text = original.split(b"--mx\r\n")[:2]
    assert text == original_text
    assert headers == original_headers  # no authentication check: no field added
    parsed = email.message_from_bytes(filtered, policy=email.policy.default)
    assert all(not p.defects for p in parsed.walk())


def test_hidden_html_text_is_gone_from_the_written_message(tmp_path: Path, preheader: Path) -> None:
    target = tmp_path / "out.eml"
    assert run("check", preheader, "--write-filtered", target)[0] == 0
    written = target.read_bytes()
    assert b"20% off renewals" not in written
    assert b"Your October statement is ready" in written


def test_a_message_with_nothing_stripped_is_written_as_it_was_sent(
    tmp_path: Path, clean: Path
) -> None:
    target = tmp_path / "out.eml"
    assert run("check", clean, "--write-filtered", target)[0] == 0
    assert target.read_bytes() == clean.read_bytes()


def test_several_files_write_stem_dot_filtered_eml_into_the_directory(
    tmp_path: Path, with_image: Path, preheader: Path, clean: Path
) -> None:
    directory = tmp_path / "filtered"
    directory.mkdir()
    code, _ = run("check", with_image, preheader, clean, "--write-filtered", directory)
    assert code == 0
    assert sorted(p.name for p in directory.iterdir()) == [
        "clean.filtered.eml",
        "statement.filtered.eml",
        "with-image.filtered.eml",
    ]
    assert NOTICE in (directory / "with-image.filtered.eml").read_bytes()
    assert b"20% off renewals" not in (directory / "statement.filtered.eml").read_bytes()
    assert (directory / "clean.filtered.eml").read_bytes() == clean.read_bytes()


def test_several_files_and_a_missing_directory_exit_2_with_a_clear_message(
    tmp_path: Path, with_image: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    code, _ = run("check", with_image, clean, "--write-filtered", missing)
    assert code == 2
    assert capsys.readouterr().err == (
        f"sinkd check: --write-filtered {missing}: with several files this must be a directory\n"
    )
    assert not missing.exists()


def test_several_files_and_a_regular_file_as_target_exit_2(
    tmp_path: Path, with_image: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.eml"
    target.write_bytes(b"keep me")
    assert run("check", with_image, clean, "--write-filtered", target)[0] == 2
    assert "with several files this must be a directory" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"


def test_a_refused_message_writes_nothing_and_says_so_on_stderr(
    tmp_path: Path, refused: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.eml"
    code, out = run("check", refused, "--write-filtered", target)
    assert code == 4
    assert "MIME_EXECUTABLE_ATTACHMENT" in out
    assert not target.exists()
    assert capsys.readouterr().err == (
        f"sinkd check: {refused}: refused by every profile; nothing to write\n"
    )


def test_a_refused_file_among_several_is_skipped_and_the_others_written(
    tmp_path: Path, refused: Path, with_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "filtered"
    directory.mkdir()
    assert run("check", refused, with_image, "--write-filtered", directory)[0] == 4
    assert [p.name for p in directory.iterdir()] == ["with-image.filtered.eml"]
    assert f"sinkd check: {refused}: refused by every profile" in capsys.readouterr().err


def test_profiles_that_disagree_each_get_their_own_file(tmp_path: Path, preheader: Path) -> None:
    target = tmp_path / "out.eml"
    code, _ = run(
        "check",
        preheader,
        "--rcpt",
        "bob@corp.example",
        "--rcpt",
        "ann@gmail.example",
        "--route",
        "gmail.example=lenient",
        "--write-filtered",
        target,
    )
    assert code == 0
    assert not target.exists()
    stripping = tmp_path / "out.stripping.eml"
    lenient = tmp_path / "out.lenient.eml"
    assert b"20% off renewals" not in stripping.read_bytes()
    assert lenient.read_bytes() == preheader.read_bytes()  # left alone
