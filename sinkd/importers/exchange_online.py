"""``sinkd profiles import exchange-online policy.json``: Exchange Online Protection's policies.

Owns reading the one JSON file the documented PowerShell writes (docs/import-exchange-online.md):

    @{
      HostedContentFilterPolicy    = @(Get-HostedContentFilterPolicy)
      HostedConnectionFilterPolicy = @(Get-HostedConnectionFilterPolicy)
      MalwareFilterPolicy          = @(Get-MalwareFilterPolicy)
      TransportRule                = @(Get-TransportRule)
    } | ConvertTo-Json -Depth 6 | Set-Content -Encoding utf8 policy.json

and turning the default anti-spam, connection filter and anti-malware policies and the mail
flow rules into a profile. ConvertTo-Json's shapes are all read: each cmdlet's output as an
array or a single object, Windows PowerShell 5.1's ``{"value": [...], "Count": n}`` arrays,
enums as names or as numbers, a UTF-16 file (Windows PowerShell's ``>``). The profile stands
alone, built on the EOP defaults of the built-in ``m365-default-like`` profile for what the
export does not hold (DMARC, DKIM, the mailbox size limit, scanning limits), with its filters in
EOP's order of processing: connection filtering, anti-malware, mail flow rules, then spam
filtering (defender-office-365/eop-about.md, how EOP works). Mail flow rule
translation is ``sinkd.importers.exchange_rules``. Must not judge mail or write files.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sinkd.core.profiles import builtin_profiles_dir
from sinkd.errors import PolicyImportError
from sinkd.importers import register
from sinkd.importers.base import Imported, Untranslated
from sinkd.importers.exchange_rules import (
    ip_entries,
    strings,
    translate_rule,
)

log = logging.getLogger(__name__)

SET_CONTENT = "office-docs-powershell Set-HostedContentFilterPolicy.md"
SET_CONNECTION = "office-docs-powershell Set-HostedConnectionFilterPolicy.md"
SET_MALWARE = "office-docs-powershell Set-MalwareFilterPolicy.md"
SCL_PAGE = "defender-office-365/anti-spam-spam-confidence-level-scl-about.md"
SAFE = "defender-office-365/create-safe-sender-lists-in-office-365.md"
DEFAULTS_PROFILE = "m365-default-like"
CMDLETS = (
    "HostedContentFilterPolicy",
    "HostedContentFilterRule",
    "HostedConnectionFilterPolicy",
    "MalwareFilterPolicy",
    "MalwareFilterRule",
    "TransportRule",
)

# Enum members in declaration order, for exports that write enums as numbers (Windows
# PowerShell's ConvertTo-Json writes an enum's value, PowerShell 7 with -EnumsAsStrings its
# name). The order is the one the Exchange Server 2013 SDK reference lists
# (SpamFilteringAction: MoveToJmf, AddXHeader, ModifySubject, Redirect, Delete, Quarantine;
# SpamFilteringTestModeAction: None, AddXHeader, BccMessage; SpamFilteringOption, the ASF
# switches: Off, On, Test); NoAction, added to the service later, is assumed to follow them.
SPAM_ACTIONS = ("MoveToJmf", "AddXHeader", "ModifySubject", "Redirect", "Delete", "Quarantine")
SPAM_ACTIONS_ALL = (*SPAM_ACTIONS, "NoAction")
TEST_MODE_ACTIONS = ("None", "AddXHeader", "BccMessage")
SWITCHES = ("Off", "On", "Test")
FILE_TYPE_ACTIONS = ("Reject", "Quarantine")  # Set-MalwareFilterPolicy.md -FileTypeAction

# The ASF settings sinkd detects, as transport_rules conditions (Set-HostedContentFilterPolicy.md
# says what each one looks for; each "On" makes the message high confidence spam).
ASF_CONDITIONS: dict[str, dict[str, Any]] = {
    "MarkAsSpamEmptyMessages": {"field": "empty_message", "test": "present"},
    # "JavaScript or VBScript": both are <script> elements in HTML.
    "MarkAsSpamJavaScriptInHtml": {"field": "html_tag", "test": "is", "values": ["script"]},
    "MarkAsSpamFramesInHtml": {"field": "html_tag", "test": "is", "values": ["frame", "iframe"]},
    "MarkAsSpamObjectTagsInHtml": {"field": "html_tag", "test": "is", "values": ["object"]},
    "MarkAsSpamEmbedTagsInHtml": {"field": "html_tag", "test": "is", "values": ["embed"]},
    "MarkAsSpamFormTagsInHtml": {"field": "html_tag", "test": "is", "values": ["form"]},
    "MarkAsSpamWebBugsInHtml": {"field": "html_class", "test": "is", "values": ["tracking_pixels"]},
    # The spf filter before it judges MAIL FROM; the ASF rule acts on its hard fail, so that
    # allowed senders, who bypass spam filtering, bypass this setting too.
    "MarkAsSpamSpfRecordHardFail": {"field": "spf_result", "test": "is", "values": ["fail"]},
}
# The X-CustomSpam value each ASF setting adds (Set-HostedContentFilterPolicy.md).
ASF_HEADERS = {
    "MarkAsSpamEmptyMessages": "Empty Message",
    "MarkAsSpamJavaScriptInHtml": "Javascript or VBscript tags in HTML",
    "MarkAsSpamFramesInHtml": "IFRAME or FRAME in HTML",
    "MarkAsSpamObjectTagsInHtml": "Object tag in html",
    "MarkAsSpamEmbedTagsInHtml": "Embed tag in html",
    "MarkAsSpamFormTagsInHtml": "Form tag in html",
    "MarkAsSpamWebBugsInHtml": "Web bug",
    "MarkAsSpamSpfRecordHardFail": "SPF Record Fail",
}
ASF_NOT_DETECTED = {
    "MarkAsSpamSensitiveWordList": "the sensitive word list is Microsoft's, dynamic and not "
    "published, so sinkd cannot look for its words",
    "MarkAsSpamFromAddressAuthFail": "Microsoft's Sender ID hard-fail verdict combined with SPF "
    "is not modelled by this import",
    "MarkAsSpamNdrBackscatter": "telling backscatter from a genuine bounce needs the messages "
    "the organisation sent",
    "IncreaseScoreWithImageLinks": "Microsoft does not say by how much the score increases, and "
    "sinkd does not compute Microsoft's spam score",
    "IncreaseScoreWithNumericIps": "Microsoft does not say by how much the score increases, and "
    "sinkd does not compute Microsoft's spam score",
    "IncreaseScoreWithRedirectToOtherPort": "Microsoft does not say by how much the score "
    "increases, and sinkd does not compute Microsoft's spam score",
    "IncreaseScoreWithBizOrInfoUrls": "Microsoft does not say by how much the score increases, "
    "and sinkd does not compute Microsoft's spam score",
}
# Switches Microsoft documents without a Test value; Test there is treated as Off.
ASF_NO_TEST = frozenset(
    {"MarkAsSpamSpfRecordHardFail", "MarkAsSpamFromAddressAuthFail", "MarkAsSpamNdrBackscatter"}
)


class _Reader:
    """One export's values, read with the name of the file for every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(
        self, message: str, line: int | None = None, column: int | None = None
    ) -> PolicyImportError:
        where = str(self.path)
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        return PolicyImportError(f"{where}: {message}", path=str(self.path), line=line)

    def load(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror or exc}") from None
        # Windows PowerShell's ">" and Out-File write UTF-16 LE with a byte order mark;
        # Set-Content -Encoding utf8 writes UTF-8 with one.
        encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise self.fail(f"not {encoding} text (byte {exc.start})") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.fail(f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
        if not isinstance(document, dict):
            raise self.fail(
                "expected a JSON object whose keys name the cmdlets "
                f"({', '.join(CMDLETS)}), found a JSON {type(document).__name__}"
            )
        if not any(key in document for key in CMDLETS):
            raise self.fail(
                f"none of the keys {', '.join(CMDLETS)} is there: is this the file the "
                "documented PowerShell writes?"
            )
        return document

    def objects(self, document: Mapping[str, Any], cmdlet: str) -> list[dict[str, Any]]:
        """A cmdlet's output as a list of objects, whatever shape ConvertTo-Json gave it."""
        value = document.get(cmdlet)
        if value is None:
            return []
        if isinstance(value, dict) and isinstance(value.get("value"), list):
            value = value["value"]
        items = value if isinstance(value, list) else [value]
        out: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{cmdlet}[{index}]: expected an object, found {item!r}")
            out.append(item)
        return out

    def enum(self, obj: Mapping[str, Any], cmdlet: str, key: str, names: tuple[str, ...]) -> str:
        value = obj.get(key)
        where = f"{cmdlet} '{_name(obj)}': {key}"
        if isinstance(value, bool) or value is None:
            raise self.fail(f"{where}: expected one of {', '.join(names)}, found {value!r}")
        if isinstance(value, int):
            if 0 <= value < len(names):
                return names[value]
            raise self.fail(f"{where}: {value} is not one of {', '.join(names)}")
        for name in names:
            if str(value).strip().lower() == name.lower():
                return name
        raise self.fail(f"{where}: {value!r} is not one of {', '.join(names)}")


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("Name") or obj.get("Identity") or "(unnamed)")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "on", "$true")
    return bool(value)


