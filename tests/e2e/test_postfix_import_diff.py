"""The Postfix importer measured against the real Postfix (issue 20): each configuration of
``tests/fixtures/postfix`` runs in a private Postfix 3.7 (with the real policyd-spf and postgrey
where it names them, every DNS query answered by the test's own server) and, imported with
``sinkd profiles import postfix``, in a real ``sinkd serve``. The same transactions go to both:
the hand-made messages that hit each construct of the configuration, the whole golden corpus
with its envelopes, and a seeded sample of the SpamAssassin public corpus. Per message the
stage, code, enhanced code and text of every reply from MAIL FROM on must be identical.

A difference that cannot be removed is named in ``KNOWN`` with its reason; every other one fails
the test, listed. A KNOWN entry that no message shows any more fails the test too, so the list
cannot go stale. ``POSTFIX`` pins what Postfix itself answered to each hand-made message (stage
and code), so that a configuration that stopped exercising its construct is noticed.

The full public corpus is ``bench/postfix_import_diff.py``'s job.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.postfix_diff import (
    CONFIGS,
    HANDMADE,
    Compared,
    golden_cases,
    load_config,
    public_cases,
    records_for,
    running,
)

PUBLIC_PER_KIND = 15  # ham and as many spam per configuration (bench/postfix_import_diff.py: all)


@dataclasses.dataclass(frozen=True)
class Known:
    """A difference the test accepts, by name, with why it cannot be removed."""

    name: str
    reason: str
    applies: Callable[[Compared], bool]


KNOWN: dict[str, list[Known]] = {
    "office-gateway": [],
    "strict-no-delay": [],
    "dnsbl-unknown": [],
    "content-checks": [],
    "policy-services": [],
}

# What the importer reports as not translated, by origin: a new item (or one gone) is noticed
# even when no message of the differential happens to exercise it.
UNTRANSLATED: dict[str, set[str]] = {
    "office-gateway": set(),
    "strict-no-delay": set(),
    "dnsbl-unknown": {
        "main.cf:23",  # smtpd_helo_required (the harness always sends EHLO)
        "main.cf:26",  # reject_unknown_reverse_client_hostname (XCLIENT cannot show it)
    },
    "content-checks": set(),
    "policy-services": set(),
}
_UNTRANSLATED_LINE = re.compile(r"^untranslated: (\S+:\d+):", re.MULTILINE)

# What Postfix 3.7.11 answered to each hand-made message (observed): the stage and code.
POSTFIX: dict[str, dict[str, str]] = {
    "office-gateway": {
        "clean": "end-of-data 250",
        "mynetworks-client-skips-everything": "end-of-data 250",
        "cidr-ok-before-reject": "end-of-data 250",
        "cidr-reject": "rcpt 554",
        "cidr-5nn-text": "rcpt 550",
        "cidr-4nn-text": "rcpt 450",
        "invalid-helo": "rcpt 501",
        "non-fqdn-helo": "rcpt 504",
        "helo-reject-text": "rcpt 554",
        "helo-parent-domain-5nn": "rcpt 550",
        "helo-reject": "rcpt 554",
        "non-fqdn-sender": "rcpt 504",
        "sender-reject": "rcpt 554",
        "sender-domain-text": "rcpt 554",
        "sender-subdomain": "rcpt 554",
        "sender-5nn": "rcpt 554",
        "sender-dunno-postmaster": "rcpt 554",
        "sender-ok-partner": "rcpt 554",
        "sender-warn": "end-of-data 250",
        "sender-hold": "end-of-data 250",
        "sender-discard": "end-of-data 250",
        "null-sender": "end-of-data 250",
        "relay-denied": "rcpt 554",
        "non-fqdn-recipient": "rcpt 504",
        "recipient-reject": "rcpt 554",
        "recipient-5nn": "rcpt 550",
        "mixed-recipients": "end-of-data 250",
        "data-restriction": "data 554",
        "end-of-data-restriction": "end-of-data 554",
    },
    "strict-no-delay": {
        "clean": "end-of-data 250",
        "pcre-dynamic-client-name": "connect 550",
        "pcre-client-address": "connect 554",
        "regexp-bare-ip-helo": "helo 554",
        "regexp-own-name-helo": "helo 550",
        "regexp-localhost-helo": "helo 554",
        "non-fqdn-helo-after-table": "helo 504",
        "invalid-helo": "helo 501",
        "non-fqdn-sender": "mail 504",
        "pcre-numeric-sender": "mail 554",
        "pcre-domain-5nn": "mail 554",
        "pcre-dollar-substitution": "mail 554",
        "null-sender-dunno": "end-of-data 250",
        "relay-denied": "rcpt 454",
        "regexp-recipient-substitution": "rcpt 554",
        "regexp-recipient-4nn": "rcpt 450",
        "size-declared-over-limit": "mail 552",
        "size-over-limit": "end-of-data 552",
    },
    "dnsbl-unknown": {
        "clean": "end-of-data 250",
        "unknown-client-name": "rcpt 450",
        "unknown-helo": "rcpt 450",
        "invalid-helo": "rcpt 501",
        "unknown-sender-domain": "rcpt 550",
        "relay-check-before-unknown-recipient-domain": "rcpt 454",
        "rbl-zen-listed": "rcpt 554",
        "rbl-zen-outside-filter": "end-of-data 250",
        "rbl-spamcop-reply-map": "rcpt 554",
        "rhsbl-sender": "rcpt 554",
        "rhsbl-helo": "rcpt 554",
        "rhsbl-client": "rcpt 554",
        "client-name-given-by-xclient-passes": "end-of-data 250",
    },
    "content-checks": {
        "clean": "end-of-data 250",
        "header-reject-in-if": "end-of-data 550",
        "header-dunno-in-if": "end-of-data 250",
        "header-warn-empty-subject": "end-of-data 250",
        "header-discard": "end-of-data 250",
        "header-hold": "end-of-data 250",
        "header-ignore": "end-of-data 250",
        "header-filter": "end-of-data 250",
        "header-reject-from": "end-of-data 550",
        "mime-attachment-exe": "end-of-data 550",
        "nested-header-reject": "end-of-data 550",
        "body-reject-no-text": "end-of-data 550",
        "body-iframe": "end-of-data 550",
        "body-warn": "end-of-data 250",
        "body-discard": "end-of-data 250",
        "folded-subject": "end-of-data 550",
        "size-over-limit": "end-of-data 552",
    },
    "policy-services": {
        "greylisted-first-attempt": "rcpt 450",
        "partner-skips-policies": "end-of-data 250",
        "spf-fail": "rcpt 550",
        "relay-denied": "rcpt 454",
        "spf-fail-mixed-case-sender": "rcpt 550",
        "spf-helo-fail": "rcpt 550",
        "spf-helo-fail-null-sender": "rcpt 550",
        "spf-fail-explained": "rcpt 550",
        "spf-softfail-is-greylisted": "rcpt 450",
    },
}


def test_every_configuration_has_its_known_list_and_its_observed_replies() -> None:
    assert set(KNOWN) == set(CONFIGS) == set(POSTFIX) == set(HANDMADE) == set(UNTRANSLATED)
    for name in CONFIGS:
        load_config(name)  # parses
        assert set(POSTFIX[name]) == {c.name.removeprefix("handmade/") for c in HANDMADE[name]}


@pytest.mark.parametrize("name", CONFIGS)
def test_the_imported_profile_answers_every_message_as_postfix_does(
    name: str, tmp_path: Path
) -> None:
    config = load_config(name)
    cases = HANDMADE[name] + golden_cases(records_for(config)) + public_cases(PUBLIC_PER_KIND)
    with running(name, tmp_path) as run:
        compared = run.compare(cases)
        said = run.imported.stderr
    assert set(_UNTRANSLATED_LINE.findall(said)) == UNTRANSLATED[name], said

    observed = {
        c.case.removeprefix("handmade/"): f"{c.postfix.stage} {c.postfix.final[1]}"
        for c in compared
        if c.case.startswith("handmade/")
    }
    assert observed == POSTFIX[name], "Postfix no longer answers the hand-made messages so"

    seen: Counter[str] = Counter()
    unexplained: list[Compared] = []
    for result in compared:
        if result.identical:
            continue
        known = next((k for k in KNOWN[name] if k.applies(result)), None)
        if known is None:
            unexplained.append(result)
        else:
            seen[known.name] += 1
    stale = [k.name for k in KNOWN[name] if not seen[k.name]]
    identical = sum(c.identical for c in compared)
    figures = (
        f"{name}: {len(compared)} messages, {identical} identical, "
        f"{sum(seen.values())} known differences {dict(seen)}, {len(unexplained)} unexplained"
    )
    print(figures)
    assert not unexplained, f"{figures}:\n{grouped(unexplained)}"
    assert not stale, f"{figures}; KNOWN entries no message shows any more: {stale}"


def grouped(results: list[Compared], examples: int = 3) -> str:
    """The differences grouped by what each side answered, a few examples of each."""
    groups: dict[str, list[Compared]] = {}
    for result in results:
        p, s = result.postfix, result.sinkd
        key = (
            f"postfix {p.stage} {p.final[1]} [{p.disposition}]"
            f" / sinkd {s.stage} {s.final[1]} [{s.disposition}]"
        )
        groups.setdefault(key, []).append(result)
    lines = []
    for key, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        lines.append(f"{len(members)} x {key}")
        lines += [f"  {m}".replace("\n", "\n  ") for m in members[:examples]]
    return "\n".join(lines)
