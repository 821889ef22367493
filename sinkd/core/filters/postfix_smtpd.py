"""Postfix's SMTP server restrictions, evaluated as smtpd(8) evaluates them.

Owns the ``postfix_smtpd`` filter kind: the ``smtpd_*_restrictions`` lists of an imported
main.cf with the parameters they read and the lookup tables they name, judged with Postfix's
own semantics (smtpd_check.c of Postfix 3.7; postconf(5) for each restriction, access(5) for
table results and lookup order): within a list the first restriction that decides ends the list;
a permit (``OK``, ``permit_mynetworks`` ...) ends only that list, a reject ends the command;
``DEFER_IF_PERMIT``/``DEFER_IF_REJECT`` change a later permit or reject; ``warn_if_reject``
turns the next reject into a log line. Replies are Postfix's exact texts (``554 5.7.1
<a@b.example>: Sender address rejected: Access denied``), with the DSN fixes smtpd applies.

Stages: with ``smtpd_delay_reject = yes`` (the default) the client, HELO and sender lists are
evaluated again at each RCPT TO with the recipient's lists, as Postfix does; with ``no`` the
client list answers the greeting (``check_connect``), the HELO list HELO/EHLO (``check_helo``)
and the sender list MAIL FROM, where the client and HELO lists are evaluated again (a caller
that asked no earlier stage gets their refusal there, and the finding says so).
``smtpd_data_restrictions`` answer the DATA command, before 354, as in Postfix
(``check_data_command``); ``smtpd_end_of_data_restrictions`` the end of DATA. A ``SIZE=`` over
``message_size_limit`` is refused at MAIL FROM.

``check_policy_service`` is answered for the policy servers it models, postgrey and
policyd-spf, as their Debian 12 packages run them by default; their answer is applied as
an access(5) result, as smtpd applies a policy server's action (SMTPD_POLICY_README).

What it must not do: route or rewrite mail (FILTER, BCC, REDIRECT, PREPEND are recorded only),
open sockets or files (DNS goes through ``ctx.lookups.resolver``), or guess: a restriction it
does not evaluate is not in ``SUPPORTED_RESTRICTIONS`` and is a compile error, so the importer
reports it as untranslated instead.

```yaml
- kind: postfix_smtpd
  name: smtpd
  source: "imported from main.cf"
  parameters:
    mynetworks: {value: "127.0.0.0/8 192.0.2.0/24", source: "main.cf:5"}
    relay_domains: {value: "corp.example", source: "main.cf:6"}
  restrictions:
    sender:
      - {restriction: check_sender_access, table: sender_access, source: "main.cf:12"}
      - {restriction: reject_non_fqdn_sender, source: "main.cf:12"}
    recipient:
      - {restriction: permit_mynetworks, source: "main.cf:14"}
      - {restriction: reject_rbl_client, argument: "zen.spamhaus.org=127.0.0.[2..11]"}
      - {restriction: reject_unauth_destination, source: "main.cf:14"}
  tables:
    sender_access:
      type: hash
      source: "/etc/postfix/sender_access"
      entries:
        - {key: "spam@blocked.example", value: "REJECT", source: "sender_access:3"}
```
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from sinkd.core.filters.base import EnvelopeContext, Filter, MessageContext
from sinkd.core.filters.greylist import client_network, normalise_sender
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode, Reply, Stage
from sinkd.core.ports import STATE_UNAVAILABLE_REPLY, DnsAnswer, Lookups, RecordType
from sinkd.core.postfix_tables import Table, TableSpec, compile_table
from sinkd.core.schema import CompileContext, CompileError, FilterSpecBase, Spec
from sinkd.core.spf_eval import check_host
from sinkd.errors import DeliveryStateUnavailable

# --- the profile schema ---------------------------------------------------------------------

ListName = Literal["client", "helo", "sender", "relay", "recipient", "data", "end_of_data"]
LIST_PARAMETER: dict[str, str] = {
    "client": "smtpd_client_restrictions",
    "helo": "smtpd_helo_restrictions",
    "sender": "smtpd_sender_restrictions",
    "relay": "smtpd_relay_restrictions",
    "recipient": "smtpd_recipient_restrictions",
    "data": "smtpd_data_restrictions",
    "end_of_data": "smtpd_end_of_data_restrictions",
}


class ParameterValue(Spec):
    """A main.cf parameter's value after ``$name`` expansion, with the line it came from."""

    value: str


class RestrictionSpec(Spec):
    """One restriction of a list: its name, the table it consults (``check_*_access``), its
    argument (an RBL domain, a policy service's address) or the policy service it names."""

    restriction: str
    table: str | None = None
    argument: str | None = None
    service: Literal["policyd-spf", "postgrey"] | None = None


class RestrictionLists(Spec):
    """The restriction lists; a list left out is Postfix's default (all empty except
    ``relay``: ``permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination``)."""

    client: tuple[RestrictionSpec, ...] = ()
    helo: tuple[RestrictionSpec, ...] = ()
    sender: tuple[RestrictionSpec, ...] = ()
    relay: tuple[RestrictionSpec, ...] | None = None
    recipient: tuple[RestrictionSpec, ...] = ()
    data: tuple[RestrictionSpec, ...] = ()
    end_of_data: tuple[RestrictionSpec, ...] = ()


class TableRef(Spec):
    table: str


class PostfixSmtpdSpec(FilterSpecBase):
    kind: Literal["postfix_smtpd"]
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    restrictions: RestrictionLists = RestrictionLists()
    rbl_reply_maps: TableRef | None = None
    tables: dict[str, TableSpec] = Field(default_factory=dict)


# --- parameters: Postfix 3.7.11's defaults (`postconf -d`, compatibility_level = 3.6) ----------

_POSTCONF_D = "postconf -d (Postfix 3.7.11, compatibility_level 3.6)"
_DEFAULT_RBL_REPLY = (
    "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
    "$rbl_domain${rbl_reason?; $rbl_reason}"
)
PARAMETER_DEFAULTS: dict[str, tuple[str, str]] = {
    "smtpd_delay_reject": ("yes", _POSTCONF_D),
    # postconf -d computes mynetworks from mynetworks_style = host: the machine's own
    # addresses, which sinkd cannot know; loopback is what every such list holds.
    "mynetworks": ("127.0.0.0/8 [::1]/128", "assumption: mynetworks_style = host, loopback"),
    "mydestination": ("localhost", "assumption: $myhostname, localhost.$mydomain unknown"),
    "relay_domains": ("", _POSTCONF_D),
    "parent_domain_matches_subdomains": (
        "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
        "qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
        _POSTCONF_D,
    ),
    "smtpd_relay_before_recipient_restrictions": ("yes", _POSTCONF_D),
    "access_map_reject_code": ("554", _POSTCONF_D),
    "access_map_defer_code": ("450", _POSTCONF_D),
    "reject_code": ("554", _POSTCONF_D),
    "defer_code": ("450", _POSTCONF_D),
    "maps_rbl_reject_code": ("554", _POSTCONF_D),
    "default_rbl_reply": (_DEFAULT_RBL_REPLY, _POSTCONF_D),
    "relay_domains_reject_code": ("554", _POSTCONF_D),
    "unknown_address_reject_code": ("450", _POSTCONF_D),
    "reject_tempfail_action": ("defer_if_permit", _POSTCONF_D),
    "unknown_address_tempfail_action": ("defer_if_permit", _POSTCONF_D),
    "unknown_helo_hostname_tempfail_action": ("defer_if_permit", _POSTCONF_D),
    "unknown_client_reject_code": ("450", _POSTCONF_D),
    "unknown_hostname_reject_code": ("450", _POSTCONF_D),
    "invalid_hostname_reject_code": ("501", _POSTCONF_D),
    "non_fqdn_reject_code": ("504", _POSTCONF_D),
    "smtpd_null_access_lookup_key": ("<>", _POSTCONF_D),
    "message_size_limit": ("10240000", _POSTCONF_D),
    "soft_bounce": ("no", _POSTCONF_D),
}
SUPPORTED_PARAMETERS: frozenset[str] = frozenset(PARAMETER_DEFAULTS)

