"""DMARC: the From domain's published policy, judged by SPF and DKIM alignment.

Owns the ``dmarc`` filter kind (RFC 7489; RFC 9989, which obsoletes it, with ``spec: rfc9989``).
It reads the SPF and DKIM findings of the filters before it (``ctx.earlier``): the SPF finding
for the MAIL FROM identity with result pass, and every ``DKIM_PASS`` finding's ``d=`` domain,
so a profile lists ``dmarc`` after ``spf`` and ``dkim``. It discovers the policy record
(``_dmarc.<From domain>``, then the Organizational Domain's), checks relaxed or strict
alignment (``aspf``/``adkim``), picks ``p``, ``sp`` or (RFC 9989) ``np``, applies ``pct``
(RFC 7489) or ``t=y`` (RFC 9989), and gives one finding: ``DMARC_PASS``, ``DMARC_FAIL``,
``DMARC_NONE`` (no usable record), ``DMARC_TEMPERROR`` or ``DMARC_PERMERROR``.

The Organizational Domain is the Public Suffix List's registrable domain with ``rfc7489``
(publicsuffixlist's bundled copy: nothing is downloaded) and the DNS tree walk of RFC 9989
§4.10 with ``rfc9989``. Pure: DNS only through ``ctx.lookups.resolver``.

```yaml
- kind: dmarc
  name: dmarc
  spec: rfc7489               # rfc7489 (PSL, pct) | rfc9989 (tree walk, np, t=)
  honor_policy: true          # false: a failure gets on.fail whatever the policy says
  pct: honor                  # honor (random) | ignore (always apply) | deterministic
  on_fail_policy:             # what a failure does under each published policy
    reject: {action: reject, reply: gmail.dmarc}
    quarantine: {action: quarantine}
    none: {}
  on: {pass: {}, none: {}, temperror: {action: tempfail}, permerror: {}, fail: {}}
```
``pct: deterministic`` samples by a hash of the Message-ID, so the same message always lands
on the same side of ``pct`` (for reproducible tests).

DMARC is not judged, and records only, when what it rests on is unknown: offline DNS without
data for a name of the policy discovery (``_dmarc.<domain>``, the tree walk, np='s existence
test) gives ``DMARC_NONE`` with ``unjudged=no-dns-data`` and ``detail["dns_names"]``; so does
a message that no aligned pass saves while an SPF or DKIM result that could have aligned was
itself not judged (DMARC never fails a message on checks that did not run). A live DNS timeout
gives ``DMARC_TEMPERROR`` with ``unjudged=unavailable``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from publicsuffixlist import PSLFILE, PublicSuffixList

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.message import ParsedMessage
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode, Unjudged
from sinkd.core.ports import NO_DNS_DATA_HINT, DnsAnswer, RecordType, Resolver, no_dns_data_reason
from sinkd.core.schema import (
    RECORD_ONLY,
    CompileContext,
    FilterSpecBase,
    ReplyTemplate,
    ResultOutcomes,
    RuleOutcome,
    Spec,
)
from sinkd.core.spf_eval import answers_now

Policy = Literal["none", "quarantine", "reject"]
Result = Literal["pass", "fail", "none", "temperror", "permerror"]
RESULTS: tuple[Result, ...] = ("pass", "fail", "none", "temperror", "permerror")
POLICIES: tuple[Policy, ...] = ("none", "quarantine", "reject")

_LOWER: dict[Policy, Policy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_MAX_WALK = 8  # RFC 9989 §4.10: at most eight queries per tree walk


class DmarcFailPolicy(Spec):
    """What a DMARC failure does under each published (and sampled) policy."""

    reject: RuleOutcome = RuleOutcome(action=Action.REJECT, reply="dmarc.rfc7489")
    quarantine: RuleOutcome = RuleOutcome(action=Action.QUARANTINE)
    none: RuleOutcome = RECORD_ONLY


class DmarcOutcomes(ResultOutcomes):
    """What each other result does; ``fail`` is used only when ``honor_policy`` is false."""


class DmarcSpec(FilterSpecBase):
    kind: Literal["dmarc"]
    spec: Literal["rfc7489", "rfc9989"] = "rfc7489"
    honor_policy: bool = True
    pct: Literal["honor", "ignore", "deterministic"] = "honor"
    on_fail_policy: DmarcFailPolicy = DmarcFailPolicy()
    on: DmarcOutcomes = DmarcOutcomes()


# --- the policy record ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """One published DMARC record as this receiver reads it (RFC 7489 §6.3, RFC 9989 §4.7)."""

    text: str
    domain: str  # where it is published (without "_dmarc.")
    p: Policy | None  # None: missing or invalid
    sp: Policy | None
    sp_invalid: bool
    np: Policy | None  # RFC 9989 only
    adkim: Literal["r", "s"]
    aspf: Literal["r", "s"]
    pct: int | None  # RFC 7489 only
    testing: bool  # RFC 9989 t=y
    psd: Literal["y", "n", "u"]  # RFC 9989 only
    rua_valid: bool
    ignored: tuple[str, ...]  # what of the record was ignored, and why


# Records are few and read for every message: parse each text once (DmarcRecord is frozen).
@functools.lru_cache(maxsize=1024)
def parse_record(text: str, domain: str, spec: str = "rfc7489") -> DmarcRecord | None:
    """A DMARC record, or None when the text is not one (it must start with ``v=DMARC1``)."""
    parts = [part.strip() for part in text.split(";")]
    head = parts[0].split("=", 1)
    if len(head) != 2 or head[0].strip().lower() != "v" or head[1].strip() != "DMARC1":
        return None
    tags: dict[str, str] = {}
    ignored: list[str] = []
    for part in parts[1:]:
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            ignored.append(f"{part!r} is not a tag=value pair")
        elif name in tags:
            ignored.append(f"repeated tag {name}= (the first one counts)")
        else:
            tags[name] = value.strip()
    known = {"p", "sp", "adkim", "aspf", "rua", "ruf", "fo", "rf", "ri"}
    known |= {"pct"} if spec == "rfc7489" else {"np", "t", "psd"}
    for name in tags:
        if name not in known:
            ignored.append(f"unknown tag {name}=")

    def policy(name: str) -> Policy | None:
        value = tags.get(name)
        if value is None:
            return None
        lowered = value.lower()
        for known_policy in POLICIES:
            if lowered == known_policy:
                return known_policy
        ignored.append(f"{name}={value} is not none, quarantine or reject")
        return None

    def mode(name: str) -> Literal["r", "s"]:
        value = tags.get(name, "r").lower()
        if value == "s":
            return "s"
        if value != "r":
            ignored.append(f"{name}={tags[name]} is not r or s (r applies)")
        return "r"

    pct: int | None = None
    if spec == "rfc7489":
        pct = 100
        if "pct" in tags:
            if re.fullmatch(r"\d{1,3}", tags["pct"]) and int(tags["pct"]) <= 100:
                pct = int(tags["pct"])
            else:
                ignored.append(f"pct={tags['pct']} is not 0-100 (100 applies)")
    testing = False
    psd: Literal["y", "n", "u"] = "u"
    np: Policy | None = None
    if spec == "rfc9989":
        np = policy("np")
        t = tags.get("t", "n").lower()
        testing = t == "y"
        if t not in ("y", "n"):
            ignored.append(f"t={tags['t']} is not y or n (n applies)")
        value = tags.get("psd", "u").lower()
        if value in ("y", "n", "u"):
            psd = "y" if value == "y" else "n" if value == "n" else "u"
        else:
            ignored.append(f"psd={tags['psd']} is not y, n or u (u applies)")
    sp = policy("sp")
    rua = [uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip()]
    return DmarcRecord(
        text=text,
        domain=domain,
        p=policy("p"),
        sp=sp,
        sp_invalid="sp" in tags and sp is None,
        np=np,
        adkim=mode("adkim"),
        aspf=mode("aspf"),
        pct=pct,
        testing=testing,
        psd=psd,
        rua_valid=any(_URI.match(uri) for uri in rua),
        ignored=tuple(ignored),
    )


def _psl_lines() -> Iterator[bytes]:
    """The bundled list's lines, each non-ASCII rule followed by its punycoded form.

    publicsuffixlist's own ``accept_encoded_idn`` IDNA-encodes every one of the ~10,000 rules,
    ASCII or not (~20 ms of every ``sinkd check``, ``bench/startup.py``), and IDNA leaves an
    ASCII rule as it is. Encoding only the few hundred non-ASCII rules here, read with the
    library's own normalisation (lower case, first word, ``//`` comments), gives it the same
    rule set (``tests/test_dns.py`` compares the answers of both loads for every rule).
    """
    with open(PSLFILE, "rb") as source:
        for line in source:
            yield line
            if line.isascii():
                continue
            rule = line.decode("utf-8").lower().split(" ")[0].rstrip()
            if rule and not rule.startswith("//"):
                encoded = rule.lstrip("!").encode("idna")
                yield b"!" + encoded if rule.startswith("!") else encoded


@functools.cache
def _psl_unicode() -> PublicSuffixList:
    """The bundled Public Suffix List as written (publicsuffixlist ships it; loading reads no
    network), without the punycoded forms of its non-ASCII rules; parsed once per process."""
    return PublicSuffixList(accept_encoded_idn=False)


@functools.cache
def _psl_idna() -> PublicSuffixList:
    """The bundled list with the punycoded form of each non-ASCII rule as well (``_psl_lines``),
    parsed once per process, on the first domain with an A-label."""
    return PublicSuffixList(_psl_lines(), accept_encoded_idn=False)


def _psl(domain: str) -> PublicSuffixList:
    """The list that answers for ``domain`` as publicsuffixlist's default load would.

    Every punycoded rule has an ``xn--`` label and the library matches lower-cased labels, so
    a domain with no ``xn--`` in it gets the same answers from the list as written; encoding
    the ~460 non-ASCII rules (~10 ms) is paid only for a domain that could match one.
    """
    return _psl_idna() if "xn--" in domain.lower() else _psl_unicode()


# Asked twice a message for the same few domains; the list is fixed for the process.
@functools.lru_cache(maxsize=4096)
def psl_org_domain(domain: str) -> str:
    """RFC 7489 §3.2: the registrable domain; a public suffix is its own."""
    return _psl(domain).privatesuffix(domain) or domain


def tree_walk_targets(domain: str) -> list[str]:
    """RFC 9989 §4.10: the domain, then (at most seven labels) each parent up to the TLD."""
    labels = domain.split(".")
    start = min(len(labels) - 1, _MAX_WALK - 1)
    return [domain] + [".".join(labels[-n:]) for n in range(start, 0, -1)]


class _Temporary(Exception):
    def __init__(self, name: str, rcode: str, unanswered: bool = False) -> None:
        super().__init__(f"{rcode} for {name}")
        self.name = name
        self.rcode = rcode
        self.unanswered = unanswered  # live DNS did not answer: not judged


class _NoData(Exception):
    """Offline DNS has no data for a name the evaluation needs."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no DNS data for {name}")
        self.name = name