def _default(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    for obj in objects:
        if _truthy(obj.get("IsDefault")) or _name(obj).lower() == "default":
            return obj
    return objects[0] if len(objects) == 1 else None


def _verdict_action(setting: str, value: str) -> tuple[str | None, str]:
    """A spam verdict's action in sinkd's terms and how the docs put it; None when sinkd has no
    such action (Redirect). Set-HostedContentFilterPolicy.md: for SpamAction and
    HighConfidenceSpamAction, AddXHeader and ModifySubject deliver to the Junk Email folder; for
    BulkSpamAction and PhishSpamAction, AddXHeader delivers to the inbox."""
    if value == "MoveToJmf":
        return "junk", "delivered to the Junk Email folder"
    if value == "ModifySubject":
        return "junk", "subject prefixed, delivered to the Junk Email folder"
    if value == "AddXHeader":
        if setting in ("SpamAction", "HighConfidenceSpamAction"):
            return "junk", "X-header added, delivered to the Junk Email folder"
        return "tag", "X-header added, delivered"
    if value == "Quarantine":
        return "quarantine", "quarantined"
    if value == "Delete":
        return "discard", "deleted"
    if value == "NoAction":
        return "none", "no action"
    return None, "redirected to other recipients"


class ExchangeOnlineImporter:
    product = "exchange-online"
    help = "Exchange Online Protection: anti-spam, connection filter, anti-malware, mail flow rules"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "policy",
            type=Path,
            metavar="POLICY.json",
            help="the JSON the documented PowerShell writes (docs: import-exchange-online)",
        )

    def run(self, args: argparse.Namespace, profile_id: str) -> Imported:
        path: Path = args.policy
        return _Import(_Reader(path), profile_id).build()


