"""The content filter: words, phrases and regexes over named parts, scores, caps and GTUBE."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import sinkd.core.html.render
import sinkd.core.message
from sinkd.core.engine import Pipeline
from sinkd.core.filters.content import ContentFilter
from sinkd.core.model import Action, Disposition, Reply, Stage, VerdictAction
from sinkd.errors import ProfileError
from tests.support.judging import compile_yaml, judge

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def rules(tmp_path: Path, *lines: str, thresholds: str = "{}", extra: str = "") -> Pipeline:
    rule_lines = "\n".join(f"      - {line}" for line in lines)
    return compile_yaml(
        tmp_path,
        f"scoring:\n  thresholds: {thresholds}\n{extra}"
        f"filters:\n  - kind: content\n    name: words\n    rules:\n{rule_lines}\n",
    )


def message(
    subject: str = "Lunch on Friday",
    body: str = "See you at noon by the fountain.",
    *,
    headers: str = "",
) -> bytes:
    head = f"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n{headers}"
    return (head + "\r\n" + body + "\r\n").encode()


def alternative(subject: str, text: str, html: str) -> bytes:
    return (
        "From: alice@sender.example\r\nTo: bob@corp.example\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n"
        "--b1--\r\n"
    ).encode()


# --- words and phrases ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("Win at the CASINO tonight", True),
        ("casino.", True),
        ("(Casino)", True),
        ("casinos are fun", False),
        ("the casinoroyale show", False),
        ("megacasino deals", False),
        ("nothing to see", False),
    ],
)
async def test_words_match_whole_words_case_insensitively(
    tmp_path: Path, body: str, found: bool
) -> None:
    verdict = await judge(
        rules(tmp_path, "{id: TRIGGER, words: [casino], score: 2.0}"), message(body=body)
    )
    if found:
        assert verdict.codes == ["CONTENT_TRIGGER"]
        assert verdict.score == 2.0
        assert verdict.findings[0].detail["matches"] == {"casino": 1}
    else:
        assert verdict.codes == []
        assert verdict.score == 0


async def test_phrases_match_their_words_in_sequence_across_punctuation_and_lines(
    tmp_path: Path,
) -> None:
    pipeline = rules(tmp_path, '{id: BEC, words: ["wire transfer"], score: 4.0}')
    hit = await judge(pipeline, message(body="Please arrange the WIRE\r\n  transfer today"))
    split = await judge(pipeline, message(body="wire the money, then transfer it"))
    assert hit.codes == ["CONTENT_BEC"]
    assert hit.findings[0].detail["matches"] == {"wire transfer": 1}
    assert split.codes == []


async def test_finding_reason_and_detail_name_the_parts_and_words_found(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: TRIGGER, words: [casino, lottery], score: 1.0}")
    verdict = await judge(pipeline, message("Casino night", "casino and lottery, casino again"))
    finding = verdict.findings[0]
    assert finding.action is Action.SCORE
    assert finding.stage is Stage.DATA
    assert finding.detail == {
        "rule": "TRIGGER",
        "matches": {"casino": 3, "lottery": 1},
        "parts": ["subject", "body"],
        "found_in": [
            {"part": "subject", "mime_part": None, "matches": {"casino": 1}},
            {"part": "text body", "mime_part": 0, "matches": {"casino": 2, "lottery": 1}},
        ],
    }
    assert finding.reason == (
        "The message contains words and phrases the filter looks for: 'casino' in the subject;"
        " 'casino', 'lottery' in the text body."
    )


# --- decoded text, and what matched where ------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "found"),
    [
        ("<p>Cheap via<b>gra</b> here</p>", True),  # inline markup: one word on screen
        ("<p>Cheap <span>viagra</span></p>", True),
        ("<p>Cheap via</p><p>gra</p>", False),  # two paragraphs
        ("<div>Cheap via</div><div>gra</div>", False),  # HTML.pm: <div> puts a line break
        ("<p>Cheap via<!-- comment -->gra</p>", True),
    ],
)
async def test_a_trigger_word_split_by_html_markup_is_found_only_where_a_reader_sees_it(
    tmp_path: Path, html: str, found: bool
) -> None:
    pipeline = rules(tmp_path, "{id: TRIGGER, words: [viagra], parts: [html]}")
    verdict = await judge(pipeline, alternative("Hello", "plain", html))
    assert verdict.codes == (["CONTENT_TRIGGER"] if found else [])


async def test_a_phrase_in_an_encoded_word_subject_is_found_and_quoted(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, '{id: BEC, words: ["wire transfer"], parts: [subject]}')
    raw = message("=?utf-8?Q?Urgent=3A_wire_transfer_today?=")
    finding = (await judge(pipeline, raw)).findings[0]
    assert finding.reason == "The subject contains wording the filter looks for: 'wire transfer'."
    assert finding.detail["found_in"] == [
        {"part": "subject", "mime_part": None, "matches": {"wire transfer": 1}}
    ]


async def test_a_phrase_in_a_base64_html_part_is_quoted_with_its_part(tmp_path: Path) -> None:
    msg = email_message("Newsletter")
    msg.set_content("Our news.")
    msg.add_alternative("<p>Send a <i>wire</i> transfer now</p>", subtype="html", cte="base64")
    pipeline = rules(tmp_path, '{id: BEC, words: ["wire transfer"], parts: [body]}')
    finding = (await judge(pipeline, msg.as_bytes())).findings[0]
    assert finding.reason == (
        "The HTML body contains wording the filter looks for: 'wire transfer'."
    )
    assert finding.detail["found_in"] == [
        {"part": "HTML body", "mime_part": 2, "matches": {"wire transfer": 1}}
    ]


async def test_a_word_in_a_quoted_printable_latin1_part_is_found(tmp_path: Path) -> None:
    msg = email_message()
    msg.set_content(
        "Gewinnen Sie im Glücksspiel! " * 4, charset="iso-8859-1", cte="quoted-printable"
    )
    assert b"Gl=FCcksspiel" in msg.as_bytes()
    pipeline = rules(tmp_path, "{id: T, words: [glücksspiel], parts: [text]}")
    assert (await judge(pipeline, msg.as_bytes())).codes == ["CONTENT_T"]


async def test_a_described_rule_still_quotes_what_matched_and_where(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        '{id: BEC, words: ["wire transfer", "gift cards"], action: reject,'
        ' describe: "The message uses wording typical of payment fraud."}',
    )
    verdict = await judge(pipeline, message("Wire transfer", "Please buy gift cards."))
    assert verdict.findings[0].reason == (
        "The message uses wording typical of payment fraud. Found: 'wire transfer' in the"
        " subject; 'gift cards' in the text body."
    )
    assert verdict.reply is not None and "'gift cards' in the text body" in verdict.reply.text


async def test_a_regex_match_is_quoted_as_written(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, r"{id: MONEY, regex: '\$\d[\d,]*', parts: [subject]}")
    verdict = await judge(pipeline, message("You won $1,000,000 today"))
    assert verdict.findings[0].reason == (
        "The subject contains text matching a pattern the filter looks for: '$1,000,000'."
    )


async def test_a_regex_never_matches_across_two_paragraphs(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, r"{id: FM, regex: 'free\s+money'}")
    same = await judge(pipeline, message(body="Get free\r\nmoney now"))
    apart = await judge(pipeline, message(body="It is free\r\n\r\nmoney is not"))
    assert same.findings[0].detail["matches"] == {"free money": 1}
    assert apart.codes == []


async def test_a_regex_anchor_matches_at_the_start_of_each_paragraph(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: OPENER, regex: '^dear friend', parts: [body]}")
    raw = message(body="Hello.\r\n\r\nDear friend, I have a proposal.")
    assert (await judge(pipeline, raw)).codes == ["CONTENT_OPENER"]


async def test_a_phrase_does_not_run_from_the_subject_into_the_body(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, '{id: BEC, words: ["wire transfer"]}')
    assert (await judge(pipeline, message("Please wire", "transfer the funds"))).codes == []


async def test_every_rule_reads_one_decode_and_one_render_of_each_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    decode = sinkd.core.message.ParsedMessage._decode_part
    render = sinkd.core.html.render.render_html

    def counting_decode(
        self: sinkd.core.message.ParsedMessage, index: int, *a: Any, **k: Any
    ) -> str:
        calls.append(f"decode {index}")
        return decode(self, index, *a, **k)

    def counting_render(html: str, *a: Any, **k: Any) -> sinkd.core.html.render.Rendered:
        calls.append("render")
        return render(html, *a, **k)

    monkeypatch.setattr(sinkd.core.message.ParsedMessage, "_decode_part", counting_decode)
    monkeypatch.setattr(sinkd.core.html.render, "render_html", counting_render)
    pipeline = rules(
        tmp_path,
        "{id: A, words: [casino], parts: [subject, body]}",
        "{id: B, words: [lottery], parts: [text, html]}",
        "{id: C, regex: 'jack\\w+', parts: [html, body]}",
        "{id: D, regex: 'bit', parts: [text]}",
    )
    verdict = await judge(pipeline, alternative("Hi", "casino bitcoin", "<p>lottery jackpot</p>"))
    assert verdict.codes == ["CONTENT_A", "CONTENT_B", "CONTENT_C", "CONTENT_D"]
    assert sorted(calls) == ["decode 1", "decode 2", "render"]


# --- regexes --------------------------------------------------------------------------------


async def test_regex_is_case_insensitive_by_default(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, r"{id: PRICE, regex: '\bfree\s+money\b', score: 1.5}")
    verdict = await judge(pipeline, message(body="Get FREE   Money now"))
    assert verdict.codes == ["CONTENT_PRICE"]
    # Body text is read as SpamAssassin reads it: each run of white space is one space.
    assert verdict.findings[0].detail["matches"] == {"FREE Money": 1}
    assert verdict.score == 1.5


async def test_regex_with_ignore_case_false_respects_case(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        "{id: ALL_CAPS, regex: '^[^a-z]{10,}$', ignore_case: false, parts: [subject], score: 1.0}",
    )
    shouting = await judge(pipeline, message("BUY NOW CHEAP DEALS"))
    normal = await judge(pipeline, message("Buy now cheap deals"))
    assert shouting.codes == ["CONTENT_ALL_CAPS"]
    assert normal.codes == []


async def test_a_list_of_regexes_matches_when_any_pattern_matches(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, r"{id: LINKS, regex: ['bit\.ly/\w+', 'tinyurl\.com'], score: 1}")
    verdict = await judge(pipeline, message(body="see bit.ly/abc and more"))
    assert verdict.findings[0].detail["matches"] == {"bit.ly/abc": 1}
    assert verdict.findings[0].reason == (
        "The text body contains text matching a pattern the filter looks for: 'bit.ly/abc'."
    )


def test_invalid_regex_is_a_profile_error_naming_the_rule(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"filters\[0\]\.rules\[0\]\.regex: invalid regular"):
        rules(tmp_path, "{id: BAD, regex: 'a(b'}")


def test_a_rule_needs_exactly_one_of_words_or_regex(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="exactly one of 'words' or 'regex'"):
        rules(tmp_path, "{id: BOTH, words: [a], regex: b}")
    with pytest.raises(ProfileError, match="exactly one of 'words' or 'regex'"):
        rules(tmp_path, "{id: NEITHER, score: 1}")


# --- parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "found"),
    [
        ("[subject]", False),
        ("[body]", True),
        ("[html]", True),
        ("[text]", False),
        ("[headers]", False),
    ],
)
async def test_a_word_only_in_the_html_body_is_found_in_body_and_html_not_text(
    tmp_path: Path, parts: str, found: bool
) -> None:
    pipeline = rules(tmp_path, f"{{id: TRIGGER, words: [jackpot], parts: {parts}}}")
    raw = alternative(
        "Monthly update", "Hello, here is the update.", "<p>Hello, <b>JACKPOT</b> inside</p>"
    )
    verdict = await judge(pipeline, raw)
    assert verdict.codes == (["CONTENT_TRIGGER"] if found else [])


async def test_a_word_only_in_the_subject_is_not_found_in_the_body(tmp_path: Path) -> None:
    subject_rule = rules(tmp_path, "{id: S, words: [invoice], parts: [subject]}")
    raw = message("Invoice 42 attached", "Hi, see attachment.")
    assert (await judge(subject_rule, raw)).codes == ["CONTENT_S"]
    body_rule = rules(tmp_path, "{id: B, words: [invoice], parts: [body]}")
    assert (await judge(body_rule, raw)).codes == []


async def test_header_part_reads_only_the_named_header(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: MAILER, words: [massmailer], parts: ['header:X-Mailer']}")
    raw = message(headers="X-Mailer: MassMailer 3.1\r\n")
    other = message(subject="MassMailer news", headers="X-Mailer: Thunderbird\r\n")
    assert (await judge(pipeline, raw)).codes == ["CONTENT_MAILER"]
    assert (await judge(pipeline, other)).codes == []


async def test_headers_part_reads_every_header(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: H, words: [thunderbird], parts: [headers]}")
    raw = message(headers="X-Mailer: Thunderbird\r\n", body="thunderbird not here")
    verdict = await judge(pipeline, raw)
    assert verdict.findings[0].detail["parts"] == ["headers"]


def test_an_unknown_part_name_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"filters\[0\]\.rules\[0\]\.parts\[0\]"):
        rules(tmp_path, "{id: P, words: [a], parts: [footer]}")


# --- scores ---------------------------------------------------------------------------------


async def test_per_match_adds_the_score_for_each_distinct_word_up_to_max_score(
    tmp_path: Path,
) -> None:
    pipeline = rules(
        tmp_path,
        "{id: T, words: [casino, lottery, bitcoin, viagra], score: 3.0, per_match: true, "
        "max_score: 7.0}",
    )
    one = await judge(pipeline, message(body="casino casino casino"))
    two = await judge(pipeline, message(body="casino and lottery"))
    four = await judge(pipeline, message(body="casino lottery bitcoin viagra"))
    assert one.score == 3.0  # distinct words, not occurrences
    assert two.score == 6.0
    assert four.score == 7.0


async def test_without_per_match_a_rule_scores_once_whatever_it_finds(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: T, words: [casino, lottery], score: 3.0}")
    verdict = await judge(pipeline, message(body="casino lottery casino"))
    assert verdict.score == 3.0


async def test_negative_scores_lower_the_total_and_keep_a_message_under_a_threshold(
    tmp_path: Path,
) -> None:
    pipeline = rules(
        tmp_path,
        "{id: SPAMMY, words: [casino], score: 6.0}",
        "{id: NEWSLETTER, words: [unsubscribe, preferences], score: -2.0, per_match: true,"
        " max_score: -3.0}",
        thresholds="{tag: 5.0}",
    )
    spammy = await judge(pipeline, message(body="casino"))
    softened = await judge(pipeline, message(body="casino. unsubscribe or manage preferences"))
    assert spammy.disposition is Disposition.TAGGED
    assert spammy.score == 6.0
    assert softened.score == 3.0  # 6 + max(-4, -3)
    assert softened.disposition is Disposition.INBOX
    assert [f.score for f in softened.findings] == [6.0, -3.0]


async def test_a_hard_action_on_a_content_rule_rejects_with_its_reason_as_reply_text(
    tmp_path: Path,
) -> None:
    pipeline = rules(tmp_path, "{id: BANNED, words: [viagra], action: reject}")
    verdict = await judge(pipeline, message(body="cheap viagra"))
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.reply == Reply(
        550, "5.7.1", "The text body contains wording the filter looks for: 'viagra'."
    )


async def test_words_may_come_from_a_named_list_of_phrases(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        "{id: BEC, words: '@finance', parts: [subject], action: quarantine}",
        extra="lists:\n  finance: {kind: phrase, entries: ['urgent payment', 'gift cards']}\n",
    )
    verdict = await judge(pipeline, message("Urgent payment needed"))
    assert verdict.verdict is VerdictAction.QUARANTINE
    assert verdict.findings[0].detail["matches"] == {"urgent payment": 1}


async def test_a_rule_over_an_empty_named_list_matches_nothing(tmp_path: Path) -> None:
    # google-workspace-like's admin word list is empty until an admin fills it.
    pipeline = rules(
        tmp_path,
        "{id: ADMIN, words: '@admin', action: reject}",
        extra="lists:\n  admin: {kind: word, entries: []}\n",
    )
    verdict = await judge(pipeline, message("Casino night", "casino"))
    assert verdict.codes == []
    assert verdict.verdict is VerdictAction.ACCEPT


async def test_two_rules_listing_the_same_word_in_different_spellings_both_fire(
    tmp_path: Path,
) -> None:
    pipeline = rules(
        tmp_path,
        "{id: SUBJECT_WORD, words: [Casino], parts: [subject], score: 1.0}",
        "{id: BODY_WORD, words: [casino], parts: [subject, body], score: 2.0}",
    )
    verdict = await judge(pipeline, message("casino", "casino"))
    assert verdict.codes == ["CONTENT_SUBJECT_WORD", "CONTENT_BODY_WORD"]
    assert verdict.score == 3.0


# --- GTUBE ----------------------------------------------------------------------------------


def gtube_filter(tmp_path: Path) -> Pipeline:
    return compile_yaml(tmp_path, "filters:\n  - {kind: content, name: w, gtube: {}}\n", "gtube")


def email_message(subject: str = "Test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@sender.example"
    msg["To"] = "bob@corp.example"
    msg["Subject"] = subject
    return msg


def gtube_across_a_soft_line_break() -> bytes:
    """What Python's EmailMessage.set_content writes for GTUBE inside a long line."""
    msg = email_message()
    msg.set_content("This line is long enough that quoted-printable must wrap it: " + GTUBE)
    raw = msg.as_bytes()
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert GTUBE.encode() not in raw  # the soft line break ("=" CRLF) really splits it
    return raw