class _Dns:
    """The lookups of one evaluation, each asked once."""

    def __init__(self, resolver: Resolver | None, spec: str) -> None:
        self.resolver = resolver
        self.spec = spec
        self.answers: dict[tuple[str, RecordType], asyncio.Future[DnsAnswer]] = {}
        self.known: dict[tuple[str, RecordType], DnsAnswer] = {}  # answered at once
        self.at_hand = answers_now(resolver)
        self.orgs: dict[str, str] = {}

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        if self.resolver is None:
            raise _Temporary(name, "no DNS resolver is configured")
        key = (name, rdtype)
        answer = self.known.get(key)
        if answer is None and self.at_hand is not None:
            # At hand (fixtures, cached answers): no task to share, ~15 us saved per query.
            answer = self.at_hand(name, rdtype)
            if answer is not None:
                self.known[key] = answer
        if answer is None:
            task = self.answers.get(key)
            if task is None:  # concurrent askers share one query
                task = self.answers[key] = asyncio.ensure_future(self.resolver.query(name, rdtype))
            answer = await task
        if answer.unknown:
            raise _NoData(name)
        return answer

    async def records(self, domain: str) -> list[DmarcRecord]:
        """The DMARC records at ``_dmarc.<domain>``; raises ``_Temporary`` on DNS trouble."""
        name = f"_dmarc.{domain}"
        try:
            answer = await self.query(name, "TXT")
        except _NoData:
            # assumption: the RFC 9989 tree walk ends at the TLD, which no fixture speaks for;
            # a public suffix publishing DMARC (a PSD, RFC 9091) is rare, so offline DNS
            # without data for one reads as "no record" instead of leaving DMARC unjudged.
            if self.spec == "rfc9989" and _psl(domain).is_public(domain):
                return []
            raise
        if answer.temporary:
            raise _Temporary(name, answer.rcode, answer.unanswered)
        found = []
        for rdata in answer.records:
            if isinstance(rdata, tuple) and all(isinstance(s, bytes) for s in rdata):
                text = b"".join(s for s in rdata if isinstance(s, bytes)).decode("utf-8", "replace")
                record = parse_record(text, domain, self.spec)
                if record is not None:
                    found.append(record)
        return found

    async def org_domain(self, domain: str) -> str:
        if domain not in self.orgs:
            if self.spec == "rfc7489":
                self.orgs[domain] = psl_org_domain(domain)
            else:
                self.orgs[domain] = await self._walk_org(domain)
        return self.orgs[domain]

    async def _walk_org(self, domain: str) -> str:
        """RFC 9989 §4.10.2: psd=n ends the walk there, psd=y one label below, else the
        record with the fewest labels; no record at all: the domain itself."""
        last = None
        for target in tree_walk_targets(domain):
            records = await self.records(target)
            if len(records) != 1:
                continue
            record = records[0]
            if record.psd == "n":
                return target
            if record.psd == "y" and target != domain:
                return ".".join(domain.split(".")[-(target.count(".") + 2) :])
            last = target
        return last or domain

    async def aligned(self, identifier: str, author: str, mode: str) -> bool:
        """RFC 7489 §3.1: strict is the same domain, relaxed the same Organizational Domain."""
        if identifier == author:
            return True
        if mode == "s" or identifier.rpartition(".")[2] != author.rpartition(".")[2]:
            return False
        return await self.org_domain(identifier) == await self.org_domain(author)

    async def nonexistent(self, domain: str) -> bool:
        """RFC 9989 (after RFC 9091 §2.7): NXDOMAIN or NODATA for A, AAAA and MX. A
        temporary failure counts as existing: np= is then not applied. No DNS data raises
        ``_NoData``: whether the domain exists is then unknown."""
        try:
            first = await self.query(domain, "A")
        except _Temporary:
            return False
        if first.rcode == "NXDOMAIN":
            return True
        if first.rcode != "NOERROR" or first.records:
            return False
        more = await asyncio.gather(self.query(domain, "AAAA"), self.query(domain, "MX"))
        return all(a.rcode == "NXDOMAIN" or (a.rcode == "NOERROR" and not a.records) for a in more)


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class _Evaluation:
    domain: str | None
    org_domain: str | None = None
    record: DmarcRecord | None = None
    policy: Policy | None = None
    policy_tag: str | None = None
    disposition: Policy | None = None
    sampled: bool | None = None
    spf_domains: list[str] = field(default_factory=list)
    dkim_domains: list[str] = field(default_factory=list)
    spf_aligned: bool = False
    dkim_aligned: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    dns_names: list[str] = field(default_factory=list)  # what was missing, when not judged


