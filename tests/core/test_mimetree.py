"""sinkd.core.mimetree: MIME parts located by byte offsets, and parts spliced out or in."""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import random
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import sinkd.core.message
from sinkd.core.mimetree import MimeNode, MimeTree, build_tree, rebuild
from tests.support.paths import MESSAGES

CORPUS = sorted((MESSAGES / "cpython").glob("msg_*.txt")) + sorted(
    (MESSAGES / "hostile").glob("*.eml")
)
CORPUS_IDS = [p.name for p in CORPUS]
POLICIES = {"compat32": email.policy.compat32, "default": email.policy.default}


def crlf(text: str) -> bytes:
    """A message written as an indented literal, with CRLF line endings."""
    return textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def parse(raw: bytes, policy: str = "compat32") -> email.message.Message:
    return email.message_from_bytes(raw, policy=POLICIES[policy])


def email_leaves(msg: email.message.Message) -> list[email.message.Message]:
    return [part for part in msg.walk() if not part.is_multipart()]


def defects(raw: bytes, policy: str) -> Counter[str]:
    """Every defect the email package records, header defects of policy.default included."""
    found: Counter[str] = Counter()
    for part in parse(raw, policy).walk():
        found.update(type(d).__name__ for d in part.defects)
        for _, value in part.items():
            found.update(type(d).__name__ for d in getattr(value, "defects", ()))
        if not part.is_multipart():
            part.get_payload(decode=True)  # base64 defects are recorded while decoding
            found.update(type(d).__name__ for d in part.defects)
    return found


def assert_valid_rebuild(original: bytes, rebuilt: bytes) -> None:
    """The result parses under both policies with no defect that the original lacks."""
    for policy in POLICIES:
        assert not defects(rebuilt, policy) - defects(original, policy), policy


def untouched(tree: MimeTree, changed: str) -> list[MimeNode]:
    """Nodes neither ``changed``, nor inside it, nor containing it."""

    def related(path: str) -> bool:
        return (
            changed == ""
            or path == ""
            or path == changed
            or path.startswith(changed + ".")
            or changed.startswith(path + ".")
        )

    return [node for node in tree.root.walk() if not related(node.path)]


def comparable(raw: bytes) -> bool:
    """Well-formed, and the email package sees the same leaves as build_tree."""
    tree = build_tree(raw)
    msg = parse(raw)
    if tree.problems or defects(raw, "compat32"):
        return False
    theirs, ours = email_leaves(msg), tree.leaves()
    return len(theirs) == len(ours) and all(
        t.get_content_type() == o.content_type for t, o in zip(theirs, ours, strict=True)
    )


MIXED = crlf(
    """
    From: Alice <alice@example.com>
    To: bob@example.org
    Subject: Quarterly report
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="outer"

    This is a multi-part message in MIME format.
    --outer
    Content-Type: multipart/alternative; boundary="alt"

    --alt
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    Gr=C3=BC=C3=9Fe, see the attachment.
    --alt
    Content-Type: text/html; charset=utf-8
    Content-Transfer-Encoding: base64

    PGh0bWw+PGJvZHk+PHA+R3LDvMOfZTwvcD48c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+PC9ib2R5
    PjwvaHRtbD4=
    --alt--
    --outer
    Content-Type: application/octet-stream; name="invoice.exe"
    Content-Disposition: attachment; filename="invoice.exe"
    Content-Transfer-Encoding: base64

    TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
    --outer
    Content-Type: text/plain; charset=us-ascii
    Content-Disposition: inline

    Regards,
    Alice
    --outer--
    Epilogue text.
    """
)


# --- offsets against the email package ----------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=CORPUS_IDS)
def test_build_tree_never_raises_and_nests_every_part_inside_its_parent(path: Path) -> None:
    raw = path.read_bytes()
    tree = build_tree(raw)
    assert tree.root.start == 0 and tree.root.end == len(raw)
    for node in tree.root.walk():
        assert node.start <= node.body_start <= node.end
        assert tree.find(node.path) is node
        previous_end = node.body_start
        for child in node.children:
            assert previous_end <= child.start and child.end <= node.end
            previous_end = child.end


# Only messages whose structure the email package splits the same way can be compared; the
# test below keeps this from shrinking to nothing.
COMPARABLE = [p for p in CORPUS if comparable(p.read_bytes())]


@pytest.mark.parametrize("path", COMPARABLE, ids=[p.name for p in COMPARABLE])
def test_every_leaf_payload_is_what_the_email_package_decodes(path: Path) -> None:
    raw = path.read_bytes()
    theirs = email_leaves(parse(raw))
    ours = build_tree(raw).leaves()
    for their, our in zip(theirs, ours, strict=True):
        assert our.payload(raw) == their.get_payload(decode=True), our.path


