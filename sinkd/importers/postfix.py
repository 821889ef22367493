"""``sinkd profiles import postfix main.cf``: a Postfix gateway's main.cf, master.cf and tables
as a profile of the ``postfix_smtpd`` and ``postfix_cleanup`` filter kinds.

Owns what each main.cf construct becomes: the seven restriction lists (postconf(5)
``smtpd_*_restrictions``) with their tables and arguments, the parameters those restrictions
read, ``check_policy_service`` recognised as policyd-spf or postgrey, the cleanup(8) header and
body checks with their tables, ``smtpd_delay_reject`` as the profile's envelope reply stage,
and the list of everything else that changes what Postfix accepts, each with the reason sinkd
does not translate it. The syntax itself is ``sinkd.importers.postfix_conf``. Only what the
two filter kinds evaluate (their ``SUPPORTED_*`` sets) is written; the rest is reported, never
dropped. It judges no mail and writes no file.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sinkd.core.filters import REGISTRY, postfix_cleanup, postfix_smtpd
from sinkd.core.postfix_tables import TableSpec, compile_table
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext, CompileError
from sinkd.errors import PolicyImportError
from sinkd.importers import register
from sinkd.importers.base import Imported, Untranslated, read_text
from sinkd.importers.postfix_conf import (
    DEFAULTS_SOURCE,
    POSTFIX_DEFAULTS,
    Parameters,
    Service,
    Setting,
    TableText,
    parse_indexed,
    parse_inline,
    parse_main_cf,
    parse_master_cf,
    parse_patterns,
    split_list,
    split_words,
    strip_braces,
)

# --- what the filter kinds evaluate --------------------------------------------------------------


@dataclass(frozen=True)
class Support:
    """What the two filter kinds can evaluate: the importer writes nothing else."""

    restrictions: frozenset[str]
    smtpd_parameters: frozenset[str]
    cleanup_parameters: frozenset[str]
    cleanup_actions: frozenset[str]
    policy_services: frozenset[str]  # the servers check_policy_service may name


SUPPORT = Support(
    restrictions=frozenset(postfix_smtpd.SUPPORTED_RESTRICTIONS),
    smtpd_parameters=frozenset(postfix_smtpd.SUPPORTED_PARAMETERS),
    cleanup_parameters=frozenset(postfix_cleanup.SUPPORTED_PARAMETERS),
    cleanup_actions=frozenset(postfix_cleanup.SUPPORTED_ACTIONS),
    policy_services=frozenset(postfix_smtpd.SUPPORTED_POLICY_SERVICES),
)

# --- restriction lists --------------------------------------------------------------------------

# postconf(5): the lists in the order smtpd evaluates them, by the contract's keys.
# smtpd_relay_restrictions (Postfix >= 2.10) is evaluated before smtpd_recipient_restrictions.
RESTRICTION_LISTS: dict[str, str] = {
    "smtpd_client_restrictions": "client",
    "smtpd_helo_restrictions": "helo",
    "smtpd_sender_restrictions": "sender",
    "smtpd_relay_restrictions": "relay",
    "smtpd_recipient_restrictions": "recipient",
    "smtpd_data_restrictions": "data",
    "smtpd_end_of_data_restrictions": "end_of_data",
}

# postconf(5): restrictions followed by one argument in the list.
_RBL_RESTRICTIONS = frozenset(
    {
        "reject_rbl_client",
        "reject_rbl",  # reject_rbl_client's old name (postconf(5))
        "reject_rhsbl_client",
        "reject_rhsbl_reverse_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_sender",
        "reject_rhsbl_recipient",
        "permit_dnswl_client",
        "permit_rhswl_client",
    }
)


# Every restriction name postconf(5) of Postfix 3.7 documents, with the older names smtpd
# still accepts; a name outside this set is a configuration error in Postfix.
KNOWN_RESTRICTIONS = frozenset(
    [
        "check_ccert_access",
        "check_client_a_access",
        "check_client_access",
        "check_client_mx_access",
        "check_client_ns_access",
        "check_etrn_access",
        "check_helo_a_access",
        "check_helo_access",
        "check_helo_mx_access",
        "check_helo_ns_access",
        "check_policy_service",
        "check_recipient_a_access",
        "check_recipient_access",
        "check_recipient_mx_access",
        "check_recipient_ns_access",
        "check_reverse_client_hostname_a_access",
        "check_reverse_client_hostname_access",
        "check_reverse_client_hostname_mx_access",
        "check_reverse_client_hostname_ns_access",
        "check_sasl_access",
        "check_sender_a_access",
        "check_sender_access",
        "check_sender_mx_access",
        "check_sender_ns_access",
        "defer",
        "defer_if_permit",
        "defer_if_reject",
        "defer_unauth_destination",
        "permit",
        "permit_auth_destination",
        "permit_dnswl_client",
        "permit_inet_interfaces",
        "permit_mx_backup",
        "permit_mynetworks",
        "permit_rhswl_client",
        "permit_sasl_authenticated",
        "permit_tls_all_clientcerts",
        "permit_tls_clientcerts",
        "reject",
        "reject_authenticated_sender_login_mismatch",
        "reject_invalid_helo_hostname",
        "reject_known_sender_login_mismatch",
        "reject_multi_recipient_bounce",
        "reject_non_fqdn_helo_hostname",
        "reject_non_fqdn_recipient",
        "reject_non_fqdn_sender",
        "reject_plaintext_session",
        "reject_rbl_client",
        "reject_rhsbl_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_recipient",
        "reject_rhsbl_reverse_client",
        "reject_rhsbl_sender",
        "reject_sender_login_mismatch",
        "reject_unauth_destination",
        "reject_unauth_pipelining",
        "reject_unauthenticated_sender_login_mismatch",
        "reject_unknown_client_hostname",
        "reject_unknown_helo_hostname",
        "reject_unknown_recipient_domain",
        "reject_unknown_reverse_client_hostname",
        "reject_unknown_sender_domain",
        "reject_unlisted_recipient",
        "reject_unlisted_sender",
        "reject_unverified_recipient",
        "reject_unverified_sender",
        "sleep",
        "warn_if_reject",
        "reject_unknown_client",
        "reject_unknown_hostname",
        "reject_invalid_hostname",
        "reject_non_fqdn_hostname",
        "reject_rbl",
        "reject_maps_rbl",
        "check_relay_domains",
        "check_recipient_maps",
        "permit_naked_ip_address",
    ]
)
_UNKNOWN_RESTRICTION = (
    "not a restriction Postfix 3.7 knows (postconf(5)): smtpd logs 'unknown smtpd "
    "restriction' and answers 451 4.3.5 Server configuration error (smtpd_check.c); left out"
)


def _takes_table(name: str) -> bool:
    # check_client_access, check_helo_mx_access, check_sasl_access, check_ccert_access …
    return name.startswith("check_") and name.endswith("_access")


# Why a restriction the postfix_smtpd kind does not evaluate stays out (the generic reason is
# used for any other name).
RESTRICTION_REASONS: dict[str, str] = {
    "reject_unverified_sender": "address verification probes the sender's mail server, "
    "which sinkd does not do",
    "reject_unverified_recipient": "address verification probes the next hop, which sinkd "
    "does not do",
    "reject_unlisted_recipient": "sinkd has no recipient tables (local_recipient_maps, "
    "relay_recipient_maps, virtual tables) to tell which recipients exist",
    "reject_unlisted_sender": "sinkd has no recipient tables to tell which senders exist",
    "check_recipient_maps": "sinkd has no recipient tables to tell which recipients exist",
    "reject_unauth_pipelining": "depends on how the client pipelines commands, which sinkd "
    "does not track",
    "reject_multi_recipient_bounce": "not evaluated by sinkd's postfix_smtpd filter",
    "reject_sender_login_mismatch": "SASL login names are not modelled",
    "reject_authenticated_sender_login_mismatch": "SASL login names are not modelled",
    "reject_known_sender_login_mismatch": "SASL login names are not modelled",
    "reject_unauthenticated_sender_login_mismatch": "SASL login names are not modelled",
    "permit_tls_clientcerts": "client certificates are not modelled",
    "permit_tls_all_clientcerts": "client certificates are not modelled",
    "check_ccert_access": "client certificates are not modelled",
    "permit_mx_backup": "needs the recipient domain's MX records from live DNS; "
    "not evaluated by sinkd's postfix_smtpd filter",
}

# --- tables ---------------------------------------------------------------------------------------

# Types whose text source postmap(1) compiles; cdb:, dbm: and sdbm: are looked up exactly as
# hash: is (indexed, fixed strings), so they are written as hash: with the original named.
_INDEXED = {"hash": "hash", "btree": "btree", "lmdb": "lmdb", "texthash": "texthash"}
_INDEXED_AS_HASH = frozenset({"cdb", "dbm", "sdbm"})
# Types that ask a server or a database at lookup time: nothing in main.cf says what they
# answer (postconf -m; DATABASE_README).
EXTERNAL_TABLES = {
    "mysql": "asks a MySQL database",
    "pgsql": "asks a PostgreSQL database",
    "sqlite": "reads an SQLite database",
    "ldap": "asks an LDAP server",
    "memcache": "asks a memcache server",
    "tcp": "asks a TCP lookup server",
    "socketmap": "asks a socketmap server",
    "nis": "asks NIS",
    "nisplus": "asks NIS+",
    "netinfo": "asks NetInfo",
    "environ": "reads the daemon's environment",
    "unix": "asks the system's passwd/group database",
    "randmap": "answers at random",
    "pipemap": "pipes the lookup through several tables",
    "unionmap": "merges several tables' answers",
    "fail": "always fails (a test table)",
    "internal": "is Postfix's in-memory table",
}
_EXTERNAL_ADVICE = "; export its contents to a text file and use hash: or texthash: instead"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def untranslated(origin: str, item: str, reason: str) -> Untranslated:
    """An untranslated item whose text can be written as a YAML comment: a control character
    quoted from a configuration file (a NUL in a table) is shown escaped."""

    def shown(text: str) -> str:
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)

    return Untranslated(shown(origin), shown(item), shown(reason))


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a table cannot be written (its type asks a server, a pattern sinkd cannot match)."""

    reason: str


