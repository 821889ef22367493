"""Exchange Online mail flow rules (``Get-TransportRule``) as ``transport_rules`` rules.

Owns the translation of one rule's conditions, exceptions and actions, as the cmdlet reference
describes them (office-docs-powershell exchange/exchange-ps/ExchangePowerShell/
New-TransportRule.md, cited below as New-TransportRule.md), and the reasons for what it cannot
translate. A rule with any condition or exception it cannot translate is not translated at all:
without that condition the rule would match more mail than the real one, and without that
exception it would act on mail the real one lets through. Must not read files or know the other
cmdlets' output (``sinkd.importers.exchange_online`` does) and must not judge mail.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sinkd.importers.base import Untranslated

NEW_TRANSPORT_RULE = "office-docs-powershell New-TransportRule.md"
# The text a rule's refusal has when the rule gives only a code, and the code when it gives only
# a text: New-TransportRule.md -RejectMessageReasonText and -RejectMessageEnhancedStatusCode.
DEFAULT_REJECT_TEXT = "Delivery not authorized, message refused"
DEFAULT_REJECT_CODE = "5.7.1"
# The basic code: Microsoft documents only the enhanced code. Exchange Online's NDRs for these
# rules quote "550 5.7.1" (the catalogue's m365.transport_rule), so 550 it is.
REJECT_BASIC_CODE = 550

# Properties of a rule that are neither conditions nor actions (New-TransportRule.md and the
# Get-TransportRule output: identity, ordering, bookkeeping). Everything else that is set is a
# condition, an exception or an action, and is translated or reported.
SETTINGS = frozenset(
    {
        "Name",
        "Identity",
        "Guid",
        "ImmutableId",
        "DistinguishedName",
        "Priority",
        "State",
        "Mode",
        "Comments",
        "Description",
        "RuleVersion",
        "WhenChanged",
        "CreatedBy",
        "LastModifiedBy",
        "ExchangeVersion",
        "ObjectState",
        "OrganizationId",
        "IsValid",
        "RuleErrorAction",
        "RuleSubType",
        "SenderAddressLocation",
        "UseLegacyRegex",
        "RecipientAddressType",
        "ManuallyModified",
        "RuleCategory",
        "Conditions",
        "Exceptions",
        "Actions",
        "ActivationDate",
        "ExpiryDate",
        "DlpPolicy",
        "DlpPolicyId",
        "IsRuleConfigurationSupported",
        "PSComputerName",
        "PSShowComputerName",
        "RunspaceId",
        "StopRuleProcessing",
        "SetHeaderValue",
        "HeaderContainsWords",
        "HeaderMatchesPatterns",
        "ExceptIfHeaderContainsWords",
        "ExceptIfHeaderMatchesPatterns",
        "RejectMessageEnhancedStatusCode",
        "Enabled",
        # Modifiers of a condition or action named by another property (the output holds their
        # defaults even when that property is not set): read with it, or meaningless alone.
        "ApplyHtmlDisclaimerFallbackAction",
        "ApplyHtmlDisclaimerLocation",
        "ADComparisonOperator",
        "ExceptIfADComparisonOperator",
        "IncidentReportContent",
        "IncidentReportOriginalMail",
        "SmtpRejectMessageRejectStatusCode",
        "SmtpRejectMessageRejectText",
        # Directory bookkeeping of the output object.
        "ExchangeObjectId",
        "Id",
        "OriginatingServer",
        "ObjectClass",
        "WhenCreated",
        "WhenChangedUTC",
        "WhenCreatedUTC",
    }
)

_SIZE = re.compile(
    r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>B|KB|MB|GB|TB)?\s*(?:\((?P<bytes>[\d,]+) bytes\))?\s*$",
    re.IGNORECASE,
)
# ReplyRef's limit in sinkd.core.schema; Exchange Online allows 1024 characters of text.
_MAX_REPLY = 512
# New-TransportRule.md -RejectMessageEnhancedStatusCode: 5.7.1, or 5.7.900 to 5.7.999.
_ENHANCED = re.compile(r"^5\.7\.(1|9\d\d)$")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
# .NET regular expression constructs Python's re reads differently or not at all: named groups
# written (?<name>...) and (?'name'...), possessive/atomic groups, \p{..} classes, \A..\Z
# (\Z differs), inline (?n) and balancing groups. A pattern using one is not translated.
_DOTNET_ONLY = re.compile(r"\(\?<[A-Za-z]|\(\?'|\(\?>|\\[pP]\{|\\Z|\(\?[imsx]*n|\(\?<\w+-")


@dataclass
class Translated:
    """One rule's translation, or why it has none."""

    rule: dict[str, Any] | None
    untranslated: list[Untranslated] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def strings(value: Any) -> list[str]:
    """A multi-valued property as ConvertTo-Json writes it: an array, a single value, null, or
    Windows PowerShell 5.1's wrapper object ``{"value": [...], "Count": n}``."""
    if value is None:
        return []
    if isinstance(value, dict) and isinstance(value.get("value"), list):
        return strings(value["value"])
    if isinstance(value, list):
        return [text for v in value if v is not None and (text := _text_of(v))]
    text = _text_of(value)
    return [text] if text else []