def test_most_of_the_corpus_is_compared_with_the_email_package() -> None:
    # Guards the test above against skipping everything.
    assert sum(comparable(p.read_bytes()) for p in CORPUS) >= 30


def test_a_parsed_message_builds_its_tree_once() -> None:
    msg = sinkd.core.message.parse(MIXED)
    assert msg.tree is msg.tree
    assert msg.tree == build_tree(MIXED)


@pytest.mark.parametrize("path", CORPUS, ids=CORPUS_IDS)
def test_rebuild_without_changes_returns_the_message_byte_for_byte(path: Path) -> None:
    raw = path.read_bytes()
    assert rebuild(raw, build_tree(raw)) == raw


def test_the_parts_of_a_nested_multipart_have_imap_paths_and_exact_offsets() -> None:
    tree = build_tree(MIXED)
    assert [(n.path, n.content_type) for n in tree.root.walk()] == [
        ("", "multipart/mixed"),
        ("1", "multipart/alternative"),
        ("1.1", "text/plain"),
        ("1.2", "text/html"),
        ("2", "application/octet-stream"),
        ("3", "text/plain"),
    ]
    assert tree.problems == ()
    signature = tree.find("3")
    assert signature.headers(MIXED).startswith(b"Content-Type: text/plain; charset=us-ascii\r\n")
    assert signature.headers(MIXED).endswith(b"inline\r\n\r\n")
    assert signature.body(MIXED) == b"Regards,\r\nAlice"  # the CRLF before "--outer--" is not
    assert tree.find("1.1").text(MIXED) == "Grüße, see the attachment."
    assert "<script>" in tree.find("1.2").text(MIXED)


def test_part_attributes_come_from_the_headers() -> None:
    tree = build_tree(MIXED)
    exe = tree.find("2")
    assert exe.disposition == "attachment"
    assert exe.filename == "invoice.exe"
    assert exe.params == {"name": "invoice.exe"}
    assert exe.transfer_encoding == "base64"
    assert exe.payload(MIXED).startswith(b"MZ")
    assert tree.find("1").params == {"boundary": "alt"}
    assert tree.find("1.1").disposition is None
    assert tree.find("1.1").transfer_encoding == "quoted-printable"
    assert tree.find("3").transfer_encoding == "7bit"
    assert tree.root.is_multipart and not exe.is_multipart


def test_leaves_are_the_parts_without_children_in_message_order() -> None:
    assert [n.path for n in build_tree(MIXED).leaves()] == ["1.1", "1.2", "2", "3"]


def test_find_raises_key_error_for_a_path_that_is_not_there() -> None:
    tree = build_tree(MIXED)
    for path in ("4", "1.3", "2.1", "0", "01", "1.", "x"):
        with pytest.raises(KeyError):
            tree.find(path)


def test_an_rfc2231_filename_is_decoded() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: application/pdf
        Content-Disposition: attachment;
         filename*0*=utf-8''Rechnung%20M%C3%A4rz;
         filename*1*=.pdf

        %PDF
        --b--
        """
    )
    assert build_tree(raw).find("1").filename == "Rechnung März.pdf"


def test_an_encoded_word_filename_and_a_content_type_name_are_decoded() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: application/octet-stream; name="=?utf-8?B?ZXZpbC5leGU=?="

        MZ
        --b--
        """
    )
    node = build_tree(raw).find("1")
    assert node.filename == "evil.exe"
    assert node.disposition is None


def test_an_unknown_disposition_type_is_an_attachment() -> None:
    # RFC 2183 §2.8
    raw = crlf("Content-Disposition: x-weird; filename=a.bin\n\ndata\n")
    assert build_tree(raw).root.disposition == "attachment"


def test_parts_of_a_digest_default_to_message_rfc822() -> None:
    raw = crlf(
        """
        Content-Type: multipart/digest; boundary=d

        --d

        Subject: first
        Content-Type: text/html

        <p>hi</p>
        --d
        Content-Type: text/plain

        explicitly typed
        --d--
        """
    )
    tree = build_tree(raw)
    assert [(n.path, n.content_type) for n in tree.root.walk()] == [
        ("", "multipart/digest"),
        ("1", "message/rfc822"),
        ("1.1", "text/html"),
        ("2", "text/plain"),
    ]
    assert tree.find("1.1").payload(raw) == b"<p>hi</p>"


def test_a_base64_body_with_garbage_is_decoded_as_far_as_possible() -> None:
    raw = crlf("Content-Transfer-Encoding: base64\n\naGVs*bG8g!d29y\nbGQ\n")
    assert build_tree(raw).root.payload(raw) == b"hello world"
    raw = crlf("Content-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQh Z\n")  # one sextet too many
    assert build_tree(raw).root.payload(raw) == b"hello world!"


