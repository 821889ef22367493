"""Greylisting: defer the first attempt of every (client, sender, recipient) triplet.

Owns the ``greylist`` filter kind, modelled on postgrey (Postfix's greylisting policy server)
and rspamd's greylist module. At RCPT TO the triplet is the client IP reduced to its network
(``ipv4_prefix``/``ipv6_prefix``, as postgrey's ``--lookup-by-subnet``), the envelope sender
and the recipient. The first attempt is deferred; a retry after ``delay`` seconds and within
``retry_window`` of the first attempt passes, and the triplet is then remembered for
``remember`` seconds since it was last seen (postgrey's ``--max-age``), passing at once.

Pure: the memory and the time come from ``ctx.lookups.state`` and ``ctx.lookups.clock``
(``sinkd serve`` injects one memory per server; ``--greylist-delay`` overrides ``delay``
there; with ``--store postgresql://...`` the memory is shared by every instance). Without a
memory (``sinkd check``) greylisting is skipped with a note; a shared memory that cannot be
reached defers with 451 4.3.5 (``GREYLIST_UNAVAILABLE``), never passes. A recipient
that an earlier check already refuses is not greylisted (Postfix stops at the first
restriction that refuses, so postgrey never hears of it); an allowlist rule with
``skip: [delivery]`` bypasses it.

```yaml
- kind: greylist
  name: greylisting
  delay: 300                  # postgrey --delay (seconds)
  retry_window: 14400         # a retry later than this after the first attempt starts over
  remember: 3024000           # 35 days, postgrey --max-age
  ipv4_prefix: 24             # postgrey --lookup-by-subnet; rspamd uses 19
  ipv6_prefix: 64
  reply: greylist.deferred    # 451 4.7.1 ... in ${retry_after} seconds; or postgrey.greylisted
```
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Literal

from pydantic import Field, model_validator

from sinkd.core.filters.base import EnvelopeContext, Filter, reply_variables
from sinkd.core.model import Action, Category, Finding, FindingCode, Stage, Unjudged
from sinkd.core.ports import STATE_UNAVAILABLE_REPLY
from sinkd.core.schema import CompileContext, FilterSpecBase, ReplyRef
from sinkd.errors import DeliveryStateUnavailable

_NUMBER = re.compile(r"\b\d+\b")


class GreylistSpec(FilterSpecBase):
    kind: Literal["greylist"]
    delay: float = Field(default=300.0, ge=0, le=86400)
    retry_window: float = Field(default=14400.0, gt=0, le=30 * 86400)
    remember: float = Field(default=3024000.0, ge=0, le=400 * 86400)
    ipv4_prefix: int = Field(default=24, ge=0, le=32)
    ipv6_prefix: int = Field(default=64, ge=0, le=128)
    # postgrey's sender substitutions: "+extension" dropped, numbers in the local part become
    # "#", so that VERP and SRS return paths do not make a new triplet for every message.
    sender_substitutions: bool = True
    reply: ReplyRef = "greylist.deferred"

    @model_validator(mode="after")
    def _window_covers_delay(self) -> GreylistSpec:
        if self.retry_window < self.delay:
            raise ValueError(
                f"retry_window ({self.retry_window:g}) is shorter than delay ({self.delay:g}): "
                "no retry could ever pass"
            )
        return self


def client_network(ip: str, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The client's network as the triplet holds it: ``192.0.2.0/24``, ``2001:db8::/64``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def normalise_sender(sender: str, substitutions: bool) -> str:
    """The sender as the triplet holds it: lower case, and with postgrey's substitutions
    (``bounce-1234+x@esp.example`` → ``bounce-#@esp.example``)."""
    sender = sender.lower()
    local, at, domain = sender.rpartition("@")
    if not substitutions or not at:
        return sender
    local = _NUMBER.sub("#", local.partition("+")[0])
    return f"{local}@{domain}"


class GreylistFilter(Filter):
    kind = "greylist"
    keeps_state = True
    Spec = GreylistSpec
    category = Category.DELIVERY
    codes = (
        FindingCode("GREYLIST_DEFERRED", "a new or too-early triplet: try again later"),
        FindingCode("GREYLIST_PASSED", "the triplet waited long enough, or passed before"),
        FindingCode("GREYLIST_SKIPPED", "no memory to greylist with (sinkd check)"),
        FindingCode(
            "GREYLIST_UNAVAILABLE", "the shared greylist memory could not be reached: try later"
        ),
    )
    stage = Stage.RCPT  # greylisting answers RCPT TO

    def __init__(self, spec: GreylistSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.reply = ctx.reply(spec.reply)

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        if ctx.rcpt is None:
            return []
        if any(f.action.refuses for f in ctx.earlier):
            return []  # refused anyway: the greylist is never consulted
        spec = self.spec
        envelope = ctx.envelope
        triplet = {
            "client": client_network(envelope.client.ip, spec.ipv4_prefix, spec.ipv6_prefix),
            "sender": normalise_sender(envelope.mail_from or "", spec.sender_substitutions),
            "recipient": ctx.rcpt.lower(),
        }
        who = (
            f"mail from {triplet['client']} with sender <{triplet['sender']}> "
            f"to <{triplet['recipient']}>"
        )
        state = ctx.lookups.state
        if state is None:
            return [
                self.finding(
                    code="GREYLIST_SKIPPED",
                    action=Action.NONE,
                    reason=(
                        "Greylisting was not checked: it needs a server that remembers earlier "
                        "attempts, and this check has no memory (sinkd check)."
                    ),
                    detail={"triplet": triplet},
                )
            ]
        now = ctx.lookups.clock.now()
        key = (triplet["client"], triplet["sender"], triplet["recipient"])
        try:
            decision = await state.greylist(key, now, spec.delay, spec.retry_window, spec.remember)
        except DeliveryStateUnavailable as error:
            return [self._unavailable(triplet, who, error)]
        detail: dict[str, object] = {
            "triplet": triplet,
            "first_seen": round(decision.first_seen, 3),
            "attempts": decision.attempts,
            "delay": decision.delay,
        }
        if decision.passed:
            if decision.remembered:
                reason = f"The server has seen {who} pass greylisting before, so it passes at once."
            else:
                reason = (
                    f"The sender retried {who} after {decision.waited:.0f} seconds, at least "
                    f"the {decision.delay:g} seconds greylisting asks for, so it passes."
                )
            return [
                self.finding(
                    code="GREYLIST_PASSED",
                    action=Action.NONE,
                    reason=reason,
                    detail=detail
                    | {"waited": round(decision.waited, 3), "remembered": decision.remembered},
                )
            ]
        retry_after = math.ceil(decision.retry_after)
        if decision.attempts == 1:
            reason = (
                f"The server has not seen {who} before, so it asks the sender to try again in "
                f"{retry_after} seconds (greylisting); real mail servers retry, many scripts "
                "do not."
            )
        else:
            reason = (
                f"The sender retried {who} too early, so it is asked again to try again in "
                f"{retry_after} seconds (greylisting)."
            )
        variables = reply_variables(
            envelope, ctx.rcpt, retry_after=retry_after, delay=f"{decision.delay:g}"
        )
        return [
            self.finding(
                code="GREYLIST_DEFERRED",
                action=Action.TEMPFAIL,
                reason=reason,
                detail=detail | {"retry_after": round(decision.retry_after, 3)},
                reply=self.reply.render(variables),
            )
        ]

    def _unavailable(
        self, triplet: dict[str, str], who: str, error: DeliveryStateUnavailable
    ) -> Finding:
        """No pass without the memory: deferred as Postfix defers when its policy service
        (postgrey) does not answer (``ports.STATE_UNAVAILABLE_REPLY``)."""
        return self.finding(
            code="GREYLIST_UNAVAILABLE",
            action=Action.TEMPFAIL,
            reason=(
                f"Greylisting could not look up {who}: the shared greylist memory is "
                "unreachable, so the sender is asked to try again later (as Postfix answers "
                "when its greylisting policy service fails)."
            ),
            detail={"triplet": triplet, "error": str(error)},
            reply=STATE_UNAVAILABLE_REPLY,
            unjudged=Unjudged.UNAVAILABLE,
        )