# The string property of the Exchange types ConvertTo-Json writes as objects when -Depth lets it:
# SmtpAddress (Address), IPRange (Expression), SmtpDomain (Domain), and values wrapped as Value.
_TEXT_PROPERTIES = ("Address", "Expression", "Domain", "SmtpDomain", "Value", "Name")


def _text_of(value: Any) -> str:
    if isinstance(value, dict):
        for key in _TEXT_PROPERTIES:
            inner = value.get(key)
            if isinstance(inner, (str, int)) and not isinstance(inner, bool):
                return str(inner)
        return ""
    return str(value)


def is_set(value: Any) -> bool:
    """Whether a property holds anything: null, false, an empty array or string do not."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return bool(value.strip()) and value.strip().lower() != "false"
    if isinstance(value, dict) and "value" in value:
        return bool(strings(value))
    if isinstance(value, list):
        return bool(strings(value))
    return True


def size_in_bytes(value: Any) -> int | None:
    """A ByteQuantifiedSize as Get-TransportRule prints it ("10 MB (10,485,760 bytes)") or a
    number of bytes; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("Value", "value"):
            if key in value:
                return size_in_bytes(value[key])
        return None
    match = _SIZE.match(str(value))
    if match is None:
        return None
    if match.group("bytes"):
        return int(match.group("bytes").replace(",", ""))
    unit = (match.group("unit") or "B").upper()
    return int(float(match.group("n")) * _UNITS[unit])


def ip_entries(values: list[str]) -> list[str] | None:
    """Addresses, CIDR ranges and "first-last" ranges as CIDR entries; None if one is none."""
    out: list[str] = []
    for value in values:
        text = value.strip()
        first, dash, last = text.partition("-")
        try:
            if dash:
                start, end = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
                if start.version != end.version or int(start) > int(end):
                    return None
                out.extend(str(n) for n in ipaddress.summarize_address_range(start, end))
            else:
                out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            return None
    return out


def python_pattern(pattern: str) -> str | None:
    """A .NET pattern Python's ``re`` reads the same way, or None (New-TransportRule.md: the
    *MatchesPatterns conditions take .NET regular expressions)."""
    if _DOTNET_ONLY.search(pattern):
        return None
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern


Condition = dict[str, Any]
# name -> (condition or None, reason it is not translated)
Builder = Callable[[Any, Mapping[str, Any]], tuple[Condition | None, str]]


def _sender_location(rule: Mapping[str, Any]) -> str:
    location = str(rule.get("SenderAddressLocation") or "Header").lower()
    return {"envelope": "envelope", "headerorenvelope": "header_or_envelope"}.get(
        location, "header"
    )