async def test_gtube_is_rejected_with_the_gtube_pattern_reply(tmp_path: Path) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        filters:
          - kind: content
            name: words
            gtube: {action: reject}
        """,
    )
    verdict = await judge(pipeline, message(body=f"test\r\n{GTUBE}\r\n"))
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.reply == Reply(554, "5.7.1", "Gtube pattern")
    assert verdict.codes == ["CONTENT_GTUBE"]
    assert verdict.findings[0].decided
    assert verdict.score == 1000.0


async def test_gtube_in_the_subject_is_found_as_spamassassin_reads_the_subject_as_body(
    tmp_path: Path,
) -> None:
    # Conf.pm, "body": the Subject "becomes the first line when running the rules".
    verdict = await judge(gtube_filter(tmp_path), message(subject=f"Test {GTUBE}"))
    assert verdict.codes == ["CONTENT_GTUBE"]
    assert verdict.findings[0].detail["part"] == "subject"


async def test_without_a_gtube_setting_gtube_is_ignored(tmp_path: Path) -> None:
    without = compile_yaml(tmp_path, "filters:\n  - {kind: content, name: w}\n", "other")
    assert (await judge(without, message(body=GTUBE))).codes == []


async def test_gtube_split_by_a_quoted_printable_soft_line_break_is_rejected(
    tmp_path: Path,
) -> None:
    verdict = await judge(gtube_filter(tmp_path), gtube_across_a_soft_line_break())
    assert verdict.codes == ["CONTENT_GTUBE"]
    assert verdict.reply == Reply(554, "5.7.1", "Gtube pattern")
    assert verdict.findings[0].detail["part"] == "text body"


async def test_gtube_in_a_base64_text_part_is_rejected(tmp_path: Path) -> None:
    msg = email_message()
    msg.set_content(f"Test message\n{GTUBE}\n", cte="base64")
    raw = msg.as_bytes()
    assert GTUBE.encode() not in raw
    assert (await judge(gtube_filter(tmp_path), raw)).codes == ["CONTENT_GTUBE"]


async def test_gtube_in_the_html_alternative_of_a_multipart_alternative_is_rejected(
    tmp_path: Path,
) -> None:
    msg = email_message()
    msg.set_content("Plain text without the test string.")
    msg.add_alternative(f"<html><body><p>Test: <b>{GTUBE}</b></p></body></html>", subtype="html")
    verdict = await judge(gtube_filter(tmp_path), msg.as_bytes())
    assert verdict.codes == ["CONTENT_GTUBE"]
    assert verdict.findings[0].detail["part"] == "HTML body"
    assert verdict.findings[0].reason.startswith("The HTML body contains GTUBE")


async def test_gtube_split_by_inline_html_markup_is_found_as_the_reader_sees_it(
    tmp_path: Path,
) -> None:
    html = f"<p>{GTUBE[:20]}<span>{GTUBE[20:]}</span></p>"
    verdict = await judge(gtube_filter(tmp_path), alternative("Test", "plain", html))
    assert verdict.codes == ["CONTENT_GTUBE"]


async def test_gtube_split_by_a_hard_line_break_is_not_found_as_in_spamassassin(
    tmp_path: Path,
) -> None:
    # Message.pm turns a line break inside a paragraph into a space before body rules run.
    body = f"{GTUBE[:30]}\r\n{GTUBE[30:]}"
    assert (await judge(gtube_filter(tmp_path), message(body=body))).codes == []


async def test_gtube_in_a_text_attachment_is_found_but_not_in_a_binary_one(
    tmp_path: Path,
) -> None:
    text = email_message()
    text.set_content("See the attached notes.")
    text.add_attachment(f"notes\n{GTUBE}\n", filename="notes.txt")
    binary = email_message()
    binary.set_content("See the attached file.")
    binary.add_attachment(
        GTUBE.encode(), maintype="application", subtype="octet-stream", filename="blob.bin"
    )
    found = await judge(gtube_filter(tmp_path), text.as_bytes())
    assert found.codes == ["CONTENT_GTUBE"]  # SpamAssassin reads every text/plain leaf
    assert found.findings[0].detail["part"] == "attachment 'notes.txt'"
    assert (await judge(gtube_filter(tmp_path), binary.as_bytes())).codes == []


# --- big lists ------------------------------------------------------------------------------


async def test_a_ten_thousand_word_list_compiles_into_one_index_and_matches(
    tmp_path: Path,
) -> None:
    words = [f"spamword{n}" for n in range(10_000)]
    entries = ", ".join(words)
    pipeline = compile_yaml(
        tmp_path,
        f"""\
        lists:
          huge: {{kind: word, entries: [{entries}]}}
        filters:
          - kind: content
            name: words
            rules:
              - {{id: HUGE, words: "@huge", score: 0.5, per_match: true}}
        """,
    )
    [flt] = pipeline.filters
    assert isinstance(flt, ContentFilter)
    assert flt.matcher is not None
    assert len(flt.matcher) == 10_000
    verdict = await judge(pipeline, message(body="spamword0 spamword9999 spamword10000 word5"))
    assert verdict.findings[0].detail["matches"] == {"spamword0": 1, "spamword9999": 1}
    assert verdict.score == 1.0


# --- scanning limits: what the rules read, and the finding when a part was cut ---------------

POSTFIX_HEADER_LIMIT = """\
scanning:
  header_size_limit: {size: 200, applies_to: field, action: truncate, source: "postconf(5)"}