class _Import:
    def __init__(self, reader: _Reader, profile_id: str) -> None:
        self.reader = reader
        self.profile_id = profile_id
        self.file = reader.path.name
        self.untranslated: list[Untranslated] = []
        self.notes: list[str] = []
        self.models: list[dict[str, str]] = []
        self.lists: dict[str, Any] = {}
        self.defaults = _defaults()

    def skip(self, origin: str, item: str, reason: str) -> None:
        self.untranslated.append(Untranslated(origin, item, reason))

    def build(self) -> Imported:
        document = self.reader.load()
        for key in document:
            if key not in CMDLETS:
                self.skip(self.file, key, f"not one of the cmdlets read ({', '.join(CMDLETS)})")
        content = self._content_policy(document)
        connection = self._connection_policy(document)
        malware = self._malware_policy(document)
        rules = self._transport_rules(document, content["scl_actions"])
        filters: list[dict[str, Any]] = []
        filters.append(connection)
        filters.append(self._default_filter("message-size"))
        if malware is not None:
            filters.append(malware)
        if rules is not None:
            filters.append(rules)
        # The sender lists come before authentication: allowed senders skip SPF, DKIM and DMARC
        # too (create-safe-sender-lists-in-office-365.md).
        if content["senders"] is not None:
            filters.append(content["senders"])
        filters.append(content["spf"])
        filters.append(self._default_filter("dkim"))
        filters.append(self._default_filter("dmarc"))
        filters.extend(content["filters"])
        filters.append(self._default_filter("rfc-hygiene"))
        profile: dict[str, Any] = {
            "schema": "sinkd.profile/v1",
            "id": self.profile_id,
            "title": f"Exchange Online policy imported from {self.file}",
            "description": (
                "The organisation's own Exchange Online Protection policies (anti-spam, "
                "connection filter, anti-malware, mail flow rules) as exported with "
                "ConvertTo-Json; what the export does not hold keeps the EOP defaults of "
                f"{DEFAULTS_PROFILE}."
            ),
            "models": [
                *self.models,
                {
                    "what": f"EOP defaults for DMARC, DKIM, size and scanning ({DEFAULTS_PROFILE})",
                    "source": f"profiles/{DEFAULTS_PROFILE}.yaml (each filter keeps its source)",
                },
            ],
            "survey": {"lists": True, "spf_or_senderid": True},
            "lists": self.lists,
            "scanning": copy.deepcopy(self.defaults.get("scanning", {})),
            "scoring": content["scoring"],
            "filters": filters,
        }
        return Imported(
            product="exchange-online",
            inputs=(str(self.reader.path),),
            profile=profile,
            untranslated=self.untranslated,
            notes=self.notes,
        )

    def _default_filter(self, name: str) -> dict[str, Any]:
        for spec in self.defaults.get("filters", []):
            if isinstance(spec, dict) and spec.get("name") == name:
                return copy.deepcopy(spec)
        raise PolicyImportError(
            f"the built-in profile {DEFAULTS_PROFILE} has no filter {name!r} (a sinkd bug)"
        )

    def _default_policy(
        self, document: Mapping[str, Any], cmdlet: str, what: str, why: str
    ) -> dict[str, Any] | None:
        """The default policy among ``cmdlet``'s (None when the export has none); every other
        one is reported untranslated as ``what``, for ``why``."""
        policies = self.reader.objects(document, cmdlet)
        policy = _default(policies)
        for other in policies:
            if other is not policy:
                self.skip(f"{cmdlet} '{_name(other)}'", what, why)
        return policy

    # --- anti-spam -------------------------------------------------------------------------

    def _content_policy(self, document: Mapping[str, Any]) -> dict[str, Any]:
        cmdlet = "HostedContentFilterPolicy"
        policy = self._default_policy(
            document,
            cmdlet,
            "custom anti-spam policy",
            "applies only to the recipients its HostedContentFilterRule names; this import "
            "translates the default policy, which applies to everyone else",
        )
        if policy is None:
            self.notes.append(
                f"no default {cmdlet} in the file: the EOP defaults of {DEFAULTS_PROFILE} apply"
            )
            policy = {"Name": "Default (EOP defaults)", "IsDefault": True}
        for rule in self.reader.objects(document, "HostedContentFilterRule"):
            self.skip(
                f"HostedContentFilterRule '{_name(rule)}'",
                "recipient scope of a custom policy",
                "sinkd judges every recipient with one profile here; the default policy is used",
            )
        name = _name(policy)

        def origin(key: str) -> str:
            return f"{cmdlet} '{name}': {key}"

        def action_of(key: str, default: str) -> tuple[str, str, str]:
            value = (
                self.reader.enum(policy, cmdlet, key, SPAM_ACTIONS_ALL)
                if key in policy
                else default
            )
            found, said = _verdict_action(key, value)
            action = found or "none"
            if found is None:
                self.skip(
                    origin(key),
                    value,
                    "sinkd does not deliver to other recipients; these messages are recorded, "
                    "not acted on",
                )
            return action, said, value

        spam, spam_said, spam_value = action_of("SpamAction", "MoveToJmf")
        hcs, hcs_said, hcs_value = action_of("HighConfidenceSpamAction", "MoveToJmf")
        self.models.append(
            {
                "what": f"Spam verdicts (SCL 5-6): SpamAction {spam_value}, {spam_said}",
                "source": f"{origin('SpamAction')} ({self.file}); {SET_CONTENT} -SpamAction",
            }
        )
        self.models.append(
            {
                "what": f"High confidence spam (SCL 7-9): HighConfidenceSpamAction {hcs_value}, "
                f"{hcs_said}",
                "source": f"{origin('HighConfidenceSpamAction')} ({self.file}); {SET_CONTENT} "
                "-HighConfidenceSpamAction; "
                f"{SCL_PAGE}",
            }
        )
        scl_actions = {
            5: (spam, f"SpamAction {spam_value}"),
            6: (spam, f"SpamAction {spam_value}"),
            7: (hcs, f"HighConfidenceSpamAction {hcs_value}"),
            8: (hcs, f"HighConfidenceSpamAction {hcs_value}"),
            9: (hcs, f"HighConfidenceSpamAction {hcs_value}"),
        }
        for key, reason in (
            ("PhishSpamAction", "sinkd has no phishing verdict of Microsoft's"),
            ("HighConfidencePhishAction", "sinkd has no phishing verdict of Microsoft's"),
        ):
            if key in policy:
                self.skip(origin(key), str(policy[key]), reason)
        bulk_on = str(policy.get("MarkAsSpamBulkMail", "On")).lower() in ("on", "1")
        if bulk_on and "BulkSpamAction" in policy:
            bulk = self.reader.enum(policy, cmdlet, "BulkSpamAction", SPAM_ACTIONS_ALL)
            if bulk != "NoAction":
                self.skip(
                    origin("BulkSpamAction"),
                    f"{bulk} at BulkThreshold {policy.get('BulkThreshold', 7)}",
                    "the bulk complaint level (BCL) is Microsoft's own rating of the sender; "
                    "sinkd cannot compute it",
                )
        scoring = self._scoring(spam, origin("SpamAction"))
        filters: list[dict[str, Any]] = []
        senders = self._sender_lists(policy, cmdlet, name, hcs)
        asf = self._asf(policy, cmdlet, name, hcs)
        if asf is not None:
            filters.append(asf)
        filters.append(
            {
                "kind": "content",
                "name": "spam-content",
                "gtube": {
                    "action": spam,
                    "score": 0.0,
                    "source": "defender-office-365/anti-spam-policies-configure.md (GTUBE gets "
                    f"the spam verdict); {origin('SpamAction')} ({self.file})",
                },
                "assumption": "GTUBE only: the export holds no word list of the organisation's",
            }
        )
        spf = self._default_filter("spf")
        for key in ("EnableLanguageBlockList", "EnableRegionBlockList"):
            if _truthy(policy.get(key)):
                listed = "LanguageBlockList" if "Language" in key else "RegionBlockList"
                self.skip(
                    origin(listed),
                    ", ".join(strings(policy.get(listed))) or "(empty)",
                    "sinkd detects neither the language of a message nor the country of its sender",
                )
        if "QuarantineRetentionPeriod" in policy:
            self.notes.append(
                f"{origin('QuarantineRetentionPeriod')} = {policy['QuarantineRetentionPeriod']} "
                "days: how long quarantined messages are kept, which no verdict shows"
            )
        for key in ("SpamZapEnabled", "PhishZapEnabled"):
            if _truthy(policy.get(key)):
                self.notes.append(
                    f"{origin(key)}: zero-hour auto purge acts on delivered mail later, "
                    "which a verdict at delivery does not show"
                )
        return {
            "scoring": scoring,
            "senders": senders,
            "filters": filters,
            "spf": spf,
            "scl_actions": scl_actions,
        }

    def _scoring(self, spam: str, where: str) -> dict[str, Any]:
        # sinkd cannot compute Microsoft's SCL; the built-in EOP profile stands 5 of sinkd's
        # points for SCL 5 (its scoring assumption), and the policy's SpamAction decides what
        # happens there.
        level = {"junk": "junk", "tag": "tag", "quarantine": "quarantine", "discard": "quarantine"}
        thresholds: dict[str, float] = {}
        if spam in level:
            thresholds[level[spam]] = 5.0
        if spam == "discard":
            self.skip(
                where,
                "Delete for scored spam",
                "sinkd's score thresholds have no discard level: mail that scores as spam is "
                "quarantined instead (the sender sees 250 either way)",
            )
        return {
            "thresholds": thresholds,
            "assumption": (
                "Microsoft's spam confidence level (SCL) is proprietary and sinkd does not "
                "compute it: as in m365-default-like, 5 of sinkd's points stand for SCL 5, where "
                f"SpamAction applies ({where}; {SCL_PAGE}). Rules that set a verdict themselves "
                "(ASF settings, blocked senders, mail flow rules with SetSCL) act directly"
            ),
        }

    def _sender_lists(
        self, policy: Mapping[str, Any], cmdlet: str, name: str, hcs: str
    ) -> dict[str, Any] | None:
        rules: list[dict[str, Any]] = []
        page = "defender-office-365/create-safe-sender-lists-in-office-365.md"
        block_page = "defender-office-365/create-block-sender-lists-in-office-365.md"
        for key, kind, match, allow in (
            ("AllowedSenders", "address_glob", "header_from", True),
            ("AllowedSenderDomains", "domain", "header_from_domain", True),
            ("BlockedSenders", "address_glob", "header_from", False),
            ("BlockedSenderDomains", "domain", "header_from_domain", False),
        ):
            entries = strings(policy.get(key))
            if not entries:
                continue
            list_name = (
                key.lower()
                .replace("senderdomains", "_sender_domains")
                .replace("senders", "_senders")
            )
            where = f"{cmdlet} '{name}': {key}"
            self.lists[list_name] = {
                "kind": kind,
                "entries": entries,
                "source": f"{where} ({self.file})",
            }
            rule: dict[str, Any] = {
                "id": key.upper()
                .replace("SENDERDOMAINS", "_SENDER_DOMAINS")
                .replace("SENDERS", "_SENDERS"),
                "match": match,
                "entries": f"@{list_name}",
            }
            if allow:
                # Set-HostedContentFilterPolicy.md -AllowedSenders: they bypass spam filtering
                # (SFV:SKA), and sender authentication (SPF, DKIM, DMARC) too, create-safe-
                # sender-lists-in-office-365.md; malware filtering and mail flow rules still run.
                rule |= {"action": "allow", "skip": ["score", "content", "authentication"]}
                rule["source"] = f"{where}; {SET_CONTENT} -{key}; {page}"
            else:
                # Blocked senders get the high confidence spam verdict (create-block-sender-
                # lists-in-office-365.md), so HighConfidenceSpamAction applies.
                rule["action"] = hcs
                rule["source"] = f"{where}; {SET_CONTENT} -{key}; {block_page}"
            rules.append(rule)
        if not rules:
            return None
        return {
            "kind": "envelope",
            "name": "sender-lists",
            "source": "anti-spam policy allowed and blocked senders and domains (the From "
            f"address); {SET_CONTENT}",
            "rules": rules,
        }

    def _switch(self, policy: Mapping[str, Any], cmdlet: str, key: str) -> str:
        if key not in policy:
            return "Off"
        return self.reader.enum(policy, cmdlet, key, SWITCHES)

    def _asf(
        self, policy: Mapping[str, Any], cmdlet: str, name: str, hcs: str
    ) -> dict[str, Any] | None:
        test_action = (
            self.reader.enum(policy, cmdlet, "TestModeAction", TEST_MODE_ACTIONS)
            if "TestModeAction" in policy
            else "None"
        )
        rules: list[dict[str, Any]] = []
        for key, condition in ASF_CONDITIONS.items():
            state = self._switch(policy, cmdlet, key)
            if state == "Off" or (state == "Test" and key in ASF_NO_TEST):
                continue  # Microsoft documents no Test value for these: Test is Off
            where = f"{cmdlet} '{name}': {key}"
            rule: dict[str, Any] = {
                "id": "ASF_" + key.removeprefix("MarkAsSpam").upper(),
                "describe": f"ASF {key} is {state}",
                "when": [condition],
            }
            if state == "On":
                rule["action"] = hcs
                rule["effects"] = [f"add X-CustomSpam: {ASF_HEADERS[key]}"]
            else:
                # Set-HostedContentFilterPolicy.md -TestModeAction: Test only takes the test
                # action (None, AddXHeader or BccMessage), never the verdict.
                rule["action"] = "none"
                rule["effects"] = [_test_effect(test_action, policy)]
            rule["source"] = f"{where} ({self.file}); {SET_CONTENT} -{key}"
            rules.append(rule)
        for key, reason in ASF_NOT_DETECTED.items():
            state = self._switch(policy, cmdlet, key)
            if state == "On" or (state == "Test" and key not in ASF_NO_TEST):
                self.skip(f"{cmdlet} '{name}': {key}", state, reason)
        if not rules:
            return None
        return {
            "kind": "transport_rules",
            "name": "asf",
            "source": "defender-office-365/anti-spam-policies-asf-settings-about.md; "
            f"{SET_CONTENT} (each MarkAsSpam* On: high confidence spam)",
            "rules": rules,
        }

    # --- connection filter -----------------------------------------------------------------

    def _connection_policy(self, document: Mapping[str, Any]) -> dict[str, Any]:
        cmdlet = "HostedConnectionFilterPolicy"
        policy = self._default_policy(
            document,
            cmdlet,
            "custom connection filter policy",
            "Exchange Online uses only the default connection filter policy",
        ) or {"Name": "Default (EOP defaults)"}
        name = _name(policy)
        rules: list[dict[str, Any]] = []
        for key, list_name in (("IPAllowList", "ip_allow_list"), ("IPBlockList", "ip_block_list")):
            values = strings(policy.get(key))
            entries = ip_entries(values) if values else []
            where = f"{cmdlet} '{name}': {key}"
            if entries is None:
                good: list[str] = []
                for value in values:
                    one = ip_entries([value])
                    if one is None:
                        self.skip(where, value, "not an IP address, CIDR range or address range")
                    else:
                        good.extend(one)
                entries = good
            self.lists[list_name] = {
                "kind": "cidr",
                "entries": entries,
                "source": f"{where} ({self.file})",
            }
        rules.append(
            {
                "id": "IP_ALLOW_LIST",
                "match": "client_ip",
                "entries": "@ip_allow_list",
                "action": "allow",
                # Spam filtering and sender authentication are skipped (create-safe-sender-
                # lists-in-office-365.md, IP Allow List); malware filtering still runs.
                "skip": ["score", "content", "authentication"],
                "source": f"{cmdlet} '{name}': IPAllowList; {SET_CONNECTION} -IPAllowList "
                f"(never identified as spam); {SAFE} (spam filtering and SPF, DKIM, DMARC "
                "skipped; malware filtering still runs)",
            }
        )
        rules.append(
            {
                "id": "IP_BLOCK_LIST",
                "match": "client_ip",
                "entries": "@ip_block_list",
                "action": "reject",
                "reply": "m365.customer_block_list",
                "source": f"{cmdlet} '{name}': IPBlockList; {SET_CONNECTION} -IPBlockList "
                "(blocked without further scanning); Exchange Online NDR table 5.7.513",
            }
        )
        if _truthy(policy.get("EnableSafeList")):
            self.skip(
                f"{cmdlet} '{name}': EnableSafeList",
                "True",
                "the safe list is Microsoft's own list of trusted senders, not published",
            )
        return {
            "kind": "envelope",
            "name": "connection-filter",
            "source": f"{cmdlet} '{name}' ({self.file}); {SET_CONNECTION}",
            "rules": rules,
        }

    # --- anti-malware ------------------------------------------------------------------------

    def _malware_policy(self, document: Mapping[str, Any]) -> dict[str, Any] | None:
        cmdlet = "MalwareFilterPolicy"
        policy = self._default_policy(
            document,
            cmdlet,
            "custom anti-malware policy",
            "applies only to the recipients its MalwareFilterRule names; this import "
            "translates the default policy",
        )
        for scope in self.reader.objects(document, "MalwareFilterRule"):
            self.skip(
                f"MalwareFilterRule '{_name(scope)}'",
                "recipient scope of a custom policy",
                "sinkd judges every recipient with one profile here; the default policy is used",
            )
        if policy is None:
            self.notes.append(f"no default {cmdlet}: the EOP default common attachments filter")
            self.lists["common_attachment_types"] = copy.deepcopy(
                self.defaults["lists"]["common_attachment_types"]
            )
            return self._default_filter("common-attachments-filter")
        name = _name(policy)
        where = f"{cmdlet} '{name}'"
        if _truthy(policy.get("ZapEnabled")):
            self.notes.append(
                f"{where}: ZapEnabled: zero-hour auto purge quarantines delivered mail later, "
                "which a verdict at delivery does not show"
            )
        self.skip(
            where,
            "malware scanning",
            "Microsoft's anti-malware engines are not available to sinkd; only the common "
            "attachments filter is translated",
        )
        enabled = _truthy(policy.get("EnableFileFilter", True))
        if not enabled:
            self.notes.append(f"{where}: EnableFileFilter is off: no common attachments filter")
            return None
        types = [t.strip().lstrip(".").lower() for t in strings(policy.get("FileTypes"))]
        action = (
            self.reader.enum(policy, cmdlet, "FileTypeAction", FILE_TYPE_ACTIONS)
            if "FileTypeAction" in policy
            else "Reject"
        )
        self.lists["common_attachment_types"] = {
            "kind": "extension",
            "entries": types,
            "source": f"{where}: FileTypes ({self.file})",
        }
        spec = self._default_filter("common-attachments-filter")
        rule: dict[str, Any] = {
            "id": "COMMON_ATTACHMENT_FILTER",
            "extensions": "@common_attachment_types",
        }
        if action == "Reject":
            rule |= {
                "action": "reject",
                "reply": "generic.policy",
                "source": f"{where}: FileTypeAction Reject; {SET_MALWARE} -FileTypeAction "
                "(rejected with an NDR; its text is undocumented, RFC 3463 X.7.1 used)",
            }
        else:
            rule |= {
                "action": "quarantine",
                "source": f"{where}: FileTypeAction Quarantine; {SET_MALWARE} -FileTypeAction",
            }
        spec["attachments"] = [rule]
        spec["source"] = (
            f"{where} ({self.file}); {SET_MALWARE} -FileTypes (best effort true-typing, else "
            "the extension)"
        )
        return spec

    # --- mail flow rules ---------------------------------------------------------------------

    def _transport_rules(
        self, document: Mapping[str, Any], scl_actions: Mapping[int, tuple[str, str]]
    ) -> dict[str, Any] | None:
        objects = self.reader.objects(document, "TransportRule")

        def priority(obj: Mapping[str, Any]) -> int:
            try:
                return int(str(obj.get("Priority")))
            except ValueError:
                return 1 << 30

        rules: list[dict[str, Any]] = []
        taken: set[str] = set()
        now = datetime.now(UTC)  # rules with an ActivationDate or ExpiryDate run as of today
        # New-TransportRule.md -Priority: 0 is the highest priority; rules run in that order.
        for obj in sorted(objects, key=priority):
            translated = translate_rule(obj, scl_actions=scl_actions, taken=taken, now=now)
            self.untranslated.extend(translated.untranslated)
            self.notes.extend(translated.notes)
            if translated.rule is not None:
                rules.append(translated.rule)
        log.debug("%d of %d mail flow rules translated", len(rules), len(objects))
        if not rules:
            return None
        return {
            "kind": "transport_rules",
            "name": "mail-flow-rules",
            # Not spam filtering: the IP Allow List and allowed senders skip spam filtering
            # (score, content), and the organisation's mail flow rules still apply to them.
            "category": "envelope",
            "source": f"Get-TransportRule ({self.file}), in Priority order; "
            "office-docs-powershell New-TransportRule.md",
            "rules": rules,
        }


def _test_effect(test_action: str, policy: Mapping[str, Any]) -> str:
    if test_action == "AddXHeader":
        return (
            "Test mode: add X-CustomSpam: This message was filtered by the custom spam filter "
            "option"
        )
    if test_action == "BccMessage":
        bcc = ", ".join(strings(policy.get("TestModeBccToRecipients"))) or "(nobody)"
        return f"Test mode: Bcc the message to {bcc}"
    return "Test mode with TestModeAction None: nothing happens to the message"


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans, as sinkd.core.profiles reads profiles: PyYAML's YAML 1.1 would read
    the ``on:`` outcome map of the spf filter as the key True."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _defaults() -> dict[str, Any]:
    """The built-in EOP defaults profile as plain data (its filters keep their sources)."""
    path = builtin_profiles_dir() / f"{DEFAULTS_PROFILE}.yaml"
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyImportError(f"{path}: cannot read the EOP defaults: {exc}") from None
    return data if isinstance(data, dict) else {}


register(ExchangeOnlineImporter())
