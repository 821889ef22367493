"""Judging the corpus (``tests/corpus``) with every built-in profile, and the two texts made
from those verdicts: the expected table (``tests/corpus/expected.yaml``) and the matrix on the
documentation page ``docs/corpus.md``.

Shared by ``tests/corpus/generate.py`` (writes them) and ``tests/test_corpus.py`` (checks them),
so the test and the generator cannot disagree on how a message is judged or how a cell reads.
Messages go through the same ``Transaction`` as ``sinkd check`` (``sinkd/cli.py``), in
process, with offline DNS from the profiles' fixtures plus ``tests/corpus/dns/corpus.zone``.
It judges and formats; it never writes files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sinkd.core.as_sent import as_sent
from sinkd.core.engine import Pipeline
from sinkd.core.model import Action, ClientIdentity, Disposition, Finding, Verdict, VerdictAction
from sinkd.core.profiles import LoadedProfile, ProfileSet
from sinkd.services.judge import DnsOptions, Identity, Judge, MailEnvelope
from tests.support.paths import ROOT

CORPUS = ROOT / "tests" / "corpus"
MESSAGES = CORPUS / "messages"
ENVELOPES = CORPUS / "envelopes.yaml"
ZONE = CORPUS / "dns" / "corpus.zone"
EXPECTED = CORPUS / "expected.yaml"
# The documentation page that shows the corpus matrix and the public-corpus figures.
CORPUS_PAGE = ROOT / "docs" / "corpus.md"
MATRIX_START = "<!-- corpus-matrix:start -->"
MATRIX_END = "<!-- corpus-matrix:end -->"
SPAMD_PROFILE = "spamassassin-default"  # the one column that needs a running spamd


@dataclass(frozen=True)
class Envelope:
    """How a corpus message arrives (``envelopes.yaml``)."""

    about: str
    client_ip: str
    helo: str
    mail_from: str
    rcpt: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """One message judged by one profile, as the expected table records it."""

    disposition: str
    verdict: str
    code: str | None  # the deciding finding (None: nothing decided, a plain accept)
    reply: str  # "550 5.7.1": the code and enhanced code; the text holds ids and scores
    stage: str
    stripped: tuple[str, ...] = ()  # codes of the findings that stripped something
    source: str | None = None  # "source: ..." or "assumption: ..." of the rule that decided

    @property
    def plain_accept(self) -> bool:
        return self.disposition == Disposition.INBOX.value and not self.stripped

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "disposition": self.disposition,
            "verdict": self.verdict,
            "code": self.code,
            "reply": self.reply,
            "stage": self.stage,
        }
        if self.stripped:
            out["stripped"] = list(self.stripped)
        if not self.plain_accept:
            out["source"] = self.source
        return out

    @classmethod
    def from_yaml(cls, data: Mapping[str, Any]) -> Cell:
        return cls(
            disposition=str(data["disposition"]),
            verdict=str(data["verdict"]),
            code=data.get("code"),
            reply=str(data["reply"]),
            stage=str(data["stage"]),
            stripped=tuple(data.get("stripped", ())),
            source=data.get("source"),
        )

    def differences(self, other: Cell) -> list[str]:
        """``field: expected -> actual`` for every field that differs (self is expected)."""
        return [
            f"{name}: {getattr(self, name)!r} -> {getattr(other, name)!r}"
            for name in ("disposition", "verdict", "code", "reply", "stage", "stripped", "source")
            if getattr(self, name) != getattr(other, name)
        ]


def envelopes() -> dict[str, Envelope]:
    data = yaml.safe_load(ENVELOPES.read_text(encoding="utf-8"))
    return {
        name: Envelope(
            about=str(e["about"]),
            client_ip=str(e["client_ip"]),
            helo=str(e["helo"]),
            mail_from=str(e["mail_from"]),
            rcpt=tuple(e["rcpt"]),
        )
        for name, e in data.items()
    }


def message_names() -> list[str]:
    return sorted(p.stem for p in MESSAGES.glob("*.eml"))


def read_message(name: str) -> bytes:
    """The DATA an SMTP client sends for the stored file (LF-only files become CRLF)."""
    return as_sent((MESSAGES / f"{name}.eml").read_bytes())


def builtin_profiles() -> list[str]:
    """Every built-in profile id, as ``sinkd profiles list`` shows them."""
    return ProfileSet().names()


# --- judging -------------------------------------------------------------------------------------


class ProfileJudge:
    """Judges messages with one profile: compiled once, DNS from its fixtures plus the corpus
    zone, spamd only when given (else the spamassassin filter reports it unavailable)."""

    def __init__(
        self,
        profile: str,
        *,
        zones: Iterable[Path] = (ZONE,),
        spamd: tuple[str, int] | None = None,
        profiles: ProfileSet | None = None,
    ) -> None:
        self.profiles = profiles or ProfileSet()
        self.profile = profile
        self.loaded: LoadedProfile = self.profiles.resolve(profile)
        self.judge = Judge(
            self.profiles, profile=profile, dns=DnsOptions(zones=tuple(zones)), spamd=spamd
        )
        self._ids = iter(range(1, 1 << 62))

    @property
    def pipeline(self) -> Pipeline:
        return self.judge.router.default

    async def verdicts(self, raw: bytes, envelope: Envelope | None = None) -> list[Verdict]:
        """One verdict per profile among the recipients (here: one), as ``sinkd check``."""
        client = ClientIdentity(
            ip=envelope.client_ip if envelope else "192.0.2.200",
            helo=envelope.helo if envelope else "mail.sender.example",
            source="option",
        )
        if envelope is not None:
            sender, rcpts = envelope.mail_from, tuple(envelope.rcpt)
        else:
            sender, rcpts = header_from(raw), ("recipient@corp.example",)
        return await self.judge.evaluate(
            raw,
            MailEnvelope(sender, rcpts),
            Identity(client),
            new_id=lambda: f"corpus-{next(self._ids)}",
        )

    async def verdict(self, raw: bytes, envelope: Envelope | None = None) -> Verdict:
        (only,) = await self.verdicts(raw, envelope)
        return only

    def cell(self, verdict: Verdict) -> Cell:
        deciding = verdict.deciding
        strips = [f for f in verdict.findings if f.action is Action.STRIP]
        if deciding is not None:
            source = provenance_of(deciding, self.loaded)
        elif strips:
            source = provenance_of(strips[0], self.loaded)
        else:
            source = None
        return Cell(
            disposition=verdict.disposition.value,
            verdict=verdict.verdict.value,
            code=deciding.code if deciding is not None else None,
            reply=f"{verdict.reply.code} {verdict.reply.enhanced}".strip(),
            stage=verdict.stage.value,
            stripped=tuple(sorted({f.code for f in strips})),
            source=source,
        )


def header_from(raw: bytes) -> str:
    """The first header From address, as ``sinkd check`` uses when no --mail-from is given."""
    import email.utils

    from sinkd.core.message import parse

    values = [str(v) for v in parse(raw).message.get_all("From", [])]
    return next((a for _, a in email.utils.getaddresses(values) if "@" in a), "")


def judge_corpus(profile: str, *, spamd: tuple[str, int] | None = None) -> dict[str, Cell]:
    """Every corpus message judged by ``profile``: message name -> cell."""
    judge = ProfileJudge(profile, spamd=spamd)
    known = envelopes()

    async def run() -> dict[str, Cell]:
        cells = {}
        for name in message_names():
            cells[name] = judge.cell(await judge.verdict(read_message(name), known[name]))
        return cells

    return asyncio.run(run())


# --- where a rule comes from ---------------------------------------------------------------------


def _origin(node: Mapping[str, Any]) -> str | None:
    for key in ("source", "assumption"):
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            return f"{key}: {value.strip()}"
    return None


def _nodes(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every mapping in a dumped profile, depth first (the node itself first)."""
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _nodes(value)