def test_a_body_in_a_charset_is_read_in_that_charset() -> None:
    raw = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe\r\n"
    assert build_tree(raw).root.text(raw) == "Grüße\r\n"
    raw = b"Content-Type: text/plain; charset=x-nonsense\r\n\r\nGr\xc3\xbc\xc3\x9fe"
    assert build_tree(raw).root.text(raw) == "Grüße"  # the UTF-8 fallback, no exception


# --- boundaries ---------------------------------------------------------------------------------


def test_a_nested_boundary_that_is_a_prefix_of_the_outer_one_is_told_apart() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary="abcd"

        --abcd
        Content-Type: multipart/alternative; boundary="abc"

        --abc
        Content-Type: text/plain

        inner one
        --abc
        Content-Type: text/plain

        inner two
        --abc--
        --abcd
        Content-Type: text/plain

        outer two
        --abcd--
        """
    )
    tree = build_tree(raw)
    assert tree.problems == ()
    assert [(n.path, n.payload(raw)) for n in tree.leaves()] == [
        ("1.1", b"inner one"),
        ("1.2", b"inner two"),
        ("2", b"outer two"),
    ]


def test_an_outer_boundary_that_is_a_prefix_of_the_nested_one_is_told_apart() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary="abc"

        --abc
        Content-Type: multipart/alternative; boundary="abc-inner"

        --abc-inner
        Content-Type: text/plain

        inner one
        --abc-inner--
        --abc
        Content-Type: text/plain

        outer two
        --abc--
        """
    )
    tree = build_tree(raw)
    assert tree.problems == ()
    assert [(n.path, n.payload(raw)) for n in tree.leaves()] == [
        ("1.1", b"inner one"),
        ("2", b"outer two"),
    ]
    assert [p.get_payload() for p in email_leaves(parse(raw))] == ["inner one", "outer two"]


def test_a_boundary_line_may_end_in_transport_padding_but_nothing_else() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b \t
        Content-Type: text/plain

        one
        --bx
        still one
        --b
        two
        --b--\t
        """
    )
    tree = build_tree(raw)
    assert tree.problems == ()
    assert [n.payload(raw) for n in tree.leaves()] == [b"one\r\n--bx\r\nstill one", b"two"]


def test_preamble_and_epilogue_belong_to_no_part() -> None:
    tree = build_tree(MIXED)
    for leaf in tree.leaves():
        assert b"multi-part message" not in leaf.body(MIXED)
        assert b"Epilogue" not in leaf.body(MIXED)
    assert tree.find("3").end < MIXED.index(b"--outer--")


def test_a_missing_close_delimiter_lets_the_last_part_run_to_the_end() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        one
        --b
        Content-Type: text/plain

        two, never closed
        """
    )
    tree = build_tree(raw)
    assert tree.problems == ("boundary of the message never closed",)
    assert tree.unread == ()  # every part was read all the same
    last = tree.find("2")
    assert last.end == len(raw)
    assert last.payload(raw) == b"two, never closed\r\n"


def test_an_unclosed_nested_multipart_ends_at_the_next_outer_boundary() -> None:
    raw = (MESSAGES / "hostile" / "nested-multipart-no-end.eml").read_bytes()
    tree = build_tree(raw)
    assert "boundary of part 1 never closed" in tree.problems
    html = tree.find("1.2")
    assert html.content_type == "text/html"
    assert html.end == len(raw)


def test_a_boundary_that_never_occurs_leaves_the_multipart_as_one_opaque_leaf() -> None:
    raw = (MESSAGES / "hostile" / "broken-boundary.eml").read_bytes()
    tree = build_tree(raw)
    assert tree.root.children == ()
    assert not tree.root.is_multipart
    assert tree.leaves() == [tree.root]
    assert any("never found" in p for p in tree.problems)
    assert tree.unread == tree.problems  # its parts were never read


def test_a_multipart_without_a_boundary_parameter_is_one_opaque_leaf() -> None:
    raw = crlf("Content-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n")
    tree = build_tree(raw)
    assert tree.leaves() == [tree.root]
    assert tree.problems == (
        "the message is multipart without a boundary parameter; body not split",
    )


def test_a_multipart_with_a_transfer_encoding_is_still_split_and_read() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: quoted-printable\n"
        "\n--b\n\none\n--b--\n"
    )
    tree = build_tree(raw)
    assert [n.payload(raw) for n in tree.leaves()] == [b"one"]
    assert tree.problems == (
        "the message is multipart with a quoted-printable transfer encoding "
        "(RFC 2045 §6.4 allows only 7bit, 8bit or binary)",
    )
    assert tree.unread == ()


