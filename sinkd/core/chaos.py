"""Reproducible chaos: SMTP failures injected at chosen stages, decided by a seeded generator.

Like Mailpit's Chaos and MailHog's Jim, but deterministic: the same seed and the same SMTP
events give the same failures, run after run. Owns the trigger syntax (Mailpit's and sinkd's
own), the default RFC 3463 enhanced codes of injected replies and the decisions. It holds no
policy and speaks no SMTP: the SMTP handler (``sinkd.server.handler``) asks
``Chaos.decide(stage)`` and sends the reply, or drops the connection. An injected failure is
not the filter's judgement: it is logged (logger ``sinkd.chaos``) and never stored as a verdict.

Syntax: comma-separated ``STAGE:CODE:PERCENT[:TEXT]`` items, for example
``connect:421:10,ehlo:554:5,data:disconnect:2,rcpt:450:25:Mailbox busy``, or Mailpit's
``Sender:451:50,Recipient:550:10,Authentication:535:100``. ``disconnect`` in place of a code
closes the connection without a reply. TEXT may start with an enhanced code
(``rcpt:550:100:5.1.1 No such user``); otherwise one is derived from the code and the stage
(``default_enhanced``).
"""

from __future__ import annotations

import logging
import random
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from sinkd.core.model import Reply
from sinkd.errors import ConfigError

log = logging.getLogger("sinkd.chaos")

ChaosStage = Literal["connect", "ehlo", "auth", "mail", "rcpt", "data"]
STAGES: tuple[ChaosStage, ...] = get_args(ChaosStage)
DEFAULT_TEXT = "Chaos: injected failure"

# sinkd's stage names, and Mailpit's trigger names (case-insensitive, as Mailpit takes them:
# it also accepts "Recipients" and "Auth").
_STAGE_NAMES: dict[str, ChaosStage] = {
    "connect": "connect",
    "ehlo": "ehlo",
    "helo": "ehlo",
    "auth": "auth",
    "authentication": "auth",
    "mail": "mail",
    "sender": "mail",
    "rcpt": "rcpt",
    "recipient": "rcpt",
    "recipients": "rcpt",
    "data": "data",
}

# The enhanced code (RFC 3463) an injected reply gets when the trigger names none: by stage and
# basic code first, then by basic code, else X.7.0 (other or undefined security status).
_ENHANCED_AT: dict[tuple[ChaosStage, int], str] = {
    ("rcpt", 450): "4.2.0",  # mailbox unavailable (RFC 5321's 450), e.g. greylisting
    ("rcpt", 452): "4.5.3",  # too many recipients
    ("mail", 550): "5.1.0",  # sender address rejected
    ("rcpt", 550): "5.1.1",  # bad destination mailbox address
    ("rcpt", 552): "5.2.2",  # mailbox full
    ("mail", 553): "5.1.7",  # bad sender's mailbox address syntax
}
_ENHANCED: dict[int, str] = {
    421: "4.7.0",  # service not available, closing the channel (Postfix: "421 4.7.0")
    450: "4.7.1",  # action not taken: refused for now
    451: "4.3.0",  # local error in processing (Mailpit's default chaos code)
    452: "4.3.1",  # insufficient system storage
    454: "4.7.0",  # temporary authentication failure (RFC 4954 §6)
    500: "5.5.2",  # syntax error
    501: "5.5.4",  # syntax error in parameters
    502: "5.5.1",  # command not implemented
    503: "5.5.1",  # bad sequence of commands
    504: "5.5.4",  # parameter not implemented
    530: "5.7.0",  # authentication required (RFC 4954 §6)
    534: "5.7.9",  # authentication mechanism too weak
    535: "5.7.8",  # authentication credentials invalid
    538: "5.7.11",  # encryption required for the mechanism
    550: "5.7.1",  # delivery not authorized, message refused
    551: "5.1.6",  # destination mailbox has moved
    552: "5.3.4",  # message too big for system
    553: "5.1.3",  # bad destination mailbox address syntax
    554: "5.7.1",  # transaction failed: refused (Postfix access(5) wording)
}
_ENHANCED_PREFIX = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+(.*))?", re.DOTALL)
_PERCENT = re.compile(r"\d{1,3}(?:\.\d+)?")


def default_enhanced(stage: ChaosStage, code: int) -> str:
    """The RFC 3463 code an injected ``code`` reply at ``stage`` carries unless one is given."""
    found = _ENHANCED_AT.get((stage, code)) or _ENHANCED.get(code)
    return found or ("4.7.0" if code < 500 else "5.7.0")