_TABLE_RESTRICTIONS = {
    "check_client_access": "client",
    "check_helo_access": "helo",
    "check_sender_access": "sender",
    "check_recipient_access": "recipient",
}
_RBL_RESTRICTIONS = {
    "reject_rbl_client": "client",
    "reject_rbl": "client",  # the old name (postconf(5))
    "permit_dnswl_client": "client",
    "reject_rhsbl_client": "client_name",
    "reject_rhsbl_helo": "helo",
    "reject_rhsbl_sender": "sender",
    "reject_rhsbl_recipient": "recipient",
}
_PLAIN_RESTRICTIONS = frozenset(
    {
        "permit",
        "reject",
        "defer",
        "defer_if_permit",
        "defer_if_reject",
        "warn_if_reject",
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "permit_auth_destination",
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject_invalid_helo_hostname",
        "reject_invalid_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_non_fqdn_hostname",
        "reject_non_fqdn_sender",
        "reject_non_fqdn_recipient",
        "reject_unknown_sender_domain",
        "reject_unknown_recipient_domain",
        "reject_unknown_helo_hostname",
        "reject_unknown_hostname",
        "reject_unknown_client_hostname",
        "reject_unknown_client",
    }
)
# What this kind evaluates; the importer translates these and reports every other name. Left
# out on purpose: reject_unknown_reverse_client_hostname (sinkd's client record has one name,
# the verified one, not the reverse name), reject_unlisted_recipient/sender (needs the
# recipient maps of the delivery agents), restriction classes, and the *_mx/_ns/_a_access
# checks (DNS-driven table lookups). check_policy_service is evaluated for the policy servers
# in SUPPORTED_POLICY_SERVICES only (``service:`` names which one the socket is).
SUPPORTED_RESTRICTIONS: frozenset[str] = frozenset(
    _PLAIN_RESTRICTIONS
    | set(_TABLE_RESTRICTIONS)
    | set(_RBL_RESTRICTIONS)
    | {"check_policy_service"}
)
SUPPORTED_POLICY_SERVICES: frozenset[str] = frozenset({"policyd-spf", "postgrey"})

# postgrey 1.37 (/usr/sbin/postgrey, Debian 12) defaults: --delay 300, --retry-window 2 days,
# --max-age 35 days, --ipv4cidr 24, --ipv6cidr 64, --greylist-action DEFER_IF_PERMIT and
# --greylist-text; with Postfix >= 2.3 (etrn_domain sent) the text gets DSN 4.2.0 first.
POSTGREY_DELAY = 300.0
POSTGREY_RETRY_WINDOW = 2 * 86400.0
POSTGREY_MAX_AGE = 35 * 86400.0
POSTGREY_TEXT = "4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/{domain}.html"

# python-policyd-spf 2.9.4 / spf_engine 3.0.4 (Debian 12's postfix-policyd-spf-python 3.0.4-2)
# as its package runs it: /etc/postfix-policyd-spf-python/policyd-spf.conf and the defaults of
# spf_engine/policydspfsupp.py (policyd-spf.conf(5)): HELO_reject = Mail_From_reject = Fail,
# PermError_reject = TempError_Defer = False, Lookup_Time 20 s, Hide_Receiver = No,
# SPF_Enhanced_Status_Codes = Yes ("550 5.7.23" for a fail), Reason_Message below, and
# skip_addresses (clients never checked: the "local connections").
POLICYD_SPF_SKIP_ADDRESSES = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::ffff:127.0.0.0/104"),
    ipaddress.ip_network("::1/128"),
)
POLICYD_SPF_LOOKUP_TIME = 20.0
POLICYD_SPF_REJECT = "550 5.7.23"
POLICYD_SPF_REASON = (
    "Message rejected due to: {spf}. Please see "
    "http://www.openspf.net/Why?s={scope};id={identity};ip={ip};r={receiver}"
)

# smtpd_dsn_fix.h: the reply classes smtpd names in its replies.
CLIENT, HELO, SENDER, RECIPIENT = (
    "Client host",
    "Helo command",
    "Sender address",
    "Recipient address",
)
DATA_CLASS, EOD_CLASS = "Data command", "End-of-data"

_DSN = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
# smtpd_dsn_fix.c dsn_map: an address DSN X.1.N becomes the sender's or the recipient's
# variant (SND_DSN is X.1.7; X.1.0 for a detail the map does not list).
_SENDER_DSN = {"1": "1.7", "2": "1.8", "3": "1.7", "4": "1.7", "5": "1.0", "6": "1.7"}
_SENDER_DSN |= {"7": "1.7", "8": "1.8"}
_RCPT_DSN = {"1": "1.1", "2": "1.2", "3": "1.3", "4": "1.4", "5": "1.5", "6": "1.6"}
_RCPT_DSN |= {"7": "1.3", "8": "1.2"}

_STAGE_WORDS = {
    "connect": "when the client connects",
    "helo": "at EHLO",
    "mail": "at MAIL FROM",
    "rcpt": "at RCPT TO",
    "data": "at the DATA command",
    "end-of-data": "at the end of DATA",
}


# --- evaluation state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Why:
    """Why a restriction decided: a sentence for people and the detail for the record."""

    text: str
    detail: dict[str, object]


@dataclass(frozen=True, slots=True)
class _Reject:
    reply: Reply
    why: _Why


@dataclass(frozen=True, slots=True)
class _Permit:
    why: _Why


_Status = _Reject | _Permit | None  # None: DUNNO, the next restriction is tried


@dataclass
class _State:
    """What smtpd knows when it evaluates a list (SMTPD_STATE's fields that matter here)."""

    envelope: Envelope
    helo: str | None
    sender: str | None  # None before MAIL FROM; "" the null sender
    recipient: str | None
    list_name: str = ""
    postfix_stage: str = "rcpt"
    warn_if_reject: bool = False
    defer_if_permit: _Reject | None = None
    defer_if_reject: _Reject | None = None
    discard: bool = False
    notes: list[Finding] = field(default_factory=list)
    quiet: bool = False  # re-evaluating only for DEFER_IF_PERMIT: record nothing

    @property
    def client_name(self) -> str:
        return self.envelope.client.name or "unknown"

    @property
    def client_addr(self) -> str:
        return self.envelope.client.ip

    @property
    def namaddr(self) -> str:
        return f"{self.client_name}[{self.client_addr}]"


def _fixed_dsn(dsn: str, reply_class: str) -> str:
    """smtpd_dsn_fix(): an address DSN becomes the sender's or the recipient's variant."""
    major, minor, detail = dsn.split(".")
    if minor != "1":
        return dsn
    if reply_class == SENDER:
        return f"{major}.{_SENDER_DSN.get(detail, '1.0')}"
    if reply_class == RECIPIENT:
        return f"{major}.{_RCPT_DSN.get(detail, '1.0')}"
    return f"{major}.0.0"


def _dsn_split(default: str, text: str) -> tuple[str, str]:
    """dsn_split(): a leading RFC 3463 code in ``text`` replaces ``default``."""
    match = _DSN.match(text)
    if match is None:
        return default, text
    return ".".join(match.groups()), text[match.end() :]