def test_boundary_lines_that_follow_one_another_delimit_no_part() -> None:
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\none\n--b\n\ntwo\n--b--\n")
    tree = build_tree(raw)
    assert [n.payload(raw) for n in tree.leaves()] == [b"one", b"two"]
    assert len(email_leaves(parse(raw))) == 2


def test_a_bare_lf_message_is_split_the_same_way() -> None:
    raw = MIXED.replace(b"\r\n", b"\n")
    tree = build_tree(raw)
    assert tree.problems == ()
    assert [n.path for n in tree.leaves()] == ["1.1", "1.2", "2", "3"]
    assert tree.find("3").body(raw) == b"Regards,\nAlice"
    theirs = email_leaves(parse(raw))
    assert [n.payload(raw) for n in tree.leaves()] == [p.get_payload(decode=True) for p in theirs]


def test_a_boundary_after_a_bare_cr_counts_as_the_email_package_reads_it() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r--b\r\n\r\ntwo\r\n--b--"
    )
    tree = build_tree(raw)
    assert [n.payload(raw) for n in tree.leaves()] == [b"one", b"two"]
    assert [p.get_payload() for p in email_leaves(parse(raw))] == ["one", "two"]


def test_a_bare_cr_ends_header_lines_as_the_email_package_reads_them() -> None:
    raw = b"Subject: x\rContent-Type: text/html\r\rbody\r\n"
    root = build_tree(raw).root
    assert root.content_type == "text/html"
    assert root.body(raw) == b"body\r\n" == parse(raw).get_payload().encode()


# --- limits -------------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    head = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    tail = "".join(f"\r\n--b{i}--" for i in reversed(range(depth)))
    body = f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeepest\r\n--b{depth}--"
    return f"Content-Type: multipart/mixed; boundary=b0\r\n\r\n{head}{body}{tail}\r\n".encode()


def test_two_thousand_nested_multiparts_stop_at_the_depth_limit_without_crashing() -> None:
    raw = nested(2000)
    tree = build_tree(raw)
    assert tree.problems == ("multipart nested deeper than 20 levels; deeper parts not inspected",)
    deepest = max(tree.root.walk(), key=lambda n: n.path.count("."))
    assert deepest.path == ".".join(["1"] * 20)
    assert deepest.content_type == "multipart/mixed" and deepest.children == ()
    assert rebuild(raw, tree) == raw


def test_nesting_within_the_depth_limit_is_inspected_fully() -> None:
    raw = nested(5)
    tree = build_tree(raw)
    assert tree.problems == ()
    assert [n.payload(raw) for n in tree.leaves()] == [b"deepest"]


def many_parts(count: int) -> bytes:
    parts = "".join(f"--b\r\n\r\npart {i}\r\n" for i in range(count))
    return f"Content-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n".encode()


def test_two_thousand_parts_stop_at_the_part_limit() -> None:
    raw = many_parts(2000)
    tree = build_tree(raw, max_parts=1000)
    assert tree.problems == ("too many parts (over 1000); the rest not inspected",)
    assert sum(1 for _ in tree.root.walk()) == 1000
    assert tree.find("999").payload(raw) == b"part 998"
    assert rebuild(raw, tree) == raw


def test_problems_are_listed_up_to_twenty_with_the_limits_first() -> None:
    part = "--b\r\nContent-Type: multipart/mixed; boundary=never\r\n\r\nx\r\n"
    raw = f"Content-Type: multipart/mixed; boundary=b\r\n\r\n{part * 1500}--b--\r\n".encode()
    problems = build_tree(raw, max_parts=1000).problems
    assert problems[0] == "too many parts (over 1000); the rest not inspected"
    assert problems[1] == "boundary of part 1 never found; body not split"
    assert problems[-1] == "979 more problems of the MIME structure not listed"
    assert len(problems) == 22


def test_five_thousand_parts_are_mapped_in_linear_time() -> None:
    raw = many_parts(5000)
    started = time.perf_counter()
    tree = build_tree(raw, max_parts=10_000)
    elapsed = time.perf_counter() - started
    assert len(tree.leaves()) == 5000
    assert tree.find("5000").payload(raw) == b"part 4999"
    assert elapsed < 5


def test_a_boundary_look_alike_on_every_line_does_not_slow_the_scan() -> None:
    body = b"x--b--b--b\r\n" * 200_000
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + body + b"--b--\r\n"
    started = time.perf_counter()
    tree = build_tree(raw)
    assert time.perf_counter() - started < 5
    assert len(tree.leaves()) == 1