def author_domain(parsed: ParsedMessage) -> tuple[str | None, str | None]:
    """RFC 7489 §6.6.1: the one author domain, or why there is none."""
    values = [str(v) for k, v in parsed.message.raw_items() if k.lower() == "from"]
    if not values:
        return None, "the message has no From header field"
    if len(values) > 1:
        return None, f"the message has {len(values)} From header fields"
    if len(values[0]) > _CACHED_FROM:
        return _author_domain_of(values[0])
    return _cached_author_domain_of(values[0])


_CACHED_FROM = 998  # octets of a From value worth keeping (RFC 5322 §2.1.1's line limit)


def _author_domain_of(field_value: str) -> tuple[str | None, str | None]:
    value = re.sub(r"\r\n|[\r\n]", "", field_value)
    try:
        addresses = email.utils.getaddresses([value])
    except Exception:
        addresses = []
    domains = sorted(
        {a.rpartition("@")[2].strip().lower().rstrip(".") for _, a in addresses if "@" in a}
    )
    if not domains or domains == [""]:
        return None, "the From header field has no address with a domain"
    if len(domains) > 1:
        return None, f"the From header field names several domains ({', '.join(domains)})"
    if not _DOMAIN.match(domains[0]):
        return None, f"the From domain {domains[0]!r} is not a domain name"
    return domains[0], None