@dataclass(frozen=True)
class ChaosTrigger:
    """At ``stage``, with ``probability`` percent (0 to 100): reply ``code`` (400-599) with
    ``text`` (``DEFAULT_TEXT`` if None), or close the connection without a reply
    (``disconnect``, no code and no text). ``enhanced`` overrides the derived enhanced code."""

    stage: ChaosStage
    probability: float
    code: int | None
    text: str | None = None
    disconnect: bool = False
    enhanced: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown chaos stage {self.stage!r}; expected {_stage_list()}")
        if not 0 <= self.probability <= 100:
            raise ConfigError(f"chaos probability {self.probability:g} is not 0 to 100 (percent)")
        if self.disconnect:
            if self.code is not None or self.text is not None or self.enhanced is not None:
                raise ConfigError("a chaos disconnect sends no reply: it takes no code or text")
            return
        if self.code is None or not 400 <= self.code <= 599:
            raise ConfigError(f"chaos code {self.code} is not an SMTP error code (400-599)")
        if self.enhanced is not None:
            match = _ENHANCED_PREFIX.fullmatch(self.enhanced)
            if match is None or match.group(4) is not None:
                raise ConfigError(f"{self.enhanced!r} is not an enhanced status code like 5.1.1")
            if match.group(1) != str(self.code)[0]:
                raise ConfigError(
                    f"enhanced code {self.enhanced} does not match {self.code}: a "
                    f"{str(self.code)[0]}xx reply takes {str(self.code)[0]}.X.X (RFC 3463 §3.1)"
                )
        if self.text is not None and not _printable(self.text):
            raise ConfigError(f"chaos text {self.text!r}: expected printable ASCII, not empty")

    def reply(self) -> Reply:
        """The reply to send (a ``disconnect`` trigger has none: ``ValueError``)."""
        if self.code is None:
            raise ValueError("a chaos disconnect sends no reply")
        enhanced = self.enhanced or default_enhanced(self.stage, self.code)
        return Reply(self.code, enhanced, self.text or DEFAULT_TEXT)

    def spec(self) -> str:
        """The trigger in sinkd's own syntax (``parse_triggers`` reads it back)."""
        what = "disconnect" if self.disconnect else str(self.code)
        text = " ".join(x for x in (self.enhanced, self.text) if x)
        return f"{self.stage}:{what}:{self.probability:g}" + (f":{text}" if text else "")


@dataclass(frozen=True)
class ChaosConfig:
    """Triggers and the seed of their decisions (None: a random seed, logged at start)."""

    triggers: tuple[ChaosTrigger, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))
        _check_totals(self.triggers)
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"chaos seed {self.seed}: expected a whole number >= 0")


def parse_triggers(text: str) -> list[ChaosTrigger]:
    """Comma-separated ``STAGE:CODE:PERCENT[:TEXT]`` items (module docstring); "" is none.

    ``ConfigError`` names the bad item.
    """
    if not text.strip():
        return []
    triggers = [_parse_item(item.strip(), n) for n, item in enumerate(text.split(","), 1)]
    _check_totals(triggers)
    return triggers


def _parse_item(item: str, number: int) -> ChaosTrigger:
    if not item:
        raise ConfigError(f"chaos trigger {number} is empty (separate triggers with one comma)")
    parts = item.split(":", 3)
    if len(parts) < 3:
        raise ConfigError(
            f"chaos trigger {item!r}: expected STAGE:CODE:PERCENT[:TEXT], "
            "e.g. rcpt:450:25 or Sender:451:50"
        )
    name, what, percent = (p.strip() for p in parts[:3])
    stage = _STAGE_NAMES.get(name.lower())
    if stage is None:
        raise ConfigError(
            f"chaos trigger {item!r}: unknown stage {name!r}; expected {_stage_list()} "
            "(or Mailpit's Sender, Recipient, Authentication)"
        )
    if not _PERCENT.fullmatch(percent) or float(percent) > 100:
        raise ConfigError(
            f"chaos trigger {item!r}: probability {percent!r} is not a percentage from 0 to 100"
        )
    probability = float(percent)
    if what.lower() == "disconnect":
        if len(parts) == 4:
            raise ConfigError(f"chaos trigger {item!r}: disconnect sends no reply, so no text")
        return ChaosTrigger(stage, probability, None, disconnect=True)
    if not (what.isascii() and what.isdigit() and len(what) == 3 and 400 <= int(what) <= 599):
        raise ConfigError(
            f"chaos trigger {item!r}: {what!r} is neither an SMTP error code (400-599) "
            "nor 'disconnect'"
        )
    text, enhanced = None, None
    if len(parts) == 4:
        text = parts[3].strip()
        match = _ENHANCED_PREFIX.fullmatch(text)
        if match is not None:
            enhanced = ".".join(match.group(1, 2, 3))
            text = (match.group(4) or "").strip() or None
        elif not text:
            raise ConfigError(f"chaos trigger {item!r}: the text after the last ':' is empty")
    try:
        return ChaosTrigger(stage, probability, int(what), text, enhanced=enhanced)
    except ConfigError as exc:
        raise ConfigError(f"chaos trigger {item!r}: {exc}") from None