# --- message/rfc822 ----------------------------------------------------------------------------

FORWARD = crlf(
    """
    From: carol@example.com
    To: dave@example.org
    Subject: Fwd: invoice
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="fwd"

    --fwd
    Content-Type: text/plain

    See below.
    --fwd
    Content-Type: message/rfc822

    From: alice@example.com
    Subject: invoice
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="orig"

    --orig
    Content-Type: text/plain

    Please pay.
    --orig
    Content-Type: application/x-msdownload; name="pay.exe"
    Content-Disposition: attachment; filename="pay.exe"
    Content-Transfer-Encoding: base64

    TVqQAAMAAAAEAAAA
    --orig--
    --fwd
    Content-Type: message/rfc822

    From: bob@example.com
    Subject: single

    just text
    --fwd--
    """
)


def test_the_parts_inside_a_forwarded_message_are_children_of_the_message_rfc822_part() -> None:
    tree = build_tree(FORWARD)
    assert tree.problems == ()
    assert [(n.path, n.content_type) for n in tree.root.walk()] == [
        ("", "multipart/mixed"),
        ("1", "text/plain"),
        ("2", "message/rfc822"),
        ("2.1", "text/plain"),
        ("2.2", "application/x-msdownload"),
        ("3", "message/rfc822"),
        ("3.1", "text/plain"),
    ]
    assert tree.find("2.2").filename == "pay.exe"
    single = tree.find("3.1")  # a single-part message is the one child, headers and all
    assert single.start == tree.find("3").body_start
    assert single.headers(FORWARD).startswith(b"From: bob@example.com\r\n")
    assert single.payload(FORWARD) == b"just text"


def test_removing_an_attachment_inside_a_forwarded_message_keeps_the_rest() -> None:
    tree = build_tree(FORWARD)
    out = rebuild(FORWARD, tree, remove={"2.2": "pay.exe was removed."})
    assert_valid_rebuild(FORWARD, out)
    forwarded = parse(out).get_payload()[1].get_payload()[0]
    assert forwarded["Subject"] == "invoice"
    notice = forwarded.get_payload()[1]
    assert notice.get_content_type() == "text/plain"
    assert notice.get_payload(decode=True) == b"pay.exe was removed."
    assert b"TVqQ" not in out
    for node in untouched(tree, "2.2"):
        assert node.headers(FORWARD) + node.body(FORWARD) in out


def test_removing_a_single_part_forwarded_message_body_keeps_its_headers() -> None:
    tree = build_tree(FORWARD)
    out = rebuild(FORWARD, tree, remove={"3.1": "removed"})
    assert_valid_rebuild(FORWARD, out)
    inner = parse(out).get_payload()[2].get_payload()[0]
    assert inner["From"] == "bob@example.com" and inner["Subject"] == "single"
    assert inner.get_payload(decode=True) == b"removed"


def test_an_encoded_message_rfc822_part_is_a_leaf_with_a_problem() -> None:
    inner = base64.b64encode(b"Subject: hidden\r\n\r\nbody\r\n").decode()
    raw = crlf(
        f"""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: message/rfc822
        Content-Transfer-Encoding: base64

        {inner}
        --b--
        """
    )
    tree = build_tree(raw)
    assert tree.find("1").children == ()
    assert len(tree.problems) == 1 and "RFC 2046 §5.2.1" in tree.problems[0]


# --- removing parts -----------------------------------------------------------------------------


def test_removing_an_attachment_leaves_a_notice_and_every_other_byte() -> None:
    tree = build_tree(MIXED)
    notice = "The attachment invoice.exe was removed by policy."
    out = rebuild(MIXED, tree, remove={"2": notice})
    assert_valid_rebuild(MIXED, out)
    msg = parse(out, "default")
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "multipart/alternative",
        "text/plain",
        "text/plain",
    ]
    assert parts[1].get_content() == notice
    assert parts[1].get_content_disposition() == "inline"
    assert parts[1].get_content_charset() == "utf-8"
    assert b"TVqQ" not in out
    for node in untouched(tree, "2"):
        assert MIXED[node.start : node.end] in out
    header_end = tree.root.body_start
    assert out[:header_end] == MIXED[:header_end]
    assert out.endswith(MIXED[tree.find("2").end :])


def test_a_non_ascii_notice_is_quoted_printable() -> None:
    out = rebuild(MIXED, build_tree(MIXED), remove={"2": "Anhang entfernt – Grüße"})
    assert_valid_rebuild(MIXED, out)
    notice = parse(out, "default").get_payload()[1]
    assert notice["Content-Transfer-Encoding"] == "quoted-printable"
    assert notice.get_content() == "Anhang entfernt – Grüße"
    assert out.isascii()