# A campaign sends one From value over and over: its parse (email.utils, ~25 us) is kept.
_cached_author_domain_of = functools.lru_cache(maxsize=1024)(_author_domain_of)


def _spf_domains(earlier: Sequence[Finding], envelope: Envelope) -> list[str]:
    """Domains that passed SPF for MAIL FROM (HELO when MAIL FROM is null, RFC 7489 §3.1.2)."""
    out: list[str] = []
    for finding in earlier:
        detail = finding.detail
        if not finding.code.startswith("SPF_") or detail.get("result") != "pass":
            continue
        identity = detail.get("identity")
        if identity == "mail_from" or (identity == "helo" and envelope.mail_from == ""):
            domain = str(detail.get("domain") or "").lower().rstrip(".")
            if domain and domain not in out:
                out.append(domain)
    return out


def _dkim_domains(earlier: Sequence[Finding]) -> list[str]:
    out: list[str] = []
    for finding in earlier:
        if finding.code == "DKIM_PASS":
            domain = str(finding.detail.get("domain") or "").lower().rstrip(".")
            if domain and domain not in out:
                out.append(domain)
    return out


def _bucket(ctx: MessageContext) -> int:
    """0-99 from the Message-ID (the raw message when it has none), for pct: deterministic."""
    ids = [str(v).strip() for k, v in ctx.parsed.message.raw_items() if k.lower() == "message-id"]
    seed = ids[0].encode("utf-8", "surrogateescape") if ids else ctx.parsed.raw
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % 100