def provenance_of(finding: Finding, loaded: LoadedProfile) -> str | None:
    """The ``source:``/``assumption:`` of the profile rule that produced ``finding``.

    In order: what the finding itself carries (``detail.source``/``detail.assumption``), the
    rule of the finding's filter whose ``id`` the code ends with, the filter-level outcome
    named by the code's last word (``fail``, ``reject``, ...), the filter itself, and for
    ``SCORE_*`` findings the profile's ``scoring`` section. None when no node says.
    """
    found = _origin(finding.detail)
    if found:
        return found
    dumped = loaded.profile.model_dump(mode="json", by_alias=True, exclude_none=True)
    code = finding.code.upper()
    if code.startswith("SCORE_"):
        return _origin(dumped.get("scoring") or {})
    for flt in dumped.get("filters", []):
        if flt.get("name") != finding.filter:
            continue
        candidates: list[tuple[int, str]] = []
        for node in _nodes(flt):
            origin = _origin(node)
            ident = node.get("id")
            if origin and isinstance(ident, str) and ident and code.endswith(ident.upper()):
                candidates.append((len(ident), origin))
        if candidates:
            return max(candidates)[1]
        last = code.rsplit("_", 1)[-1].lower()
        for value in flt.values():
            if isinstance(value, Mapping) and isinstance(value.get(last), Mapping):
                origin = _origin(value[last])
                if origin:
                    return origin
        return _origin(flt)
    return None


