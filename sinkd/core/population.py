"""The recipient population: how many of the companies a sender writes to get a message intact,
stripped, quarantined or rejected, why, and what a change would gain.

Owns ``profiles/population.yaml`` (validated here, errors located like profiles') and the exact
estimate: every combination of the survey's filter features is enumerated (2^n of them, no
sampling), each judged by a pipeline holding only that combination's filters, through the same
staged ``Transaction`` as ``sinkd check``. Shares are ``Fraction``s inside, floats outside. Pure:
DNS and spamd come in as ``Lookups``; it never opens a socket and reads only profile files.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, field_validator

from sinkd.core.engine import Pipeline, Router, Transaction, compile_profile
from sinkd.core.message import ParsedMessage, parse
from sinkd.core.model import (
    DISPOSITION_OF_ACTION,
    Action,
    ClientIdentity,
    Envelope,
    Finding,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.core.ports import NO_LOOKUPS, Lookups
from sinkd.core.profiles import (
    LoadedProfile,
    ProfileId,
    ProfileSet,
    _read_yaml,
    _validation_error,
    located_error,
)
from sinkd.core.schema import ReplyTemplate, Spec
from sinkd.errors import ProfileError

POPULATION_FILE = "population.yaml"
FeatureId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
Share = Annotated[float, Field(ge=0, le=1)]


class FeatureSpec(Spec):
    """One survey finding: the share of companies that run it and the filters it means."""

    id: FeatureId
    share: Share
    profile: ProfileId
    filters: list[str] = Field(min_length=1)


class BaseSpec(Spec):
    """Filters every filtering company runs; the profile also gives scoring, lists, replies."""

    profile: ProfileId
    filters: list[str] = []


class PopulationSpec(Spec):
    schema_: Literal["sinkd.population/v1"] = Field(alias="schema")
    source: str = Field(min_length=1)
    assumptions: list[str] = Field(min_length=1)
    no_filter_share: Share
    no_filter_profile: ProfileId = "no-filter"
    base: BaseSpec
    features: list[FeatureSpec] = Field(min_length=1, max_length=12)

    @field_validator("features")
    @classmethod
    def _unique_ids(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        ids = [f.id for f in features]
        for ident in ids:
            if ids.count(ident) > 1:
                raise ValueError(f"two features have the id {ident!r}; ids must be unique")
        return features


class Outcome(enum.StrEnum):
    """What a recipient company does with the message."""

    INTACT = "intact"  # accepted, nothing stripped
    STRIPPED = "stripped"  # accepted, something stripped
    QUARANTINE = "quarantine"
    REJECT = "reject"


def outcome_of(verdict: Verdict) -> Outcome:
    if verdict.verdict is VerdictAction.REJECT:
        return Outcome.REJECT
    if verdict.verdict is VerdictAction.QUARANTINE:
        return Outcome.QUARANTINE
    return Outcome.STRIPPED if verdict.stripped else Outcome.INTACT


def is_threshold(finding: Finding) -> bool:
    """Whether ``finding`` is the score threshold's (the scoring step's, not a filter's)."""
    return finding.filter == "scoring" and finding.code.startswith("SCORE_")


def culprits(verdict: Verdict) -> list[Finding]:
    """The findings that push a verdict away from intact: strip actions for a stripped message;
    for a quarantine or a refusal, the findings whose own action leads there and, when the score
    threshold led there, every finding that added points."""
    outcome = outcome_of(verdict)
    if outcome is Outcome.INTACT:
        return []
    if outcome is Outcome.STRIPPED:
        return [f for f in verdict.findings if f.action is Action.STRIP]
    wanted = verdict.verdict

    def leads(f: Finding) -> bool:
        disposition = DISPOSITION_OF_ACTION.get(f.action)
        return disposition is not None and disposition.verdict is wanted

    by_score = any(is_threshold(f) and leads(f) for f in verdict.findings)
    return [
        f
        for f in verdict.findings
        if not is_threshold(f) and (leads(f) or (by_score and f.score > 0))
    ]


# --- fixes ------------------------------------------------------------------------------------

