"""Tests for sinkd.core.message's fast paths: the quick parse and the octet counts.


``quick_message`` must give exactly what ``BytesParser(policy=compat32)`` gives (headers,
unix-from, payloads, preambles, epilogues, defects) or None; every view ``ParsedMessage``
builds on it must then be the same as on the full parse. Checked on every message of the suite,
the SpamAssassin public corpus when installed, hand-made edge cases and seeded mutations of
multipart messages. The octet counts (``raw_issues``) must be those of the plain definition
(CRLF made LF, then lines split on LF) on any mix of line breaks.
"""

from __future__ import annotations

import binascii
import copy
import email.message
import email.policy
import pickle
import random
from collections.abc import Callable
from email.parser import BytesParser
from pathlib import Path

import pytest

import sinkd.core.message as message_module
from sinkd.core.as_sent import as_sent
from sinkd.core.decoding import decode_text, decodes_cleanly
from sinkd.core.message import ParsedMessage, RawIssues, quick_message
from sinkd.core.mimetree import build_tree
from tests.support.paths import MESSAGES
from tests.support.public_corpus import corpus_files

SUITE_MESSAGES = sorted(p for p in MESSAGES.rglob("*") if p.suffix in (".txt", ".eml"))
VIEWS = (
    "subject",
    "header_from",
    "header_from_domain",
    "text_body",
    "html_bodies",
    "has_html",
    "html_text",
    "body_parts",
    "defects",
    "raw_issues",
    "fields",
    "tree",  # built on the quick parse's header blocks, or on its own parse of each
)


def full_parse(raw: bytes) -> email.message.Message:
    return BytesParser(policy=email.policy.compat32).parsebytes(raw)


def difference(quick: email.message.Message, full: email.message.Message, where: str = "") -> str:
    """Where the two parses differ, in words; empty when they are the same."""
    name = where or "the message"
    checks: list[tuple[str, object, object]] = [
        ("unix-from", quick.get_unixfrom(), full.get_unixfrom()),
        ("header fields", list(quick.raw_items()), list(full.raw_items())),
        (
            "defects",
            [(type(d), d.args) for d in quick.defects],
            [(type(d), d.args) for d in full.defects],
        ),
        ("preamble", quick.preamble, full.preamble),
        ("epilogue", quick.epilogue, full.epilogue),
        ("default type", quick.get_default_type(), full.get_default_type()),
        ("is multipart", quick.is_multipart(), full.is_multipart()),
    ]
    for what, mine, theirs in checks:
        if mine != theirs:
            return f"{what} of {name}: {mine!r} != {theirs!r}"
    if not quick.is_multipart():
        # _payload: get_payload() would decode a payload with 8-bit octets.
        mine, theirs = quick._payload, full._payload  # type: ignore[attr-defined]
        return "" if mine == theirs else f"payload of {name}: {mine!r} != {theirs!r}"
    mine_parts, their_parts = quick.get_payload(), full.get_payload()
    assert isinstance(mine_parts, list) and isinstance(their_parts, list)
    if len(mine_parts) != len(their_parts):
        return f"part count of {name}: {len(mine_parts)} != {len(their_parts)}"
    for number, (a, b) in enumerate(zip(mine_parts, their_parts, strict=True), 1):
        found = difference(a, b, f"{where}.{number}" if where else str(number))
        if found:
            return found
    return ""


def check_same(raw: bytes) -> bool:
    """Assert the quick parse is the full parse where it answers, and that each leaf's span
    holds the octets its decode starts from; whether it answered."""
    spans: dict[int, tuple[int, int]] = {}
    quick = quick_message(raw, spans=spans)
    if quick is None:
        return False
    found = difference(quick, full_parse(raw))
    assert not found, found
    for part in quick.walk():
        if part.is_multipart():
            continue
        start, end = spans[id(part)]
        data = raw[start:end]
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte == "quoted-printable":
            data = binascii.a2b_qp(data)
        if cte not in ("base64", "x-uuencode", "uuencode", "uue", "x-uue"):
            assert data == part.get_payload(decode=True)
    return True


def no_quick_parse(raw: bytes, **_: object) -> None:
    return None


def views(raw: bytes) -> dict[str, object]:
    parsed = ParsedMessage(raw)
    return {name: getattr(parsed, name) for name in VIEWS}


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")


# --- real messages --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUITE_MESSAGES, ids=lambda p: str(p.relative_to(MESSAGES)))
def test_the_quick_parse_of_every_suite_message_is_the_full_parse(path: Path) -> None:
    raw = path.read_bytes()
    check_same(raw)
    check_same(as_sent(raw))