@dataclass
class Tables:
    """Every table one filter names, by a readable name (the file's base name), each written
    once however often it is named."""

    config_dir: Path
    config_directory: str  # main.cf's config_directory (where /etc/postfix paths map from)
    by_spec: dict[str, str] = field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[Untranslated] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    def add(self, spec: str, origin: str) -> str | Refused:
        """The table name for ``type:name`` (read on first use), or why it cannot be written.
        A file that cannot be found, read or parsed is a ``PolicyImportError``."""
        if spec in self.by_spec:
            return self.by_spec[spec]
        kind, colon, name = spec.partition(":")
        if not colon:
            return Refused(f"{spec!r} is not a lookup table (expected type:name)")
        kind = kind.lower()
        if kind == "proxy":  # proxymap(8): the same table, opened by the proxy daemon
            return self.add(name, origin)
        if kind in EXTERNAL_TABLES:
            return Refused(f"a {kind}: table {EXTERNAL_TABLES[kind]}{_EXTERNAL_ADVICE}")
        written: dict[str, Any]
        if kind == "inline":
            text = parse_inline(strip_braces(name), origin)
            written = {"type": "inline", "source": origin}
            base = "inline"
        elif kind == "static":
            written = {"type": "static", "source": origin}
            text = TableText()
            value = strip_braces(name)
            written["entries"] = [{"key": "", "value": value, "source": origin}]
            base = "static"
        elif kind in _INDEXED or kind in _INDEXED_AS_HASH or kind in ("regexp", "pcre", "cidr"):
            path = self.locate(name, origin)
            display = path.name
            source_text = read_text(path)
            self.inputs.append(str(path))
            if kind in ("regexp", "pcre", "cidr"):
                text = parse_patterns(source_text, display, cidr=kind == "cidr")
            else:
                text = parse_indexed(source_text, display)
            written_type = kind if kind not in _INDEXED_AS_HASH else "hash"
            source = name if kind == written_type else f"{kind}:{name} (looked up as hash:)"
            written = {"type": written_type, "source": source}
            base = Path(name.removesuffix(".db")).name
        else:
            return Refused(f"{kind}: tables are not a type sinkd knows")
        if "entries" not in written:
            written["entries"] = [
                _entry(e.key, e.value, e.origin, e.conditions) for e in text.entries
            ]
        refused = self._compilable(written)
        if refused is not None:
            return refused
        self.skipped.extend(untranslated(s.origin, s.text, s.reason) for s in text.skipped)
        table_name = _free_name(_table_name(base), self.specs)
        self.by_spec[spec] = table_name
        self.specs[table_name] = written
        return table_name

    def _compilable(self, written: dict[str, Any]) -> Refused | None:
        """Drop, and report, each entry whose pattern the table module cannot translate to
        Python's ``re`` faithfully (its ``CompileError`` says why), so that the profile loads
        with every other entry."""
        while True:
            try:
                compile_table(TableSpec.model_validate(written), ())
                return None
            except CompileError as exc:
                if len(exc.loc) < 2 or exc.loc[0] != "entries" or not isinstance(exc.loc[1], int):
                    return Refused(exc.message)
                bad = written["entries"].pop(exc.loc[1])
                self.skipped.append(
                    untranslated(
                        bad["source"],
                        f"{bad['key']} {bad['value']}",
                        f"not translatable to sinkd's pattern matching: {exc.message}",
                    )
                )

    def locate(self, name: str, origin: str) -> Path:
        """The text source of a table named in main.cf. A path under main.cf's
        config_directory (/etc/postfix) is looked for in ``--config-dir`` first: the files are
        usually copied from the gateway, and this machine's own /etc/postfix is not the
        gateway's. A ``.db`` suffix names the compiled table: its source is the path without."""
        name = name.removesuffix(".db")
        written = Path(name)
        candidates: list[Path] = []
        prefix = self.config_directory.rstrip("/") + "/"
        if name.startswith(prefix):
            candidates.append(self.config_dir / name[len(prefix) :])
        if not written.is_absolute():
            candidates.append(self.config_dir / written)
        candidates.append(written)
        candidates.append(self.config_dir / written.name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        compiled = [c for c in candidates if c.with_name(c.name + ".db").is_file()]
        if compiled:
            raise PolicyImportError(
                f"{origin}: only the compiled {compiled[0]}.db is here: copy the text file "
                f"{name} from the gateway (the one postmap compiles)",
                path=origin.rsplit(":", 1)[0],
            )
        raise PolicyImportError(
            f"{origin}: table file {name} not found (looked in {self.config_dir}; copy it from "
            "the gateway or give --config-dir)",
            path=origin.rsplit(":", 1)[0],
        )


def _entry(key: str, value: str, origin: str, conditions: tuple[str, ...]) -> dict[str, Any]:
    written: dict[str, Any] = {"key": key, "value": value}
    if conditions:
        written["conditions"] = list(conditions)
    written["source"] = origin
    return written


def _table_name(base: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")
    return name or "table"


def _free_name(name: str, taken: Iterable[str]) -> str:
    used = set(taken)
    if name not in used:
        return name
    number = 2
    while f"{name}_{number}" in used:
        number += 1
    return f"{name}_{number}"


# --- parameters -----------------------------------------------------------------------------------

# main.cf parameters that change what Postfix accepts or how it answers, which the profile does
# not express unless a filter kind evaluates them (then they are written as parameters). The
# reason says what differs. Prefixes end with "_".
RELEVANT_PARAMETERS: dict[str, str] = {
    "smtpd_helo_required": "Postfix refuses MAIL FROM before HELO/EHLO (503 5.5.1); sinkd "
    "accepts it",
    "strict_rfc821_envelopes": "Postfix refuses addresses that are not RFC 821 syntax in "
    "MAIL FROM/RCPT TO (501 5.1.7); sinkd accepts RFC 5321 and more",
    "smtpd_client_connection_rate_limit": "anvil(8) rate limits are not modelled",
    "smtpd_client_connection_count_limit": "the per-client connection limit is "
    "smtp.max_connections_per_ip in a sinkd profile; not translated",
    "smtpd_client_message_rate_limit": "anvil(8) rate limits are not modelled",
    "smtpd_client_recipient_rate_limit": "anvil(8) rate limits are not modelled",
    "smtpd_client_new_tls_session_rate_limit": "anvil(8) rate limits are not modelled",
    "smtpd_client_auth_rate_limit": "anvil(8) rate limits are not modelled",
    "smtpd_recipient_limit": "Postfix refuses recipients past the limit (452 4.5.3); sinkd "
    "does not count them",
    "smtpd_recipient_overshoot_limit": "error counting is not modelled",
    "smtpd_hard_error_limit": "error counting is not modelled",
    "smtpd_soft_error_limit": "error counting is not modelled",
    "smtpd_error_sleep_time": "error delays are not modelled",
    "smtpd_junk_command_limit": "error counting is not modelled",
    "smtpd_milters": "filtering by an external program sinkd does not run (a milter)",
    "non_smtpd_milters": "filtering by an external program sinkd does not run (a milter)",
    "milter_default_action": "filtering by an external program sinkd does not run (a milter)",
    "content_filter": "filtering by an external program sinkd does not run (after queueing: "
    "amavis, spamassassin …); its verdicts are not in the profile",
    "smtpd_proxy_filter": "filtering by an external program sinkd does not run (before "
    "queueing); its replies are not in the profile",
    "smtpd_reject_unlisted_sender": "sinkd has no recipient tables to tell which senders exist",
    "smtpd_reject_unlisted_recipient": "sinkd has no recipient tables to tell which "
    "recipients exist",
    "local_recipient_maps": "unknown local recipients are refused by Postfix (550 5.1.1 … User "
    "unknown in local recipient table); sinkd has no recipient tables",
    "relay_recipient_maps": "unknown relay recipients are refused by Postfix (550 5.1.1 … User "
    "unknown in relay recipient table); sinkd has no recipient tables",
    "virtual_alias_maps": "address rewriting, and refusal of unknown virtual recipients, is not "
    "modelled",
    "virtual_mailbox_maps": "refusal of unknown virtual mailbox recipients is not modelled",
    "virtual_alias_domains": "virtual domains are not modelled",
    "virtual_mailbox_domains": "virtual domains are not modelled",
    "smtpd_sasl_auth_enable": "SMTP AUTH is not modelled by the import",
    "smtpd_tls_security_level": "TLS requirements are not modelled (with 'encrypt' Postfix "
    "refuses mail before STARTTLS: 530 5.7.0)",
    "smtpd_enforce_tls": "TLS requirements are not modelled",
    "smtpd_discard_ehlo_keywords": "EHLO keywords are not modelled",
    "smtpd_policy_service_default_action": "policy services are evaluated by sinkd itself, "
    "never timed out",
    "address_verify_map": "address verification is not modelled",
    "smtpd_command_filter": "command rewriting is not modelled",
    "smtpd_forbidden_commands": "forbidden commands are not modelled",
    "header_size_limit": "not evaluated by sinkd's postfix_cleanup filter",
    "body_checks_size_limit": "not evaluated by sinkd's postfix_cleanup filter",
    "disable_mime_input_processing": "not evaluated by sinkd's postfix_cleanup filter",
    "message_size_limit": "not evaluated by sinkd's postfix filters",
    "smtpd_reject_footer_maps": "per-reply footers are not modelled",
    "unknown_local_recipient_reject_code": "sinkd has no recipient tables",
    "unknown_relay_recipient_reject_code": "sinkd has no recipient tables",
    "unknown_virtual_alias_reject_code": "sinkd has no recipient tables",
    "unknown_virtual_mailbox_reject_code": "sinkd has no recipient tables",
}
RELEVANT_PREFIXES: dict[str, str] = {
    "postscreen_": "postscreen(8) screens clients before smtpd; sinkd does not model it",
    "smtpd_policy_service_": "policy service timeouts and retries are not modelled",
    "milter_": "filtering by an external program sinkd does not run (a milter)",
    "smtpd_client_event_": "anvil(8) rate limits are not modelled",
}

# Parameters that do not change which mail Postfix accepts or what it answers, ignored without
# a report: identity and paths, delivery, queue management, the SMTP client, logging, TLS keys.
IGNORED_PARAMETERS = frozenset(
    {
        "alias_database",
        "alias_maps",
        "append_dot_mydomain",
        "biff",
        "command_directory",
        "compatibility_level",
        "config_directory",
        "daemon_directory",
        "data_directory",
        "debug_peer_level",
        "debug_peer_list",
        "default_destination_concurrency_limit",
        "delay_warning_time",
        "home_mailbox",
        "html_directory",
        "inet_interfaces",
        "inet_protocols",
        "mail_owner",
        "mailbox_command",
        "mailbox_size_limit",
        "mailq_path",
        "maillog_file",
        "manpage_directory",
        "meta_directory",
        "mydomain",
        "myhostname",
        "myorigin",
        "mynetworks_style",
        "newaliases_path",
        "notify_classes",
        "queue_directory",
        "readme_directory",
        "recipient_delimiter",
        "relayhost",
        "sample_directory",
        "sendmail_path",
        "setgid_group",
        "shlib_directory",
        "smtpd_banner",
        "smtputf8_enable",
        "transport_maps",
        "2bounce_notice_recipient",
        "bounce_notice_recipient",
        "error_notice_recipient",
        "delay_notice_recipient",
        "maximal_queue_lifetime",
        "bounce_queue_lifetime",
        "cleanup_service_name",
        "smtpd_sasl_type",
        "smtpd_sasl_path",
        "smtpd_sasl_security_options",
        "smtpd_sasl_local_domain",
        "smtpd_authorized_xclient_hosts",
        "smtpd_tls_cert_file",
        "smtpd_tls_key_file",
        "smtpd_tls_chain_files",
        "smtpd_tls_CAfile",
        "smtpd_tls_CApath",
        "smtpd_tls_loglevel",
        "smtpd_tls_received_header",
        "smtpd_tls_session_cache_database",
        "smtpd_tls_session_cache_timeout",
        "smtpd_tls_auth_only",
        "smtpd_tls_mandatory_protocols",
        "smtpd_tls_protocols",
        "smtpd_tls_mandatory_ciphers",
        "smtpd_tls_ciphers",
        "smtpd_use_tls",
        "tls_random_source",
        "policyd-spf_time_limit",
    }
)
IGNORED_PREFIXES = (
    "smtp_",  # the SMTP client (delivery), not the server
    "lmtp_",
    "local_",
    "virtual_transport",
    "default_transport",
    "relay_transport",
    "queue_",
    "tls_",
    "lmdb_",
)

# --- the importer ---------------------------------------------------------------------------------


@dataclass
class Config:
    """What ``run`` reads: the files and where the tables are."""

    main_cf: Path
    config_dir: Path
    master_cf: Path | None


@dataclass
class _Translation:
    support: Support
    untranslated: list[Untranslated] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    checked_tables: set[str] = field(default_factory=set)

    def skip(self, origin: str, item: str, reason: str) -> None:
        self.untranslated.append(untranslated(origin, item, reason))


def translate(config: Config, profile_id: str, support: Support = SUPPORT) -> Imported:
    """Read main.cf (and master.cf, and every table named) and build the profile."""
    display = config.main_cf.name
    main = parse_main_cf(read_text(config.main_cf), config.main_cf, display)
    services: list[Service] = []
    inputs = [str(config.main_cf)]
    if config.master_cf is not None:
        services = parse_master_cf(
            read_text(config.master_cf), config.master_cf, config.master_cf.name
        )
        inputs.append(str(config.master_cf))
    work = _Translation(support)
    smtpd_service = _smtpd_service(services, work)
    cleanup_name = Parameters(_overlay(main, smtpd_service)).value("cleanup_service_name")
    cleanup_service = _service(services, cleanup_name or "cleanup", "unix")
    smtpd = Parameters(_overlay(main, smtpd_service))
    cleanup = Parameters(_overlay(main, cleanup_service))
    config_directory = smtpd.value("config_directory") or "/etc/postfix"

    smtpd_tables = Tables(config.config_dir, config_directory)
    smtpd_filter = _smtpd_filter(display, smtpd, smtpd_tables, services, work)
    cleanup_tables = Tables(config.config_dir, config_directory)
    no_checks = _no_header_body_checks(smtpd, work)
    cleanup_filter = _cleanup_filter(display, cleanup, cleanup_tables, work, no_checks=no_checks)
    work.untranslated.extend(smtpd_tables.skipped)
    work.untranslated.extend(cleanup_tables.skipped)
    inputs.extend(dict.fromkeys(smtpd_tables.inputs + cleanup_tables.inputs))

    used = work.used | smtpd.referenced | cleanup.referenced
    settings = {**main}
    for service in (smtpd_service, cleanup_service):
        if service is not None:
            settings.update({s.name: s for s in service.overrides})
    _report_parameters(settings, used, work)

    if (
        smtpd.value("soft_bounce").strip().lower() == "yes"
        and "soft_bounce" not in support.cleanup_parameters
    ):
        # smtpd_chat.c turns every 5xx it sends into 4xx, cleanup's content refusals included;
        # the postfix_smtpd filter does that for its own replies only.
        work.skip(
            smtpd.origin("soft_bounce"),
            "soft_bounce = yes",
            "Postfix answers cleanup's 5xx refusals (header/body checks, size) with 4xx too; "
            "sinkd's postfix_cleanup filter keeps them 5xx",
        )

    delay_reject = smtpd.value("smtpd_delay_reject").strip().lower() != "no"
    stage_origin = smtpd.origin("smtpd_delay_reject")
    profile: dict[str, Any] = {
        "schema": "sinkd.profile/v1",
        "id": profile_id,
        "title": f"Postfix gateway imported from {display}",
        "description": (
            f"The smtpd restrictions, access tables and cleanup header/body checks of the "
            f"Postfix configuration in {display}"
            + (f" and {config.master_cf.name}" if config.master_cf else "")
            + ", evaluated with Postfix's own semantics by the postfix_smtpd and "
            "postfix_cleanup filters. Each entry's source names the line it comes from; what "
            "could not be translated is listed in the comments above."
        ),
        "models": [
            {
                "what": "smtpd restriction lists, in Postfix's order, with their lookup tables",
                "source": f"{display} (postconf(5) smtpd_*_restrictions; access(5))",
            },
            {
                "what": "cleanup header_checks, mime_header_checks, nested_header_checks and "
                "body_checks",
                "source": f"{display} (header_checks(5))",
            },
            {
                "what": "Parameters left out of main.cf take Postfix 3.7's defaults",
                "source": DEFAULTS_SOURCE,
            },
        ],
        "smtp": {
            "envelope_reply_stage": "rcpt" if delay_reject else "mail",
            "source": f"{stage_origin}: smtpd_delay_reject = "
            f"{'yes' if delay_reject else 'no'} (postconf(5): client, HELO and sender "
            + (
                "restrictions wait for RCPT TO)"
                if delay_reject
                else "restrictions answered at the command they judge)"
            ),
        },
        "filters": [smtpd_filter, cleanup_filter],
    }
    for filter_spec in (smtpd_filter, cleanup_filter):
        _check_parameter_values(filter_spec)
    return Imported(
        product="postfix",
        inputs=tuple(inputs),
        profile=profile,
        untranslated=work.untranslated,
        notes=work.notes,
    )


def _check_parameter_values(filter_spec: dict[str, Any]) -> None:
    """A parameter value the filter refuses (``message_size_limit = lots``) is bad input, as it
    is to Postfix ("bad numerical configuration"): an error naming main.cf's line, not a
    profile that fails to load. Other compile errors are left to the command's load check."""
    kind = REGISTRY[filter_spec["kind"]]
    try:
        kind(
            kind.Spec.model_validate(filter_spec),
            CompileContext(lists={}, replies=ProfileSet().catalogue),
        )
    except CompileError as exc:
        if len(exc.loc) >= 2 and exc.loc[0] == "parameters":
            name = str(exc.loc[1])
            given = filter_spec["parameters"].get(name, {})
            raise PolicyImportError(
                f"{given.get('source', name)}: {name} = {given.get('value', '')}: {exc.message}"
            ) from None
    except ValidationError:
        return  # the command's load check names the field


def _overlay(main: dict[str, Setting], service: Service | None) -> dict[str, Setting]:
    """main.cf's settings with a master.cf service's ``-o`` overrides laid over them."""
    settings = dict(main)
    if service is not None:
        settings.update({s.name: s for s in service.overrides})
    return settings


def _service(services: list[Service], name: str, kind: str) -> Service | None:
    for service in services:
        if service.name == name and service.type == kind:
            return service
    return None


_SMTP_PORT = re.compile(r"^(?:.*:)?(?:smtp|25)$")


def _smtpd_service(services: list[Service], work: _Translation) -> Service | None:
    """The smtpd that answers port 25 (master(5)): ``smtp inet … smtpd``, or behind
    postscreen(8), the ``smtpd pass … smtpd`` service postscreen hands clients to."""
    for service in services:
        if service.type == "inet" and _SMTP_PORT.match(service.name):
            if service.command == "postscreen":
                work.skip(
                    f"master.cf:{service.line}",
                    f"{service.name} inet … postscreen",
                    RELEVANT_PREFIXES["postscreen_"],
                )
                return _service(services, "smtpd", "pass")
            return service
    return None


def _smtpd_filter(
    display: str,
    params: Parameters,
    tables: Tables,
    services: list[Service],
    work: _Translation,
) -> dict[str, Any]:
    classes = {c.lower() for c in split_list(params.value("smtpd_restriction_classes"))}
    # A class named only by table results is reported with each such entry.
    work.used.update(classes)
    restrictions: dict[str, list[dict[str, Any]]] = {}
    for list_name, key in RESTRICTION_LISTS.items():
        work.used.add(list_name)
        items = _restrictions(list_name, params, tables, services, classes, work)
        # The relay list is always written: left out, the filter would take Postfix's default
        # at compatibility_level >= 1, which an older or empty setting does not have.
        if items or key == "relay":
            restrictions[key] = items
    _check_relay_protection(params, work)
    uses_mynetworks = any(
        item["restriction"] == "permit_mynetworks"
        for items in restrictions.values()
        for item in items
    )
    filter_spec: dict[str, Any] = {
        "kind": "postfix_smtpd",
        "name": "smtpd",
        "source": f"imported from {display}",
        "parameters": _parameters(
            params,
            work.support.smtpd_parameters,
            work,
            tables,
            mynetworks_matters=uses_mynetworks,
        ),
    }
    filter_spec["restrictions"] = restrictions
    rbl_maps = split_list(params.value("rbl_reply_maps"))
    work.used.add("rbl_reply_maps")
    if rbl_maps:
        origin = params.origin("rbl_reply_maps")
        table = tables.add(rbl_maps[0], origin)
        if isinstance(table, Refused):
            work.skip(origin, f"rbl_reply_maps = {rbl_maps[0]}", table.reason)
        else:
            filter_spec["rbl_reply_maps"] = {"table": table, "source": origin}
        for extra in rbl_maps[1:]:
            work.skip(origin, f"rbl_reply_maps = … {extra}", "only the first table is read")
    filter_spec["tables"] = tables.specs
    return filter_spec


def _restrictions(
    list_name: str,
    params: Parameters,
    tables: Tables,
    services: list[Service],
    classes: set[str],
    work: _Translation,
    chain: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One list's restrictions in order; each one sinkd cannot evaluate is reported. A
    restriction class (smtpd_restriction_classes) named in the list is its own list evaluated
    in place, its permit or reject deciding for the list that names it (smtpd_check.c
    generic_checks), so its restrictions are written in its place, with their own lines."""
    words = split_list(params.value(list_name))
    origins = params.word_origins(list_name, len(words))
    items: list[dict[str, Any]] = []
    index = 0
    while index < len(words):
        name = words[index]
        origin = origins[index]
        index += 1
        lowered = name.lower()
        argument: str | None = None
        if (
            _takes_table(lowered)
            or lowered in _RBL_RESTRICTIONS
            or lowered in ("check_policy_service", "sleep")  # sleep SECONDS
        ):
            if index >= len(words):
                raise PolicyImportError(
                    f"{origin}: {list_name}: {name} needs an argument (postconf(5))",
                    path=origin.rsplit(":", 1)[0],
                )
            argument = strip_braces(words[index])
            index += 1
        shown = f"{list_name}: {name}" + (f" {argument}" if argument else "")
        if lowered in classes:
            if lowered in chain or lowered == list_name:
                raise PolicyImportError(
                    f"{origin}: the restriction class {name} names itself "
                    f"({' -> '.join((*chain, lowered))})",
                    path=origin.rsplit(":", 1)[0],
                )
            work.used.add(lowered)
            items.extend(
                _restrictions(lowered, params, tables, services, classes, work, (*chain, lowered))
            )
            continue
        if ":" in lowered and argument is None:
            work.skip(
                origin,
                shown,
                "a bare lookup table in a restriction list is not "
                "translated; write check_<class>_access TABLE",
            )
            continue
        if lowered not in work.support.restrictions:
            reason = RESTRICTION_REASONS.get(
                lowered,
                "not evaluated by sinkd's postfix_smtpd filter"
                if lowered in KNOWN_RESTRICTIONS
                else _UNKNOWN_RESTRICTION,
            )
            if lowered == "check_policy_service" and argument is not None:
                service, how = _policy_service(argument, services)
                if service is not None:
                    reason = f"{service} ({how or 'recognised from master.cf'}): {reason}"
                else:
                    reason = f"{how}; {reason}"
            work.skip(origin, shown, reason)
            continue
        item: dict[str, Any] = {"restriction": lowered}
        if _takes_table(lowered) and argument is not None:
            table = tables.add(argument, origin)
            if isinstance(table, Refused):
                work.skip(origin, shown, table.reason)
                continue
            item["table"] = table
            _report_restriction_results(tables, table, params, classes, work)
        elif lowered == "check_policy_service" and argument is not None:
            service, why = _policy_service(argument, services)
            if service is None:
                work.skip(origin, shown, why)
                continue
            if service not in work.support.policy_services:
                how = why or "recognised from master.cf"
                known = ", ".join(sorted(work.support.policy_services)) or "none"
                work.skip(
                    origin,
                    shown,
                    f"{service} ({how}): sinkd's postfix_smtpd filter does not evaluate this "
                    f"policy server (it evaluates: {known})",
                )
                continue
            endpoint, *options = split_list(argument)
            item["service"] = service
            item["argument"] = endpoint
            if why:
                work.notes.append(f"{origin}: check_policy_service {endpoint}: {why}")
            if service == "postgrey" and "--delay" not in why:
                work.notes.append(
                    f"{origin}: check_policy_service {endpoint}: postgrey's own options "
                    "(--delay, whitelists, in /etc/default/postgrey) are not read; sinkd uses "
                    "postgrey's defaults"
                )
            if service == "policyd-spf":
                work.notes.append(
                    f"{origin}: check_policy_service {endpoint}: policyd-spf's own settings "
                    "(policyd-spf.conf) are not read; sinkd uses the Debian package's "
                    "(HELO_reject = Mail_From_reject = Fail, PermError_reject = TempError_Defer "
                    "= False, skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1)"
                )
            if options:
                # Postfix 3.0's per-service settings (timeout=, default_action=, …) only act
                # when the server fails or is slow, which sinkd's own evaluation never is.
                work.notes.append(
                    f"{origin}: check_policy_service {endpoint}: {', '.join(options)} only "
                    "matter when the policy server fails or is slow; sinkd evaluates the "
                    "policy itself"
                )
        elif argument is not None:
            item["argument"] = argument
        item["source"] = origin
        items.append(item)
    return items


# smtpd_check.c: smtpd will not run unless the relay or recipient list can refuse relaying.
_RELAY_GUARDS = frozenset(
    {
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject",
        "defer",
        "defer_if_permit",
        "check_relay_domains",
    }
)


def _check_relay_protection(params: Parameters, work: _Translation) -> None:
    """Postfix refuses such a configuration: "fatal: in parameter smtpd_relay_restrictions or
    smtpd_recipient_restrictions, specify at least one working instance of:
    reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or
    check_relay_domains" (smtpd_check.c), so every RCPT TO fails; sinkd would judge on."""
    classes = {c.lower() for c in split_list(params.value("smtpd_restriction_classes"))}
    if not any(
        _has_relay_guard(name, params, classes, ())
        for name in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
    ):
        work.skip(
            params.origin("smtpd_recipient_restrictions"),
            "smtpd_relay_restrictions and smtpd_recipient_restrictions",
            "neither list can refuse relaying (reject_unauth_destination, "
            "defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains): "
            "Postfix's smtpd stops with a fatal error on such a configuration (observed: the "
            "client gets no greeting), sinkd judges on",
        )


# access(5) results that are actions; any other result is a list of restrictions (or a
# restriction class) that smtpd evaluates in place.
_ACCESS_ACTIONS = frozenset(
    {
        "OK",
        "RELAY",
        "REJECT",
        "DEFER",
        "DEFER_IF_REJECT",
        "DEFER_IF_PERMIT",
        "BCC",
        "DISCARD",
        "DUNNO",
        "FILTER",
        "HOLD",
        "PREPEND",
        "REDIRECT",
        "INFO",
        "WARN",
    }
)
_NUMERIC = re.compile(r"^\d+$")


def _report_restriction_results(
    tables: Tables, name: str, params: Parameters, classes: set[str], work: _Translation
) -> None:
    """Access-table results that are restrictions (access(5) "restriction..."), which smtpd
    evaluates in place: a restriction class there is replaced by its restrictions (the same
    evaluation, smtpd_check.c), and a result naming what the filter cannot evaluate in place
    (a restriction with an argument, one it does not know) is reported."""
    if name in work.checked_tables:
        return
    work.checked_tables.add(name)
    for entry in tables.specs[name]["entries"]:
        value = str(entry["value"]).strip()
        first = value.split(None, 1)[0] if value else ""
        if first.upper() in _ACCESS_ACTIONS or _NUMERIC.match(first) or ":" in value:
            continue
        words, used_classes = _expand_classes(
            [w.lower() for w in split_list(value)], params, classes, ()
        )
        bad = [
            w
            for w in words
            if w not in work.support.restrictions
            or _takes_table(w)
            or w in _RBL_RESTRICTIONS
            or w in ("check_policy_service", "sleep")
        ]
        if bad:
            work.skip(
                entry["source"],
                f"{entry['key']} {entry['value']}",
                f"the result names {bad[0]}, which sinkd does not evaluate as a table result: "
                "Postfix evaluates it in place, sinkd's postfix_smtpd filter answers 451 4.3.5 "
                "Server configuration error instead",
            )
        elif used_classes:
            where = ", ".join(f"{c} = {params.origin(c)}" for c in used_classes)
            entry["value"] = ", ".join(words)
            entry["source"] = f"{entry['source']} (restriction class {where})"


def _expand_classes(
    words: list[str], params: Parameters, classes: set[str], chain: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Restriction words with each restriction class replaced by its own words, recursively,
    and the classes used. A class naming itself stays as its name (reported by the caller)."""
    expanded: list[str] = []
    used: list[str] = []
    for word in words:
        if word in classes and word not in chain:
            inner, inner_used = _expand_classes(
                [w.lower() for w in split_list(params.value(word))],
                params,
                classes,
                (*chain, word),
            )
            expanded.extend(inner)
            used.extend([word, *inner_used])
        else:
            expanded.append(word)
    return expanded, list(dict.fromkeys(used))


def _has_relay_guard(
    name: str, params: Parameters, classes: set[str], chain: tuple[str, ...]
) -> bool:
    """smtpd_check.c has_required(): a guard in the list or in a restriction class it names;
    ``permit`` before any guard means none (what follows it is never reached), and
    ``warn_if_reject X`` does not count X."""
    words = [w.lower() for w in split_list(params.value(name))]
    index = 0
    while index < len(words):
        word = words[index]
        if word == "warn_if_reject":
            index += 2
            continue
        if word == "permit":
            return False
        if word in _RELAY_GUARDS:
            return True
        if (
            word in classes
            and word not in chain
            and _has_relay_guard(word, params, classes, (*chain, word))
        ):
            return True
        index += 1
    return False


_POSTGREY_PORT = "10023"


def _policy_service(argument: str, services: list[Service]) -> tuple[str | None, str]:
    """Which policy server a ``check_policy_service`` endpoint is (SMTPD_POLICY_README):
    from its master.cf entry's command when there is one, else from the well-known name or
    port. Returns (service, how it was recognised) or (None, why not)."""
    endpoint = split_words(argument, " \t,")[0] if argument else ""
    kind, _, address = endpoint.partition(":")
    if kind == "unix":
        service_name = address.rsplit("/", 1)[-1]
        entry = _service(services, service_name, "unix")
        if entry is not None:
            command = " ".join((entry.command, *entry.arguments))
            if "policyd-spf" in command:
                return "policyd-spf", ""
            if "postgrey" in command:
                return "postgrey", ""
            return None, (
                f"master.cf runs {command!r} for {service_name}: a policy server sinkd does not "
                "know (only policyd-spf and postgrey are modelled)"
            )
        if "spf" in service_name:
            return "policyd-spf", (
                f"recognised as policyd-spf from the socket name {service_name!r} (no master.cf "
                "entry was read); check that it is"
            )
        if "postgrey" in service_name:
            return "postgrey", (
                f"recognised as postgrey from the socket name {service_name!r}; check that it is"
            )
        return None, f"an unknown policy server on {endpoint} (only policyd-spf and postgrey are "
        "modelled)"
    if kind == "inet":
        port = address.rsplit(":", 1)[-1]
        if port == _POSTGREY_PORT:
            return "postgrey", (
                "recognised as postgrey from port 10023, postgrey's usual --inet port (a guess "
                "from the port, not from the server); postgrey's own options (--delay, default "
                "300 s, whitelists) are not read"
            )
        return None, (
            f"an unknown policy server on {endpoint} (only policyd-spf and postgrey are modelled)"
        )
    return None, f"{endpoint!r}: expected unix:… or inet:host:port (SMTPD_POLICY_README)"


def _parameters(
    params: Parameters,
    supported: frozenset[str],
    work: _Translation,
    tables: Tables,
    *,
    mynetworks_matters: bool = False,
) -> dict[str, dict[str, str]]:
    """The supported parameters main.cf (or master.cf) sets, plus the ones whose default
    depends on the rest of the configuration (relay_domains and mydestination, computed here)."""
    written: dict[str, dict[str, str]] = {}
    for name in sorted(supported):
        if params.is_set(name) or name in ("relay_domains", "mydestination"):
            value = params.value(name)
            if name in _HOST_LISTS:
                value = _host_list(name, value, params.origin(name), tables, work)
            source = params.origin(name)
            if not params.is_set(name) and _uses_default_hostname(name, params):
                # $myhostname defaults to the gateway's own host name, unknown here.
                source += " (myhostname not set: the gateway's host name is unknown here, "
                source += f"{params.value('myhostname')} stands for it)"
            written[name] = {"value": value, "source": source}
            work.used.add(name)
    if "mynetworks" in supported and mynetworks_matters and not params.is_set("mynetworks"):
        style = params.value("mynetworks_style") or "subnet"
        written["mynetworks"] = {
            "value": "127.0.0.0/8 [::1]/128",
            "source": f"{DEFAULTS_SOURCE} mynetworks (mynetworks_style = {style}): loopback "
            "only, the gateway's own addresses being unknown here",
        }
        work.used.add("mynetworks")
        work.skip(
            DEFAULTS_SOURCE,
            "mynetworks (not set)",
            f"with mynetworks_style = {style} Postfix trusts the gateway's own "
            f"{'addresses' if style == 'host' else 'subnets'}, which sinkd cannot know: "
            "the profile trusts loopback only; set mynetworks in main.cf",
        )
    return written


def _uses_default_hostname(name: str, params: Parameters) -> bool:
    """Whether an unset parameter's default reads $myhostname left at its default (the
    gateway's own name), directly or through $mydestination."""
    if params.is_set("myhostname"):
        return False
    raw = params.raw(name) or ""
    if "$myhostname" in raw:
        return True
    return "$mydestination" in raw and not params.is_set("mydestination")


# Host and domain lists whose words may name a file or a table (postconf(5) mynetworks,
# relay_domains, mydestination: 'Specify a list of host or domain names, "/file/name" or
# "type:table" patterns ... A "/file/name" pattern is replaced by its contents; a "type:table"
# lookup table is matched when a name matches a lookup key').
_HOST_LISTS = frozenset({"mynetworks", "relay_domains", "mydestination"})
_TABLE_WORD = re.compile(r"^[a-z]+:(?!:)")


def _host_list(name: str, value: str, origin: str, tables: Tables, work: _Translation) -> str:
    """The list with each ``/file/name`` replaced by its contents and each indexed table by
    its keys (the value of a key does not matter, postconf(5)); any other table is reported."""
    words: list[str] = []
    for word in split_list(value):
        if word.startswith("/"):
            path = tables.locate(word, origin)
            tables.inputs.append(str(path))
            text = read_text(path)
            words.extend(w for line in text.splitlines() for w in split_list(line.split("#")[0]))
            continue
        kind = word.split(":", 1)[0].lower()
        if _TABLE_WORD.match(word) and not word.startswith("["):
            path_name = word.split(":", 1)[1]
            if kind in _INDEXED or kind in _INDEXED_AS_HASH:
                path = tables.locate(path_name, origin)
                tables.inputs.append(str(path))
                words.extend(e.key for e in parse_indexed(read_text(path), path.name).entries)
                continue
            work.skip(
                origin,
                f"{name} = … {word}",
                f"a {kind}: table in {name} is not translated (only /file/name and indexed "
                "tables are): its entries are left out",
            )
            continue
        words.append(word)
    return " ".join(w for w in words if _host_word_kept(name, w, origin, work))


def _host_word_kept(name: str, word: str, origin: str, work: _Translation) -> bool:
    """Whether the filter can read a list word as Postfix does; each it cannot is reported.
    Postfix matches such lists in order, first match wins, ``!pattern`` excluding (postconf(5)
    "match lists"); the filter has no exclusions, and its mynetworks holds addresses only."""
    shown = f"{name} = … {word}"
    if word.startswith("!"):
        work.skip(
            origin,
            shown,
            f"exclusions are not translated: the entry is left out, so what it excludes counts "
            f"as in {name} when a later entry covers it",
        )
        return False
    if name == "mynetworks":
        bare = word.removeprefix("[").replace("]", "")
        try:
            ipaddress.ip_network(bare, strict=False)
        except ValueError:
            work.skip(
                origin,
                shown,
                "mynetworks entries other than addresses and networks (host names, patterns) "
                "are not translated: left out",
            )
            return False
    return True


_CLEANUP_CHECKS = ("header_checks", "mime_header_checks", "nested_header_checks", "body_checks")


def _no_header_body_checks(params: Parameters, work: _Translation) -> str | None:
    """postconf(5) receive_override_options, as smtpd passes it to cleanup: with
    ``no_header_body_checks`` the mail this smtpd receives gets no header or body checks (the
    setting's origin is returned, else None).
    ``no_unknown_recipient_checks``, ``no_address_mappings`` and ``no_milters`` turn off what
    sinkd does not model anyway (recipient tables, address rewriting, milters)."""
    work.used.add("receive_override_options")
    options = {o.lower() for o in split_list(params.value("receive_override_options"))}
    known = {
        "no_unknown_recipient_checks",
        "no_address_mappings",
        "no_header_body_checks",
        "no_milters",
    }
    for option in sorted(options - known):
        work.skip(
            params.origin("receive_override_options"),
            f"receive_override_options = … {option}",
            "not an option Postfix 3.7 knows (postconf(5)); ignored",
        )
    if "no_header_body_checks" not in options:
        return None
    return params.origin("receive_override_options")


def _cleanup_filter(
    display: str,
    params: Parameters,
    tables: Tables,
    work: _Translation,
    *,
    no_checks: str | None = None,
) -> dict[str, Any]:
    filter_spec: dict[str, Any] = {
        "kind": "postfix_cleanup",
        "name": "cleanup",
        "source": f"imported from {display}",
        "parameters": _parameters(params, work.support.cleanup_parameters, work, tables),
    }
    for check in _CLEANUP_CHECKS:
        work.used.add(check)
        value = params.value(check)
        origin = params.origin(check)
        specs = split_list(value)
        if no_checks is not None:
            # Not applied to mail from this smtpd: written empty, so that no table is read
            # and mime/nested checks do not default to header_checks.
            filter_spec[check] = {
                "table": None,
                "source": f"{no_checks}: receive_override_options = no_header_body_checks",
            }
            continue
        if check in ("mime_header_checks", "nested_header_checks") and not params.is_set(check):
            # Left out: postfix_cleanup reads them as $header_checks, their Postfix default.
            continue
        if not specs:
            if check in ("mime_header_checks", "nested_header_checks"):
                filter_spec[check] = {"table": None, "source": origin}  # set empty in main.cf
            continue
        for extra in specs[1:]:
            work.skip(
                origin,
                f"{check} = … {extra}",
                "only the first table of a check is translated (Postfix searches them in order)",
            )
        name = tables.add(specs[0], origin)
        if isinstance(name, Refused):
            work.skip(origin, f"{check} = {specs[0]}", name.reason)
            continue
        _report_unknown_actions(tables.specs[name], work)
        filter_spec[check] = {"table": name, "source": origin}
    filter_spec["tables"] = tables.specs
    return filter_spec


def _report_unknown_actions(table: dict[str, Any], work: _Translation) -> None:
    """Report the entries whose action cleanup does not know. They stay in the table: for such
    a line Postfix logs "unknown command" and checks it no further (cleanup_message.c
    cleanup_act), which the postfix_cleanup filter does too; dropping the entry would let a
    later pattern match where Postfix stopped."""
    for entry in table["entries"]:
        action = str(entry["value"]).split(None, 1)[0].upper() if entry["value"] else ""
        if action not in work.support.cleanup_actions:
            work.skip(
                entry["source"],
                f"{entry['key']} {entry['value']}",
                f"{action or 'an empty action'} is no header_checks(5) action: Postfix logs "
                "'unknown command' and checks the line no further, and so does sinkd",
            )


def _report_parameters(settings: dict[str, Setting], used: set[str], work: _Translation) -> None:
    """Every setting neither translated nor ignorable, with its reason."""
    for name, setting in settings.items():
        if name in used or name in IGNORED_PARAMETERS or name.startswith(IGNORED_PREFIXES):
            continue
        shown = f"{name} = {setting.value}"
        if name in RELEVANT_PARAMETERS:
            work.skip(setting.origin, shown, RELEVANT_PARAMETERS[name])
            continue
        prefix = next((p for p in RELEVANT_PREFIXES if name.startswith(p)), None)
        if prefix is not None:
            work.skip(setting.origin, shown, RELEVANT_PREFIXES[prefix])
            continue
        if name in POSTFIX_DEFAULTS:
            reason = "read by Postfix's restrictions or checks, but not evaluated by sinkd's "
            reason += "postfix filters: the profile keeps Postfix's default"
        else:
            reason = "not translated: sinkd does not know whether it changes what Postfix accepts"
        work.skip(setting.origin, shown, reason)


class PostfixImporter:
    """``sinkd profiles import postfix main.cf [--config-dir DIR] [--master-cf FILE]``."""

    product = "postfix"
    help = "a Postfix gateway's main.cf (with master.cf and the tables it names)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("main_cf", type=Path, metavar="main.cf", help="Postfix's main.cf")
        parser.add_argument(
            "--config-dir",
            type=Path,
            metavar="DIR",
            help="where the tables main.cf names are (/etc/postfix/X is read as DIR/X; "
            "default: main.cf's directory)",
        )
        parser.add_argument(
            "--master-cf",
            type=Path,
            metavar="FILE",
            help="master.cf, for -o overrides of the smtp service and policy servers "
            "(default: master.cf beside main.cf, if there is one)",
        )

    def run(self, args: argparse.Namespace, profile_id: str) -> Imported:
        main_cf: Path = args.main_cf
        if not main_cf.is_file():
            raise PolicyImportError(f"{main_cf}: no such file", path=str(main_cf))
        config_dir: Path = args.config_dir or main_cf.parent
        if not config_dir.is_dir():
            raise PolicyImportError(f"{config_dir}: --config-dir is not a directory")
        master_cf: Path | None = args.master_cf
        if master_cf is None and (main_cf.parent / "master.cf").is_file():
            master_cf = main_cf.parent / "master.cf"
        elif master_cf is not None and not master_cf.is_file():
            raise PolicyImportError(f"{master_cf}: no such file", path=str(master_cf))
        return translate(Config(main_cf, config_dir, master_cf), profile_id)


register(PostfixImporter())