# Exact codes first, then code families (the longest matching prefix wins).
FIXES: Mapping[str, str] = {
    "MIME_HIDDEN_TEXT": "remove the hidden preheader text",
    "MIME_IMAGES": "send without images or host them as links the reader can load",
    "MIME_TRACKING_PIXELS": "drop the tracking pixels",
    "MIME_MULTIMEDIA": "replace embedded video and audio with links to them",
    "MIME_ACTIVE_SCRIPT": "remove scripts, forms and event handlers from the HTML",
    "MIME_MACRO_DOCUMENTS": "send documents without macros (PDF, .docx, .xlsx)",
    "MIME_ENCRYPTED_ARCHIVES": "send files unencrypted or share them as links",
    "MIME_UNSCANNABLE": "send attachments a scanner can open, or share them as links",
    "MIME_EXECUTABLE_ATTACHMENT": "do not attach programs or scripts; share them as links",
    "MIME_": "remove the content the policy objects to",
    "CONTENT_TRIGGER_WORD": "reword: avoid {words}",
    "CONTENT_SUBJECT_ALL_CAPS": "write the subject in normal case, not in capitals",
    "CONTENT_GTUBE": "remove the GTUBE spam test pattern",
    "CONTENT_": "reword the passages the content rules match",
    "SPF_FAIL": "publish SPF that covers your sending servers",
    "SPF_": "publish SPF that covers your sending servers",
    "SENDERID_": "publish SPF that covers your sending servers and the From domain",
    "ENVELOPE_": "send from an address and a server the recipients do not block, "
    "and ask them to remove you from their block list",
    "DNSBL_LISTED": "delist the sending IP",
    "DNSBL_": "make sure the blocklist lookups of your sending IP answer",
    "URIBL_LISTED": "remove links to domains on blocklists",
    "RHSBL_LISTED": "delist the sender domain",
    "SIZE_": "make the message smaller: link large files instead of attaching them",
    "FORMAT_": "fix the message format: CRLF line endings, lines under 998 characters, "
    "well-formed MIME",
}


def fix_for(code: str, findings: Sequence[Finding]) -> str:
    """One sentence a marketer can act on, for a finding code (from the table ``FIXES``)."""
    template = FIXES.get(code)
    if template is None:
        families = [p for p in FIXES if p.endswith("_") and code.startswith(p)]
        if families:
            template = FIXES[max(families, key=len)]
    if template is None:
        if not findings:
            return f"address {code}"
        reason = findings[0].reason.rstrip(".")
        return f"address {reason[:1].lower()}{reason[1:]}"
    if "{words}" in template:
        words: set[str] = set()
        for finding in findings:
            matches = finding.detail.get("matches")
            if isinstance(matches, Mapping):
                words.update(str(w) for w in matches)
        listed = ", ".join(f"'{w}'" for w in sorted(words)) or "the flagged words"
        return template.format(words=listed)
    return template


# --- the estimate -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cause:
    code: str
    share_lost: Fraction  # recipients for whom this code is among the reasons it is not intact
    gain_intact: Fraction  # share that becomes intact when this code's findings are gone
    fix: str
    reason: str  # one of its findings' reasons, in plain language

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "share_lost": float(self.share_lost),
            "fix": self.fix,
            "gain_intact": float(self.gain_intact),
        }


@dataclass(frozen=True, slots=True)
class Combination:
    """One group of recipient companies: the features they run and what they make of it."""

    features: tuple[str, ...]  # feature ids; () with no_filter=False is the base filters only
    no_filter: bool
    share: Fraction
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Estimate:
    shares: Mapping[Outcome, Fraction]
    causes: tuple[Cause, ...]
    gain_all: Fraction  # share that becomes intact when every cause is fixed at once
    combinations: tuple[Combination, ...]
    source: str
    assumptions: tuple[str, ...]

    def share(self, outcome: Outcome) -> Fraction:
        return self.shares[outcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "population": {o.value: float(self.shares[o]) for o in Outcome},
            "causes": [c.to_json() for c in self.causes],
            "gain_all_intact": float(self.gain_all),
            "model": {"source": self.source, "assumptions": list(self.assumptions)},
        }


@dataclass
class _Run:
    """One combination's verdict plus every finding of every stage, for counterfactuals."""

    pipeline: Pipeline
    verdict: Verdict
    envelope: Envelope
    envelope_findings: list[Finding]
    all_findings: list[Finding]


def _undecided(findings: Sequence[Finding]) -> list[Finding]:
    return [dataclasses.replace(f, decided=False) for f in findings if not is_threshold(f)]