def test_the_quick_parse_reads_most_suite_messages_as_sent() -> None:
    # Not a speed claim: a guard that the quick parse is not silently declining everything.
    answered = sum(check_same(as_sent(p.read_bytes())) for p in SUITE_MESSAGES)
    assert answered >= len(SUITE_MESSAGES) // 2


def test_the_quick_parse_of_every_public_corpus_message_is_the_full_parse() -> None:
    files = [p for kind in ("ham", "spam") for p in corpus_files()[kind]]
    if not files:
        pytest.skip("the SpamAssassin public corpus is not installed (.ci/run installs it)")
    answered = 0
    for path in files:
        raw = path.read_bytes()
        check_same(raw)
        answered += check_same(as_sent(raw))
    assert answered > len(files) // 2


def test_the_mime_tree_of_every_public_corpus_message_is_the_same_on_quick_header_blocks() -> None:
    files = [p for kind in ("ham", "spam") for p in corpus_files()[kind]]
    if not files:
        pytest.skip("the SpamAssassin public corpus is not installed (.ci/run installs it)")
    for path in files:
        raw = as_sent(path.read_bytes())
        heads: dict[int, tuple[int, email.message.Message]] = {}
        if quick_message(raw, heads=heads) is not None:
            assert build_tree(raw, headers=heads) == build_tree(raw), path