def test_a_multi_line_notice_uses_the_message_line_ending() -> None:
    out = rebuild(MIXED, build_tree(MIXED), remove={"2": "line one\nline two"})
    assert b"line one\r\nline two" in out
    raw = MIXED.replace(b"\r\n", b"\n")
    out = rebuild(raw, build_tree(raw), remove={"2": "line one\r\nline two"})
    assert b"\r" not in out
    assert b"Content-Transfer-Encoding: 8bit\n\nline one\nline two\n--outer" in out


def _well_formed_multipart(path: Path) -> bool:
    tree = build_tree(path.read_bytes())
    return not tree.problems and any(n.path for n in tree.root.walk())


WELL_FORMED_MULTIPART = [p for p in CORPUS if _well_formed_multipart(p)]


def test_most_of_the_corpus_is_well_formed_multipart() -> None:
    assert len(WELL_FORMED_MULTIPART) >= 20


@pytest.mark.parametrize("path", WELL_FORMED_MULTIPART, ids=[p.name for p in WELL_FORMED_MULTIPART])
def test_removing_any_one_part_of_a_corpus_message_keeps_it_valid(path: Path) -> None:
    raw = path.read_bytes()
    tree = build_tree(raw)
    nodes = [n for n in tree.root.walk() if n.path]
    for node in nodes:
        out = rebuild(raw, tree, remove={node.path: f"part {node.path} removed"})
        assert_valid_rebuild(raw, out)
        assert f"part {node.path} removed".encode() in out
        for other in untouched(tree, node.path):
            assert raw[other.start : other.end] in out, (node.path, other.path)


def test_removing_the_root_of_a_single_part_image_keeps_the_other_header_fields() -> None:
    raw = crlf(
        """
        Received: from mx.example.com by sinkd.test; Tue, 1 Apr 2025 10:00:00 +0000
        From: Alice <alice@example.com>
        To: bob@example.org
        Subject: holiday photo
        Content-Type: image/jpeg;
         name="beach.jpg"
        Content-Transfer-Encoding: base64
        Content-Disposition: attachment; filename="beach.jpg"
        Message-ID: <1@example.com>

        /9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkI
        """
    )
    out = rebuild(raw, build_tree(raw), remove={"": "beach.jpg was removed."})
    assert_valid_rebuild(raw, out)
    msg = parse(out, "default")
    assert msg["From"] == "Alice <alice@example.com>"
    assert msg["To"] == "bob@example.org"
    assert msg["Subject"] == "holiday photo"
    assert msg["Message-ID"] == "<1@example.com>"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert parse(out).get_all("Content-Type") == ["text/plain; charset=utf-8"]
    assert msg.get_content() == "beach.jpg was removed.\r\n"
    assert b'beach.jpg"' not in out and b"/9j/" not in out
    assert out.startswith(raw[: raw.index(b"Content-Type")])
    assert b"Message-ID: <1@example.com>\r\n" in out


def test_a_removal_inside_a_removed_part_is_covered_by_the_outer_one() -> None:
    tree = build_tree(MIXED)
    both = rebuild(MIXED, tree, remove={"1": "alternative removed", "1.2": "html removed"})
    assert both == rebuild(MIXED, tree, remove={"1": "alternative removed"})
    assert b"html removed" not in both
    everything = rebuild(MIXED, tree, remove={"": "all gone", "2": "x"}, replace_body={"3": b"y"})
    assert parse(everything, "default").get_content() == "all gone\r\n"


def test_an_unknown_path_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        rebuild(MIXED, build_tree(MIXED), remove={"9": "gone"})


# --- replacing bodies ---------------------------------------------------------------------------


def replaced(raw: bytes, path: str, data: bytes) -> tuple[bytes, email.message.Message]:
    """Replace a body; check the result and return it with the email package's part."""
    tree = build_tree(raw)
    out = rebuild(raw, tree, replace_body={path: data})
    assert_valid_rebuild(raw, out)
    new_tree = build_tree(out)
    assert [n.path for n in new_tree.root.walk()] == [n.path for n in tree.root.walk()]
    for node in untouched(tree, path):
        assert raw[node.start : node.end] in out
    part = email_leaves(parse(out))[[n.path for n in tree.leaves()].index(path)]
    assert part.get_payload(decode=True) == data
    assert new_tree.find(path).payload(out) == data
    return out, part


def test_a_base64_html_body_is_replaced_and_stays_base64() -> None:
    html = "<html><body><p>Grüße</p>" + "<p>filler text</p>" * 20 + "</body></html>"
    out, part = replaced(MIXED, "1.2", html.encode())
    assert part["Content-Transfer-Encoding"] == "base64"
    lines = build_tree(out).find("1.2").body(out).split(b"\r\n")
    assert max(map(len, lines)) == 76
    assert b"<script>" not in base64.b64decode(b"".join(lines))


