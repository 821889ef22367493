"""The transport_rules filter: conditions AND-ed, exceptions, rule order and StopRuleProcessing,
each field and test, and the profile errors a rule can make."""

from __future__ import annotations

import email.policy
import io
import textwrap
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from sinkd.core.engine import Pipeline
from sinkd.core.model import Action, Disposition, Reply, VerdictAction
from sinkd.core.ports import Lookups
from sinkd.errors import ProfileError
from tests.support.judging import compile_yaml, judge
from tests.support.spf import resolver_for


def rules(tmp_path: Path, body: str) -> Pipeline:
    return compile_yaml(
        tmp_path,
        "filters:\n  - kind: transport_rules\n    name: flow\n    rules:\n"
        + textwrap.indent(textwrap.dedent(body), "      "),
    )


def mail(
    subject: str = "Lunch on Friday",
    text: str = "See you at noon.",
    *,
    sender: str = "alice@sender.example",
    html: str | None = None,
    headers: dict[str, str] | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@corp.example"
    if subject:
        msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return msg.as_bytes(policy=email.policy.SMTP)


TWO_CONDITIONS = """\
- id: BOTH
  when:
    - {field: subject, test: contains, values: [invoice]}
    - {field: sender_domain, test: is, values: [sender.example]}
  action: quarantine
"""


async def test_a_rule_applies_only_when_every_condition_holds(tmp_path: Path) -> None:
    pipeline = rules(tmp_path, TWO_CONDITIONS)
    both = await judge(pipeline, mail("Your invoice"))
    assert both.disposition is Disposition.QUARANTINED
    assert both.findings[0].code == "TRANSPORT_BOTH"
    assert both.findings[0].detail["matched"] == [
        "subject contains invoice (invoice)",
        "sender domain is sender.example (alice@sender.example)",
    ]
    one = await judge(pipeline, mail("Your invoice", sender="a@other.example"))
    assert one.disposition is Disposition.INBOX
    other = await judge(pipeline, mail("Lunch"))
    assert other.disposition is Disposition.INBOX


async def test_any_exception_that_holds_stops_the_rule(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: NO_EXE
          when: [{field: attachment_extension, test: is, values: [exe]}]
          unless:
            - {field: sender, test: is, values: [it@corp.example]}
            - {field: header, header: X-Scanned, test: contains, values: [clean]}
          action: reject
          reply: "550 5.7.1 No executables"
        """,
    )
    exe = ("tool.EXE", b"x")
    refused = await judge(pipeline, mail(attachment=exe))
    assert refused.verdict is VerdictAction.REJECT
    assert refused.reply == Reply(550, "5.7.1", "No executables")
    assert (await judge(pipeline, mail(sender="it@corp.example", attachment=exe))).verdict is (
        VerdictAction.ACCEPT
    )
    scanned = mail(headers={"X-Scanned": "clean by av"}, attachment=exe)
    assert (await judge(pipeline, scanned)).verdict is VerdictAction.ACCEPT


async def test_stop_ends_the_rules_after_it_and_order_is_the_profiles(tmp_path: Path) -> None:
    body = """\
    - id: FIRST
      when: [{{field: subject, test: contains, values: [sale]}}]
      action: tag
      stop: {stop}
    - id: SECOND
      when: [{{field: subject, test: contains, values: [sale]}}]
      action: discard
    """
    stopped = await judge(rules(tmp_path, body.format(stop="true")), mail("Big sale"))
    assert [f.code for f in stopped.findings] == ["TRANSPORT_FIRST"]
    assert stopped.disposition is Disposition.TAGGED
    both = await judge(rules(tmp_path, body.format(stop="false")), mail("Big sale"))
    assert [f.code for f in both.findings] == ["TRANSPORT_FIRST", "TRANSPORT_SECOND"]
    assert both.disposition is Disposition.DISCARDED


async def test_contains_matches_whole_words_and_phrases_in_any_case(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: WORDS
          when: [{field: subject_or_body, test: contains, values: [wire transfer, urgent]}]
          action: junk
        """,
    )
    assert (await judge(pipeline, mail("URGENT"))).disposition is Disposition.JUNK
    assert (await judge(pipeline, mail(text="Send the wire  transfer."))).disposition is (
        Disposition.JUNK
    )
    assert (await judge(pipeline, mail("Non-urgently yours"))).disposition is Disposition.INBOX


async def test_matches_searches_case_insensitively(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: PATTERN
          when: [{field: sender, test: matches, values: ['^billing@.*\\.example$']}]
          action: quarantine
        """,
    )
    verdict = await judge(pipeline, mail(sender="Billing@Fake.Example"))
    assert verdict.disposition is Disposition.QUARANTINED
    assert (await judge(pipeline, mail(sender="billing@fake.test"))).disposition is (
        Disposition.INBOX
    )


async def test_the_sender_is_read_where_sender_location_says(tmp_path: Path) -> None:
    body = """\
    - id: FROM
      when: [{{field: sender, test: is, values: [bounce@lists.example], sender_location: {at}}}]
      action: junk
    """
    raw = mail(sender="news@lists.example")
    header = rules(tmp_path, body.format(at="header"))
    envelope = rules(tmp_path, body.format(at="envelope"))
    either = rules(tmp_path, body.format(at="header_or_envelope"))
    for pipeline, junk in ((header, False), (envelope, True), (either, True)):
        verdict = await judge(pipeline, raw, mail_from="bounce@lists.example")
        assert (verdict.disposition is Disposition.JUNK) is junk


async def test_a_recipient_domain_covers_its_subdomains(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: TO_CORP
          when: [{field: recipient_domain, test: is, values: [corp.example]}]
          action: tag
        """,
    )
    for rcpt, tagged in (
        ("a@corp.example", True),
        ("a@eu.corp.example", True),
        ("a@notcorp.example", False),
    ):
        verdict = await judge(pipeline, mail(), rcpts=(rcpt,))
        assert (verdict.disposition is Disposition.TAGGED) is tagged, rcpt


async def test_sizes_and_the_client_address(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: BIG_PART
          when: [{field: attachment_size, test: over, size: 1000}]
          action: quarantine
        - id: BIG_MESSAGE
          when: [{field: message_size, test: over, size: 5000}]
          action: junk
        - id: FROM_NET
          when: [{field: client_ip, test: is, values: [192.0.2.0/28]}]
          action: tag
        """,
    )
    small = await judge(pipeline, mail(attachment=("a.bin", b"x" * 900)))
    assert small.disposition is Disposition.INBOX
    big = await judge(pipeline, mail(attachment=("a.bin", b"x" * 1001)))
    assert [f.code for f in big.findings] == ["TRANSPORT_BIG_PART"]
    huge = await judge(pipeline, mail(text="y " * 4000))
    assert [f.code for f in huge.findings] == ["TRANSPORT_BIG_MESSAGE"]
    net = await judge(pipeline, mail(), client_ip="192.0.2.15")
    assert net.disposition is Disposition.TAGGED
    assert (await judge(pipeline, mail(), client_ip="192.0.2.16")).disposition is (
        Disposition.INBOX
    )


async def test_an_html_tag_is_an_element_not_its_name_in_text(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: FORM
          when: [{field: html_tag, test: is, values: [form]}]
          action: quarantine
        - id: BUG
          when: [{field: html_class, test: is, values: [tracking_pixels]}]
          action: none
          effects: ["add X-CustomSpam: Web bug"]
        """,
    )
    form = await judge(pipeline, mail(html="<form><input></form>"))
    assert form.disposition is Disposition.QUARANTINED
    text = await judge(pipeline, mail(html="<p>fill in the &lt;form&gt;</p><!-- <form> -->"))
    assert text.disposition is Disposition.INBOX
    bug = await judge(
        pipeline, mail(html='<p>x</p><img src="https://t.example/p" width=1 height=1>')
    )
    assert bug.findings[0].action is Action.NONE
    assert bug.findings[0].reason.endswith("The product would also: add X-CustomSpam: Web bug.")


async def test_an_empty_message_has_no_subject_text_or_attachment(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: EMPTY
          when: [{field: empty_message, test: present}]
          action: junk
        """,
    )
    assert (await judge(pipeline, mail("", ""))).disposition is Disposition.JUNK
    assert (await judge(pipeline, mail("", "hi"))).disposition is Disposition.INBOX
    assert (await judge(pipeline, mail("", "", attachment=("a.pdf", b"%PDF")))).disposition is (
        Disposition.INBOX
    )


async def test_an_allow_rule_skips_the_content_filters_after_it(tmp_path: Path) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        filters:
          - kind: transport_rules
            name: flow
            rules:
              - id: BYPASS
                when: [{field: client_ip, test: is, values: [192.0.2.1]}]
                action: allow
                skip: [score, content]
          - {kind: content, name: words, rules: [{id: W, words: [casino], action: reject}]}
        """,
    )
    raw = mail("casino")
    assert (await judge(pipeline, raw, client_ip="192.0.2.1")).verdict is VerdictAction.ACCEPT
    assert (await judge(pipeline, raw, client_ip="192.0.2.2")).verdict is VerdictAction.REJECT


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{id: X, when: [{field: subject, test: is, values: [a]}], action: tag}",
            "field 'subject' takes the tests contains, matches, not 'is'",
        ),
        (
            "{id: X, when: [{field: message_size, test: over}], action: tag}",
            "test 'over' needs size:",
        ),
        (
            "{id: X, when: [{field: header, test: contains, values: [a]}], action: tag}",
            "header: names the header field, for field: header only",
        ),
        (
            "{id: X, when: [{field: subject, test: matches, values: ['(']}], action: tag}",
            "invalid regular expression",
        ),
        (
            "{id: X, when: [{field: client_ip, test: is, values: [nope]}], action: tag}",
            "'nope' is not an IP address or CIDR range",
        ),
        (
            "{id: X, when: [{field: subject, test: contains, values: [a]}], action: tag, "
            "skip: [content]}",
            "'skip' is only meaningful with action: allow",
        ),
        ("{id: X, when: [], action: tag}", "when"),
    ],
)
def test_a_bad_rule_is_a_located_profile_error(tmp_path: Path, rule: str, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        rules(tmp_path, f"- {rule}\n")
    assert message in str(caught.value)
    assert "filters[0].rules[0]" in str(caught.value) or "filters.0.rules.0" in str(caught.value)


async def test_attachment_extensions_and_names_are_read_inside_archives_too(
    tmp_path: Path,
) -> None:
    # New-TransportRule.md -AttachmentExtensionMatchesWords: files nested inside attachments
    # are inspected too.
    pipeline = rules(
        tmp_path,
        """\
        - id: EXT
          when: [{field: attachment_extension, test: is, values: [js]}]
          action: quarantine
        - id: NAME
          when: [{field: attachment_name, test: matches, values: ['^invoice_\\d+']}]
          action: tag
        """,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("docs/invoice_2024.js", "var a = 1;\n")
    verdict = await judge(pipeline, mail(attachment=("statement.zip", buffer.getvalue())))
    assert [f.code for f in verdict.findings] == ["TRANSPORT_EXT", "TRANSPORT_NAME"]
    assert "statement.zip/docs/invoice_2024.js" in verdict.findings[0].detail["matched"][0]
    plain = await judge(pipeline, mail(attachment=("statement.pdf", b"%PDF-1.4\n")))
    assert plain.disposition is Disposition.INBOX


async def test_spf_result_reads_the_spf_filter_before_it(tmp_path: Path) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        filters:
          - {kind: spf, name: spf, on: {fail: {action: none}}}
          - kind: transport_rules
            name: flow
            rules:
              - id: SPF_HARD_FAIL
                when: [{field: spf_result, test: is, values: [fail]}]
                action: junk
        """,
    )
    zone = {
        "fail.example": [{"TXT": "v=spf1 ip4:192.0.2.1 -all"}],
        "pass.example": [{"TXT": "v=spf1 ip4:203.0.113.5 -all"}],
    }
    lookups = Lookups(resolver=resolver_for(zone))
    failed = await judge(pipeline, mail(), mail_from="a@fail.example", lookups=lookups)
    assert failed.disposition is Disposition.JUNK
    assert failed.findings[-1].detail["matched"] == [
        "spf result is fail (SPF fail for a@fail.example)"
    ]
    passed = await judge(pipeline, mail(), mail_from="a@pass.example", lookups=lookups)
    assert passed.disposition is Disposition.INBOX


async def test_rules_in_the_envelope_category_are_not_skipped_by_a_content_allowlist(
    tmp_path: Path,
) -> None:
    body = """\
    filters:
      - kind: envelope
        name: allow
        rules: [{{match: client_ip, entries: [192.0.2.1], action: allow, skip: [score, content]}}]
      - kind: transport_rules
        name: flow
        category: {category}
        rules:
          - id: NO_CASINO
            when: [{{field: subject, test: contains, values: [casino]}}]
            action: reject
    """
    raw = mail("casino")
    envelope = compile_yaml(tmp_path, body.format(category="envelope"))
    assert (await judge(envelope, raw, client_ip="192.0.2.1")).verdict is VerdictAction.REJECT
    content = compile_yaml(tmp_path, body.format(category="content"))
    assert (await judge(content, raw, client_ip="192.0.2.1")).verdict is VerdictAction.ACCEPT


async def test_to_and_cc_addresses_and_executable_content(tmp_path: Path) -> None:
    pipeline = rules(
        tmp_path,
        """\
        - id: TO_CEO
          when: [{field: to_cc_address, test: is, values: [ceo@corp.example]}]
          action: tag
        - id: EXECUTABLE
          when: [{field: attachment_executable, test: present}]
          action: quarantine
        """,
    )
    cc = await judge(pipeline, mail(headers={"Cc": "The CEO <CEO@corp.example>, x@corp.example"}))
    assert [f.code for f in cc.findings] == ["TRANSPORT_TO_CEO"]
    nobody = await judge(pipeline, mail(headers={"Cc": "ceo@corp.example.evil"}))
    assert nobody.disposition is Disposition.INBOX
    # An executable whatever its name (New-TransportRule.md -AttachmentHasExecutableContent:
    # the file's properties, not its extension).
    executable = b"MZ" + b"\x90" * 58 + b"\x40\x00\x00\x00" + b"PE\0\0" + b"\0" * 200
    renamed = await judge(pipeline, mail(attachment=("notes.txt", executable)))
    assert renamed.disposition is Disposition.QUARANTINED
    named = await judge(pipeline, mail(attachment=("setup.exe", b"just text, not a program")))
    assert named.disposition is Disposition.INBOX