@pytest.mark.parametrize("path", SUITE_MESSAGES, ids=lambda p: str(p.relative_to(MESSAGES)))
def test_every_view_of_a_suite_message_is_the_same_without_the_quick_parse(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = as_sent(path.read_bytes())
    quick = views(raw)
    monkeypatch.setattr(message_module, "quick_message", no_quick_parse)
    assert views(raw) == quick


# --- edge cases -----------------------------------------------------------------------------

SIMPLE = "From: a@example.com\nSubject: hi\n\nbody\n"


def multipart(boundary: str = "b", *, preamble: str = "", epilogue: str = "") -> str:
    return (
        f'From: a@example.com\nContent-Type: multipart/mixed; boundary="{boundary}"\n\n'
        f"{preamble}--{boundary}\nContent-Type: text/plain\n\none\n"
        f"--{boundary}\nContent-Type: text/html\n\n<p>two</p>\n--{boundary}--\n{epilogue}"
    )


NESTED = (
    'Content-Type: multipart/mixed; boundary="out"\n\n--out\n'
    'Content-Type: multipart/alternative; boundary="in"\n\npre\n--in\n\nplain\n--in\n'
    "Content-Type: text/html\n\n<b>x</b>\n--in--\nafter inner\n\n--out\n"
    "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC\n"
    "--out--\n"
)

# Each case: (raw message, whether the quick parse answers it).
EDGE_CASES: dict[str, tuple[bytes, bool]] = {
    "simple CRLF": (crlf(SIMPLE), True),
    "simple bare LF": (SIMPLE.encode(), True),
    "mixed CRLF and bare LF": (b"Subject: a\r\nX: b\n\r\nline\nline\r\n", True),
    "bare CR": (b"Subject: a\r\n\r\nline\rline\r\n", False),
    "NUL bytes": (crlf("Subject: a\0b\n\nbo\0dy\n"), True),
    "encoded words": (crlf("Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?b?w6k=?=\n\nx\n"), True),
    "8-bit header": ("Subject: café\r\nFrom: Zoë <z@example.com>\r\n\r\nx\r\n".encode(), True),
    "latin-1 header": ("Subject: café\r\n\r\nx\r\n".encode("latin-1"), True),
    "duplicate headers": (crlf("Subject: a\nSubject: b\nFrom: x@y\nFrom: z@w\n\nx\n"), True),
    "folded header": (crlf("Subject: a\n  b\n\tc\nX-Empty:\n \nX: \n\nx\n"), True),
    "space before colon (obsolete)": (crlf("Subject : a\nFrom: x@y\n\nx\n"), False),
    "empty field name": (crlf(": a\nFrom: x@y\n\nx\n"), False),
    "first line a continuation": (crlf(" a\nFrom: x@y\n\nx\n"), False),
    "unix-from line": (crlf("From x@y Mon Jan  1 00:00:00 2024\nSubject: a\n\nx\n"), False),
    "From line last in header": (crlf("Subject: a\nFrom x@y\n\nx\n"), False),
    "no blank line": (crlf("Subject: a\nbody line\n"), False),
    "header without body": (crlf("Subject: a\n"), True),
    "header without body or line end": (b"Subject: a", False),
    "empty message": (b"", True),
    "only a blank line": (b"\r\n", True),
    "multipart": (crlf(multipart()), True),
    "multipart bare LF": (multipart().encode(), True),
    "preamble and epilogue": (crlf(multipart(preamble="pre\n\n", epilogue="epi\n")), True),
    "blank preamble": (crlf(multipart(preamble="\n")), True),
    "close boundary at the end without a line break": (crlf(multipart()).rstrip(b"\r\n"), True),
    "boundary padding": (crlf(multipart().replace("--b\n", "--b \t\n")), True),
    "boundary look-alike": (crlf(multipart().replace("one\n", "one\n--bx\n-- b\n")), True),
    "nested multiparts": (crlf(NESTED), True),
    "nested multiparts bare LF": (NESTED.encode(), True),
    "no boundary parameter": (crlf("Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n"), False),
    "empty boundary": (
        crlf('Content-Type: multipart/mixed; boundary=""\n\n--\n\nx\n----\n'),
        False,
    ),
    "boundary never found": (crlf(multipart().replace("--b", "--c")), False),
    "boundary never closed": (crlf(multipart().replace("--b--\n", "")), False),
    "close boundary first": (
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b--\n--b\n\nx\n--b--\n'),
        False,
    ),
    "boundary lines in a row": (
        crlf(multipart().replace("--b\nContent-Type: text/h", "--b\n--b\nContent-Type: text/h")),
        False,
    ),
    "close boundary after a boundary line": (
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n--b\n--b--\n'),
        False,
    ),
    "inner boundary extends the outer": (
        crlf(NESTED.replace('"in"', '"out--"').replace("--in", "--out--")),
        False,
    ),
    "multipart with base64": (
        crlf(multipart().replace("\n\n--b\n", "\nContent-Transfer-Encoding: base64\n\n--b\n", 1)),
        False,
    ),
    "multipart CTE with a trailing space": (
        crlf(multipart().replace("\n\n--b\n", "\nContent-Transfer-Encoding: 7bit \n\n--b\n", 1)),
        False,
    ),
    "message/rfc822": (
        crlf("Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n"),
        False,
    ),
    "digest": (
        crlf('Content-Type: multipart/digest; boundary="d"\n\n--d\n\nSubject: x\n\ny\n--d--\n'),
        False,
    ),
    "part without header": (
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\nno header here\n--b--\n'),
        False,
    ),
    "part with only a header": (
        crlf(
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n--b--\n'
        ),
        True,
    ),
    "part with an empty body": (
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\n--b--\n'),
        True,
    ),
    "bad base64 leaf": (crlf("Content-Transfer-Encoding: base64\n\nQUJD=\n!!\n"), True),
    "rfc 2231 boundary": (
        crlf("Content-Type: multipart/mixed; boundary*=''b\n\n--b\n\nx\n--b--\n"),
        True,
    ),
    # compat32 reads an 8-bit parameter as replacement characters: the boundary is never found.
    "8-bit boundary": (
        'Content-Type: multipart/mixed; boundary="é"\n\n--é\n\nx\n--é--\n'.encode(),
        False,
    ),
    "form feed and vertical tab": (crlf("Subject: a\x0cb\x0b\n\n--b\x0cx\n"), True),
    "deep nesting": (
        crlf(
            "".join(
                f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(30)
            )
            + "\nx\n"
            + "".join(f"--b{i}--\n" for i in reversed(range(30)))
        ),
        False,
    ),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_the_quick_parse_of_an_edge_case_is_the_full_parse_or_none(name: str) -> None:
    raw, answers = EDGE_CASES[name]
    assert check_same(raw) is answers


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_every_view_of_an_edge_case_is_the_same_without_the_quick_parse(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, _ = EDGE_CASES[name]
    quick = views(raw)
    monkeypatch.setattr(message_module, "quick_message", no_quick_parse)
    assert views(raw) == quick


# --- seeded mutations -----------------------------------------------------------------------

LINES = [
    "--b",
    "--b--",
    "--out",
    "--in--",
    "--b ",
    "--b--x",
    "",
    " folded",
    "\t",
    "X: y",
    "Content-Type: multipart/mixed; boundary=b",
    "Content-Type: message/rfc822",
    "a\rb",
    "From x",
    ": v",
    "Content-Transfer-Encoding: base64",
    "QUJD",
    "=",
    "--",
]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    edits: list[Callable[[], None]] = [
        lambda: lines.pop(rng.randrange(len(lines))) if len(lines) > 1 else None,
        lambda: lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines)),
        lambda: lines.insert(rng.randrange(len(lines) + 1), rng.choice(LINES).encode()),
        lambda: lines.insert(rng.randrange(len(lines) + 1), lines.pop(rng.randrange(len(lines)))),
    ]
    for _ in range(rng.randint(1, 3)):
        rng.choice(edits)()
    eol = rng.choice([b"\n", b"\r\n"])
    out = eol.join(line.rstrip(b"\r") if eol == b"\n" else line for line in lines)
    return out if rng.random() < 0.5 else out.rstrip(b"\r\n")


def test_the_quick_parse_of_mutated_multiparts_is_the_full_parse_or_none() -> None:
    rng = random.Random(18)
    bases = [crlf(multipart(preamble="p\n", epilogue="e\n")), crlf(NESTED), NESTED.encode()]
    answered = 0
    for _ in range(3000):
        answered += check_same(mutate(rng, rng.choice(bases)))
    assert answered > 100


# --- octet counts ---------------------------------------------------------------------------


def reference_raw_issues(raw: bytes) -> RawIssues:
    """The definition: CRLF is one line break, any other CR or LF a bare one."""
    crlf = raw.count(b"\r\n")
    lengths = [len(line) for line in raw.replace(b"\r\n", b"\n").split(b"\n")]
    return RawIssues(
        bare_lf=raw.count(b"\n") - crlf,
        bare_cr=raw.count(b"\r") - crlf,
        nul_bytes=raw.count(b"\0"),
        long_lines=sum(1 for n in lengths if n > 998),
        max_line_length=max(lengths),
        smuggling=ParsedMessage(raw).raw_issues.smuggling,  # not what this test is about
    )


def test_the_octet_counts_follow_their_definition_on_any_mix_of_line_breaks() -> None:
    rng = random.Random(18)
    pieces = [b"a", b"\r\n", b"\n", b"\r", b"\0", b".", b"x" * 997, b"y" * 998, b"z" * 999]
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.5:  # mostly one kind of line break, as real mail
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n")
        assert ParsedMessage(raw).raw_issues == reference_raw_issues(raw), raw


# --- defects without body text ----------------------------------------------------------------

CHARSET_CASES = [
    ("", b"plain ascii"),
    ("us-ascii", "caf\u00e9".encode()),
    ("utf-8", b"ascii only"),
    ("UTF8", "caf\u00e9".encode()),
    ("utf-8", b"caf\xe9"),
    ("latin-1", b"caf\xe9"),
    ("windows-1252", b"ascii"),
    ("x-unknown", b"ascii"),
    ("hex", b"ascii"),
    ("utf-16", b"ascii"),
    ("utf-7", b"a+b"),
    ("shift_jis", b"ascii"),
    ('"utf-8"', b"\xff"),
]


@pytest.mark.parametrize(("charset", "data"), CHARSET_CASES)
def test_decoding_cleanly_is_decoding_without_a_problem(charset: str, data: bytes) -> None:
    assert decodes_cleanly(data, charset or None) is (decode_text(data, charset or None)[1] is None)


@pytest.mark.parametrize(("charset", "data"), CHARSET_CASES)
@pytest.mark.parametrize("cte", ["7bit", "8bit", "quoted-printable", "base64"])
def test_the_defects_are_the_same_whether_or_not_the_bodies_were_read_first(
    charset: str, data: bytes, cte: str
) -> None:
    if cte == "quoted-printable":
        body = binascii.b2a_qp(data)
    elif cte == "base64":
        body = binascii.b2a_base64(data)
    else:
        body = data
    param = f"; charset={charset}" if charset else ""
    raw = (
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        + f"Content-Type: text/plain{param}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
        + b"\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\xff</p>\r\n--b--\r\n"
    )
    first = ParsedMessage(raw).defects
    read = ParsedMessage(raw)
    _ = read.text_body, read.html_bodies
    assert read.defects == first


@pytest.mark.parametrize("path", SUITE_MESSAGES, ids=lambda p: str(p.relative_to(MESSAGES)))
def test_a_quick_parsed_message_serializes_copies_and_pickles_like_the_full_parse(
    path: Path,
) -> None:
    raw = as_sent(path.read_bytes())
    quick = quick_message(raw)
    if quick is None:
        return
    expected = full_parse(raw).as_bytes()
    assert quick.as_bytes() == expected
    assert pickle.loads(pickle.dumps(quick)).as_bytes() == expected
    assert copy.deepcopy(quick).as_bytes() == expected