def test_a_base64_body_that_ended_with_a_line_break_still_does() -> None:
    raw = crlf("Content-Type: text/html\nContent-Transfer-Encoding: base64\n\nPHA+PC9wPg==\n")
    out, _ = replaced(raw, "", b"<p>" + b"x" * 100 + b"</p>")
    assert out.endswith(b"\r\n") and not out.endswith(b"\r\n\r\n")


def test_a_quoted_printable_body_is_replaced_and_stays_quoted_printable() -> None:
    text = "Grüße = greetings \t\r\n" + "long line " * 30 + "\r\ntrailing space "
    out, part = replaced(MIXED, "1.1", text.encode())
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    body = build_tree(out).find("1.1").body(out)
    assert out.count(b"Content-Transfer-Encoding") == MIXED.count(b"Content-Transfer-Encoding")
    assert all(len(line) <= 76 and not line.endswith((b" ", b"\t")) for line in body.split(b"\r\n"))


def test_an_8bit_body_with_a_line_over_998_octets_switches_to_quoted_printable() -> None:
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain; charset=utf-8
        Content-Transfer-Encoding: 8bit
        X-Keep: me

        Grüße
        --b--
        """
    )
    data = ("Grüße " + "x" * 1200 + "\r\nshort").encode()
    out, part = replaced(raw, "1", data)
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # Only the Content-Transfer-Encoding line of the header changed.
    header = build_tree(out).find("1").headers(out)
    assert header == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"X-Keep: me\r\n\r\n"
    )


def test_a_short_8bit_body_is_kept_as_is() -> None:
    raw = crlf("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nx\n")
    data = "Grüße\r\nbis bald\r\n".encode()
    out, _ = replaced(raw, "", data)
    assert out == raw[: raw.index(b"\r\n\r\n") + 4] + data


def test_a_7bit_ascii_body_is_kept_as_is() -> None:
    data = b"Regards,\r\nthe new Alice"
    out, part = replaced(MIXED, "3", data)
    assert part.get("Content-Transfer-Encoding") is None
    assert build_tree(out).find("3").body(out) == data
    assert len(out) == len(MIXED) - len(b"Regards,\r\nAlice") + len(data)


def test_a_7bit_body_that_is_not_ascii_gets_a_transfer_encoding_header() -> None:
    out, part = replaced(MIXED, "3", "Grüße".encode())
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    header = build_tree(out).find("3").headers(out)
    assert header.endswith(
        b"Content-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    )


def test_bare_cr_lf_and_nul_in_a_7bit_body_are_carried_by_quoted_printable() -> None:
    _, part = replaced(MIXED, "3", b"a\rb\nc\x00d\r\n")
    assert part["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize("eol", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_quoted_printable_carries_any_octets_exactly(eol: str) -> None:
    raw = MIXED.replace(b"\r\n", eol.encode())
    rng = random.Random(2045)
    alphabet = b"ab =\t\r\n.\x00\xff\xc3"
    for _ in range(200):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        out = rebuild(raw, build_tree(raw), replace_body={"1.1": data})
        assert email_leaves(parse(out))[0].get_payload(decode=True) == data
        assert all(len(line) <= 76 for line in build_tree(out).find("1.1").body(out).splitlines())


def test_a_new_body_never_has_a_line_that_looks_like_a_boundary() -> None:
    data = b"--outer\r\n" + b"x" * 74 + b"--outer--\r\n--alt"
    for path in ("1.1", "3"):  # quoted-printable, and 7bit which has to switch
        out, part = replaced(MIXED, path, data)
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        body = build_tree(out).find(path).body(out)
        assert not any(line.startswith(b"-") for line in body.split(b"\r\n"))


def test_a_7bit_body_with_dashes_that_are_no_enclosing_boundary_is_kept_as_is() -> None:
    data = b"Regards,\r\n-- \r\nAlice\r\n--alt is the boundary of a sibling"
    out, part = replaced(MIXED, "3", data)
    assert part.get("Content-Transfer-Encoding") is None
    assert build_tree(out).find("3").body(out) == data
    # RFC 2046 §5.1.1: not even as the start of a longer line.
    _, part = replaced(MIXED, "3", b"--outer-and-more")
    assert part["Content-Transfer-Encoding"] == "quoted-printable"


def test_a_part_after_a_last_boundary_line_without_line_break_can_be_replaced() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b"
    tree = build_tree(raw)
    assert tree.find("2").start == len(raw)
    out, _ = replaced(raw, "2", "Grüße".encode())
    assert out.startswith(raw + b"\r\n")
    removed = rebuild(raw, tree, remove={"2": "gone"})
    assert_valid_rebuild(raw, removed)
    assert build_tree(removed).find("2").text(removed) == "gone\r\n"


def test_an_encapsulated_message_after_a_part_header_without_blank_line_can_be_removed() -> None:
    # Part 1's header ends at the first line that is no header field, with no blank line: the
    # notice's own header must not be read as part 1's.
    raw = crlf(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: message/rfc822
        Subject no colon here
        --b--
        """
    )
    tree = build_tree(raw)
    inner = tree.find("1.1")
    assert inner.start == tree.find("1").body_start
    out = rebuild(raw, tree, remove={"1.1": "gone"})
    assert_valid_rebuild(raw, out)
    assert [(n.path, n.content_type) for n in build_tree(out).root.walk()] == [
        ("", "multipart/mixed"),
        ("1", "message/rfc822"),
        ("1.1", "text/plain"),
    ]
    new = build_tree(out)
    assert new.find("1.1").text(out) == "gone"
    assert new.find("1").headers(out) == b"Content-Type: message/rfc822\r\n\r\n"
    assert new.find("1.1").headers(out).startswith(b"Content-Type: text/plain")