def _check_totals(triggers: Iterable[ChaosTrigger]) -> None:
    """One draw decides a stage event, so the stage's triggers share 100 percent."""
    totals: dict[str, float] = {}
    for trigger in triggers:
        totals[trigger.stage] = totals.get(trigger.stage, 0.0) + trigger.probability
    for stage, total in totals.items():
        if round(total, 9) > 100:
            raise ConfigError(
                f"chaos triggers at {stage} add up to {total:g}%: "
                "they share one draw per event, so at most 100%"
            )


def _printable(text: str) -> bool:
    return bool(text.strip()) and all(" " <= ch <= "~" for ch in text)


def _stage_list() -> str:
    return ", ".join(STAGES)


class Chaos:
    """Decides, event by event, whether to inject a failure; reproducible from the seed.

    Each stage draws from its own generator, ``random.Random(f"sinkd-chaos/{seed}/{stage}")``,
    once per event at a stage that has triggers (a connection, an EHLO/HELO, an AUTH
    credential check, a MAIL, a RCPT, an end of DATA). So the same seed and the same sequence
    of events at a stage give the same failures there, whatever happens at the other stages
    (a client retrying EHLO does not shift which RCPTs fail). Only ``Random.random()`` is
    used, whose sequence for a given seed Python keeps stable across versions. Sessions that
    run concurrently interleave their events, so reproduce runs one session at a time.

    The triggers of one stage share the draw: with ``rcpt:450:10,rcpt:550:5`` a RCPT gets 450
    in 10% of draws, 550 in another 5%.
    """

    def __init__(self, config: ChaosConfig | None = None) -> None:
        self.update(config or ChaosConfig())

    def update(self, config: ChaosConfig) -> None:
        """Replace the triggers and restart every stage's sequence from ``config.seed`` (a new
        random seed if None).

        Changes chaos at runtime: sinkd's ``PUT /api/v1/chaos`` (``sinkd.web``) calls it, as
        Mailpit's does; the next SMTP event decides with the new triggers.
        """
        self._seed = config.seed if config.seed is not None else secrets.randbits(32)
        self._config = ChaosConfig(config.triggers, self._seed)
        self._by_stage: dict[str, tuple[ChaosTrigger, ...]] = {
            stage: tuple(t for t in config.triggers if t.stage == stage) for stage in STAGES
        }
        self._draws = {
            stage: random.Random(f"sinkd-chaos/{self._seed}/{stage}") for stage in STAGES
        }

    @property
    def config(self) -> ChaosConfig:
        """The triggers in force and the seed used (the random one when none was given)."""
        return self._config

    @property
    def enabled(self) -> bool:
        return bool(self._config.triggers)

    def decide(self, stage: ChaosStage) -> ChaosTrigger | None:
        """The trigger that fires for this event at ``stage``, or None (one draw, if the stage
        has triggers)."""
        triggers = self._by_stage[stage]
        if not triggers:
            return None
        draw = self._draws[stage].random() * 100  # [0, 100): 100% always fires, 0% never
        bound = 0.0
        for trigger in triggers:
            bound += trigger.probability
            if draw < bound:
                return trigger
        return None

    def describe(self) -> str:
        """``rcpt:550:50,data:disconnect:2 seed=42``, for the start-up log."""
        specs = ",".join(t.spec() for t in self._config.triggers) or "none"
        return f"{specs} seed={self._seed}"


def log_injected(trigger: ChaosTrigger, peer: str | None) -> None:
    """The one log line per injected failure (it is not a verdict, and is not stored)."""
    outcome = "disconnect" if trigger.disconnect else repr(_reply_line(trigger.reply()))
    log.info(
        "chaos stage=%s client=%s injected=%s trigger=%s",
        trigger.stage,
        peer or "-",
        outcome,
        trigger.spec(),
    )


def _reply_line(reply: Reply) -> str:
    return f"{reply.code} {reply.enhanced} {reply.text}"
