"""Building blocks of the profile schema shared by every filter kind.

Owns the pydantic base model and the small typed values profiles write (actions, list
references, reply references) plus the compile-time context a filter receives. It validates
shape only; it never evaluates mail.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sinkd.core.limits import DEFAULT_SCAN_LIMITS, ScanLimits
from sinkd.core.model import Action, Reply

# Rule ids and finding codes: stable UPPER_SNAKE identifiers.
RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=64)]
# Filter instance names: user-chosen kebab case, as in "bad-senders".
FilterName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
# A reply: a catalogue key ("postfix.sender_access") or a literal "554 5.7.1 text".
ReplyRef = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Score = Annotated[float, Field(ge=-1000.0, le=1000.0)]

# ("source", text) or ("assumption", text): where a fact in a profile comes from.
Origin = tuple[Literal["source", "assumption"], str]

K = TypeVar("K", bound=str)  # the keys of a filter's outcomes: results, policies, fields

_LITERAL_REPLY = re.compile(r"^([245]\d\d) ([245]\.\d{1,3}\.\d{1,3}) (\S.*)$")
_NAMES_RECIPIENT = re.compile(r"\$\{?rcpt(_domain)?\b")
_CATALOGUE_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


class Spec(BaseModel):
    """Base of every profile model: unknown keys are errors, values are immutable.

    Every node may say where its fact comes from: ``source:`` names something a reader can
    check (a vendor document, an RFC section, a product's shipped configuration) and
    ``assumption:`` says why sinkd chose the value when no such document exists. A node gives
    one or the other, never both, and never an empty one. The built-in profiles must carry one
    on every rule, threshold, size limit, reply and stage (tests/core/test_profiles.py checks it);
    ``sinkd profiles show`` prints them.
    """

    # defer_build: a model's validator is built when it first validates, not at import. A
    # profile is validated from ``Profile`` down, so the filter and rule models need no
    # validator of their own unless built directly (a default such as ``RECORD_ONLY``): 24 of
    # the 39 are no longer built at import by ``sinkd check`` (``bench/startup.py``).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    source: str | None = None
    assumption: str | None = None

    @field_validator("source", "assumption")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty: say where the fact comes from, or leave it out")
        return value

    @model_validator(mode="after")
    def _source_or_assumption(self) -> Spec:
        if self.source is not None and self.assumption is not None:
            raise ValueError(
                "give either source: (a document a reader can check) or assumption: (why "
                "sinkd chose this), not both"
            )
        return self

    @property
    def provenance(self) -> Origin | None:
        """``("source", text)`` or ``("assumption", text)``, or None when the node says neither."""
        if self.source is not None:
            return ("source", self.source)
        if self.assumption is not None:
            return ("assumption", self.assumption)
        return None


def check_skip(action: Action, skip: Sequence[str]) -> None:
    """A rule's ``skip`` (categories later filters leave out) means something only when the
    rule allows: an allowlist's skip. ``ValueError`` otherwise (a located profile error)."""
    if skip and action is not Action.ALLOW:
        raise ValueError("'skip' is only meaningful with action: allow")


class FilterSpecBase(Spec):
    """Base of every filter kind's spec: ``kind`` (each kind narrows it to its own
    ``Literal``, which tells the profile schema's union apart) and the instance ``name``."""

    kind: str
    name: FilterName


class RuleOutcome(Spec):
    """What a matching rule does: an action, an optional score and an optional reply."""

    action: Action = Action.SCORE
    score: Score = 0.0
    reply: ReplyRef | None = None


RECORD_ONLY = RuleOutcome(action=Action.NONE)


class ResultOutcomes(Spec):
    """What each authentication result (pass, fail, none, temperror, permerror) does; every
    result is recorded only unless the profile says otherwise. DKIM and DMARC share it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pass_: RuleOutcome = Field(default=RECORD_ONLY, alias="pass")
    fail: RuleOutcome = RECORD_ONLY
    none: RuleOutcome = RECORD_ONLY
    temperror: RuleOutcome = RECORD_ONLY
    permerror: RuleOutcome = RECORD_ONLY

    def of(self, result: str) -> RuleOutcome:
        outcome: RuleOutcome = getattr(self, "pass_" if result == "pass" else result)
        return outcome


class CompileError(ValueError):
    """A semantic error found while compiling a valid-looking profile, located by field path."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    """A reply whose text may hold ``${var}`` placeholders, filled in at evaluation."""

    code: int
    enhanced: str
    template: str
    # Whether the text names the recipient: decided once here, not at every render.
    names_recipient: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "names_recipient", _NAMES_RECIPIENT.search(self.template) is not None
        )

    def render(self, variables: Mapping[str, object]) -> Reply:
        values = {k: "" if v is None else str(v) for k, v in variables.items()}
        text = string.Template(self.template).safe_substitute(values)
        if self.names_recipient and not values.get("rcpt"):
            # Rendered before RCPT TO: keep what the recipient's answer needs (Reply.for_recipient).
            return Reply(self.code, self.enhanced, text, unbound=(self.template, values))
        return Reply(self.code, self.enhanced, text)


def parse_literal_reply(text: str) -> ReplyTemplate | None:
    """``"554 5.7.1 text"`` → template; None when it is not a literal reply (RFC 3463 §2)."""
    match = _LITERAL_REPLY.match(text)
    if match is None:
        return None
    code, enhanced, rest = match.groups()
    if code[0] != enhanced[0]:
        return None  # RFC 3463 §2: the class digit must agree with the basic reply code
    return ReplyTemplate(int(code), enhanced, rest)


@dataclass(frozen=True, slots=True)
class ListValue:
    """A named list after loading: its kind and entries."""

    kind: str
    entries: tuple[str, ...]


class CompileContext:
    """What a filter may consult while compiling: the profile's named lists and replies, and
    its scanning limits (how much of a message its rules read)."""

    def __init__(
        self,
        *,
        lists: Mapping[str, ListValue],
        replies: Mapping[str, ReplyTemplate],
        loc: Sequence[str | int] = (),
        limits: ScanLimits = DEFAULT_SCAN_LIMITS,
        profile: str = "",
    ) -> None:
        self.lists = lists
        self.replies = replies
        self.loc: tuple[str | int, ...] = tuple(loc)
        self.limits = limits
        self.profile = profile  # the id of the profile being compiled ("" when unknown)

    def at(self, *loc: str | int) -> CompileContext:
        """The same context, located deeper in the profile (for error messages)."""
        return CompileContext(
            lists=self.lists,
            replies=self.replies,
            loc=self.loc + loc,
            limits=self.limits,
            profile=self.profile,
        )

    def outcome_reply(
        self, action: Action, reply: str | None, refusal: str = "generic.policy"
    ) -> ReplyTemplate:
        """The reply of a rule or outcome here: its own, else the catalogue's generic tempfail
        for a tempfail and ``refusal`` (the generic policy refusal) for anything else."""
        return self.reply(reply or ("generic.tempfail" if action is Action.TEMPFAIL else refusal))

    def outcome_replies(
        self, field: str, of: Callable[[K], RuleOutcome], keys: Iterable[K]
    ) -> dict[K, ReplyTemplate]:
        """``outcome_reply`` for each key's outcome (``of(key)``), located at ``field.key``."""
        replies: dict[K, ReplyTemplate] = {}
        for key in keys:
            outcome = of(key)
            replies[key] = self.at(field, key).outcome_reply(outcome.action, outcome.reply)
        return replies

    def reply(self, ref: str, field: str | int = "reply") -> ReplyTemplate:
        """Resolve a catalogue key or a literal reply; a bad one is a located CompileError."""
        literal = parse_literal_reply(ref)
        if literal is not None:
            return literal
        if ref in self.replies:
            return self.replies[ref]
        if _CATALOGUE_KEY.match(ref):
            raise CompileError((*self.loc, field), f"unknown reply {ref!r} (not in the catalogue)")
        raise CompileError(
            (*self.loc, field),
            f"reply {ref!r} is neither a catalogue key nor a literal like "
            "'550 5.7.1 text' whose enhanced code class matches the reply code",
        )

    def entries(
        self, values: Sequence[str] | str, field: str | int, *, kinds: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """Inline entries, or ``"@name"`` references to named lists, expanded."""
        items = [values] if isinstance(values, str) else list(values)
        out: list[str] = []
        for index, item in enumerate(items):
            if item.startswith("@"):
                name = item[1:]
                where = (*self.loc, field) if isinstance(values, str) else (*self.loc, field, index)
                if name not in self.lists:
                    known = ", ".join(sorted(self.lists)) or "none"
                    raise CompileError(where, f"unknown list {item!r} (lists: {known})")
                listed = self.lists[name]
                if kinds and listed.kind not in kinds:
                    raise CompileError(
                        where,
                        f"list {item!r} is of kind {listed.kind!r}; "
                        f"this field takes {' or '.join(kinds)}",
                    )
                out.extend(listed.entries)
            else:
                out.append(item)
        return tuple(out)


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as plain data for display (`sinkd profiles show`, the web API): every field,
    except a ``source``/``assumption`` a node does not give (one of the two is always unset)."""
    data: dict[str, Any] = _without_unset_origin(
        model.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    )
    return data


def _without_unset_origin(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: _without_unset_origin(value)
            for key, value in data.items()
            if not (key in ("source", "assumption") and value is None)
        }
    if isinstance(data, list):
        return [_without_unset_origin(item) for item in data]
    return data
