"""``sinkd profiles list|show|validate|diff|import``: the profiles sinkd knows, one profile in
full, profile files checked before use, what two profiles would judge differently, and profiles
built from a gateway's own configuration.

Owns the profile printout (every rule, threshold, limit, reply and stage with its source or
assumption) and the validation report. Loading and checking profiles is
``sinkd.core.profiles``; ``diff`` is ``sinkd.cli.profiles_diff`` (it judges a corpus through
the ``Judge`` as ``sinkd check`` does) and ``import`` is ``sinkd.cli.profiles_import``. This
module must not judge mail or import the server or the store.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

from sinkd.cli import profiles_diff, profiles_import
from sinkd.cli.base import EXIT_OK, EXIT_USAGE, Parser
from sinkd.core.model import Action
from sinkd.core.profiles import (
    CATALOGUE_FILE,
    LoadedProfile,
    Profile,
    ProfileSet,
    ScanSize,
    load_catalogue,
)
from sinkd.core.schema import Origin, Spec, dump
from sinkd.errors import ProfileError
from sinkd.services.settings import add_options


def add_arguments(profiles: argparse.ArgumentParser) -> None:
    profile_commands = profiles.add_subparsers(
        dest="profiles_command", required=True, parser_class=Parser
    )
    for name, help_text in (
        ("list", "list available profiles"),
        ("show", "show one profile"),
        ("validate", "validate profile files"),
    ):
        sub = profile_commands.add_parser(name, help=help_text)
        add_options(sub, "profiles", "profiles_dirs")
        if name == "show":
            sub.add_argument("name", help="profile id or YAML path")
            sub.add_argument("--json", action="store_true")
        elif name == "validate":
            sub.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        else:
            sub.add_argument("--json", action="store_true")
    profiles_diff.add_arguments(
        profile_commands.add_parser("diff", help="what two profiles would judge differently")
    )
    profiles_import.add_arguments(
        profile_commands.add_parser(
            "import", help="build a profile from a gateway's own configuration"
        )
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.profiles_command == "diff":
        return profiles_diff.run(args, out)
    if args.profiles_command == "import":
        return profiles_import.run(args, out)
    if args.profiles_command == "validate":
        failed = 0
        profiles = ProfileSet(args.profiles_dir)
        for path in args.paths:
            try:
                if path.name == CATALOGUE_FILE:
                    count = len(load_catalogue([path]))
                    print(f"ok: {path} (reply catalogue, {count} replies)", file=out)
                    continue
                loaded = profiles.load(path)
            except ProfileError as exc:
                failed += 1
                print(f"invalid: {exc}", file=sys.stderr)
            else:
                print(f"ok: {path} ({loaded.profile.id}: {loaded.profile.title})", file=out)
        return EXIT_USAGE if failed else EXIT_OK
    profiles = ProfileSet(args.profiles_dir)
    if args.profiles_command == "list":
        rows = [(p.profile.id, p.profile.title, str(p.path)) for p in profiles]
        if args.json:
            print(
                json.dumps([{"id": i, "title": t, "path": p} for i, t, p in rows], indent=2),
                file=out,
            )
        else:
            width = max(len(i) for i, _, _ in rows)
            for ident, title, _ in rows:
                print(f"{ident:<{width}}  {title}", file=out)
        return EXIT_OK
    loaded = profiles.resolve(args.name)
    if args.json:
        print(json.dumps(dump(loaded.profile), indent=2, ensure_ascii=False), file=out)
    else:
        out.write(_show_profile(loaded, profiles.catalogue_provenance))
    return EXIT_OK


# Fields a node's one-line summary leaves out: they name it, or are printed on their own lines.
_NOT_SETTINGS = frozenset({"kind", "name", "id", "source", "assumption", "describe"})
_STAGES = {"mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "the end of DATA"}


def _show_profile(loaded: LoadedProfile, origins: dict[str, Origin | None]) -> str:
    """``sinkd profiles show``: every rule, threshold, limit, reply and stage of a profile on a
    line of its own, each followed by the source or assumption the profile gives for it."""
    profile = loaded.profile
    lines = [f"# {profile.title}", f"# from {loaded.path}"]
    if profile.description:
        lines += ["", *_wrap(" ".join(profile.description.split()), 0, 0)]
    lines += ["", "What it models:"]
    for model in profile.models:
        lines += _wrap(f"- {model.what}", 2, 4)
        lines += _origin_lines(model.provenance, 6)
    smtp = profile.smtp
    stage = _STAGES[smtp.envelope_reply_stage]
    settings = _node_settings(smtp, {"envelope_reply_stage"})
    lines += ["", f"SMTP: envelope refusals answered at {stage}{settings}"]
    lines += _origin_lines(smtp.provenance, 6)
    thresholds = profile.scoring.thresholds
    levels = [(k, getattr(thresholds, k)) for k in ("tag", "junk", "quarantine", "reject")]
    given = [f"{k} at {v:g}" for k, v in levels if v is not None]
    lines.append(
        f"Scoring: {', '.join(given) or 'no thresholds'}; "
        f"reject reply {profile.scoring.reject_reply}"
    )
    lines += _origin_lines(profile.scoring.provenance, 6)
    lines += _scanning_lines(profile)
    if profile.lists:
        lines += ["", "Lists:"]
        for name, listed in profile.lists.items():
            entries = ", ".join(listed.entries) or "(empty)"
            lines += _wrap(f"{name} ({listed.kind}, {len(listed.entries)}): {entries}", 2, 6)
            lines += _origin_lines(listed.provenance, 6)
    lines += ["", "Filters:"]
    for spec in profile.filters:
        name = getattr(spec, "name", "?")
        kind = getattr(spec, "kind", "?")
        lines.append(f"  {name} ({kind}){_node_settings(spec)}")
        lines += _origin_lines(spec.provenance, 6)
        lines += _children(spec, 4)
    used = _reply_keys(dump(profile))
    if used:
        lines += ["", "Replies:"]
        for key in used:
            template = loaded.catalogue.get(key)
            if template is None:
                continue
            lines += _wrap(f"{key}: {template.code} {template.enhanced} {template.template}", 2, 6)
            lines += _origin_lines(origins.get(key), 6)
    return "\n".join(lines) + "\n"


_SCOPES = {"field": "of each header field", "value": "of each header value", "block": "of header"}


def _scanning_lines(profile: Profile) -> list[str]:
    """The scanning limits (``scanning:``), each with its source."""
    scanning = profile.scanning
    lines = ["Scanning:"]
    header = scanning.header_size_limit
    if header is None:
        lines.append("  header: no limit")
    else:
        then = f"refused with {header.reply}" if header.action == "reject" else "the rest cut"
        lines += _wrap(f"header: {header.size:,} octets {_SCOPES[header.applies_to]}; {then}", 2, 4)
        lines += _origin_lines(header.provenance, 6)
    for name in ("body_part_scan_size", "rawbody_part_scan_size"):
        size: ScanSize = getattr(scanning, name)
        lines.append(f"  {name}: {size.size:,}" if size.size else f"  {name}: 0 (whole part)")
        lines += _origin_lines(size.provenance, 6)
    return lines


def _origin_lines(origin: Origin | None, indent: int) -> list[str]:
    if origin is None:
        return []
    label, text = origin
    return _wrap(f"{label}: {' '.join(text.split())}", indent, indent + 2)


def _wrap(text: str, indent: int, hanging: int) -> list[str]:
    """Lines of at most 100 characters; paths and URLs are never broken."""
    return textwrap.wrap(
        text,
        100,
        initial_indent=" " * indent,
        subsequent_indent=" " * hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_node(value: object) -> bool:
    if isinstance(value, Spec):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Spec) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, Spec) for v in value.values())
    return False


def _node_settings(node: Spec, skip: set[str] | frozenset[str] = frozenset()) -> str:
    """The scalar fields the profile writes on a node, as ``key=value``."""
    fields = type(node).model_fields
    parts = [
        f"{fields[f].alias or f}={_value(getattr(node, f))}"
        for f in fields
        if f in node.model_fields_set
        and f not in _NOT_SETTINGS
        and f not in skip
        and not _is_node(getattr(node, f))
    ]
    return (": " + " ".join(parts)) if parts else ""


def _children(node: Spec, indent: int, prefix: str = "") -> list[str]:
    """One line per sub-node the profile writes (rules, outcomes, zones, ...), with its
    settings and its source or assumption, recursively."""
    lines: list[str] = []
    fields = type(node).model_fields
    for field in fields:
        if field not in node.model_fields_set:
            continue
        value = getattr(node, field)
        if not _is_node(value):
            continue
        label = prefix + (fields[field].alias or field)
        if isinstance(value, Spec):
            items: list[tuple[str, Spec]] = [(label, value)]
        elif isinstance(value, dict):
            items = [(f"{label}.{k}", v) for k, v in value.items() if isinstance(v, Spec)]
        else:
            items = [
                (getattr(v, "id", None) or f"{label}[{i}]", v)
                for i, v in enumerate(value)
                if isinstance(v, Spec)
            ]
        for item_label, item in items:
            ident = getattr(item, "id", None)
            shown = item_label if ident is None or ident == item_label else f"{item_label} {ident}"
            lines.append(" " * indent + f"{shown}{_node_settings(item)}")
            describe = getattr(item, "describe", None)
            if describe:
                lines += _wrap(str(describe), indent + 2, indent + 2)
            lines += _origin_lines(item.provenance, indent + 2)
            lines += _children(item, indent + 2)
    return lines


# Actions whose outcome is sent as an SMTP reply; other outcomes keep a default reply unused.
_REPLYING = frozenset(action.value for action in Action if action.refuses)


def _reply_keys(data: object) -> list[str]:
    """Catalogue keys the profile may answer with (a ``reply`` of an outcome that refuses,
    ``reject_reply`` with a reject threshold, ``connection_limit_reply`` with a connection
    limit, any other ``*_reply``), in order of first mention."""
    found: dict[str, None] = {}

    def used(node: dict[Any, Any], key: str) -> bool:
        if key == "reply":
            return node.get("action") in _REPLYING or "action" not in node
        if key == "reject_reply":
            return (node.get("thresholds") or {}).get("reject") is not None
        if key == "connection_limit_reply":
            return node.get("max_connections_per_ip") is not None
        return True

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                is_reply = isinstance(key, str) and key.endswith("reply")
                if is_reply and isinstance(item, str) and used(value, key):
                    found.setdefault(item, None)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return list(found)