def test_replacing_the_body_of_a_part_with_children_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="has parts"):
        rebuild(MIXED, build_tree(MIXED), replace_body={"1": b"x"})


def test_a_body_replaced_in_a_bare_lf_message_uses_lf() -> None:
    raw = MIXED.replace(b"\r\n", b"\n")
    out, _ = replaced(raw, "1.2", b"<p>" + b"x" * 200 + b"</p>")
    assert b"\r" not in out


def test_removal_and_replacement_together_change_only_their_parts() -> None:
    tree = build_tree(MIXED)
    out = rebuild(MIXED, tree, remove={"2": "removed"}, replace_body={"1.2": b"<p>clean</p>"})
    assert_valid_rebuild(MIXED, out)
    leaves = email_leaves(parse(out))
    assert [p.get_payload(decode=True) for p in leaves] == [
        "Grüße, see the attachment.".encode(),
        b"<p>clean</p>",
        b"removed",
        b"Regards,\r\nAlice",
    ]
    assert MIXED[tree.find("1.1").start : tree.find("1.1").end] in out
    assert MIXED[tree.find("3").start : tree.find("3").end] in out


# --- Content-Type parameters read once --------------------------------------------------------

PARAM_HEADERS = [
    'Content-Type: text/plain; name="a.txt"',
    'Content-Type: text/plain; name="a.txt"\nContent-Disposition: attachment; filename="b.txt"',
    "Content-Type: application/x; name*=utf-8''%C3%A9t%C3%A9.txt",
    'Content-Type: application/x; NAME="upper.txt"',
    'Content-Type: application/x; name="first.txt"; name="second.txt"',
    "Content-Type: application/x; name",
    'Content-Type: application/x; name=" spaced.txt "',
    'Content-Type: application/x; name*0="con"; name*1="tinued.txt"',
    'Content-Disposition: attachment; filename=""\nContent-Type: text/plain; name="n.txt"',
    "Content-Disposition: inline",
]


@pytest.mark.parametrize("header", PARAM_HEADERS)
def test_a_part_filename_is_what_the_email_package_gets(header: str) -> None:
    raw = (header + "\n\nbody\n").replace("\n", "\r\n").encode()
    expected = parse(raw).get_filename()
    expected = (expected or "").strip() or None
    assert build_tree(raw).root.filename == expected


BOUNDARY_HEADERS = {
    'boundary="a"; boundary="b"': "a",
    "BOUNDARY=a": "a",
    "boundary*0=a; boundary*1=b": "ab",
    'boundary="a  "': "a",
    "charset=x": None,
}


@pytest.mark.parametrize("params", list(BOUNDARY_HEADERS))
def test_a_multipart_boundary_is_what_the_email_package_gets(params: str) -> None:
    expected = BOUNDARY_HEADERS[params]
    lines = [f"Content-Type: multipart/mixed; {params}", ""]
    for boundary in ("a", "ab", "b"):  # each a part and a close: only the boundary's counts
        lines += [f"--{boundary}", "", f"in {boundary}", f"--{boundary}--"]
    lines.append("")
    raw = "\r\n".join(lines).encode()
    assert parse(raw).get_boundary() == expected
    tree = build_tree(raw)
    if expected is None:
        assert not tree.root.children
    else:
        assert len(tree.root.children) == 1
        assert tree.root.children[0].body(raw) == f"in {expected}".encode()