def _addresses(field_name: str, test: str, sender: bool) -> Builder:
    def build(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
        values = strings(value)
        if test == "is" and field_name not in ("sender_domain", "recipient_domain"):
            names = [v for v in values if "@" not in v]
            if names:
                return None, (
                    f"{', '.join(names)}: a recipient or group name, not an address; sinkd "
                    "cannot resolve names in the organisation's directory"
                )
        if test == "matches":
            patterns = [python_pattern(v) for v in values]
            bad = [v for v, p in zip(values, patterns, strict=True) if p is None]
            if bad:
                return None, f"the .NET pattern(s) {', '.join(bad)} have no Python equivalent"
        condition: Condition = {"field": field_name, "test": test, "values": values}
        if sender:
            condition["sender_location"] = _sender_location(rule)
        return condition, ""

    return build


def _text(field_name: str, test: str) -> Builder:
    def build(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
        values = strings(value)
        if test == "matches":
            bad = [v for v in values if python_pattern(v) is None]
            if bad:
                return None, f"the .NET pattern(s) {', '.join(bad)} have no Python equivalent"
        return {"field": field_name, "test": test, "values": values}, ""

    return build


def _size(field_name: str) -> Builder:
    def build(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
        size = size_in_bytes(value)
        if size is None:
            return None, f"{value!r} is not a size sinkd can read"
        return {"field": field_name, "test": "over", "size": size}, ""

    return build


def _present(field_name: str) -> Builder:
    def build(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
        return {"field": field_name, "test": "present"}, ""

    return build


def _ip_ranges(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
    entries = ip_entries(strings(value))
    if entries is None:
        return None, f"{strings(value)} holds a value that is not an address or range"
    return {"field": "client_ip", "test": "is", "values": entries}, ""


def _header(words: bool, prefix: str) -> Builder:
    values_key = f"{prefix}Header{'ContainsWords' if words else 'MatchesPatterns'}"

    def build(value: Any, rule: Mapping[str, Any]) -> tuple[Condition | None, str]:
        values = strings(rule.get(values_key))
        if not values:
            return None, f"no {values_key} goes with the header name"
        if not words and any(python_pattern(v) is None for v in values):
            return None, "a .NET pattern with no Python equivalent"
        condition: Condition = {
            "field": "header",
            "header": strings(value)[0],
            "test": "contains" if words else "matches",
            "values": values,
        }
        return condition, ""

    return build


def _builders(prefix: str) -> dict[str, Builder]:
    """The conditions (prefix "") or exceptions (prefix "ExceptIf") sinkd translates."""
    return {
        f"{prefix}From": _addresses("sender", "is", True),
        f"{prefix}FromAddressContainsWords": _addresses("sender", "contains", True),
        f"{prefix}FromAddressMatchesPatterns": _addresses("sender", "matches", True),
        f"{prefix}SenderDomainIs": _addresses("sender_domain", "is", True),
        f"{prefix}SentTo": _addresses("recipient", "is", False),
        f"{prefix}RecipientAddressContainsWords": _addresses("recipient", "contains", False),
        f"{prefix}RecipientAddressMatchesPatterns": _addresses("recipient", "matches", False),
        f"{prefix}RecipientDomainIs": _addresses("recipient_domain", "is", False),
        f"{prefix}SubjectContainsWords": _text("subject", "contains"),
        f"{prefix}SubjectMatchesPatterns": _text("subject", "matches"),
        f"{prefix}SubjectOrBodyContainsWords": _text("subject_or_body", "contains"),
        f"{prefix}SubjectOrBodyMatchesPatterns": _text("subject_or_body", "matches"),
        f"{prefix}HeaderContainsMessageHeader": _header(True, prefix),
        f"{prefix}HeaderMatchesMessageHeader": _header(False, prefix),
        f"{prefix}AttachmentExtensionMatchesWords": _text("attachment_extension", "is"),
        f"{prefix}AttachmentNameMatchesPatterns": _text("attachment_name", "matches"),
        f"{prefix}AttachmentSizeOver": _size("attachment_size"),
        f"{prefix}MessageSizeOver": _size("message_size"),
        f"{prefix}SenderIpRanges": _ip_ranges,
        f"{prefix}AnyOfToHeader": _addresses("to_address", "is", False),
        f"{prefix}AnyOfCcHeader": _addresses("cc_address", "is", False),
        f"{prefix}AnyOfToCcHeader": _addresses("to_cc_address", "is", False),
        f"{prefix}AttachmentHasExecutableContent": _present("attachment_executable"),
    }


CONDITIONS = _builders("")
EXCEPTIONS = _builders("ExceptIf")
# Why the conditions sinkd has no way to evaluate are not translated.
_NOT_EVALUATED = {
    "FromScope": "needs the organisation's accepted domains and directory (inside/outside)",
    "SentToScope": "needs the organisation's accepted domains and directory (inside/outside)",
    "SCLOver": "needs Microsoft's spam confidence level, which sinkd does not compute",
    "HasNoClassification": "message classifications live in the organisation's directory",
    "HasClassification": "message classifications live in the organisation's directory",
    "FromMemberOf": "group membership lives in the organisation's directory",
    "SentToMemberOf": "group membership lives in the organisation's directory",
    "MessageContainsDataClassifications": "sensitive information types are Microsoft Purview's",
    "AttachmentContainsWords": "sinkd does not extract text from attachments",
    "AttachmentMatchesPatterns": "sinkd does not extract text from attachments",
    "AttachmentIsPasswordProtected": "sinkd tells only encrypted zip archives, where Exchange "
    "also detects protected Office documents, 7z archives and PDF files",
}
# Actions that change what happens to the message in ways sinkd has no outcome for: the rule is
# kept with its other actions, and the action is reported with why.
_ACTIONS_NOT_TRANSLATED = {
    "ModerateMessageByUser": "the message waits for a moderator's approval, whose answer sinkd "
    "cannot know",
    "ModerateMessageByManager": "the message waits for the sender's manager's approval, whose "
    "answer sinkd cannot know",
    "NotifySender": "a data loss prevention notification; its rejection variants depend on the "
    "sender's override, which sinkd cannot know",
    "ApplyOME": "encryption of the delivered message",
    "ApplyRightsProtectionTemplate": "rights protection of the delivered message",
    "RouteMessageOutboundConnector": "outbound routing",
    "RouteMessageOutboundRequireTls": "outbound routing",
    "AddManagerAsRecipientType": "adding the sender's manager needs the directory",
    "Disconnect": "Edge Transport servers only (New-TransportRule.md -Disconnect)",
}
_ACTION_ONLY_EFFECTS = {
    "SetHeaderName": "set the header",
    "RemoveHeader": "remove the header",
    "ApplyHtmlDisclaimerText": "add a disclaimer",
    "AddToRecipients": "add recipients",
    "CopyTo": "copy the message to",
    "BlindCopyTo": "Bcc the message to",
    "GenerateIncidentReport": "send an incident report to",
    "GenerateNotification": "send a notification",
    "LogEventText": "log an event",
    "SetAuditSeverity": "set the audit severity",
    "ApplyClassification": "apply a classification",
}


# When one rule has several actions, what the sender and the recipient see is the strictest:
# a rejection wins over a deletion, which wins over quarantine, and so on (sinkd's dispositions,
# sinkd.core.model.Disposition, in the same order).
_STRICTNESS = ("none", "allow", "tag", "junk", "quarantine", "discard", "reject")


def _stronger(current: str | None, new: str) -> str:
    if current is None:
        return new
    return max(current, new, key=_STRICTNESS.index)


def _origin(name: str, priority: Any) -> str:
    return f"transport rule '{name}' (priority {priority})"


def rule_id(name: str, priority: Any, taken: set[str]) -> str:
    base = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "RULE"
    if not base[0].isalpha():
        base = f"R_{base}"
    base = f"{base[:52]}_P{priority}" if str(priority).isdigit() else base[:56]
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_date(value: Any) -> datetime | None:
    """A DateTime as ConvertTo-Json writes it: "/Date(ms since 1970)/" (Windows PowerShell) or
    ISO 8601 (PowerShell 7); None when it is neither."""
    text = str(value).strip()
    match = _MS_DATE.match(text)
    if match is not None:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _inactive(rule: Mapping[str, Any], origin: str, now: datetime) -> str | None:
    """Why the rule does not run at ``now`` (New-TransportRule.md -ActivationDate and
    -ExpiryDate: no action before the one or after the other), or None."""
    start = parse_date(rule["ActivationDate"]) if is_set(rule.get("ActivationDate")) else None
    end = parse_date(rule["ExpiryDate"]) if is_set(rule.get("ExpiryDate")) else None
    if start is not None and start > now:
        return f"{origin} is not active before {start:%Y-%m-%d %H:%M} UTC: not imported"
    if end is not None and end < now:
        return f"{origin} expired on {end:%Y-%m-%d %H:%M} UTC: not imported"
    return None


def translate_rule(
    rule: Mapping[str, Any],
    *,
    scl_actions: Mapping[int, tuple[str, str]],
    taken: set[str],
    now: datetime,
) -> Translated:
    """One Get-TransportRule object as a ``transport_rules`` rule.

    ``scl_actions`` gives, for SetSCL 5..9, the sinkd action and the policy setting it comes
    from (New-TransportRule.md -SetSCL: 5 or 6 requests a spam verdict, 9 a high confidence
    spam verdict; the SCL page gives a rule's 7 and 8 the high confidence spam action too:
    spam-confidence-levels.md, since moved to anti-spam-spam-confidence-level-scl-about.md)."""
    name = str(rule.get("Name") or rule.get("Identity") or "(unnamed)")
    priority = rule.get("Priority", "?")
    origin = _origin(name, priority)
    result = Translated(None)
    state = str(rule.get("State") or "Enabled")
    if state.lower() in ("disabled", "1"):
        result.notes.append(f"{origin} is disabled (State Disabled): not imported")
        return result
    inactive = _inactive(rule, origin, now)
    if inactive is not None:
        result.notes.append(inactive)
        return result
    if is_set(rule.get("ExpiryDate")) or is_set(rule.get("ActivationDate")):
        result.notes.append(
            f"{origin} runs only between its ActivationDate and ExpiryDate: imported as active "
            "on the day of the import"
        )
    when: list[Condition] = []
    unless: list[Condition] = []
    missing: list[str] = []
    action: str | None = None
    reply: str | None = None
    skip: list[str] = []
    stop = is_set(rule.get("StopRuleProcessing"))
    effects: list[str] = []
    action_from: list[str] = []
    for key, value in rule.items():
        if key in SETTINGS or not is_set(value):
            continue
        if key in CONDITIONS or key in EXCEPTIONS:
            builder = CONDITIONS.get(key) or EXCEPTIONS[key]
            condition, why = builder(value, rule)
            if condition is None:
                missing.append(f"{key}: {why}")
            else:
                (when if key in CONDITIONS else unless).append(condition)
            continue
        plain = key.removeprefix("ExceptIf")
        if plain in _NOT_EVALUATED:
            missing.append(f"{key}: {_NOT_EVALUATED[plain]}")
            continue
        if key in ("RejectMessageReasonText",):
            text = " ".join(str(value).split())
            code = str(rule.get("RejectMessageEnhancedStatusCode") or DEFAULT_REJECT_CODE)
            candidate = f"{REJECT_BASIC_CODE} {code.strip()} {text}"
            if len(candidate) > _MAX_REPLY or not _ENHANCED.match(code.strip()):
                missing.append(
                    f"{key}: the reply '{candidate[:80]}...' is longer than sinkd's "
                    f"{_MAX_REPLY} characters or its code is not 5.7.x"
                )
                continue
            action, reply = _stronger(action, "reject"), candidate
            action_from.append(key)
        elif key == "DeleteMessage":
            action = _stronger(action, "discard")
            action_from.append(key)
        elif key == "Quarantine":
            action = _stronger(action, "quarantine")
            # New-TransportRule.md -Quarantine: no rule after this one is evaluated.
            stop = True
            action_from.append(key)
        elif key == "SetSCL":
            try:
                scl = int(str(value))
            except ValueError:
                missing.append(f"{key}: {value!r} is not an SCL from -1 to 9")
                continue
            if scl == -1:
                # -SetSCL: -1 asks for a bypass of most spam filtering; such a rule skips sender
                # authentication checks too (create-safe-sender-lists-in-office-365.md).
                action = _stronger(action, "allow")
                skip = ["score", "content", "authentication"]
            elif scl in scl_actions:
                action = _stronger(action, scl_actions[scl][0])
                effects.append(f"SCL {scl} takes {scl_actions[scl][1]}")
            else:
                effects.append(f"stamp SCL {scl} (below the spam verdicts: no action)")
                action = _stronger(action, "none")
            action_from.append(key)
        elif key == "PrependSubject":
            effects.append(f"prepend '{value}' to the subject")
            action = _stronger(action, "tag")
            action_from.append(key)
        elif key == "SetHeaderName":
            effects.append(f"set the header {value}: {rule.get('SetHeaderValue', '')}")
            action = _stronger(action, "tag")
            action_from.append(key)
        elif key == "RedirectMessageTo":
            result.untranslated.append(
                Untranslated(
                    origin,
                    f"RedirectMessageTo {', '.join(strings(value))}",
                    "sinkd does not deliver to other recipients; the finding records that the "
                    "product would redirect",
                )
            )
            effects.append(f"redirect the message to {', '.join(strings(value))}")
            action = _stronger(action, "none")
            action_from.append(key)
        elif key in _ACTIONS_NOT_TRANSLATED:
            result.untranslated.append(
                Untranslated(
                    origin,
                    f"{key} {', '.join(strings(value))}".strip(),
                    f"{_ACTIONS_NOT_TRANSLATED[key]}; the rule's other actions are translated",
                )
            )
            effects.append(f"{key} {', '.join(strings(value))}".strip())
            action = _stronger(action, "none")
            action_from.append(key)
        elif key in _ACTION_ONLY_EFFECTS:
            effects.append(f"{_ACTION_ONLY_EFFECTS[key]} {', '.join(strings(value))}".strip())
            action = _stronger(action, "none")
            action_from.append(key)
        else:
            missing.append(f"{key}: sinkd does not translate this condition or action")
    if (
        "RejectMessageEnhancedStatusCode" in rule
        and is_set(rule.get("RejectMessageEnhancedStatusCode"))
        and reply is None
    ):
        code = str(rule["RejectMessageEnhancedStatusCode"]).strip()
        if _ENHANCED.match(code):
            action = _stronger(action, "reject")
            reply = f"{REJECT_BASIC_CODE} {code} {DEFAULT_REJECT_TEXT}"
            action_from.append("RejectMessageEnhancedStatusCode")
        else:
            missing.append(f"RejectMessageEnhancedStatusCode: {code!r} is not 5.7.1 or 5.7.9xx")
    if missing:
        for item in missing:
            key, _, why = item.partition(": ")
            result.untranslated.append(
                Untranslated(
                    origin,
                    key,
                    f"{why}; the whole rule is left out, since without it the rule would judge "
                    "other mail than the real one",
                )
            )
        return result
    if not when:
        result.untranslated.append(
            Untranslated(
                origin,
                "no condition",
                "a rule without conditions applies to every message; sinkd imports rules with "
                "at least one condition it can evaluate",
            )
        )
        return result
    if action is None:
        result.untranslated.append(
            Untranslated(origin, "no action", "the rule has no action sinkd can express")
        )
        return result
    if action != "allow":
        skip = []  # a stricter action of the same rule overrides SetSCL -1's bypass
    mode = str(rule.get("Mode") or "Enforce")
    if mode.lower() in ("audit", "auditandnotify", "0", "1"):
        # New-TransportRule.md -Mode: Audit and AuditAndNotify only log what would happen.
        effects.insert(0, f"Mode {mode}: log that the rule would {action}, and act on nothing")
        action, reply, skip, stop = "none", None, [], False
    out: dict[str, Any] = {
        "id": rule_id(name, priority, taken),
        "describe": f"Mail flow rule '{name}'",
        "when": when,
    }
    if unless:
        out["unless"] = unless
    out["action"] = action
    if reply is not None:
        out["reply"] = reply
    if skip:
        out["skip"] = skip
    if stop:
        out["stop"] = True
    if effects:
        out["effects"] = effects
    source = f"{origin}: {', '.join(action_from)}; {NEW_TRANSPORT_RULE}"
    if reply is not None:
        source += (
            f"; reply: the rule's code and text (-RejectMessageEnhancedStatusCode default "
            f"{DEFAULT_REJECT_CODE}, -RejectMessageReasonText default '{DEFAULT_REJECT_TEXT}'), "
            f"basic code {REJECT_BASIC_CODE} as Exchange Online's NDRs quote it"
        )
    out["source"] = source
    result.rule = out
    return result