"""


def scan_sizes(body: int, rawbody: int = 500_000) -> str:
    return (
        "scanning:\n"
        f"  body_part_scan_size: {{size: {body}, source: a test}}\n"
        f"  rawbody_part_scan_size: {{size: {rawbody}, source: a test}}\n"
    )


async def test_a_body_rule_reads_each_part_up_to_the_profiles_body_part_scan_size(
    tmp_path: Path,
) -> None:
    body = "word " * 1000 + "casino"  # "casino" at 5,000 characters
    small = rules(tmp_path, "{id: T, words: [casino]}", extra=scan_sizes(1000))
    assert (await judge(small, message(body=body))).codes == ["SCAN_PARTIAL_BODY"]
    default = rules(tmp_path, "{id: T, words: [casino]}")
    assert (await judge(default, message(body=body))).codes == ["CONTENT_T"]


async def test_the_partial_body_finding_says_which_part_which_limit_and_its_source(
    tmp_path: Path,
) -> None:
    pipeline = rules(tmp_path, "{id: T, words: [casino]}", extra=scan_sizes(1000))
    verdict = await judge(pipeline, message(body="word " * 1000))
    [finding] = verdict.findings
    assert finding.code == "SCAN_PARTIAL_BODY"
    assert finding.action is Action.NONE
    assert finding.score == 0.0
    assert verdict.disposition is Disposition.INBOX
    assert finding.detail["part"] == "text body"
    assert finding.detail["mime_part"] == 0
    assert finding.detail["cuts"] == [
        {"limit": "body_part_scan_size", "size": 1000, "of": 5001, "source": "a test"}
    ]
    assert "1,000 of 5,001" in finding.reason


async def test_no_partial_finding_is_given_when_every_part_fits(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: T, words: [casino]}", extra=scan_sizes(1000))
    assert (await judge(pipeline, message(body="word " * 100))).codes == []


async def test_a_scan_size_of_zero_reads_the_whole_part(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: T, words: [casino]}", extra=scan_sizes(0))
    verdict = await judge(pipeline, message(body="word " * 20_000 + "casino"))
    assert verdict.codes == ["CONTENT_T"]


async def test_an_html_source_over_the_rawbody_scan_size_is_parsed_in_part_and_said(
    tmp_path: Path,
) -> None:
    html = "<p>" + "word " * 1000 + "</p><p>casino</p>"
    pipeline = rules(tmp_path, "{id: T, words: [casino]}", extra=scan_sizes(50_000, 1000))
    verdict = await judge(pipeline, alternative("Hi", "hello", html))
    assert verdict.codes == ["SCAN_PARTIAL_BODY"]
    [cut] = verdict.findings[0].detail["cuts"]
    assert cut["limit"] == "rawbody_part_scan_size"
    assert cut["size"] == 1000
    assert verdict.findings[0].detail["part"] == "HTML body"


async def test_a_part_no_rule_reads_gives_no_partial_finding(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, "{id: T, words: [casino], parts: [subject]}", extra=scan_sizes(1000))
    assert (await judge(pipeline, message(body="word " * 1000))).codes == []


async def test_a_header_rule_reads_a_long_field_cut_to_the_header_size_limit(
    tmp_path: Path,
) -> None:
    headers = "X-Note: " + "pad " * 100 + "casino\r\n"  # "casino" past 200 octets
    cut = rules(tmp_path, "{id: H, words: [casino], parts: [headers]}", extra=POSTFIX_HEADER_LIMIT)
    verdict = await judge(cut, message(headers=headers))
    assert verdict.codes == ["SCAN_PARTIAL_HEADER"]
    [finding] = verdict.findings
    assert finding.action is Action.NONE
    assert finding.detail["limit"] == 200
    assert finding.detail["applies_to"] == "field"
    assert finding.detail["source"] == "postconf(5)"
    assert finding.detail["fields"] == [{"name": "X-Note", "size": 414, "kept": 200}]
    whole = rules(tmp_path, "{id: H, words: [casino], parts: [headers]}")
    assert (await judge(whole, message(headers=headers))).codes == ["CONTENT_H"]


async def test_a_header_rule_still_matches_within_the_kept_part_of_a_cut_field(
    tmp_path: Path,
) -> None:
    headers = "X-Note: casino " + "pad " * 100 + "\r\n"
    pipeline = rules(
        tmp_path, "{id: H, words: [casino], parts: ['header:X-Note']}", extra=POSTFIX_HEADER_LIMIT
    )
    verdict = await judge(pipeline, message(headers=headers))
    assert verdict.codes == ["CONTENT_H", "SCAN_PARTIAL_HEADER"]


async def test_a_cut_field_no_rule_reads_gives_no_partial_header_finding(tmp_path: Path) -> None:
    headers = "X-Note: " + "pad " * 100 + "\r\n"
    pipeline = rules(
        tmp_path, "{id: H, words: [casino], parts: [subject]}", extra=POSTFIX_HEADER_LIMIT
    )
    assert (await judge(pipeline, message(headers=headers))).codes == []
