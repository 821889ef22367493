"""Finding codes are declared: every code a filter gives is in its kind's ``codes``, every code
the test corpus draws from the built-in profiles is in the catalogue, and the documentation's
code table is the one ``python -m sinkd.core.codes --markdown`` prints."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest

from sinkd.core.codes import catalogue, is_declared, markdown
from sinkd.core.filters import REGISTRY, Filter
from sinkd.core.model import Action, Category, FindingCode, Stage, Unjudged
from sinkd.core.schema import CompileContext
from sinkd.errors import UndeclaredCode
from tests.support.corpus import (
    SPAMD_PROFILE,
    ProfileJudge,
    builtin_profiles,
    envelopes,
    message_names,
    read_message,
)
from tests.support.docs import hook, markers, page, rendered

FILTERS_PAGE = "filters.md"  # docs/filters.md: the kinds, their prose, the generated catalogue
CODES_MARKER = "<!-- sinkd:codes -->"
OFFLINE_PROFILES = [p for p in builtin_profiles() if p != SPAMD_PROFILE]


class _Probe(Filter):
    kind = "probe"
    category = Category.CONTENT
    codes = (FindingCode("PROBE_SEEN", "seen"), FindingCode("PROBE_<ID>", "a rule matched"))


def _probe() -> _Probe:
    return _Probe(SimpleNamespace(name="probe-1"), CompileContext(lists={}, replies={}))


def test_a_finding_built_with_a_declared_code_carries_the_filters_name_category_and_stage() -> None:
    finding = _probe().finding("PROBE_SEEN", Action.NONE, "Seen.")
    assert (finding.code, finding.filter, finding.category, finding.stage) == (
        "PROBE_SEEN",
        "probe-1",
        Category.CONTENT,
        Stage.DATA,
    )


def test_a_code_family_covers_the_codes_its_placeholder_stands_for() -> None:
    assert _probe().finding("PROBE_MY_RULE_2", Action.SCORE, "Matched.").code == "PROBE_MY_RULE_2"


def test_a_finding_with_an_undeclared_code_is_an_undeclared_code_error() -> None:
    with pytest.raises(UndeclaredCode, match="PROBE"):
        _probe().finding("PROBE", Action.NONE, "Not declared.")
    with pytest.raises(UndeclaredCode, match="OTHER_SEEN"):
        _probe().finding("OTHER_SEEN", Action.NONE, "Not declared.")


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_each_filter_kind_declares_its_codes_each_once_with_a_meaning(kind: str) -> None:
    codes = [c.code for c in REGISTRY[kind].codes]
    assert codes, f"{kind} declares no codes"
    assert len(codes) == len(set(codes))
    assert all(c.meaning.strip() and "\n" not in c.meaning for c in REGISTRY[kind].codes)


def test_no_code_is_declared_by_two_filter_kinds() -> None:
    by_code: dict[str, set[str]] = {}
    for declared in catalogue():
        by_code.setdefault(declared.code.code, set()).add(declared.by)
    assert {code: by for code, by in by_code.items() if len(by) > 1} == {}


@pytest.mark.parametrize("profile", OFFLINE_PROFILES)
def test_every_code_the_corpus_draws_from_a_builtin_profile_is_declared(profile: str) -> None:
    judge = ProfileJudge(profile)
    known = envelopes()

    async def codes() -> tuple[set[str], list[str]]:
        found: set[str] = set()
        errors: list[str] = []
        for name in message_names():
            verdict = await judge.verdict(read_message(name), known[name])
            found.update(verdict.codes)
            # A filter that builds an undeclared code raises, and the engine records that as
            # the declared <KIND>_ERROR: so no filter may fail on the corpus either.
            errors += [
                f"{name}: {f.detail}" for f in verdict.findings if f.unjudged is Unjudged.ERROR
            ]
        return found, errors

    emitted, errors = asyncio.run(codes())
    assert sorted(c for c in emitted if not is_declared(c)) == []
    assert errors == []


def test_the_docs_code_table_is_generated_from_the_declarations() -> None:
    # docs/filters.md asks for the catalogue once, and the site shows exactly what
    # python -m sinkd.core.codes --markdown prints in place of the marker.
    assert markers(page(FILTERS_PAGE)).count("codes") == 1
    before, _, after = page(FILTERS_PAGE).partition(CODES_MARKER)
    expand = hook().expand  # the page's other generated table, the filter kinds
    assert rendered(FILTERS_PAGE) == expand(before) + markdown().rstrip("\n") + expand(after)


def test_every_code_the_docs_name_beside_the_filter_kinds_is_declared() -> None:
    prose = page(FILTERS_PAGE).partition(CODES_MARKER)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_<>]+)`", prose))
    # SpamAssassin's own rule names, quoted where the docs explain what a class models.
    spamassassin_rules = {"HTML_IMAGE_ONLY_04"}
    placeholders = re.compile(r"<[A-Z]+>")
    undeclared = sorted(
        code for code in named - spamassassin_rules if not is_declared(placeholders.sub("X", code))
    )
    assert len(named) > 50
    assert undeclared == []
