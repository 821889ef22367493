"""The same policy for both sides of a differential test: a Postfix gateway's main.cf
parameters and table files, turned into a sinkd profile holding one ``postfix_smtpd`` filter.

This is the tests' own small reader of the harness's policies (restriction lists of names,
``check_*_access TYPE:$config_directory/NAME`` and RBL arguments), written from postconf(5); it
is not the importer (``sinkd.importers``), which reads real main.cf files. Anything it cannot
read fails the test loudly rather than being left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sinkd.core.filters.postfix_smtpd import LIST_PARAMETER, SUPPORTED_PARAMETERS
from tests.support.postfix_gateway import FRAME
from tests.support.postfix_tables import table_spec

_WITH_TABLE = {"check_client_access", "check_helo_access", "check_sender_access"}
_WITH_TABLE |= {"check_recipient_access"}
_WITH_ARGUMENT = {
    "reject_rbl_client",
    "reject_rhsbl_client",
    "reject_rhsbl_helo",
    "reject_rhsbl_sender",
    "reject_rhsbl_recipient",
    "permit_dnswl_client",
}
_TABLE_REF = re.compile(r"^(\w+):\$config_directory/(\S+)$")


def restriction_list(
    value: str,
    parameter: str,
    tables: Mapping[str, str],
    used: dict[str, Any],
    services: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One ``smtpd_*_restrictions`` value as the filter's list; tables land in ``used``;
    ``services`` says which policy server each ``check_policy_service`` address is."""
    tokens = [t for t in re.split(r"[\s,]+", value) if t]
    out: list[dict[str, Any]] = []
    index = 0
    while index < len(tokens):
        name = tokens[index]
        item: dict[str, Any] = {"restriction": name, "source": f"main.cf {parameter}"}
        if name in _WITH_TABLE:
            index += 1
            match = _TABLE_REF.match(tokens[index])
            assert match, f"{parameter}: {tokens[index]!r} is not TYPE:$config_directory/NAME"
            type_, table = match.groups()
            spec = table_spec(type_, tables[table], table)  # type: ignore[arg-type]
            used[table] = spec.model_dump(mode="json", exclude_none=True)
            item["table"] = table
        elif name in _WITH_ARGUMENT:
            index += 1
            item["argument"] = tokens[index]
        elif name == "check_policy_service":
            index += 1
            item["argument"] = tokens[index]
            item["service"] = (services or {})[tokens[index]]
        out.append(item)
        index += 1
    return out


def smtpd_filter(
    policy: Mapping[str, str],
    tables: Mapping[str, str],
    services: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``postfix_smtpd`` filter for the gateway's frame with ``policy`` over it."""
    merged = {**FRAME, **policy}
    used: dict[str, Any] = {}
    restrictions = {
        key: restriction_list(merged[parameter], parameter, tables, used, services)
        for key, parameter in LIST_PARAMETER.items()
        if parameter in merged
    }
    parameters = {
        name: {"value": value, "source": f"main.cf {name}"}
        for name, value in merged.items()
        if name in SUPPORTED_PARAMETERS
    }
    return {
        "kind": "postfix_smtpd",
        "name": "smtpd",
        "source": "the differential test's main.cf",
        "parameters": parameters,
        "restrictions": restrictions,
        "tables": used,
    }


def write_smtpd_profile(
    directory: Path,
    profile_id: str,
    policy: Mapping[str, str],
    tables: Mapping[str, str],
    services: Mapping[str, str] | None = None,
) -> Path:
    """A profile file holding only that filter, as ``sinkd serve --profile PATH`` reads it."""
    body = {
        "schema": "sinkd.profile/v1",
        "id": profile_id,
        "title": "Postfix gateway policy (differential test)",
        "models": [
            {"what": "a private Postfix gateway", "source": "tests/support/postfix_gateway.py"}
        ],
        "filters": [smtpd_filter(policy, tables, services)],
    }
    path = directory / f"{profile_id}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path