class PostfixSmtpdFilter(Filter):
    kind = "postfix_smtpd"
    Spec = PostfixSmtpdSpec
    category = Category.ENVELOPE
    stage = Stage.RCPT
    # The SIZE= check and, with smtpd_delay_reject = no, the client/HELO/sender lists are
    # answered at MAIL FROM; with yes this kind finds nothing else at MAIL.
    answers_at_mail = True
    # postgrey's triplets live in the server's delivery memory (one SMTP process).
    keeps_state = True
    codes = (
        FindingCode("POSTFIX_SMTPD_REJECT", "a Postfix restriction rejected the command (5xx)"),
        FindingCode("POSTFIX_SMTPD_DEFER", "a Postfix restriction deferred the command (4xx)"),
        FindingCode("POSTFIX_SMTPD_SIZE", "MAIL FROM's SIZE= is over message_size_limit"),
        FindingCode("POSTFIX_SMTPD_DISCARD", "an access table said DISCARD: accepted, dropped"),
        FindingCode("POSTFIX_SMTPD_HOLD", "an access table said HOLD: accepted, held"),
        FindingCode(
            "POSTFIX_SMTPD_WARN", "WARN, INFO or a warn_if_reject reject: Postfix only logs it"
        ),
        FindingCode(
            "POSTFIX_SMTPD_NOT_MODELLED",
            "FILTER, BCC, REDIRECT or PREPEND: routing or rewriting sinkd records only",
        ),
        FindingCode("POSTFIX_SMTPD_NOT_JUDGED", "a DNS list had no offline data: Postfix skips it"),
    )

    def __init__(self, spec: PostfixSmtpdSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.params: dict[str, tuple[str, str]] = dict(PARAMETER_DEFAULTS)
        for name, given in spec.parameters.items():
            if name not in SUPPORTED_PARAMETERS:
                raise CompileError(
                    (*ctx.loc, "parameters", name),
                    f"unknown or unsupported Postfix parameter {name!r} (supported: "
                    f"{', '.join(sorted(SUPPORTED_PARAMETERS))})",
                )
            where = given.source or given.assumption or "profile"
            self.params[name] = (given.value, where)
        for name, (value, _where) in self.params.items():
            numeric = name.endswith("_code") or name == "message_size_limit"
            if numeric and not value.strip().isdigit():
                raise CompileError(
                    (*ctx.loc, "parameters", name), f"{name} must be a number, not {value!r}"
                )
        self.tables: dict[str, Table] = {
            name: compile_table(table, (*ctx.loc, "tables", name))
            for name, table in spec.tables.items()
        }
        self.delay_reject = self._yes("smtpd_delay_reject")
        self.relay_first = self._yes("smtpd_relay_before_recipient_restrictions")
        pdms = {
            p.strip() for p in re.split(r"[\s,]+", self.param("parent_domain_matches_subdomains"))
        }
        self.access_parent = "smtpd_access_maps" in pdms
        self.relay_parent = "relay_domains" in pdms
        self.mynetworks = self._networks(ctx)
        self.relay_domains = self._domains("relay_domains", ctx)
        self.mydestination = self._domains("mydestination", ctx)
        self.rbl_reply_maps: Table | None = None
        if spec.rbl_reply_maps is not None:
            self.rbl_reply_maps = self._table(spec.rbl_reply_maps.table, ctx, ("rbl_reply_maps",))
        for action_name in (
            "reject_tempfail_action",
            "unknown_address_tempfail_action",
            "unknown_helo_hostname_tempfail_action",
        ):
            if self.param(action_name) not in ("defer_if_permit", "defer"):
                raise CompileError(
                    (*ctx.loc, "parameters", action_name),
                    f"{action_name} is defer_if_permit or defer (postconf(5))",
                )
        relay_default = (
            RestrictionSpec(restriction="permit_mynetworks", source=_POSTCONF_D),
            RestrictionSpec(restriction="permit_sasl_authenticated", source=_POSTCONF_D),
            RestrictionSpec(restriction="defer_unauth_destination", source=_POSTCONF_D),
        )
        lists = spec.restrictions
        self.lists: dict[str, tuple[RestrictionSpec, ...]] = {
            "client": lists.client,
            "helo": lists.helo,
            "sender": lists.sender,
            "relay": relay_default if lists.relay is None else lists.relay,
            "recipient": lists.recipient,
            "data": lists.data,
            "end_of_data": lists.end_of_data,
        }
        for list_name, restrictions in self.lists.items():
            for index, restriction in enumerate(restrictions):
                self._check_restriction(restriction, ctx, ("restrictions", list_name, index))

    # -- compile helpers ---------------------------------------------------------------------

    def param(self, name: str) -> str:
        return self.params[name][0].strip()

    def code(self, name: str) -> int:
        return int(self.param(name))

    def _yes(self, name: str) -> bool:
        return self.param(name).lower() in ("yes", "true", "1")

    def _table(self, name: str, ctx: CompileContext, loc: tuple[str | int, ...]) -> Table:
        if name not in self.tables:
            known = ", ".join(sorted(self.tables)) or "none"
            raise CompileError(
                (*ctx.loc, *loc, "table"), f"unknown table {name!r} (tables: {known})"
            )
        return self.tables[name]

    def _networks(
        self, ctx: CompileContext
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for item in re.split(r"[\s,]+", self.param("mynetworks")):
            if not item:
                continue
            address, slash, length = item.partition("/")
            address = address.removeprefix("[").removesuffix("]")
            try:
                networks.append(
                    ipaddress.ip_network(f"{address}/{length}" if slash else address, strict=False)
                )
            except ValueError:
                raise CompileError(
                    (*ctx.loc, "parameters", "mynetworks"),
                    f"mynetworks entry {item!r} is not a network address (host names, "
                    "/file/name and type:table entries are not supported)",
                ) from None
        return tuple(networks)

    def _domains(self, name: str, ctx: CompileContext) -> tuple[str, ...]:
        domains = []
        for item in re.split(r"[\s,]+", self.param(name)):
            if not item:
                continue
            if ":" in item or item.startswith("/"):
                raise CompileError(
                    (*ctx.loc, "parameters", name),
                    f"{name} entry {item!r}: lookup tables and files are not supported",
                )
            domains.append(item.lower())
        return tuple(domains)

    def _check_restriction(
        self, restriction: RestrictionSpec, ctx: CompileContext, loc: tuple[str | int, ...]
    ) -> None:
        name = restriction.restriction.lower()
        if name not in SUPPORTED_RESTRICTIONS:
            raise CompileError(
                (*ctx.loc, *loc, "restriction"),
                f"restriction {restriction.restriction!r} is not evaluated by sinkd's "
                "postfix_smtpd kind",
            )
        if name in _TABLE_RESTRICTIONS:
            if restriction.table is None:
                raise CompileError((*ctx.loc, *loc), f"{name} needs a table")
            self._table(restriction.table, ctx, loc)
        if name == "check_policy_service" and restriction.service not in SUPPORTED_POLICY_SERVICES:
            raise CompileError(
                (*ctx.loc, *loc, "service"),
                f"policy service {restriction.service or restriction.argument!r} is not "
                f"modelled (sinkd evaluates: {', '.join(sorted(SUPPORTED_POLICY_SERVICES))})",
            )
        if name in _RBL_RESTRICTIONS:
            if not restriction.argument:
                raise CompileError((*ctx.loc, *loc), f"{name} needs the list's domain")
            try:
                _answer_filter(restriction.argument)
            except ValueError as exc:
                raise CompileError((*ctx.loc, *loc, "argument"), str(exc)) from None

    # -- the SMTP stages -----------------------------------------------------------------------

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        envelope = ctx.envelope
        helo = envelope.client.helo
        if ctx.rcpt is None:
            findings: list[Finding] = []
            limit = int(self.param("message_size_limit"))
            size = envelope.size_param
            # smtpd.c mail_cmd(): smtpd_check_size() before the sender restrictions.
            if limit > 0 and size is not None and size > limit:
                return [self._size_finding(size, limit)]
            if self.delay_reject:
                return findings
            # smtpd_delay_reject = no: the client list at connect (no HELO, no sender yet),
            # the HELO list at EHLO (no sender), the sender list at MAIL FROM.
            state = _State(envelope, None, None, None)
            for list_name, postfix_stage in (
                ("client", "connect"),
                ("helo", "helo"),
                ("sender", "mail"),
            ):
                if list_name == "helo":
                    state.helo = helo
                if list_name == "sender":
                    state.sender = envelope.mail_from
                status = await self._stage(state, list_name, postfix_stage, ctx.lookups)
                if isinstance(status, _Reject):
                    return [*state.notes, self._refusal(status, state, Stage.MAIL)]
            return state.notes
        return await self._rcpt(envelope, ctx.rcpt, ctx.lookups)

    async def _rcpt(self, envelope: Envelope, rcpt: str, lookups: Lookups) -> list[Finding]:
        # smtpd_check_rcpt(): RFC 5321 §4.5.1 "postmaster" is accepted without checks.
        if rcpt.lower() == "postmaster":
            return []
        state = _State(envelope, envelope.client.helo, envelope.mail_from, rcpt)
        if not self.delay_reject:
            # Already answered at MAIL; evaluate again only for the DEFER_IF_PERMIT they left.
            state.quiet = True
            early = _State(envelope, None, None, None, quiet=True)
            await self._stage(early, "client", "connect", lookups)
            early.helo = envelope.client.helo
            await self._stage(early, "helo", "helo", lookups)
            early.sender = envelope.mail_from
            await self._stage(early, "sender", "mail", lookups)
            state.defer_if_permit = early.defer_if_permit
            state.quiet = False
        else:
            for list_name in ("client", "helo", "sender"):
                status = await self._stage(state, list_name, "rcpt", lookups)
                if isinstance(status, _Reject):
                    return [*state.notes, self._refusal(status, state, Stage.RCPT)]
        # SMTPD_CHECK_RESET(): a DEFER_IF_REJECT lasts one command's lists.
        state.defer_if_reject = None
        state.warn_if_reject = False
        order = ("relay", "recipient") if self.relay_first else ("recipient", "relay")
        for list_name in order:
            state.list_name = list_name
            state.postfix_stage = "rcpt"
            decided = await self._list(state, list_name, rcpt, RECIPIENT, lookups)
            if isinstance(decided, _Reject):
                return [*state.notes, self._refusal(decided, state, Stage.RCPT)]
        if state.defer_if_permit is not None:
            return [*state.notes, self._refusal(state.defer_if_permit, state, Stage.RCPT)]
        return state.notes

    async def check_connect(self, ctx: EnvelopeContext) -> list[Finding]:
        # smtpd.c smtpd_proto(): with smtpd_delay_reject = no, smtpd_check_client() answers
        # in place of the 220 greeting (observed: the 554 greeting, or XCLIENT's reply).
        return await self._early(ctx.envelope, "client", "connect", Stage.CONNECT, ctx.lookups)

    async def check_helo(self, ctx: EnvelopeContext) -> list[Finding]:
        # smtpd.c helo_cmd()/ehlo_cmd(): smtpd_check_helo() answers HELO/EHLO (observed).
        return await self._early(ctx.envelope, "helo", "helo", Stage.HELO, ctx.lookups)

    async def _early(
        self, envelope: Envelope, list_name: str, postfix_stage: str, stage: Stage, lookups: Lookups
    ) -> list[Finding]:
        """The client or HELO list before MAIL FROM: its refusal, or nothing (whatever else
        it finds is found again at MAIL FROM, where it is recorded)."""
        if self.delay_reject:
            return []
        helo = envelope.client.helo if list_name == "helo" else None
        state = _State(envelope, helo, None, None, quiet=True)
        status = await self._stage(state, list_name, postfix_stage, lookups)
        if isinstance(status, _Reject):
            return [self._refusal(status, state, stage)]
        return []

    async def check_data_command(self, ctx: EnvelopeContext) -> list[Finding]:
        # smtpd.c data_cmd(): smtpd_check_data() answers the DATA command, before 354.
        return await self._data_list(ctx.envelope, "data", "DATA", DATA_CLASS, ctx.lookups)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        # smtpd.c data_cmd() after the message: smtpd_check_eod(), before cleanup's answer.
        return await self._data_list(
            ctx.envelope, "end_of_data", "END-OF-MESSAGE", EOD_CLASS, ctx.lookups
        )

    async def _data_list(
        self,
        envelope: Envelope,
        list_name: str,
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
    ) -> list[Finding]:
        """smtpd_check_data()/smtpd_check_eod(): one list, with its defer_if_permit."""
        if not self.lists[list_name]:
            return []
        recipients = envelope.rcpt_to
        # smtpd_check_data()/eod(): no recipient information with several recipients.
        rcpt = recipients[0] if len(recipients) == 1 else None
        state = _State(envelope, envelope.client.helo, envelope.mail_from, rcpt)
        state.list_name = list_name
        state.postfix_stage = "data" if list_name == "data" else "end-of-data"
        status = await self._list(state, list_name, reply_name, reply_class, lookups)
        refusal = status if isinstance(status, _Reject) else state.defer_if_permit
        if refusal is not None:
            return [*state.notes, self._refusal(refusal, state, Stage.DATA)]
        return state.notes

    async def _stage(
        self, state: _State, list_name: str, postfix_stage: str, lookups: Lookups
    ) -> _Status:
        """smtpd_check_client/helo/mail(): one list, with its defer_if_permit bookkeeping."""
        state.list_name = list_name
        state.postfix_stage = postfix_stage
        state.defer_if_reject = None
        state.warn_if_reject = False
        if list_name == "client":
            state.defer_if_permit = None  # "Reset the defer_if_permit flag."
            reply_name, reply_class = state.namaddr, CLIENT
        elif list_name == "helo":
            if state.helo is None:
                return None
            reply_name, reply_class = state.helo, HELO
        else:
            if state.sender is None:
                return None
            reply_name, reply_class = state.sender, SENDER
        return await self._list(state, list_name, reply_name, reply_class, lookups)

    # -- generic_checks() ----------------------------------------------------------------------

    async def _list(
        self,
        state: _State,
        list_name: str,
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
        restrictions: Sequence[RestrictionSpec] | None = None,
    ) -> _Status:
        for restriction in self.lists[list_name] if restrictions is None else restrictions:
            if state.discard:
                break
            name = restriction.restriction.lower()
            if name == "warn_if_reject":
                state.warn_if_reject = True
                continue
            status = await self._restriction(
                state, restriction, name, reply_name, reply_class, lookups
            )
            state.warn_if_reject = False
            if status is not None:
                return status
            if state.defer_if_permit is not None and state.defer_if_reject is not None:
                break
        return None

    def _where(self, restriction: RestrictionSpec, state: _State) -> dict[str, object]:
        detail: dict[str, object] = {
            "list": LIST_PARAMETER.get(state.list_name, state.list_name),
            "restriction": restriction.restriction,
        }
        if restriction.source:
            detail["restriction_source"] = restriction.source
        if restriction.argument:
            detail["argument"] = restriction.argument
        return detail

    def _reject(
        self,
        state: _State,
        code: int,
        dsn: str,
        text: str,
        why: _Why,
    ) -> _Status:
        """smtpd_check_reject(): warn_if_reject, an earlier DEFER_IF_REJECT, soft_bounce,
        and the DSN class made to agree with the reply code."""
        if code < 400 or code > 599:
            code, dsn, text = 450, "4.7.1", "Service unavailable"
        if state.warn_if_reject:
            self._note(
                state,
                "POSTFIX_SMTPD_WARN",
                f'{why.text}; warn_if_reject makes Postfix log "reject_warning: {code} {dsn} '
                f'{text}" instead of refusing',
                why.detail,
            )
            return None
        if state.defer_if_reject is not None and str(code).startswith("5"):
            deferred = state.defer_if_reject
            state.defer_if_reject = None
            detail = {**deferred.why.detail, "instead_of": f"{code} {dsn} {text}"}
            return _Reject(
                deferred.reply,
                _Why(f"{deferred.why.text}, and a later restriction rejected", detail),
            )
        if self._yes("soft_bounce") and str(code).startswith("5"):
            code -= 100
        dsn = f"{str(code)[0]}{dsn[1:]}"
        return _Reject(Reply(code, dsn, text[:500]), why)

    def _defer_if(
        self, state: _State, kind: Literal["permit", "reject"], reply: Reply, why: _Why
    ) -> None:
        """defer_if(): the first DEFER_IF_PERMIT (or _REJECT) of a stage is kept."""
        if kind == "permit":
            if state.defer_if_permit is None:
                state.defer_if_permit = _Reject(reply, why)
        elif state.defer_if_reject is None:
            state.defer_if_reject = _Reject(reply, why)

    def _defer_if_permit(
        self, state: _State, action: str, code: int, dsn: str, text: str, why: _Why
    ) -> _Status:
        """DEFER_IF_PERMIT2(): a tempfail action of defer_if_permit (unless warn_if_reject),
        else an immediate defer."""
        if action == "defer_if_permit" and not state.warn_if_reject:
            self._defer_if(state, "permit", _fixed_reply(Reply(code, dsn, text)), why)
            return None
        return self._reject(state, code, dsn, text, why)

    def _note(self, state: _State, code: str, text: str, detail: dict[str, object]) -> None:
        if state.quiet:
            return
        action = {
            "POSTFIX_SMTPD_DISCARD": Action.DISCARD,
            "POSTFIX_SMTPD_HOLD": Action.QUARANTINE,
        }.get(code, Action.NONE)
        stage = Stage.DATA if state.postfix_stage in ("data", "end-of-data") else Stage.RCPT
        if state.postfix_stage in ("connect", "helo", "mail"):
            stage = Stage.MAIL
        state.notes.append(
            self.finding(
                code,
                action,
                f"{text[:1].upper()}{text[1:]}.",
                stage=stage,
                detail={**detail, "postfix_stage": state.postfix_stage},
            )
        )

    async def _restriction(
        self,
        state: _State,
        restriction: RestrictionSpec,
        name: str,
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
    ) -> _Status:
        where = self._where(restriction, state)
        if name in _TABLE_RESTRICTIONS:
            return await self._access(state, restriction, name, where, lookups)
        if name in _RBL_RESTRICTIONS:
            return await self._rbl(state, restriction, name, where, lookups)
        if name == "check_policy_service":
            if restriction.service == "policyd-spf":
                return await self._policyd_spf(state, where, reply_name, reply_class, lookups)
            return await self._postgrey(state, where, reply_name, reply_class, lookups)
        if name == "permit":
            return _Permit(_Why(f"{name} permits", where))
        if name == "reject":
            why = _Why(f"nothing in {where['list']} decided before its {name}", where)
            return self._reject(
                state,
                self.code("reject_code"),
                "5.7.1",
                f"<{reply_name}>: {reply_class} rejected: Access denied",
                why,
            )
        if name == "defer":
            why = _Why(f"nothing in {where['list']} decided before its {name}", where)
            return self._reject(
                state,
                self.code("defer_code"),
                "4.3.2",
                f"<{reply_name}>: {reply_class} rejected: Try again later",
                why,
            )
        if name in ("defer_if_permit", "defer_if_reject"):
            kind: Literal["permit", "reject"] = "permit" if name == "defer_if_permit" else "reject"
            why = _Why(f"{name} defers a later {kind}", where)
            reply = Reply(450, "4.7.0", f"<{reply_name}>: {reply_class} rejected: {name} requested")
            if kind == "permit" and state.warn_if_reject:
                return self._reject(state, reply.code, reply.enhanced, reply.text, why)
            self._defer_if(state, kind, reply, why)
            return None
        if name == "permit_mynetworks":
            try:
                client = ipaddress.ip_address(state.client_addr.removeprefix("IPv6:"))
            except ValueError:
                return None  # no address to match (namadr_list_match finds nothing)
            for network in self.mynetworks:
                if client.version == network.version and client in network:
                    return _Permit(
                        _Why(f"the client {state.client_addr} is in mynetworks ({network})", where)
                    )
            return None
        if name == "permit_sasl_authenticated":
            if state.envelope.auth_user:
                return _Permit(
                    _Why(f"the client authenticated as {state.envelope.auth_user}", where)
                )
            return None
        if state.recipient is not None and name in (
            "permit_auth_destination",
            "reject_unauth_destination",
            "defer_unauth_destination",
        ):
            authorized = self._auth_destination(state.recipient)
            if name == "permit_auth_destination":
                if authorized:
                    return _Permit(_Why(f"the recipient {state.recipient} is {authorized}", where))
                return None
            if authorized:
                return None
            code = self.code("relay_domains_reject_code")
            dsn = "5.7.1"
            if name == "defer_unauth_destination":
                code, dsn = code - 100, "4.7.1"
            why = _Why(
                f"the recipient {state.recipient} is in neither mydestination nor relay_domains",
                where,
            )
            return self._reject(state, code, dsn, f"<{state.recipient}>: Relay access denied", why)
        if name in ("reject_invalid_helo_hostname", "reject_invalid_hostname"):
            if state.helo is None:
                return None
            if state.helo.startswith("["):
                return self._invalid_hostaddr(state, where)
            if _valid_hostname(_truncated(state.helo)) or _valid_hostaddr(state.helo):
                return None
            why = _Why(f"the HELO name {state.helo!r} is not a valid host name", where)
            return self._reject(
                state,
                self.code("invalid_hostname_reject_code"),
                "5.5.2",
                f"<{state.helo}>: {HELO} rejected: Invalid name",
                why,
            )
        if name in ("reject_non_fqdn_helo_hostname", "reject_non_fqdn_hostname"):
            if state.helo is None:
                return None
            if state.helo.startswith("["):
                return self._invalid_hostaddr(state, where)
            test = _truncated(state.helo)
            if _valid_hostname(test) and "." in test:
                return None
            why = _Why(f"the HELO name {state.helo!r} is not a fully-qualified host name", where)
            return self._reject(
                state,
                self.code("non_fqdn_reject_code"),
                "5.5.2",
                f"<{state.helo}>: {HELO} rejected: need fully-qualified hostname",
                why,
            )
        if name in ("reject_non_fqdn_sender", "reject_non_fqdn_recipient"):
            sender = name == "reject_non_fqdn_sender"
            address = state.sender if sender else state.recipient
            if not address:
                return None
            return self._non_fqdn_address(state, address, SENDER if sender else RECIPIENT, where)
        if name in ("reject_unknown_sender_domain", "reject_unknown_recipient_domain"):
            sender = name == "reject_unknown_sender_domain"
            address = state.sender if sender else state.recipient
            if not address:
                return None
            return await self._unknown_address(
                state, address, SENDER if sender else RECIPIENT, where, lookups
            )
        if name in ("reject_unknown_helo_hostname", "reject_unknown_hostname"):
            if state.helo is None:
                return None
            if state.helo.startswith("["):
                return self._invalid_hostaddr(state, where)
            return await self._unknown_helo(state, where, lookups)
        if name in ("reject_unknown_client_hostname", "reject_unknown_client"):
            if state.envelope.client.name:
                return None
            why = _Why(
                f"the client {state.client_addr} has no verified host name (its PTR record "
                "is missing or does not resolve back to it)",
                where,
            )
            return self._reject(
                state,
                self.code("unknown_client_reject_code"),
                "4.7.25",
                f"Client host rejected: cannot find your hostname, [{state.client_addr}]",
                why,
            )
        return None

    # -- access tables (access(5), check_*_access) -------------------------------------------------

    async def _access(
        self,
        state: _State,
        restriction: RestrictionSpec,
        name: str,
        where: dict[str, object],
        lookups: Lookups,
    ) -> _Status:
        assert restriction.table is not None
        table = self.tables[restriction.table]
        what = _TABLE_RESTRICTIONS[name]
        keys: list[tuple[str, bool]]  # (key, full): partial keys only for indexed tables
        if what == "client":
            reply_name, reply_class = state.namaddr, CLIENT
            keys = self._domain_keys(state.client_name) + _address_keys(state.client_addr)
            subject = f"the client {state.namaddr}"
        elif what == "helo":
            if state.helo is None:
                return None
            reply_name, reply_class = state.helo, HELO
            keys = self._domain_keys(state.helo)
            subject = f"the HELO name {state.helo}"
        elif what == "sender":
            if state.sender is None:
                return None
            reply_name, reply_class = state.sender, SENDER
            if state.sender == "":
                keys = [(self.param("smtpd_null_access_lookup_key"), True)]
                subject = "the null sender <>"
            else:
                keys = self._address_keys(state.sender)
                subject = f"the envelope sender {state.sender}"
        else:
            if state.recipient is None:
                return None
            reply_name, reply_class = state.recipient, RECIPIENT
            keys = self._address_keys(state.recipient)
            subject = f"the recipient {state.recipient}"
        for key, full in keys:
            if not full and not table.indexed:
                continue  # partial keys are for fixed-string tables only (DICT_FLAG_FIXED)
            found = table.lookup(key)
            if found is None:
                continue
            detail = {
                **where,
                "table": restriction.table,
                "key": key,
                "value": found.value,
            }
            if found.source:
                detail["source"] = found.source
            origin = found.source or f"the {restriction.table} table"
            why = _Why(f"{subject} matches {origin} ({found.value})", detail)
            return await self._table_result(
                state, found.value, reply_name, reply_class, why, lookups
            )
        return None

    def _domain_keys(self, domain: str) -> list[tuple[str, bool]]:
        """check_domain_access(): the name, then its parent domains (``.parent`` unless
        parent_domain_matches_subdomains names smtpd_access_maps); none for an address."""
        keys = [(domain, True)]
        if _valid_hostaddr(domain):
            return keys
        rest = domain
        while "." in rest[1:]:
            rest = rest[rest.index(".", 1) :]
            keys.append((rest[1:] if self.access_parent else rest, False))
            rest = rest[1:] if rest.startswith(".") else rest
        return keys

    def _address_keys(self, address: str) -> list[tuple[str, bool]]:
        """mail_addr_find_strategy(): user@domain, domain and its parents, then user@."""
        local, at, domain = address.rpartition("@")
        if not at:
            return [(address, True)]
        keys = [(address, True)]
        keys.extend((key, False) for key, _full in self._domain_keys(domain))
        keys.append((f"{local}@", False))
        return keys

    async def _table_result(
        self,
        state: _State,
        value: str,
        reply_name: str,
        reply_class: str,
        why: _Why,
        lookups: Lookups,
    ) -> _Status:
        """check_table_result(): what an access(5) result means."""
        if not value.strip():
            return _Permit(why)  # "In the dark ages, an empty right-hand side meant OK."
        command, _, text = value.strip().partition(" ")
        if "\t" in command:
            command, _, more = command.partition("\t")
            text = f"{more} {text}".strip()
        text = text.strip()
        upper = command.upper()
        if upper == "DUNNO":
            return None
        if upper in ("REJECT", "DEFER"):
            default = "5.7.1" if upper == "REJECT" else "4.7.1"
            dsn, rest = _dsn_split(default, text)
            code = self.code(
                "access_map_reject_code" if upper == "REJECT" else "access_map_defer_code"
            )
            return self._reject(
                state,
                code,
                _fixed_dsn(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {rest or 'Access denied'}",
                why,
            )
        if upper in ("INFO", "WARN"):
            self._note(
                state, "POSTFIX_SMTPD_WARN", f"{why.text}: Postfix logs it and goes on", why.detail
            )
            return None
        if upper in ("FILTER", "REDIRECT", "BCC", "PREPEND"):
            self._note(
                state,
                "POSTFIX_SMTPD_NOT_MODELLED",
                f"{why.text}: Postfix would {upper} ({text}); sinkd does not route or rewrite "
                "mail, so it records this only",
                why.detail,
            )
            return None
        if upper == "HOLD":
            self._note(
                state,
                "POSTFIX_SMTPD_HOLD",
                f"{why.text}: Postfix accepts the message and holds it in its queue",
                why.detail,
            )
            return None
        if upper == "DISCARD":
            state.discard = True
            self._note(
                state,
                "POSTFIX_SMTPD_DISCARD",
                f"{why.text}: Postfix accepts the message and discards it",
                why.detail,
            )
            return _Permit(why)
        if upper in ("DEFER_IF_PERMIT", "DEFER_IF_REJECT"):
            dsn, rest = _dsn_split("4.7.1", text)
            reply = Reply(
                self.code("access_map_defer_code"),
                _fixed_dsn(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {rest or 'Service unavailable'}",
            )
            if upper == "DEFER_IF_PERMIT":
                if state.warn_if_reject:
                    return self._reject(state, reply.code, reply.enhanced, reply.text, why)
                self._defer_if(state, "permit", _fixed_reply(reply), why)
            else:
                self._defer_if(state, "reject", _fixed_reply(reply), why)
            return None
        if value.strip().isdigit():
            return _Permit(why)  # all-numerical: OK (access(5))
        if len(command) == 3 and command.isdigit() and command[0] in "45" and text:
            dsn, rest = _dsn_split(f"{command[0]}.7.1", text)
            return self._reject(
                state,
                int(command),
                _fixed_dsn(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {rest or 'Access denied'}",
                why,
            )
        if upper in ("OK", "RELAY"):
            return _Permit(why)
        # A restriction list as the result (access(5) "restriction..."): evaluated in place.
        names = [n for n in re.split(r"[\s,]+", value.strip()) if n]
        if ":" in value or not names or not all(n.lower() in _PLAIN_RESTRICTIONS for n in names):
            return self._reject(
                state,
                451,
                "4.3.5",
                "Server configuration error",
                _Why(f"{why.text}, which Postfix cannot evaluate", why.detail),
            )
        source = why.detail.get("source")
        inner = [
            RestrictionSpec(restriction=n, source=source if isinstance(source, str) else None)
            for n in names
        ]
        return await self._list(
            state, state.list_name, reply_name, reply_class, lookups, restrictions=inner
        )

    # -- the other restriction families ----------------------------------------------------------

    def _invalid_hostaddr(self, state: _State, where: dict[str, object]) -> _Status:
        helo = state.helo or ""
        inner = helo[1:-1] if helo.endswith("]") else helo
        inner = inner.removeprefix("IPv6:")
        if _valid_hostaddr(inner):
            return None
        why = _Why(f"the HELO address literal {helo!r} is not a valid address", where)
        return self._reject(
            state,
            self.code("invalid_hostname_reject_code"),
            "5.5.2",
            f"<{helo}>: {HELO} rejected: invalid ip address",
            why,
        )

    def _non_fqdn_address(
        self, state: _State, address: str, reply_class: str, where: dict[str, object]
    ) -> _Status:
        domain = address.rpartition("@")[2] if "@" in address else ""
        if domain.startswith("[") and domain.endswith("]"):
            return None
        test = _truncated(domain)
        if test and _valid_hostname(test) and "." in test:
            return None
        role = "envelope sender" if reply_class == SENDER else "recipient"
        why = _Why(f"the {role} {address} has no fully-qualified domain", where)
        return self._reject(
            state,
            self.code("non_fqdn_reject_code"),
            "4.5.2",
            f"<{address}>: {reply_class} rejected: need fully-qualified address",
            why,
        )

    def _auth_destination(self, recipient: str) -> str | None:
        """permit_auth_destination(): what makes the recipient's domain authorized, if any."""
        local, at, domain = recipient.rpartition("@")
        if not at:
            return "local (no domain)"
        if any(c in local for c in "@!%"):
            return None  # source-routed: RESOLVE_FLAG_ROUTED, uncertain destination
        domain = _truncated(domain.lower())
        if _domain_listed(domain, self.mydestination, parent=False):
            return f"in mydestination ({self.param('mydestination')})"
        if _domain_listed(domain, self.relay_domains, parent=self.relay_parent):
            return f"in relay_domains ({self.param('relay_domains')})"
        return None

    async def _mailhost_status(
        self, name: str, lookups: Lookups, types: Sequence[RecordType]
    ) -> tuple[str, bool]:
        """dns_lookup_l(): "ok", "nullmx", "notfound" or "retry", and whether offline DNS had
        no data (an answer Postfix never sees, taken as its temporary failure)."""
        resolver = lookups.resolver
        if resolver is None:
            return "retry", True
        retry = False
        unknown = False
        for rdtype in types:
            answer: DnsAnswer = await resolver.query(name, rdtype)
            if answer.rcode == "NOERROR" and answer.records:
                if rdtype == "MX" and all(
                    isinstance(r, tuple) and len(r) == 2 and r[1] in ("", ".")
                    for r in answer.records
                ):
                    return "nullmx", False
                return "ok", False
            if answer.unknown:
                unknown = True
                retry = True
            elif answer.rcode not in ("NOERROR", "NXDOMAIN"):
                retry = True
        return ("retry" if retry else "notfound"), unknown

    async def _unknown_address(
        self,
        state: _State,
        address: str,
        reply_class: str,
        where: dict[str, object],
        lookups: Lookups,
    ) -> _Status:
        domain = address.rpartition("@")[2] if "@" in address else ""
        if not domain or (domain.startswith("[") and domain.endswith("]")):
            return None
        if _domain_listed(domain.lower(), self.mydestination, parent=False):
            return None  # RESOLVE_CLASS_FINAL: a local destination
        status, unknown = await self._mailhost_status(domain, lookups, ("MX", "A", "AAAA"))
        sender = reply_class == SENDER
        role = "envelope sender" if sender else "recipient"
        if status == "ok":
            return None
        if status == "nullmx":
            why = _Why(f"the {role}'s domain {domain} publishes a null MX (RFC 7505)", where)
            return self._reject(
                state,
                550 if sender else 556,
                "5.7.27" if sender else "5.1.10",
                f"<{address}>: {reply_class} rejected: Domain {domain} "
                "does not accept mail (nullMX)",
                why,
            )
        dsn = "4.1.8" if sender else "4.1.2"
        text = f"<{address}>: {reply_class} rejected: Domain not found"
        if status == "notfound":
            why = _Why(
                f"the {role}'s domain {domain} has no MX, A or AAAA record",
                {**where, "dns": "not found"},
            )
            return self._reject(state, self.code("unknown_address_reject_code"), dsn, text, why)
        why = _Why(
            f"the DNS lookup of the {role}'s domain {domain} failed temporarily"
            + (" (sinkd's offline DNS has no data for it)" if unknown else ""),
            {**where, "dns": "no data" if unknown else "temporary failure"},
        )
        return self._defer_if_permit(
            state, self.param("unknown_address_tempfail_action"), 450, dsn, text, why
        )

    async def _unknown_helo(
        self, state: _State, where: dict[str, object], lookups: Lookups
    ) -> _Status:
        helo = state.helo or ""
        status, unknown = await self._mailhost_status(helo, lookups, ("A", "AAAA", "MX"))
        if status in ("ok", "nullmx"):
            return None
        text = f"<{helo}>: {HELO} rejected: Host not found"
        if status == "notfound":
            why = _Why(
                f"the HELO name {helo} has no A, AAAA or MX record", {**where, "dns": "not found"}
            )
            return self._reject(
                state, self.code("unknown_hostname_reject_code"), "4.7.1", text, why
            )
        why = _Why(
            f"the DNS lookup of the HELO name {helo} failed temporarily"
            + (" (sinkd's offline DNS has no data for it)" if unknown else ""),
            {**where, "dns": "no data" if unknown else "temporary failure"},
        )
        return self._defer_if_permit(
            state, self.param("unknown_helo_hostname_tempfail_action"), 450, "4.7.1", text, why
        )

    async def _rbl(
        self,
        state: _State,
        restriction: RestrictionSpec,
        name: str,
        where: dict[str, object],
        lookups: Lookups,
    ) -> _Status:
        assert restriction.argument is not None
        argument = restriction.argument
        zone, matches = _answer_filter(argument)
        target = _RBL_RESTRICTIONS[name]
        if target == "client":
            what, reply_class = state.client_addr, CLIENT
            query = _reversed(state.client_addr)
            if query is None:
                return None
        else:
            if target == "client_name":
                subject = None if state.client_name == "unknown" else state.client_name
                reply_class = CLIENT
            elif target == "helo":
                subject, reply_class = state.helo, HELO
            elif target == "sender":
                subject, reply_class = (state.sender or None), SENDER
            else:
                subject, reply_class = state.recipient, RECIPIENT
            if not subject:
                return None
            what = subject
            domain = subject.rpartition("@")[2] if "@" in subject else subject
            last = domain.rpartition(".")[2]
            if (
                not domain
                or domain.startswith("[")
                or last.isdigit()
                or not _valid_hostname(domain)
            ):
                return None
            query = domain
        name_asked = f"{query}.{zone}"
        resolver = lookups.resolver
        if resolver is None:
            return None
        answer = await resolver.query(name_asked, "A")
        if answer.unknown:
            self._note(
                state,
                "POSTFIX_SMTPD_NOT_JUDGED",
                f"{name} {zone} could not be judged: sinkd's offline DNS has no data for "
                f"{name_asked}; Postfix treats a failed lookup as not listed",
                {**where, "dns_names": [name_asked]},
            )
            return None
        if answer.rcode != "NOERROR" or not answer.records:
            return None  # not listed, or the benefit of the doubt on a DNS failure
        addresses = [r for r in answer.records if isinstance(r, str)]
        if matches is not None and not any(matches(a) for a in addresses):
            return None
        listed_detail = {**where, "dns_name": name_asked, "answers": addresses}
        if name == "permit_dnswl_client":
            return _Permit(
                _Why(
                    f"the client {what} is listed in {zone} ({', '.join(addresses)})", listed_detail
                )
            )
        txt = await resolver.query(name_asked, "TXT")
        reason = ""
        if txt.rcode == "NOERROR" and txt.records:
            texts = [
                b"".join(p for p in r if isinstance(p, bytes)).decode("utf-8", "replace")
                for r in txt.records
                if isinstance(r, tuple)
            ]
            reason = " / ".join(texts)[:500]
        if reason:
            listed_detail["reason"] = reason
        template = self.param("default_rbl_reply")
        template_source = self.params["default_rbl_reply"][1]
        if self.rbl_reply_maps is not None:
            # Keyed by the restriction's argument as written, answer filter included (observed
            # with Postfix 3.7: an entry "zen.spamhaus.org" is not used for
            # "reject_rbl_client zen.spamhaus.org=127.0.0.[2..11]"), while $rbl_domain is the zone.
            found = self.rbl_reply_maps.lookup(argument)
            if found is not None:
                template, template_source = found.value, found.source or "rbl_reply_maps"
        variables = self._variables(state)
        variables.update(
            rbl_code=self.param("maps_rbl_reject_code"),
            rbl_domain=zone,
            rbl_reason=reason,
            rbl_txt=reason,
            rbl_what=what,
            rbl_class=reply_class,
        )
        expanded = _mac_expand(template, variables)
        if expanded is None:
            expanded = _mac_expand(_DEFAULT_RBL_REPLY, variables) or ""
        listed_detail["reply_template"] = template_source
        subject_text = {
            CLIENT: "the client",
            HELO: "the HELO name",
            SENDER: "the envelope sender's domain of",
            RECIPIENT: "the recipient's domain of",
        }[reply_class]
        why = _Why(
            f"{subject_text} {what} is listed in {zone} ({', '.join(addresses)})", listed_detail
        )
        match = re.match(r"^([45]\d\d) (.*)$", expanded)
        if match is None:
            return self._reject(state, 450, "4.7.1", "Service unavailable", why)
        code = int(match.group(1))
        dsn, rest = _dsn_split("4.7.1", match.group(2))
        return self._reject(
            state, code, _fixed_dsn(dsn, reply_class), rest or "Service unavailable", why
        )

    async def _postgrey(
        self,
        state: _State,
        where: dict[str, object],
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
    ) -> _Status:
        """check_policy_service with postgrey: its answer applied as an access(5) result."""
        if state.recipient is None or state.quiet:
            return None  # postgrey keys on the recipient; a re-evaluation must not count
        triplet = (
            client_network(state.client_addr, 24, 64),
            normalise_sender(state.sender or "", True),
            state.recipient.lower(),
        )
        detail = {**where, "service": "postgrey", "triplet": list(triplet)}
        memory = lookups.state
        if memory is None:
            self._note(
                state,
                "POSTFIX_SMTPD_NOT_JUDGED",
                "postgrey was not consulted: greylisting needs a server that remembers earlier "
                "attempts, and this check has none (sinkd check)",
                detail,
            )
            return None
        try:
            decision = await memory.greylist(
                triplet,
                lookups.clock.now(),
                POSTGREY_DELAY,
                POSTGREY_RETRY_WINDOW,
                POSTGREY_MAX_AGE,
            )
        except DeliveryStateUnavailable as error:
            # postgrey unreachable: Postfix applies smtpd_policy_service_default_action as an
            # access(5) result (smtpd_check.c check_policy_service: check_table_result(...,
            # policy_clnt->def_action, "policy query", reply_name, reply_class, ...);
            # postconf(5), Postfix 3.0 and later, default "451 4.3.5 Server configuration
            # problem"), hence "<rcpt>: Recipient address rejected: Server configuration ...".
            unavailable = STATE_UNAVAILABLE_REPLY
            value = f"{unavailable.code} {unavailable.enhanced} {unavailable.text}"
            why = _Why(
                "postgrey could not be consulted: the shared greylist memory is unreachable, "
                "so Postfix applies smtpd_policy_service_default_action",
                {**detail, "value": value, "error": str(error)},
            )
            return await self._table_result(state, value, reply_name, reply_class, why, lookups)
        if decision.passed:
            if not decision.remembered:
                self._note(
                    state,
                    "POSTFIX_SMTPD_NOT_MODELLED",
                    f"postgrey lets the triplet pass after {decision.waited:.0f} seconds and "
                    "answers PREPEND X-Greylist: ...; sinkd does not add the header",
                    detail,
                )
            return None
        domain = state.recipient.rpartition("@")[2]
        value = f"DEFER_IF_PERMIT {POSTGREY_TEXT.format(domain=domain)}"
        why = _Why(
            f"postgrey has not seen the triplet {'/'.join(triplet)} wait {decision.delay:g} "
            "seconds yet (greylisting)",
            {**detail, "value": value, "attempts": decision.attempts},
        )
        return await self._table_result(state, value, reply_name, reply_class, why, lookups)

    async def _policyd_spf(
        self,
        state: _State,
        where: dict[str, object],
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
    ) -> _Status:
        """check_policy_service with policyd-spf (spf_engine._spfcheck with the package's
        defaults): its answer applied as an access(5) result. The request's values are
        lowercased (policyd_spf.py lowercases every attribute but protocol_state,
        protocol_name and queue_id); the receiver it names is the recipient's domain
        (Hide_Receiver = No), "none" without a recipient."""
        ip = state.client_addr.removeprefix("IPv6:").lower()
        sender = (state.sender or "").lower()
        helo = (state.helo or "").lower()
        recipient = (state.recipient or "").lower()
        receiver = recipient.split("@", 1)[1] if "@" in recipient else (recipient or "none")
        detail = {**where, "service": "policyd-spf"}
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is not None and any(
            address.version == network.version and address in network
            for network in POLICYD_SPF_SKIP_ADDRESSES
        ):
            header = (
                "X-Comment: SPF check N/A for local connections - client-ip="
                f"{ip}; helo={helo}; envelope-from={sender}; receiver={receiver} "
            )
            why = _Why(f"policyd-spf does not check the local client {ip} (skip_addresses)", detail)
            return await self._table_result(
                state, f"PREPEND {header}", reply_name, reply_class, why, lookups
            )
        if not sender and not helo:
            return None  # "No sender or helo": policyd-spf answers dunno
        resolver = lookups.resolver
        if resolver is None:
            self._note(
                state,
                "POSTFIX_SMTPD_NOT_JUDGED",
                "policyd-spf was not consulted: SPF needs DNS, and this check has none",
                detail,
            )
            return None
        if not helo:  # no HELO: the sender's domain stands in for it (spf_engine)
            helo = sender.split("@", 1)[1] if "@" in sender else "unknown"
        envelope_from = sender or "<>"

        async def evaluate(scope: str) -> tuple[str, str]:
            result = await check_host(
                resolver,
                ip,
                sender,
                helo,
                identity="helo" if scope == "helo" else "mfrom",
                timeout=POLICYD_SPF_LOOKUP_TIME,
            )
            # Offline DNS without data for a name is no judgement: taken as the temperror a
            # real resolver's failure would give, never as "no record" or "no such domain".
            code = "temperror" if result.unknown else result.result
            return code.capitalize(), result.explanation

        def spf_detail(identity: str) -> str:
            return (
                f"identity={identity}; client-ip={ip}; helo={helo}; "
                f"envelope-from={envelope_from}; receiver={receiver} "
            )

        # The HELO identity first (RFC 7208 §2.3), then MAIL FROM; HELO_reject = Fail refuses
        # on a HELO fail whatever the sender, Mail_From_reject = Fail on a MAIL FROM fail.
        helo_code, helo_text = await evaluate("helo")
        helo_detail = {**detail, "identity": "helo", "domain": helo, "result": helo_code}
        if helo_code == "Fail":
            return await self._policyd_spf_reject(
                state,
                "helo",
                helo,
                ip,
                receiver,
                helo_text,
                helo_detail,
                reply_name,
                reply_class,
                lookups,
            )
        header = (
            f"Received-SPF: {helo_code} ({'no SPF record' if helo_code == 'None' else helo_text})"
            f" {spf_detail('helo')}"
        )
        why = _Why(
            f"policyd-spf finds SPF {helo_code.lower()} for the HELO name {helo}", helo_detail
        )
        if sender:
            from_code, from_text = await evaluate("mfrom")
            from_detail = {**detail, "identity": "mailfrom", "sender": sender, "result": from_code}
            if from_code == "Fail":
                return await self._policyd_spf_reject(
                    state,
                    "mfrom",
                    sender,
                    ip,
                    receiver,
                    from_text,
                    from_detail,
                    reply_name,
                    reply_class,
                    lookups,
                )
            if from_code != "None" or helo_code == "None":
                header = f"Received-SPF: {from_code} (mailfrom) {spf_detail('mailfrom')}"
                why = _Why(
                    f"policyd-spf finds SPF {from_code.lower()} for the envelope sender {sender}",
                    from_detail,
                )
        return await self._table_result(
            state, f"PREPEND {header}", reply_name, reply_class, why, lookups
        )

    async def _policyd_spf_reject(
        self,
        state: _State,
        scope: str,
        identity: str,
        ip: str,
        receiver: str,
        explanation: str,
        detail: dict[str, object],
        reply_name: str,
        reply_class: str,
        lookups: Lookups,
    ) -> _Status:
        """policyd-spf's refusal (spf_engine._rejectmessage with Reason_Message's default)."""
        text = POLICYD_SPF_REASON.format(
            spf=explanation, scope=scope, identity=identity, ip=ip, receiver=receiver
        )
        value = f"{POLICYD_SPF_REJECT} {text}"
        subject = "HELO name" if scope == "helo" else "envelope sender"
        why = _Why(
            f"policyd-spf finds SPF fail for the {subject} {identity} from {ip}",
            {**detail, "value": value},
        )
        return await self._table_result(state, value, reply_name, reply_class, why, lookups)

    def _variables(self, state: _State) -> dict[str, str]:
        """smtpd_expand_lookup(): the names a reply template may use."""

        def parts(prefix: str, address: str | None) -> dict[str, str]:
            address = address or ""
            local, at, domain = address.rpartition("@")
            return {
                prefix: address,
                f"{prefix}_name": local if at else address,
                f"{prefix}_domain": domain if at else "",
            }

        return {
            "client": state.namaddr,
            "client_address": state.client_addr,
            "client_name": state.client_name,
            "reverse_client_name": state.client_name,
            "helo_name": state.helo or "",
            **parts("sender", state.sender),
            **parts("recipient", state.recipient),
        }

    # -- findings ----------------------------------------------------------------------------

    def _refusal(self, status: _Reject, state: _State, stage: Stage) -> Finding:
        reply = status.reply
        postfix_stage = state.postfix_stage
        temporary = reply.code < 500
        when = _STAGE_WORDS.get(postfix_stage, "")
        verb = "defers" if temporary else "refuses"
        sentence = (
            f"{status.why.text[:1].upper()}{status.why.text[1:]}, so Postfix {verb} it {when}"
        )
        sinkd_stage = {
            Stage.CONNECT: "connect",
            Stage.HELO: "helo",
            Stage.MAIL: "mail",
            Stage.RCPT: "rcpt",
            Stage.DATA: "end-of-data",
        }[stage]
        if stage is Stage.DATA and postfix_stage == "data":
            sinkd_stage = "data"  # check_data_command: the reply to DATA, as Postfix's
        if sinkd_stage != postfix_stage:
            sentence += f" (sinkd answers {_STAGE_WORDS[sinkd_stage]}, its closest stage)"
        detail = {**status.why.detail, "postfix_stage": postfix_stage}
        return self.finding(
            "POSTFIX_SMTPD_DEFER" if temporary else "POSTFIX_SMTPD_REJECT",
            Action.TEMPFAIL if temporary else Action.REJECT,
            f"{sentence}.",
            stage=stage,
            detail=detail,
            reply=reply,
        )

    def _size_finding(self, size: int, limit: int) -> Finding:
        return self.finding(
            "POSTFIX_SMTPD_SIZE",
            Action.REJECT,
            f"The message declares {size:,} bytes (SIZE=), over message_size_limit "
            f"({limit:,} bytes, {self.params['message_size_limit'][1]}), so Postfix refuses "
            "it at MAIL FROM.",
            stage=Stage.MAIL,
            detail={"size": size, "limit": limit, "parameter": "message_size_limit"},
            reply=Reply(552, "5.3.4", "Message size exceeds fixed limit"),
        )


def _fixed_reply(reply: Reply) -> Reply:
    return Reply(reply.code, f"{str(reply.code)[0]}{reply.enhanced[1:]}", reply.text)


def _truncated(name: str) -> str:
    """dup_if_truncate(): a name ending in one dot loses it."""
    if len(name) > 1 and name.endswith(".") and not name.endswith(".."):
        return name[:-1]
    return name


_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$|^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def _valid_hostname(name: str) -> bool:
    """valid_hostname(): labels of letters, digits, '-' (and '_'), at most 63 characters each,
    255 in all, not all-numeric as a whole (that is an address)."""
    if not name or len(name) > 255 or name.startswith(".") or name.endswith("."):
        return False
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            return False
        if label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return False
    return not all(label.isdigit() for label in labels) or len(labels) != 4


def _valid_hostaddr(text: str) -> bool:
    try:
        ipaddress.ip_address(text.removeprefix("IPv6:"))
    except ValueError:
        return False
    return True


def _domain_listed(domain: str, listed: Sequence[str], *, parent: bool) -> bool:
    """match_list for domains: an entry matches itself; ``.d`` matches d's subdomains; with
    the parent style (parent_domain_matches_subdomains) ``d`` matches them too."""
    for entry in listed:
        if entry.startswith("."):
            if domain.endswith(entry):
                return True
        elif domain == entry or (parent and domain.endswith("." + entry)):
            return True
    return False


def _address_keys(address: str) -> list[tuple[str, bool]]:
    """check_addr_access(): the address, then its shorter prefixes at '.' (or ':')."""
    keys = [(address, True)]
    delimiter = ":" if ":" in address else "."
    rest = address
    while delimiter in rest:
        rest = rest.rpartition(delimiter)[0]
        keys.append((rest, False))
    return keys


def _reversed(address: str) -> str | None:
    """The DNSxL query name's prefix for an address (octets or nibbles reversed)."""
    try:
        parsed = ipaddress.ip_address(address.removeprefix("IPv6:"))
    except ValueError:
        return None
    if parsed.version == 4:
        return ".".join(reversed(str(parsed).split(".")))
    return ".".join(reversed(parsed.exploded.replace(":", "")))


def _answer_filter(argument: str) -> tuple[str, _Matcher | None]:
    """``zone[=d.d.d.d]`` where each octet is a number, ``[a..b]`` or ``[a;b;...]``
    (postconf(5) reject_rbl_client); returns the zone and a matcher of answers."""
    zone, equals, pattern = argument.partition("=")
    if not zone or not re.match(r"^[A-Za-z0-9_.-]+$", zone):
        raise ValueError(f"{argument!r}: not a DNS list domain")
    if not equals:
        return zone, None
    octets = re.findall(r"\[[^\]]*\]|[^.\[\]]+", pattern)
    if len(octets) != 4 or ".".join(octets) != pattern:
        raise ValueError(f"{argument!r}: the answer filter needs four octets")
    sets: list[frozenset[int]] = []
    for octet in octets:
        values: set[int] = set()
        body = octet[1:-1] if octet.startswith("[") and octet.endswith("]") else octet
        for element in body.split(";"):
            low, dots, high = element.partition("..")
            if not low.isdigit() or (dots and not high.isdigit()):
                raise ValueError(f"{argument!r}: bad octet {octet!r}")
            values.update(range(int(low), int(high if dots else low) + 1))
        if (len(body.split(";")) > 1 or ".." in body) and not octet.startswith("["):
            raise ValueError(f"{argument!r}: ranges and lists go inside [...]")
        sets.append(frozenset(values))
    return zone, _Matcher(tuple(sets))


@dataclass(frozen=True, slots=True)
class _Matcher:
    octets: tuple[frozenset[int], ...]

    def __call__(self, address: str) -> bool:
        parts = address.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return False
        return all(int(p) in allowed for p, allowed in zip(parts, self.octets, strict=True))


_MACRO = re.compile(
    r"\$(?:\$|\{([^}?:]*)([?:])((?:[^{}]|\{[^{}]*\})*)\}|\{([^}]*)\}|\(([^)]*)\)|(\w+))"
)


def _mac_expand(template: str, variables: dict[str, str]) -> str | None:
    """mac_expand(): ``$name``, ``${name}``, ``$(name)``, ``${name?text}`` (text when name is
    non-empty), ``${name:text}`` (text when it is empty), ``$$``; None when the template names
    an unknown variable (Postfix then falls back to default_rbl_reply)."""
    unknown = False

    def replace(match: re.Match[str]) -> str:
        nonlocal unknown
        if match.group(0) == "$$":
            return "$"
        if match.group(1) is not None:
            name, test, text = match.group(1), match.group(2), match.group(3)
            if name not in variables:
                unknown = True
                return ""
            value = variables[name]
            chosen = text if (bool(value) == (test == "?")) else ""
            expanded = _mac_expand(chosen, variables)
            if expanded is None:
                unknown = True
                return ""
            return expanded
        name = match.group(4) or match.group(5) or match.group(6) or ""
        if name not in variables:
            unknown = True
            return ""
        # smtpd_expansion_filter: characters outside it become '_' (the default allows all
        # printable ASCII, space and tab).
        return "".join(
            c if (c.isascii() and (c.isprintable() or c == "\t")) else "_" for c in variables[name]
        )

    result = _MACRO.sub(replace, template)
    return None if unknown else result