@dataclass
class Population:
    """``population.yaml`` resolved against a profile set; pipelines are built once each."""

    spec: PopulationSpec
    path: Path
    profiles: ProfileSet
    _pipelines: dict[frozenset[str] | None, Pipeline] = field(default_factory=dict)

    @property
    def profile_ids(self) -> list[str]:
        ids = [self.spec.no_filter_profile, self.spec.base.profile]
        ids.extend(f.profile for f in self.spec.features)
        return list(dict.fromkeys(ids))

    def combinations(self) -> list[tuple[frozenset[str] | None, Fraction]]:
        """(feature ids, share) for every combination; ``None`` is the no-filter share."""
        no_filter = Fraction(str(self.spec.no_filter_share))
        out: list[tuple[frozenset[str] | None, Fraction]] = [(None, no_filter)]
        features = self.spec.features
        for present in itertools.product((False, True), repeat=len(features)):
            share = 1 - no_filter
            for feature, has in zip(features, present, strict=True):
                p = Fraction(str(feature.share))
                share *= p if has else 1 - p
            out.append(
                (frozenset(f.id for f, h in zip(features, present, strict=True) if h), share)
            )
        return out

    def pipeline(self, chosen: frozenset[str] | None) -> Pipeline:
        if chosen not in self._pipelines:
            self._pipelines[chosen] = self._build(chosen)
        return self._pipelines[chosen]

    def _build(self, chosen: frozenset[str] | None) -> Pipeline:
        if chosen is None:
            return compile_profile(self.profiles.resolve(self.spec.no_filter_profile))
        base = self.profiles.resolve(self.spec.base.profile)
        wanted: list[tuple[LoadedProfile, list[str]]] = [(base, list(self.spec.base.filters))]
        for feature in self.spec.features:
            if feature.id in chosen:
                wanted.append((self.profiles.resolve(feature.profile), list(feature.filters)))
        order = list(dict.fromkeys(loaded.profile.id for loaded, _ in wanted))
        picked: dict[tuple[int, int], Any] = {}
        lists = dict(base.profile.lists)
        catalogue: dict[str, ReplyTemplate] = {}
        for loaded, names in wanted:
            rank = order.index(loaded.profile.id)
            for index, spec in enumerate(loaded.profile.filters):
                if spec.name in names:
                    picked[(rank, index)] = spec
            for name, value in loaded.profile.lists.items():
                if lists.setdefault(name, value) != value:
                    raise ProfileError(
                        f"{self.path}: profiles {base.profile.id!r} and {loaded.profile.id!r} "
                        f"both define the list {name!r}, differently",
                        path=str(self.path),
                    )
            catalogue.update(loaded.catalogue)
        catalogue.update(base.catalogue)
        label = "+".join(sorted(chosen)) or "base"
        profile = base.profile.model_copy(
            update={
                "id": f"{base.profile.id}[{label}]",
                "filters": [picked[key] for key in sorted(picked)],
                "lists": lists,
            }
        )
        return compile_profile(LoadedProfile(profile, base.path, catalogue))

    async def estimate(
        self,
        raw: bytes,
        *,
        mail_from: str,
        rcpt: str,
        client: ClientIdentity,
        lookups: Lookups = NO_LOOKUPS,
        auth_user: str | None = None,
        tls: bool = False,
    ) -> Estimate:
        """Judge ``raw`` for every combination and add the shares up (exactly, to 1), as sent
        by ``client`` (AUTH'd as ``auth_user``, under TLS or not)."""
        message = parse(raw)
        combos: list[Combination] = []
        runs: list[tuple[Fraction, _Run]] = []
        for chosen, share in self.combinations():
            sender = _Sender(client, auth_user, tls)
            run = await _judge(
                self.pipeline(chosen), raw, message, mail_from, rcpt, sender, lookups
            )
            runs.append((share, run))
            features = tuple(f.id for f in self.spec.features if chosen and f.id in chosen)
            combos.append(Combination(features, chosen is None, share, run.verdict))
        shares = dict.fromkeys(Outcome, Fraction(0))
        for share, run in runs:
            shares[outcome_of(run.verdict)] += share
        assert sum(shares.values()) == 1, shares
        causes = _causes(runs, message)
        return Estimate(
            shares=shares,
            causes=tuple(causes),
            gain_all=_gain_all(runs, message, causes),
            combinations=tuple(combos),
            source=" ".join(self.spec.source.split()),
            assumptions=tuple(self.spec.assumptions),
        )


@dataclass(frozen=True, slots=True)
class _Sender:
    """Who sends the message every combination judges."""

    client: ClientIdentity
    auth_user: str | None
    tls: bool


async def _judge(
    pipeline: Pipeline,
    raw: bytes,
    message: ParsedMessage,
    mail_from: str,
    rcpt: str,
    sender: _Sender,
    lookups: Lookups,
) -> _Run:
    """MAIL, RCPT, DATA through a ``Transaction``, as ``sinkd check``. When the envelope is
    refused, the later stages are still evaluated once (not decided), so that the gain of
    fixing the envelope can be decided from findings without evaluating anything again."""
    counter = itertools.count(1)
    transaction = Transaction(
        Router(pipeline),
        sender.client,
        lambda: f"population-{next(counter)}",
        lookups,
        auth_user=sender.auth_user,
        tls=sender.tls,
    )
    verdict = await transaction.mail(mail_from, len(raw))
    envelope = dataclasses.replace(transaction.envelope, rcpt_to=(rcpt,))
    if verdict is None:
        verdict = await transaction.rcpt(rcpt)
        if verdict is None:
            verdict = (await transaction.data(raw))[0]
            findings = _undecided(verdict.findings)
            early = [f for f in findings if f.stage in (Stage.MAIL, Stage.RCPT)]
            return _Run(pipeline, verdict, envelope, early, findings)
        early = _undecided(verdict.findings)
    else:
        early = _undecided(verdict.findings)
        early += await pipeline.at_rcpt(envelope, rcpt, early, lookups)
    late = await pipeline.at_data(envelope, message, early, lookups)
    return _Run(pipeline, verdict, envelope, early, [*early, *late])