# --- the expected table and the docs matrix ------------------------------------------------------

Table = dict[str, dict[str, Cell]]  # message -> profile -> cell


def load_expected() -> Table:
    data = yaml.safe_load(EXPECTED.read_text(encoding="utf-8"))
    return {
        name: {profile: Cell.from_yaml(cell) for profile, cell in row["profiles"].items()}
        for name, row in data["messages"].items()
    }


def expected_text(table: Table, profiles: list[str]) -> str:
    about = envelopes()
    header = (
        "# What every built-in profile does with every corpus message: disposition, verdict,\n"
        "# the deciding code, the reply (code and enhanced code), the stage, what was stripped,\n"
        "# and for every cell that is not a plain accept the source (or assumption) of the rule\n"
        "# that decided, taken from the profile.\n"
        "# GENERATED from actual verdicts by `python -m tests.corpus.generate`; review the diff\n"
        "# before committing it. tests/test_corpus.py checks it cell by cell.\n"
    )
    body = {
        "profiles": profiles,
        "messages": {
            name: {
                "about": about[name].about,
                "profiles": {p: table[name][p].to_yaml() for p in profiles if p in table[name]},
            }
            for name in sorted(table)
        },
    }
    # One line per cell (flow style for the innermost mappings): a changed verdict is a one-line
    # diff.
    return header + yaml.safe_dump(
        body, sort_keys=False, width=4096, allow_unicode=True, default_flow_style=None
    )


_SHORT = {
    Disposition.INBOX.value: "accept",
    Disposition.TAGGED.value: "tag",
    Disposition.JUNK.value: "junk",
    Disposition.QUARANTINED.value: "**quarantine**",
    Disposition.DISCARDED.value: "**discard**",
    Disposition.DEFERRED.value: "**defer**",
    Disposition.REJECTED.value: "**reject**",
}


def matrix_cell(cell: Cell) -> str:
    text = _SHORT.get(cell.disposition, cell.disposition)
    if cell.verdict == VerdictAction.REJECT.value:
        text += f" {cell.reply} at {cell.stage}"
    if cell.code and cell.disposition != Disposition.INBOX.value:
        text += f" `{cell.code}`"
    if cell.stripped:
        text += " + stripped " + ", ".join(f"`{c}`" for c in cell.stripped)
    return text


def matrix_text(table: Table, profiles: list[str]) -> str:
    """The docs' message x profile matrix (between the corpus-matrix markers)."""
    lines = [
        "| message | " + " | ".join(f"`{p}`" for p in profiles) + " |",
        "|---|" + "---|" * len(profiles),
    ]
    for name in sorted(table):
        cells = [matrix_cell(table[name][p]) if p in table[name] else "—" for p in profiles]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_between(text: str, start: str, end: str, inner: str) -> str:
    """``text`` with what lies between the two marker lines replaced by ``inner``."""
    head, found, rest = text.partition(start)
    if not found:
        raise ValueError(f"marker {start!r} not found")
    _, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"marker {end!r} not found")
    return f"{head}{start}\n{inner}{end}{tail}"


def between(text: str, start: str, end: str) -> str:
    """What lies between the two marker lines (after the start marker's newline)."""
    return text.partition(start)[2].partition(end)[0].removeprefix("\n")
