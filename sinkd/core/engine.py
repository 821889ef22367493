"""The filter engine: compiled profiles, recipient routing and the staged evaluation of one
SMTP transaction into verdicts.

Owns how findings combine: scores add up against the profile's thresholds, hard actions apply
directly, the strictest disposition wins, and every finding is kept. It is a pure function of
envelope, raw message, profile and injected lookups; it never opens sockets, touches disk,
logs decisions or formats SMTP lines (replies are ``Reply`` values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sinkd.core.authres import AUTHSERV_ID, add_authentication_results, authentication_results
from sinkd.core.filters import EnvelopeContext, Filter, MessageContext, reply_variables
from sinkd.core.message import ParsedMessage, parse
from sinkd.core.model import (
    DISPOSITION_OF_ACTION,
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    FindingCode,
    Reply,
    Stage,
    StripPlan,
    Unjudged,
    Verdict,
    VerdictAction,
)
from sinkd.core.ports import NO_LOOKUPS, Lookups
from sinkd.core.profiles import LoadedProfile, Profile, compile_loaded
from sinkd.core.schema import ReplyTemplate
from sinkd.core.strip import apply_strip

QUEUED = ReplyTemplate(250, "2.0.0", "Ok: queued as ${id}")

# The codes the engine itself gives, beside those each filter kind declares.
CODES: tuple[FindingCode, ...] = (
    FindingCode("SCORE_TAG", "the total score reached the tag threshold"),
    FindingCode("SCORE_JUNK", "the total score reached the junk threshold"),
    FindingCode("SCORE_QUARANTINE", "the total score reached the quarantine threshold"),
    FindingCode("SCORE_REJECT", "the total score reached the reject threshold"),
    FindingCode("<KIND>_ERROR", "the filter failed on this message: a sinkd bug (unjudged)"),
    FindingCode("STRIP_ERROR", "the strip actions failed: delivered as it arrived (unjudged)"),
)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A profile compiled once: its filters instantiated, lists expanded, replies resolved."""

    profile: Profile
    filters: tuple[Filter, ...]
    mail_answerers: frozenset[str]  # filter names whose MAIL findings are answered at MAIL
    catalogue: Mapping[str, ReplyTemplate]
    reject_reply: ReplyTemplate
    policy_reply: ReplyTemplate
    tempfail_reply: ReplyTemplate
    connection_reply: ReplyTemplate  # smtp.max_connections_per_ip exceeded (421)
    # Per stage, each filter that checks anything there, with the values of every category
    # its findings may carry (for skips): a filter kind that keeps the base class's check of a
    # stage finds nothing there, so it is not called (a context and a coroutine each time).
    _envelope_stage: tuple[tuple[Filter, frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _connect_stage: tuple[tuple[Filter, frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _helo_stage: tuple[tuple[Filter, frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _data_command_stage: tuple[tuple[Filter, frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _message_stage: tuple[tuple[Filter, frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        categories = [
            (flt, frozenset(c.value for c in (flt.categories or (flt.category,))))
            for flt in self.filters
        ]
        for attribute, method in (
            ("_envelope_stage", "check_envelope"),
            ("_connect_stage", "check_connect"),
            ("_helo_stage", "check_helo"),
            ("_data_command_stage", "check_data_command"),
            ("_message_stage", "check_message"),
        ):
            base = getattr(Filter, method)
            checking = tuple((f, c) for f, c in categories if getattr(type(f), method) is not base)
            object.__setattr__(self, attribute, checking)

    @property
    def name(self) -> str:
        return self.profile.id

    async def _run(
        self,
        stage: tuple[tuple[Filter, frozenset[str]], ...],
        skip: frozenset[str],
        call: Callable[[Filter, Sequence[Finding]], Awaitable[list[Finding]]],
    ) -> list[Finding]:
        """Run the stage's filters in profile order; each sees the findings of those before it
        (DMARC reads SPF's and DKIM's)."""
        findings: list[Finding] = []
        for flt, categories in stage:
            # A filter may find more than its own category (mime: content and attachments); an
            # allowlist's skip drops the findings of the skipped categories, not the others.
            if skip and categories <= skip:
                continue
            try:
                new = await call(flt, findings)
            except Exception as exc:  # real mail of any shape must be judged
                # A filter that raises on a message is a sinkd bug, never the sender's: the
                # message is judged by the other filters, and the verdict says it is incomplete
                # (``sinkd check`` exits 5; the corpus tests demand that no message does this).
                new = [_filter_error(flt, exc)]
            if not new:
                continue
            if skip:
                new = [f for f in new if f.category.value not in skip]
            findings.extend(new)
            if flt.ends_judging and any(f.action.refuses for f in new):
                break  # the product answers this refusal before its filters run
            skip = skip | _skips(new)
        return findings

    async def at_mail(self, envelope: Envelope, lookups: Lookups = NO_LOOKUPS) -> list[Finding]:
        def check(flt: Filter, so_far: Sequence[Finding]) -> Awaitable[list[Finding]]:
            ctx = EnvelopeContext(envelope, None, lookups, tuple(so_far))
            return flt.check_envelope(Stage.MAIL, ctx)

        return await self._run(self._envelope_stage, frozenset(), check)

    async def at_rcpt(
        self,
        envelope: Envelope,
        rcpt: str,
        earlier: Sequence[Finding] = (),
        lookups: Lookups = NO_LOOKUPS,
    ) -> list[Finding]:
        before = tuple(earlier)

        def check(flt: Filter, so_far: Sequence[Finding]) -> Awaitable[list[Finding]]:
            ctx = EnvelopeContext(envelope, rcpt, lookups, (*before, *so_far))
            return flt.check_envelope(Stage.RCPT, ctx)

        return await self._run(self._envelope_stage, _skips(earlier), check)

    def answers_at(self, stage: Stage) -> bool:
        """Whether a filter of this profile answers at the greeting (``CONNECT``) or at
        HELO/EHLO (``HELO``): a profile none of whose filters does is never asked there."""
        return bool(self._connect_stage if stage is Stage.CONNECT else self._helo_stage)

    async def at_session(
        self, stage: Stage, envelope: Envelope, lookups: Lookups = NO_LOOKUPS
    ) -> list[Finding]:
        """The findings of the filters that answer the greeting (``CONNECT``) or HELO/EHLO
        (``HELO``), before any mail transaction."""
        checking = self._connect_stage if stage is Stage.CONNECT else self._helo_stage

        def check(flt: Filter, so_far: Sequence[Finding]) -> Awaitable[list[Finding]]:
            ctx = EnvelopeContext(envelope, None, lookups, tuple(so_far))
            if stage is Stage.CONNECT:
                return flt.check_connect(ctx)
            return flt.check_helo(ctx)

        return await self._run(checking, frozenset(), check)

    @property
    def answers_data_command(self) -> bool:
        """Whether a filter of this profile checks anything at the DATA command."""
        return bool(self._data_command_stage)

    async def at_data_command(
        self,
        envelope: Envelope,
        earlier: Sequence[Finding] = (),
        lookups: Lookups = NO_LOOKUPS,
    ) -> list[Finding]:
        """The findings of the filters that answer the DATA command itself (before 354)."""
        before = tuple(earlier)

        def check(flt: Filter, so_far: Sequence[Finding]) -> Awaitable[list[Finding]]:
            ctx = EnvelopeContext(envelope, None, lookups, (*before, *so_far))
            return flt.check_data_command(ctx)

        return await self._run(self._data_command_stage, _skips(earlier), check)

    async def at_data(
        self,
        envelope: Envelope,
        message: ParsedMessage,
        earlier: Sequence[Finding] = (),
        lookups: Lookups = NO_LOOKUPS,
    ) -> list[Finding]:
        before = tuple(earlier)

        def check(flt: Filter, so_far: Sequence[Finding]) -> Awaitable[list[Finding]]:
            ctx = MessageContext(envelope, message, lookups, (*before, *so_far))
            return flt.check_message(ctx)

        return await self._run(self._message_stage, _skips(earlier), check)

    def decide(
        self,
        findings: Sequence[Finding],
        *,
        stage: Stage,
        envelope: Envelope,
        message_id: str,
        subject: str | None = None,
        message: ParsedMessage | None = None,
    ) -> Verdict:
        """Combine findings into a verdict: the strictest disposition wins, and at end of DATA
        the score is compared with the profile's thresholds. Strip actions then produce the
        filtered message, unless the message is refused anyway."""
        findings = list(findings)
        skip = _skips(findings)
        score = sum(f.score for f in findings)
        if stage is Stage.DATA and "score" not in skip:
            threshold = self._threshold_finding(score, envelope)
            if threshold is not None:
                findings.append(threshold)
        final = max(
            (DISPOSITION_OF_ACTION.get(f.action, Disposition.INBOX) for f in findings),
            key=lambda d: d.rank,
            default=Disposition.INBOX,
        )
        decided_index = next(
            (
                i
                for i, f in enumerate(findings)
                if DISPOSITION_OF_ACTION.get(f.action, Disposition.INBOX) is final
            ),
            None,
        )
        if final is Disposition.INBOX:
            decided_index = None
        if decided_index is not None:
            findings[decided_index] = dataclasses.replace(findings[decided_index], decided=True)
        variables = reply_variables(envelope, id=message_id, score=round(score, 2))
        reply: Reply
        if final in (Disposition.REJECTED, Disposition.DEFERRED):
            assert decided_index is not None
            deciding = findings[decided_index]
            fallback = self.tempfail_reply if final is Disposition.DEFERRED else self.policy_reply
            reply = deciding.reply or fallback.render(variables)
            if stage is Stage.RCPT and envelope.rcpt_to:
                reply = reply.for_recipient(envelope.rcpt_to[0])
        else:
            reply = QUEUED.render(variables)
        filtered: bytes | None = None
        stripped: tuple[str, ...] = ()
        if message is not None and final.verdict is not VerdictAction.REJECT:
            plan = StripPlan()
            for finding in findings:
                if finding.action is Action.STRIP and finding.strip:
                    plan = plan.merge(finding.strip)
            if plan:
                try:
                    filtered, lines = apply_strip(message, plan)
                    stripped = tuple(lines)
                except Exception as exc:  # a message the strip path cannot rewrite is still
                    # delivered, as it arrived, with the failure on record (never a 451)
                    findings.append(_strip_error(exc))
            if any(f.category is Category.AUTHENTICATION for f in findings):
                # RFC 8601: the delivered copy says what was checked, and no forged field
                # claiming this receiver survives. AUTHSERV_ID until profiles name their own.
                value = authentication_results(AUTHSERV_ID, findings)
                base = message.raw if filtered is None else filtered
                filtered = add_authentication_results(base, value, AUTHSERV_ID)
        return Verdict(
            profile=self.profile.id,
            verdict=final.verdict,
            disposition=final,
            score=score,
            stage=stage,
            reply=reply,
            findings=tuple(findings),
            envelope=envelope,
            subject=subject,
            id=message_id,
            filtered=filtered,
            stripped=stripped,
        )

    def _threshold_finding(self, score: float, envelope: Envelope) -> Finding | None:
        thresholds = self.profile.scoring.thresholds
        levels: list[tuple[float | None, Action, str]] = [
            (thresholds.reject, Action.REJECT, "refused as spam"),
            (thresholds.quarantine, Action.QUARANTINE, "held in quarantine"),
            (thresholds.junk, Action.JUNK, "delivered to the junk folder"),
            (thresholds.tag, Action.TAG, "delivered but marked as spam"),
        ]
        for limit, action, outcome in levels:
            if limit is not None and score >= limit:
                reply = None
                if action is Action.REJECT:
                    variables = reply_variables(envelope, score=round(score, 2))
                    reply = self.reject_reply.render(variables)
                return Finding(
                    code=f"SCORE_{action.value.upper()}",
                    filter="scoring",
                    category=Category.SCORE,
                    action=action,
                    reason=(
                        f"The message scored {score:g} points, at or above the {action.value} "
                        f"threshold of {limit:g}, so it is {outcome}."
                    ),
                    stage=Stage.DATA,
                    detail={"score": round(score, 3), "threshold": limit},
                    reply=reply,
                )
        return None


def _filter_error(flt: Filter, exc: Exception) -> Finding:
    return _error_finding(
        f"{flt.kind.upper()}_ERROR",
        flt.name,
        flt.category,
        f"The {flt.name} check failed on this message ({type(exc).__name__}), so the verdict "
        "was reached without it.",
        exc,
    )


def _strip_error(exc: Exception) -> Finding:
    return _error_finding(
        "STRIP_ERROR",
        "strip",
        Category.CONTENT,
        "The parts the policy removes could not be removed from this message "
        f"({type(exc).__name__}), so it is delivered as it arrived.",
        exc,
    )


def _error_finding(code: str, name: str, category: Category, what: str, exc: Exception) -> Finding:
    """A record-only finding for a sinkd failure on one message; the verdict is incomplete."""
    return Finding(
        code=code,
        filter=name,
        category=category,
        action=Action.NONE,
        reason=f"{what} This is a sinkd bug: please report it with the message.",
        detail={"error": f"{type(exc).__name__}: {exc}"[:500]},
        unjudged=Unjudged.ERROR,
    )


def _skips(findings: Sequence[Finding]) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for f in findings:
        if f.action is Action.ALLOW and f.skip:
            out = out | f.skip
    return out


def compile_profile(loaded: LoadedProfile) -> Pipeline:
    """Instantiate a profile's filters once; errors are ``CompileError``s located by field."""
    compiled = compile_loaded(loaded)
    return Pipeline(
        profile=loaded.profile,
        filters=compiled.filters,
        mail_answerers=frozenset(f.name for f in compiled.filters if f.answers_at_mail),
        catalogue=loaded.catalogue,
        reject_reply=compiled.reject_reply,
        policy_reply=compiled.policy_reply,
        tempfail_reply=compiled.tempfail_reply,
        connection_reply=compiled.connection_reply,
    )


class Router:
    """Picks the pipeline for each recipient domain (``--route DOMAIN=PROFILE``).

    A route for ``example.com`` covers that domain only; ``*.example.com`` covers its
    subdomains. Recipients of no route use the default pipeline.
    """

    def __init__(self, default: Pipeline, routes: Mapping[str, Pipeline] | None = None) -> None:
        self.default = default
        self.exact: dict[str, Pipeline] = {}
        self.wildcards: list[tuple[str, Pipeline]] = []
        for domain, pipeline in (routes or {}).items():
            domain = domain.lower().rstrip(".")
            if domain.startswith("*."):
                self.wildcards.append((domain[1:], pipeline))
            else:
                self.exact[domain] = pipeline
        # The most specific wildcard wins, whatever order the routes were given in.
        self.wildcards.sort(key=lambda item: len(item[0]), reverse=True)

    def pipelines(self) -> list[Pipeline]:
        """The default pipeline and every routed one, each once."""
        found = {id(self.default): self.default}
        for pipeline in [*self.exact.values(), *(p for _, p in self.wildcards)]:
            found.setdefault(id(pipeline), pipeline)
        return list(found.values())

    def keeps_state(self) -> str | None:
        """The first profile whose filters or connection limit remember clients across
        sessions (in one process's memory), or None."""
        for pipeline in self.pipelines():
            if pipeline.profile.smtp.max_connections_per_ip is not None or any(
                f.keeps_state for f in pipeline.filters
            ):
                return pipeline.name
        return None

    def pipeline_for(self, rcpt: str) -> Pipeline:
        domain = rcpt.rpartition("@")[2].lower().rstrip(".")
        if domain in self.exact:
            return self.exact[domain]
        for suffix, pipeline in self.wildcards:
            if domain.endswith(suffix):
                return pipeline
        return self.default


@dataclass
class _Accepted:
    rcpt: str
    pipeline: Pipeline
    findings: list[Finding]


@dataclass
class Transaction:
    """One SMTP mail transaction, evaluated stage by stage (RFC 5321 §3.3).

    ``mail`` and ``rcpt`` return a verdict only when they refuse (the caller stores it and
    replies with ``verdict.reply``), ``data_command`` the verdicts refusing the DATA command
    (before 354), if all do; ``data`` returns one verdict per profile among the accepted
    recipients. The same object drives ``sinkd check``, so the CLI and the server agree.
    """

    router: Router
    client: ClientIdentity
    new_id: Callable[[], str]
    lookups: Lookups = NO_LOOKUPS
    auth_user: str | None = None
    tls: bool = False
    offload: Offload | None = None  # judges large messages elsewhere (worker processes)
    envelope: Envelope = field(init=False)
    _mail_findings: dict[str, list[Finding]] = field(init=False, default_factory=dict)
    _accepted: list[_Accepted] = field(init=False, default_factory=list)
    _data_command_findings: dict[str, list[Finding]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.envelope = Envelope(self.client, auth_user=self.auth_user, tls=self.tls)

    @property
    def recipients(self) -> list[str]:
        return [a.rcpt for a in self._accepted]

    @property
    def pipelines(self) -> list[Pipeline]:
        """The pipelines of the accepted recipients, each once, in order of acceptance."""
        seen: dict[str, Pipeline] = {}
        for accepted in self._accepted:
            seen.setdefault(accepted.pipeline.name, accepted.pipeline)
        return list(seen.values())

    async def _mail_stage(self, pipeline: Pipeline) -> list[Finding]:
        if pipeline.name not in self._mail_findings:
            self._mail_findings[pipeline.name] = await pipeline.at_mail(self.envelope, self.lookups)
        return self._mail_findings[pipeline.name]

    async def session(self, stage: Stage) -> Verdict | None:
        """The greeting (``Stage.CONNECT``) or HELO/EHLO (``Stage.HELO``, the client's HELO
        name in ``client``): the default profile's refusal there, or None. Before MAIL FROM no
        recipient names a profile, so the default one answers, as at MAIL."""
        pipeline = self.router.default
        if not pipeline.answers_at(stage):
            return None
        findings = await pipeline.at_session(stage, self.envelope, self.lookups)
        if not any(f.action.refuses for f in findings):
            return None
        return pipeline.decide(
            findings, stage=stage, envelope=self.envelope, message_id=self.new_id()
        )

    async def mail(self, mail_from: str, size: int | None = None) -> Verdict | None:
        self.envelope = Envelope(
            self.client, mail_from, (), size, auth_user=self.auth_user, tls=self.tls
        )
        self._mail_findings.clear()
        self._accepted.clear()
        self._data_command_findings.clear()
        pipeline = self.router.default
        findings = await self._mail_stage(pipeline)
        answer_now = pipeline.profile.smtp.envelope_reply_stage == "mail"
        hard = [
            f
            for f in findings
            if f.action.refuses and (answer_now or f.filter in pipeline.mail_answerers)
        ]
        if not hard:
            return None
        return pipeline.decide(
            findings, stage=Stage.MAIL, envelope=self.envelope, message_id=self.new_id()
        )

    async def rcpt(self, rcpt: str) -> Verdict | None:
        pipeline = self.router.pipeline_for(rcpt)
        earlier = await self._mail_stage(pipeline)
        own = await pipeline.at_rcpt(self.envelope, rcpt, earlier, self.lookups)
        findings = [*earlier, *own]
        # envelope_reply_stage "data": refusals wait for the end of DATA, as Gmail's do.
        answer_now = pipeline.profile.smtp.envelope_reply_stage != "data"
        if answer_now and any(f.action.refuses for f in findings):
            envelope = dataclasses.replace(self.envelope, rcpt_to=(rcpt,))
            return pipeline.decide(
                findings, stage=Stage.RCPT, envelope=envelope, message_id=self.new_id()
            )
        self._accepted.append(_Accepted(rcpt, pipeline, own))
        self.envelope = dataclasses.replace(self.envelope, rcpt_to=(*self.envelope.rcpt_to, rcpt))
        return None

    async def run(self, mail_from: str, rcpts: Sequence[str], raw: bytes) -> list[Verdict]:
        """The whole transaction at once, as a client would send it: the refusal at MAIL, or
        one verdict per refused recipient plus one per profile that got the message. A profile
        answering at the greeting or at HELO refuses there first, as over SMTP."""
        for stage in (Stage.CONNECT, Stage.HELO):
            early = await self.session(stage)
            if early is not None:
                return [early]
        refused = await self.mail(mail_from, len(raw))
        if refused is not None:
            return [refused]
        verdicts = [v for v in [await self.rcpt(r) for r in rcpts] if v is not None]
        if self.recipients:
            refusing = await self.data_command()
            verdicts.extend(refusing or await self.data(raw))
        return verdicts

    def _groups(self) -> list[tuple[Pipeline, Envelope, list[Finding]]]:
        """Per profile among the accepted recipients: its pipeline, the envelope naming its
        recipients only, and its MAIL, RCPT (and DATA-command) findings so far."""
        groups: dict[str, list[_Accepted]] = {}
        for accepted in self._accepted:
            groups.setdefault(accepted.pipeline.name, []).append(accepted)
        out = []
        for members in groups.values():
            pipeline = members[0].pipeline
            earlier = [*self._mail_findings.get(pipeline.name, [])]
            for member in members:
                earlier.extend(member.findings)
            earlier.extend(self._data_command_findings.get(pipeline.name, []))
            envelope = dataclasses.replace(self.envelope, rcpt_to=tuple(m.rcpt for m in members))
            out.append((pipeline, envelope, earlier))
        return out

    async def data_command(self) -> list[Verdict]:
        """The DATA command, before its 354: the verdicts refusing it, or [] to go on.

        Only profiles whose filters answer the DATA command are asked (Postfix's
        smtpd_data_restrictions). SMTP has one reply to DATA for all recipients (RFC 5321
        §4.1.1.4), so the command is refused only when every profile among the recipients
        refuses it, with a temporary refusal first (as ``data_reply``); otherwise a profile's
        refusal is kept and becomes its verdict at the end of DATA. Asked again, as after a
        refused DATA the client may send it again, it decides afresh."""
        self._data_command_findings.clear()
        if not any(a.pipeline.answers_data_command for a in self._accepted):
            return []  # the usual case: no profile answers DATA itself, nothing to group
        refusals: list[Verdict] = []
        groups = self._groups()
        for pipeline, envelope, earlier in groups:
            if not pipeline.answers_data_command:
                continue
            own = await pipeline.at_data_command(envelope, earlier, self.lookups)
            self._data_command_findings[pipeline.name] = own
            if any(f.action.refuses for f in own):
                verdict = pipeline.decide(
                    [*earlier, *own], stage=Stage.DATA, envelope=envelope, message_id=self.new_id()
                )
                refusals.append(verdict)
        if not groups or len(refusals) < len(groups):
            return []
        return sorted(refusals, key=lambda v: not v.reply.is_temporary)

    async def data(self, raw: bytes) -> list[Verdict]:
        """Judge the message once per profile among the accepted recipients: here, or through
        the ``offload`` port when it takes a message of this size (worker processes), with the
        same verdicts either way (``judge_message`` is the one judgement)."""
        pipelines: dict[str, Pipeline] = {}
        requests: list[DataGroup] = []
        for pipeline, envelope, earlier in self._groups():
            pipelines[pipeline.name] = pipeline
            requests.append(
                DataGroup(
                    profile=pipeline.name,
                    envelope=envelope,
                    earlier=tuple(earlier),
                    message_id=self.new_id(),
                )
            )
        if self.offload is not None and self.offload.offloads(len(raw)):
            return await self.offload.judge(raw, requests, pipelines)
        return await judge_message(raw, requests, pipelines, self.lookups)


@dataclass(frozen=True, slots=True)
class DataGroup:
    """What the DATA stage needs of one profile's recipients, beside the message: plain,
    picklable values (a worker process judges them with its own copy of the pipeline)."""

    profile: str  # the pipeline's name (its profile id) in the transaction's router
    envelope: Envelope  # with this profile's accepted recipients only
    earlier: tuple[Finding, ...]  # the MAIL, RCPT and DATA-command findings for them
    message_id: str


class Offload(Protocol):
    """Judges the DATA stage of large messages away from the caller's event loop (the
    services' worker processes), so that one big message never stalls the other sessions.

    ``offloads(size)`` says whether a message of ``size`` bytes goes there (smaller ones are
    judged inline, without the cost of sending them); ``judge`` returns exactly the verdicts
    ``judge_message`` would give inline, or raises ``BackendError`` when
    the worker failed (the caller answers 451 and stores nothing)."""

    def offloads(self, size: int) -> bool: ...

    async def judge(
        self, raw: bytes, groups: Sequence[DataGroup], pipelines: Mapping[str, Pipeline]
    ) -> list[Verdict]: ...


async def judge_message(
    raw: bytes,
    groups: Sequence[DataGroup],
    pipelines: Mapping[str, Pipeline],
    lookups: Lookups = NO_LOOKUPS,
) -> list[Verdict]:
    """The DATA stage of one message, one verdict per group: a function of its arguments only
    (greylisting and rate limits act at MAIL and RCPT, so no delivery state is read here), and
    so the same whether it runs in the server's loop or in a worker process."""
    message = parse(raw)
    verdicts: list[Verdict] = []
    for group in groups:
        pipeline = pipelines[group.profile]
        own = await pipeline.at_data(group.envelope, message, group.earlier, lookups)
        verdicts.append(
            pipeline.decide(
                [*group.earlier, *own],
                stage=Stage.DATA,
                envelope=group.envelope,
                message_id=group.message_id,
                subject=message.subject,
                message=message,
            )
        )
    return verdicts


def access_denied(client: ClientIdentity) -> Reply:
    """What every command but QUIT gets after the greeting refused the client: Postfix's
    smtpd.c answers "503 5.7.0 Error: access denied for name[addr]" (RFC 5321 §3.1: after a
    554 greeting the server answers 503 until QUIT; observed with Postfix 3.7.11)."""
    return Reply(503, "5.7.0", f"Error: access denied for {client.name or 'unknown'}[{client.ip}]")


def data_reply(verdicts: Sequence[Verdict]) -> Reply:
    """The one reply to DATA when the recipients' profiles disagree.

    SMTP has a single reply to DATA for all recipients (RFC 5321 §4.2.5 leaves per-recipient
    replies to LMTP). If any profile accepted or quarantined the message it was delivered
    somewhere, so the reply is 250 naming every stored id, and the refused recipients keep their
    own recorded verdict, as a gateway that accepts and then bounces (amavisd-new) would. If
    none accepted, a temporary refusal wins over a permanent one, so that the sender retries
    and the deferring profile gets its second chance; otherwise the first refusal is the reply.
    """
    delivered = [v for v in verdicts if v.reply.is_success]
    if delivered:
        ids = " ".join(v.id for v in delivered)
        return Reply(250, "2.0.0", f"Ok: queued as {ids}")
    temporary = [v for v in verdicts if v.reply.is_temporary]
    return (temporary or list(verdicts))[0].reply
