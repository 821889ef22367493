"""The spamassassin_rules filter: SpamAssassin's own rule types, scored as Mail::SpamAssassin
4.0 scores them (perldoc Mail::SpamAssassin::Conf; PerMsgStatus.pm got_hit; Plugin/Check.pm),
evaluated by sinkd without a spamd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinkd.core.engine import Pipeline
from sinkd.core.filters.spamassassin_rules import compile_meta
from sinkd.core.model import Verdict, VerdictAction
from sinkd.core.perl_regex import translate
from sinkd.core.sa_text import canonical_uris
from sinkd.errors import ProfileError
from tests.support.judging import compile_yaml, judge
from tests.support.paths import TESTS


def rules_profile(tmp_path: Path, rules: list[dict[str, object]], **extra: object) -> Pipeline:
    spec = {"kind": "spamassassin_rules", "name": "local-cf", "rules": rules, **extra}
    return compile_yaml(
        tmp_path,
        f"""\
        scoring: {{thresholds: {{quarantine: 5.0}}}}
        filters:
          - {json.dumps(spec)}
        """,
    )


def mail(
    body: str = "Hello there.\r\n",
    subject: str = "Quarterly report",
    headers: str = "",
    sender: str = "Alice <alice@sender.example>",
) -> bytes:
    head = f"From: {sender}\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n{headers}"
    return (head + "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body).encode()


def sa_score(verdict: Verdict) -> float | None:
    found = [f for f in verdict.findings if f.code == "SA_SCORE"]
    return found[0].score if found else None


def hit_names(verdict: Verdict) -> list[str]:
    return sorted(
        f.code[3:] for f in verdict.findings if f.code.startswith("SA_") and f.code != "SA_SCORE"
    )


async def test_a_header_rule_on_the_decoded_subject_hits_once_with_its_score(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "LOCAL_CASH",
                "type": "header",
                "header": "Subject",
                "pattern": r"/\bcash\b/i",
                "score": 2.5,
                "describe": "Subject mentions cash",
                "source": "local.cf:3",
            }
        ],
    )
    verdict = await judge(pipeline, mail(subject="=?utf-8?q?Free_CASH_now?="))
    assert sa_score(verdict) == 2.5
    assert hit_names(verdict) == ["LOCAL_CASH"]
    rule = next(f for f in verdict.findings if f.code == "SA_LOCAL_CASH")
    assert rule.score == 0.0  # recorded only: the total is SA_SCORE's
    assert "Subject mentions cash" in rule.reason
    clean = await judge(pipeline, mail(subject="Cashier's report"))
    assert sa_score(clean) is None and clean.verdict is VerdictAction.ACCEPT


async def test_the_total_at_required_score_meets_the_profiles_threshold(tmp_path: Path) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "A_RULE", "type": "body", "pattern": "/alpha/", "score": 1.1},
            {"id": "B_RULE", "type": "body", "pattern": "/beta/", "score": 1.1},
            {"id": "C_RULE", "type": "body", "pattern": "/gamma/", "score": 1.1},
            {"id": "D_RULE", "type": "body", "pattern": "/delta/", "score": 1.7},
        ],
    )
    verdict = await judge(pipeline, mail("alpha beta gamma delta\r\n"))
    # 1.1 * 3 + 1.7 is 5.000000000000001 in binary; SpamAssassin rounds to 3 decimals first.
    assert sa_score(verdict) == 5.0
    assert verdict.verdict is VerdictAction.QUARANTINE


async def test_a_negated_header_rule_hits_when_the_header_is_missing_or_does_not_match(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "NO_LIST_ID",
                "type": "header",
                "header": "List-Id",
                "op": "!~",
                "pattern": "/corp\\.example/",
                "score": 1.0,
            }
        ],
    )
    assert hit_names(await judge(pipeline, mail())) == ["NO_LIST_ID"]
    listed = mail(headers="List-Id: <news.corp.example>\r\n")
    assert hit_names(await judge(pipeline, listed)) == []


async def test_if_unset_and_exists_read_an_absent_header_as_spamassassin_does(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "NO_MAILER",
                "type": "header",
                "header": "X-Mailer",
                "pattern": "/^UNSET$/",
                "if_unset": "UNSET",
            },
            {"id": "HAS_PRIORITY", "type": "header", "exists": "X-Priority", "score": 0.5},
        ],
    )
    assert hit_names(await judge(pipeline, mail())) == ["NO_MAILER"]
    both = mail(headers="X-Mailer: Outlook\r\nX-Priority: 1\r\n")
    assert hit_names(await judge(pipeline, both)) == ["HAS_PRIORITY"]


async def test_addr_and_name_modifiers_read_the_address_and_the_display_name(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "FROM_ADDR",
                "type": "header",
                "header": "From:addr",
                "pattern": r"/^alice\@sender\.example$/",
            },
            {"id": "FROM_NAME", "type": "header", "header": "From:name", "pattern": "/^Alice$/"},
            {"id": "FROM_RAW", "type": "header", "header": "From:raw", "pattern": "/^ Alice </"},
        ],
    )
    assert hit_names(await judge(pipeline, mail())) == ["FROM_ADDR", "FROM_NAME", "FROM_RAW"]


async def test_body_rules_read_the_subject_first_unless_nosubject(tmp_path: Path) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "BODY_WINNER", "type": "body", "pattern": "/winner/i"},
            {"id": "BODY_ONLY", "type": "body", "pattern": "/winner/i", "tflags": ["nosubject"]},
        ],
    )
    verdict = await judge(pipeline, mail(subject="You are a WINNER"))
    assert hit_names(verdict) == ["BODY_WINNER"]


async def test_body_rules_read_html_rendered_and_paragraphs_as_lines(tmp_path: Path) -> None:
    html = "<html><body><p>Claim <b>your</b>\r\nprize</p><p>today</p></body></html>\r\n"
    raw = (
        "From: a@sender.example\r\nTo: b@corp.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html\r\n\r\n" + html
    ).encode()
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "CLAIM_PRIZE", "type": "body", "pattern": "/claim your prize/i"},
            {"id": "NO_TAGS", "type": "body", "pattern": "/<b>/"},
            {"id": "RAW_TAGS", "type": "rawbody", "pattern": "/<b>your<\\/b>/"},
            {"id": "FULL_CT", "type": "full", "pattern": "/^Content-Type: text\\/html/m"},
        ],
    )
    assert hit_names(await judge(pipeline, raw)) == ["CLAIM_PRIZE", "FULL_CT", "RAW_TAGS"]


async def test_a_multiple_rule_scores_every_match_up_to_maxhits(tmp_path: Path) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "PRICE",
                "type": "body",
                "pattern": r"/\$\d+/",
                "score": 0.5,
                "tflags": ["multiple", "maxhits=3"],
            },
        ],
    )
    verdict = await judge(pipeline, mail("Only $10, $20, $30, $40 and $50!\r\n"))
    assert sa_score(verdict) == 1.5  # three hits, each adding the score (PerMsgStatus got_hit)


async def test_meta_rules_combine_sub_rules_that_are_never_scored_themselves(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "__PRICE", "type": "body", "pattern": r"/\$\d+/", "tflags": ["multiple"]},
            {"id": "__URGENT", "type": "header", "header": "Subject", "pattern": "/urgent/i"},
            {"id": "MANY_PRICES", "type": "meta", "expression": "__PRICE >= 3", "score": 2.0},
            {
                "id": "URGENT_SALE",
                "type": "meta",
                "expression": "__URGENT && (MANY_PRICES || !__PRICE)",
                "score": 1.5,
            },
        ],
    )
    sale = await judge(pipeline, mail("Only $10, $20 or $30!\r\n", subject="URGENT offer"))
    assert hit_names(sale) == ["MANY_PRICES", "URGENT_SALE"]
    assert sa_score(sale) == 3.5
    calm = await judge(pipeline, mail("Only $10!\r\n", subject="URGENT offer"))
    assert hit_names(calm) == []


async def test_a_rule_scored_zero_does_not_run_and_a_meta_reads_it_as_zero(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "OFF", "type": "body", "pattern": "/hello/i", "score": 0},
            {"id": "NOT_OFF", "type": "meta", "expression": "!OFF", "score": 1.0},
        ],
    )
    verdict = await judge(pipeline, mail("Hello\r\n"))
    assert hit_names(verdict) == ["NOT_OFF"]


async def test_uri_rules_read_links_of_html_and_text(tmp_path: Path) -> None:
    raw = (
        b"From: a@sender.example\r\nTo: b@corp.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/html\r\n\r\n<a href="https://bad.example/x">here</a> or '
        b"www.other.com/y, www.reserved.example/z\r\n"
    )
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "URI_BAD", "type": "uri", "pattern": r"/^https:\/\/bad\.example\//"},
            {"id": "URI_WWW", "type": "uri", "pattern": r"/^http:\/\/www\.other\.com/"},
            # SpamAssassin takes a schemeless name only with a valid TLD (not RFC 2606's).
            {"id": "URI_RESERVED", "type": "uri", "pattern": r"/reserved/"},
        ],
    )
    assert hit_names(await judge(pipeline, raw)) == ["URI_BAD", "URI_WWW"]


async def test_welcomelist_and_blocklist_match_sender_globs_case_insensitively(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [],
        welcomelist_from=["*@Partner.example"],
        blocklist_from=["spam?@bad.example"],
    )
    welcomed = await judge(pipeline, mail(sender="Bo <bo@partner.EXAMPLE>"))
    assert hit_names(welcomed) == ["USER_IN_WELCOMELIST"] and sa_score(welcomed) == -100
    blocked = await judge(pipeline, mail(sender="spam1@bad.example"))
    assert hit_names(blocked) == ["USER_IN_BLOCKLIST"] and sa_score(blocked) == 100
    assert blocked.verdict is VerdictAction.QUARANTINE
    assert hit_names(await judge(pipeline, mail(sender="spam12@bad.example"))) == []


def test_a_pattern_python_cannot_run_the_same_way_is_a_located_profile_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ProfileError, match=r"filters\[0\]\.rules\[0\].*KEEP.*\\K"):
        rules_profile(tmp_path, [{"id": "KEEP", "type": "body", "pattern": r"/foo\Kbar/"}])


def test_meta_rules_in_a_cycle_are_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cycle"):
        rules_profile(
            tmp_path,
            [
                {"id": "M_ONE", "type": "meta", "expression": "M_TWO"},
                {"id": "M_TWO", "type": "meta", "expression": "M_ONE"},
            ],
        )


@pytest.mark.parametrize(
    ("perl", "text", "matches"),
    [
        (r"/^foo\z/", "foo\n", False),  # \z: the very end
        (r"/^foo\Z/", "foo\n", True),  # \Z: before a final newline too
        (r"/[[:digit:]]{3}/", "a123", True),
        (r"m{a/b}", "xa/by", True),
        (r"/caf\xe9/i", "CAF\xe9", True),
        (r"/\w+\s\h/", "ab \t", True),
        ("/é/", "caf\xc3\xa9", True),  # a UTF-8 pattern matches the UTF-8 octets
        (r"/\bfree\b/x", "for free!", True),
    ],
)
def test_perl_patterns_keep_their_meaning_on_byte_views(
    perl: str, text: str, matches: bool
) -> None:
    assert (translate(perl).search(text) is not None) is matches


@pytest.mark.parametrize(
    ("expression", "hits", "value"),
    [
        ("A && !B", {"A": 1.0}, 1.0),
        ("!A > 0", {}, 1.0),  # ! binds tighter than > in Perl
        ("(A + B + C) >= 2", {"A": 1.0, "C": 1.0}, 1.0),
        ("A * 2 - B", {"A": 3.0, "B": 1.0}, 5.0),
        ("A || B", {"B": 4.0}, 4.0),  # || gives the operand, as Perl does
    ],
)
def test_meta_expressions_follow_perls_precedence_and_values(
    expression: str, hits: dict[str, float], value: float
) -> None:
    assert compile_meta(expression)(hits) == value


async def test_the_welcomelist_reads_return_path_unless_a_received_field_comes_before_it(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(tmp_path, [], welcomelist_from=["*@lists.example"])
    top = b"Return-Path: <owner@lists.example>\r\n" + mail()
    assert hit_names(await judge(pipeline, top)) == ["USER_IN_WELCOMELIST"]
    relayed = b"Received: from a by b\r\nReturn-Path: <owner@lists.example>\r\n" + mail()
    assert hit_names(await judge(pipeline, relayed)) == []


async def test_header_pseudo_fields_and_first_last_read_what_spamassassin_reads(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {
                "id": "ALL_HAS_PRIORITY",
                "type": "header",
                "header": "ALL",
                "pattern": "/^X-Priority: 1$/m",
            },
            {"id": "TOCC_BOB", "type": "header", "header": "ToCc", "pattern": "/carol@/"},
            {"id": "MSGID", "type": "header", "header": "MESSAGEID", "pattern": "/<x1@/"},
            {
                "id": "LAST_RECEIVED",
                "type": "header",
                "header": "Received:last",
                "pattern": "/^from first/",
            },
            {
                "id": "FIRST_RECEIVED",
                "type": "header",
                "header": "Received:first",
                "pattern": "/^from first/",
            },
        ],
    )
    raw = b"Received: from second by mx\r\nReceived: from first by relay\r\n" + mail(
        headers="X-Priority: 1\r\nCc: carol@corp.example\r\nMessage-Id: <x1@a>\r\n"
    )
    assert hit_names(await judge(pipeline, raw)) == [
        "ALL_HAS_PRIORITY",
        "LAST_RECEIVED",
        "MSGID",
        "TOCC_BOB",
    ]


async def test_a_body_line_over_2048_characters_is_read_in_pieces_as_spamassassin_cuts_it(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "ACROSS_CUT", "type": "body", "pattern": "/y z/"},
            {"id": "WHOLE_WORD", "type": "body", "pattern": "/^z+$/"},
        ],
    )
    # 2046 x's, "y", a space, then z's: Message.pm cuts after the last space before 2048.
    verdict = await judge(pipeline, mail("x" * 2046 + "y z" + "z" * 100 + "\r\n"))
    assert hit_names(verdict) == ["WHOLE_WORD"]
    assert hit_names(await judge(pipeline, mail("x y z\r\n"))) == ["ACROSS_CUT"]


async def test_body_rules_read_every_text_type_spamassassin_reads_as_plain_text(
    tmp_path: Path,
) -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nTo: a@corp.example\r\nSubject: Delayed\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nDelivery delayed.\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nList-Unsubscribe: <mailto:x>\r\n"
        b"--b\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR unsubscribe\r\n--b--\r\n"
    )
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "UNSUB", "type": "body", "pattern": "/unsubscribe/i", "tflags": ["multiple"]},
        ],
    )
    # Util.pm parse_content_type: text/rfc822-headers is text/plain to SpamAssassin (bug
    # 5399), text/calendar is not rendered at all.
    assert sa_score(await judge(pipeline, raw)) == 1.0


async def test_an_unterminated_html_comment_ends_at_the_next_bracket_as_html_parser_reads_it(
    tmp_path: Path,
) -> None:
    raw = (
        b"From: a@sender.example\r\nTo: b@corp.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html\r\n\r\n<html><body><b><!--#rotate>Click here "
        b'<a href="http://192.0.2.7/x">now</a></b></body></html>\r\n'
    )
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "CLICK", "type": "body", "pattern": "/click here/i"},
            {"id": "IP_LINK", "type": "uri", "pattern": r"/^http:\/\/\d+\.\d+\.\d+\.\d+\//"},
        ],
    )
    # An HTML5 parser hides everything after "<!--"; HTML::Parser, SpamAssassin's, does not.
    assert hit_names(await judge(pipeline, raw)) == ["CLICK", "IP_LINK"]


@pytest.mark.parametrize(
    ("uri", "form"),
    [
        ("http://1071396130/index2.htm", "http://63.220.53.34/index2.htm"),  # a dword host
        ("http://freetravel@66.46.145.35/members/", "http://66.46.145.35/members/"),
        ("http://%31%30%31.example/x", "http://101.example/x"),  # escapes decoded
        ("http://0x7f.0.0.01/", "http://127...1/"),  # Util.pm keeps its own quirk: 0 -> ""
        ("www.shop.example", "http://www.shop.example"),
        ("http://host.example:80/a", "http://host.example/a"),
        ("http://t.example/r?u=http://evil.example/x", "http://evil.example/x"),
    ],
)
def test_uris_get_the_forms_spamassassin_adds_when_it_canonicalizes(uri: str, form: str) -> None:
    assert form in canonical_uris(uri)


HOSTILE = {
    f"{path.parent.name}/{path.name}": path.read_bytes()
    for folder in ("hostile", "cpython", "dkimpy")
    for path in sorted((TESTS / "messages" / folder).iterdir())
    if path.is_file() and path.suffix != ".md"
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_no_hostile_or_odd_message_makes_a_rule_type_raise(tmp_path: Path, name: str) -> None:
    pipeline = rules_profile(
        tmp_path,
        [
            {"id": "H_ALL", "type": "header", "header": "ALL:raw", "pattern": "/x/"},
            {"id": "H_ADDR", "type": "header", "header": "From:addr", "pattern": "/x/"},
            {"id": "H_NAME", "type": "header", "header": "To:name", "pattern": "/x/"},
            {"id": "B_ANY", "type": "body", "pattern": "/e/", "tflags": ["multiple"]},
            {"id": "R_ANY", "type": "rawbody", "pattern": "/</"},
            {"id": "F_ANY", "type": "full", "pattern": "/^Subject:/m"},
            {"id": "U_ANY", "type": "uri", "pattern": "/./", "tflags": ["multiple"]},
            {"id": "M_ANY", "type": "meta", "expression": "B_ANY + U_ANY > 1"},
        ],
        welcomelist_from=["*@*"],
    )
    verdict = await judge(pipeline, HOSTILE[name])  # raises if a view or a rule does
    assert all(f.filter == "local-cf" for f in verdict.findings if f.code.startswith("SA_"))


async def test_a_decoded_header_is_read_as_its_utf_8_octets_whatever_its_charset(
    tmp_path: Path,
) -> None:
    pipeline = rules_profile(
        tmp_path,
        [{"id": "CAFE", "type": "header", "header": "Subject", "pattern": r"/caf\xc3\xa9/"}],
    )
    # Node.pm _decode_header converts encoded-words to UTF-8 before header rules read them.
    for subject in ("=?utf-8?q?caf=C3=A9?=", "=?iso-8859-1?q?caf=E9?="):
        assert hit_names(await judge(pipeline, mail(subject=subject))) == ["CAFE"], subject