class DmarcFilter(Filter):
    kind = "dmarc"
    Spec = DmarcSpec
    category = Category.AUTHENTICATION
    codes = (
        FindingCode("DMARC_PASS", "SPF or DKIM passed aligned with the From domain"),
        FindingCode(
            "DMARC_FAIL", "nothing aligned passed; what happens follows the published policy"
        ),
        FindingCode("DMARC_NONE", "the From domain publishes no DMARC record"),
        FindingCode("DMARC_TEMPERROR", "a DNS lookup failed for now"),
        FindingCode("DMARC_PERMERROR", "the record or the From header is broken"),
    )

    def __init__(self, spec: DmarcSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.replies: dict[str, ReplyTemplate] = dict(
            ctx.outcome_replies("on", spec.on.of, RESULTS)
        )
        policies = ctx.outcome_replies(
            "on_fail_policy", lambda policy: getattr(spec.on_fail_policy, policy), POLICIES
        )
        self.replies.update({f"policy:{p}": reply for p, reply in policies.items()})
        if spec.spec == "rfc7489":
            # Load the list at compile time, not on the first message; the punycoded rules
            # wait for the first domain with an A-label (``_psl``).
            _psl_unicode()

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        domain, problem = author_domain(ctx.parsed)
        ev = _Evaluation(domain)
        if domain is None:
            ev.error = problem
            return [self._finding(ctx, "permerror", ev, f"DMARC cannot be evaluated: {problem}.")]
        dns = _Dns(ctx.lookups.resolver, self.spec.spec)
        try:
            return [await self._evaluate(ctx, dns, ev, domain)]
        except _NoData as exc:
            ev.error = str(exc)
            ev.dns_names = [exc.name]
            reason = no_dns_data_reason(f"DMARC for {domain}", [exc.name])
            return [self._finding(ctx, "none", ev, reason, unjudged=Unjudged.NO_DNS_DATA)]
        except _Temporary as exc:
            ev.error = f"DNS lookup failed: {exc}"
            if exc.unanswered:
                ev.dns_names = [exc.name]
                reason = (
                    f"DMARC for {domain} could not be judged: live DNS did not answer in time "
                    f"for {exc.name}, so the verdict was reached without it."
                )
                return [self._finding(ctx, "temperror", ev, reason, unjudged=Unjudged.UNAVAILABLE)]
            reason = (
                f"The DMARC policy of {domain} could not be looked up right now ({exc.rcode} "
                f"for {exc.name}), so DMARC could not be evaluated."
            )
            return [self._finding(ctx, "temperror", ev, reason)]

    async def _discover(self, dns: _Dns, domain: str) -> list[DmarcRecord]:
        """RFC 7489 §6.6.3 (From domain, then Organizational Domain) or RFC 9989 §4.10.1
        (tree walk): the records of the first domain that publishes any."""
        if self.spec.spec == "rfc7489":
            targets = [domain]
            org = psl_org_domain(domain)
            if org != domain:
                targets.append(org)
        else:
            targets = tree_walk_targets(domain)
        for target in targets:
            records = await dns.records(target)
            if records:
                return records
        return []

    async def _evaluate(
        self, ctx: MessageContext, dns: _Dns, ev: _Evaluation, domain: str
    ) -> Finding:
        records = await self._discover(dns, domain)
        ev.org_domain = await dns.org_domain(domain)
        if not records:
            if self.spec.spec == "rfc9989":
                reason = f"Neither {domain} nor any parent domain publishes a DMARC record"
            elif ev.org_domain != domain:
                reason = f"Neither {domain} nor {ev.org_domain} publishes a DMARC record"
            else:
                reason = f"{domain} publishes no DMARC record"
            return self._finding(ctx, "none", ev, reason + ", so DMARC does not apply.")
        if len(records) > 1:
            where = records[0].domain
            ev.error = f"{len(records)} DMARC records at _dmarc.{where}"
            reason = (
                f"{where} publishes {len(records)} DMARC records instead of one, so DMARC does "
                "not apply (RFC 7489 §6.6.3)."
            )
            return self._finding(ctx, "none", ev, reason)
        record = ev.record = records[0]
        ev.notes.extend(record.ignored)
        p = record.p
        if p is None or (record.sp_invalid and self.spec.spec == "rfc7489"):
            if self.spec.spec == "rfc9989" or record.rua_valid:
                # RFC 7489 §6.6.3 step 6.1 / RFC 9989: act as if p=none was published.
                ev.notes.append("no valid p= (or sp=): treated as p=none")
                p = "none"
            else:
                ev.error = f"the record of {record.domain} has no valid p= (or sp=) and no rua="
                reason = (
                    f"The DMARC record of {record.domain} is unusable: it has no valid policy "
                    f"(p=), so DMARC cannot be evaluated ({record.text!r})."
                )
                return self._finding(ctx, "permerror", ev, reason)
        ev.policy, ev.policy_tag = p, "p"
        if record.domain != domain:
            if record.np is not None and await dns.nonexistent(domain):
                ev.policy, ev.policy_tag = record.np, "np"
            elif record.sp is not None:
                ev.policy, ev.policy_tag = record.sp, "sp"
        ev.spf_domains = _spf_domains(ctx.earlier, ctx.envelope)
        ev.dkim_domains = _dkim_domains(ctx.earlier)
        for spf in ev.spf_domains:
            ev.spf_aligned = ev.spf_aligned or await dns.aligned(spf, domain, record.aspf)
        for d in ev.dkim_domains:
            ev.dkim_aligned = ev.dkim_aligned or await dns.aligned(d, domain, record.adkim)
        published = self._published(ev, domain)
        if ev.spf_aligned or ev.dkim_aligned:
            ev.disposition = "none"
            how = []
            if ev.spf_aligned:
                how.append("SPF-aligned")
            if ev.dkim_aligned:
                how.append("DKIM-aligned")
            reason = f"{published}, and this message is {' and '.join(how)} with it, so it passes."
            return self._finding(ctx, "pass", ev, reason)
        unjudged = await _unjudged_alignment(ctx, dns, domain, record)
        if unjudged:
            return self._not_judged(ctx, ev, published, unjudged)
        return self._fail(ctx, ev, published)

    def _not_judged(
        self, ctx: MessageContext, ev: _Evaluation, published: str, unjudged: list[Finding]
    ) -> Finding:
        """No aligned pass, but an SPF or DKIM result that might have aligned was not judged:
        DMARC cannot say fail (RFC 7489 §4.2: a pass of either aligned mechanism passes)."""
        names: list[str] = []
        for finding in unjudged:
            for name in finding.detail.get("dns_names") or ():
                if str(name) not in names:
                    names.append(str(name))
        ev.dns_names = names
        checks = ", ".join(sorted({f.code for f in unjudged}))
        no_data = all(f.unjudged is Unjudged.NO_DNS_DATA for f in unjudged)
        why = Unjudged.NO_DNS_DATA if no_data else Unjudged.UNAVAILABLE
        if no_data:
            shown = ", ".join(names) or "the names they need"
            tail = f"sinkd's DNS is offline and no fixture has data for {shown}. {NO_DNS_DATA_HINT}"
        else:
            tail = "they could not be checked, so the verdict was reached without DMARC."
        reason = (
            f"DMARC for {ev.domain} could not be judged: {published}, but no aligned check "
            f"passed and {checks} could not be judged: {tail}"
        )
        return self._finding(ctx, "none", ev, reason, unjudged=why)

    def _published(self, ev: _Evaluation, domain: str) -> str:
        record, tag, policy = ev.record, ev.policy_tag, ev.policy
        assert record is not None
        if record.domain == domain:
            return f"{domain} publishes DMARC p={policy}"
        if tag == "np":
            return (
                f"{record.domain} publishes DMARC np={policy} for subdomains that do not exist, "
                f"such as {domain}"
            )
        if tag == "sp":
            return f"{record.domain} publishes DMARC sp={policy} for subdomains such as {domain}"
        return f"{record.domain} publishes DMARC p={policy}, which covers {domain}"

    def _fail(self, ctx: MessageContext, ev: _Evaluation, published: str) -> Finding:
        record, policy = ev.record, ev.policy
        assert record is not None and policy is not None
        reason = f"{published}, and this message is neither SPF- nor DKIM-aligned with it"
        disposition = policy
        lowered = ""  # why a lower policy than the published one applies
        if record.pct is not None and record.pct < 100 and policy != "none":
            if self.spec.pct == "ignore":
                ev.sampled = True
            else:
                bucket = _bucket(ctx) if self.spec.pct == "deterministic" else random.randrange(100)
                ev.sampled = bucket < record.pct
            if not ev.sampled:
                # RFC 7489 §6.6.4: outside the sample, the next policy down applies.
                lowered = f"it falls outside the {record.pct}% of mail the policy applies to"
        if record.testing and policy != "none":
            # RFC 9989 t=y: the domain is testing; quarantine acts as none, reject as quarantine.
            lowered = "the domain is only testing its policy (t=y)"
        if lowered:
            disposition = _LOWER[policy]
            reason += f"; {lowered}, so {disposition} applies instead"
        ev.disposition = disposition
        if self.spec.honor_policy:
            outcome: RuleOutcome = getattr(self.spec.on_fail_policy, disposition)
            key = f"policy:{disposition}"
            reason += f"{' and' if lowered else ', so'} {_tail(outcome)}."
        else:
            outcome, key = self.spec.on.fail, "fail"
            reason += f", but this gateway does not act on DMARC policies, so {_tail(outcome)}."
        return self._finding(ctx, "fail", ev, reason, outcome=outcome, reply_key=key)

    def _finding(
        self,
        ctx: MessageContext,
        result: Result,
        ev: _Evaluation,
        reason: str,
        *,
        outcome: RuleOutcome | None = None,
        reply_key: str | None = None,
        unjudged: Unjudged | None = None,
    ) -> Finding:
        outcome = outcome or self.spec.on.of(result)
        if unjudged is not None:  # no judgement: recorded only, whatever the profile says
            outcome = RECORD_ONLY
        record = ev.record
        detail: dict[str, Any] = {
            "result": result,
            "domain": ev.domain,
            "org_domain": ev.org_domain,
            "record_domain": record.domain if record else None,
            "policy": ev.policy,
            "policy_tag": ev.policy_tag,
            "disposition": ev.disposition,
            "published": record.text if record else None,
            "spf_aligned": ev.spf_aligned,
            "dkim_aligned": ev.dkim_aligned,
            "spf_domains": ev.spf_domains,
            "dkim_domains": ev.dkim_domains,
            "aspf": record.aspf if record else None,
            "adkim": record.adkim if record else None,
            "pct": record.pct if record else None,
            "sampled": ev.sampled,
            "testing": record.testing if record else False,
            "spec": self.spec.spec,
            "ignored": ev.notes,
            "error": ev.error,
        }
        if unjudged is not None:
            detail["dns_names"] = ev.dns_names
        reply = None
        if outcome.action.refuses:
            variables = reply_variables(ctx.envelope, text=reason, from_domain=ev.domain or "")
            reply = self.replies[reply_key or result].render(variables)
        return self.finding(
            code=f"DMARC_{result.upper()}",
            action=outcome.action,
            score=outcome.score,
            reason=reason,
            detail=detail,
            reply=reply,
            unjudged=unjudged,
        )


async def _unjudged_alignment(
    ctx: MessageContext, dns: _Dns, domain: str, record: DmarcRecord
) -> list[Finding]:
    """The SPF (MAIL FROM, or HELO for a null sender) and DKIM findings that were not judged
    and whose domain could have aligned with ``domain``: had they passed, DMARC would pass."""
    out: list[Finding] = []
    for finding in ctx.earlier:
        if finding.unjudged is None:
            continue
        detail = finding.detail
        if finding.code.startswith("SPF_"):
            identity = detail.get("identity")
            if not (
                identity == "mail_from" or (identity == "helo" and ctx.envelope.mail_from == "")
            ):
                continue
            mode = record.aspf
        elif finding.code.startswith("DKIM_"):
            mode = record.adkim
        else:
            continue
        other = str(detail.get("domain") or "").lower().rstrip(".")
        if other and await dns.aligned(other, domain, mode):
            out.append(finding)
    return out


def _tail(outcome: RuleOutcome) -> str:
    """What the gateway does with a failing message, for the end of a reason sentence."""
    tails = {
        Action.REJECT: "the gateway refuses it",
        Action.TEMPFAIL: "the gateway asks the sender to try again later",
        Action.QUARANTINE: "the gateway holds it in quarantine",
        Action.DISCARD: "the gateway silently drops it",
        Action.JUNK: "the gateway delivers it to the junk folder",
        Action.TAG: "the gateway delivers it marked as spam",
    }
    if outcome.action in tails:
        return tails[outcome.action]
    if outcome.action is Action.SCORE and outcome.score:
        return f"the gateway adds {outcome.score:g} points to its score"
    return "the gateway only records it"


__all__ = [
    "DmarcFailPolicy",
    "DmarcFilter",
    "DmarcOutcomes",
    "DmarcRecord",
    "DmarcSpec",
    "author_domain",
    "parse_record",
    "psl_org_domain",
    "tree_walk_targets",
]