def _redecide(run: _Run, message: ParsedMessage, drop: frozenset[str]) -> Outcome:
    """The outcome without the findings of the codes ``drop``, by ``Pipeline.decide``: refused
    at the envelope if a hard envelope finding remains, else decided at the end of DATA."""
    early = [f for f in run.envelope_findings if f.code not in drop]
    if any(f.action.refuses for f in early):
        verdict = run.pipeline.decide(
            early, stage=Stage.RCPT, envelope=run.envelope, message_id="population"
        )
    else:
        verdict = run.pipeline.decide(
            [f for f in run.all_findings if f.code not in drop],
            stage=Stage.DATA,
            envelope=run.envelope,
            message_id="population",
            message=message,
        )
    return outcome_of(verdict)


def _gain_all(
    runs: Sequence[tuple[Fraction, _Run]], message: ParsedMessage, causes: Sequence[Cause]
) -> Fraction:
    """The share that becomes intact when every cause is fixed at once. Where causes overlap
    (images and hidden text stripped by the same company) no single fix gains anything, yet
    fixing them all does: this is the number that says so."""
    codes = frozenset(c.code for c in causes)
    return _gain(runs, message, codes) if codes else Fraction(0)


def _gain(
    runs: Sequence[tuple[Fraction, _Run]], message: ParsedMessage, drop: frozenset[str]
) -> Fraction:
    """The share that becomes intact (net of any that stops being so) without ``drop``."""
    gain = Fraction(0)
    for share, run in runs:
        before = outcome_of(run.verdict) is Outcome.INTACT
        after = _redecide(run, message, drop) is Outcome.INTACT
        gain += share * (int(after) - int(before))
    return gain


def _causes(runs: Sequence[tuple[Fraction, _Run]], message: ParsedMessage) -> list[Cause]:
    lost: dict[str, Fraction] = {}
    examples: dict[str, list[Finding]] = {}
    for share, run in runs:
        for code in dict.fromkeys(f.code for f in culprits(run.verdict)):
            lost[code] = lost.get(code, Fraction(0)) + share
    for _, run in runs:
        for finding in run.all_findings:
            if finding.code in lost:
                examples.setdefault(finding.code, []).append(finding)
    causes: list[Cause] = []
    for code, share_lost in lost.items():
        gain = _gain(runs, message, frozenset({code}))
        found = examples.get(code, [])
        reason = found[0].reason if found else code
        causes.append(Cause(code, share_lost, gain, fix_for(code, found), reason))
    causes.sort(key=lambda c: (-c.share_lost, -c.gain_intact, c.code))
    return causes


# --- loading ----------------------------------------------------------------------------------


def population_path(profiles: ProfileSet) -> Path:
    """``population.yaml`` of the last profiles directory that has one (built-ins first)."""
    found = [d / POPULATION_FILE for d in profiles.dirs if (d / POPULATION_FILE).is_file()]
    if not found:
        raise ProfileError(f"no {POPULATION_FILE} in {', '.join(map(str, profiles.dirs))}")
    return found[-1]


def load_population(profiles: ProfileSet, path: Path | None = None) -> Population:
    """Validate a population file; errors name the file, the field and the line."""
    path = path or population_path(profiles)
    source = _read_yaml(path)
    try:
        spec = PopulationSpec.model_validate(source.data)
    except ValidationError as exc:
        raise _validation_error(source, exc, source.data) from None
    names = set(profiles.names())

    def check(loc: list[str | int], profile: str, filters: Sequence[str]) -> None:
        if profile not in names:
            raise located_error(
                source,
                [*loc, "profile"],
                f"unknown profile {profile!r} (available: {', '.join(sorted(names))})",
            )
        have = [f.name for f in profiles.resolve(profile).profile.filters]
        for index, name in enumerate(filters):
            if name not in have:
                raise located_error(
                    source,
                    [*loc, "filters", index],
                    f"profile {profile!r} has no filter {name!r} (it has {', '.join(have)})",
                )

    if spec.no_filter_profile not in names:
        raise located_error(
            source, ["no_filter_profile"], f"unknown profile {spec.no_filter_profile!r}"
        )
    check(["base"], spec.base.profile, spec.base.filters)
    for index, feature in enumerate(spec.features):
        check(["features", index], feature.profile, feature.filters)
    return Population(spec, path, profiles)
