"""What two merged profiles set differently, rule by rule (``sinkd profiles diff A B``).

Owns the comparison of two validated ``Profile`` models after ``extends:``: filters present in
one and not the other, and for a filter of the same kind and name the settings that differ
(thresholds, actions, stages, replies, list entries added or removed), the scoring thresholds,
the SMTP settings, the size and scanning limits, the named lists, reply overrides and DNS
fixtures. What only documents a profile (title, description, ``models``, ``survey``, each
node's ``source``/``assumption``/``describe``) is not compared: it changes no verdict.

Pure: it reads no file, judges no mail and prints nothing (``sinkd.cli.profiles_diff`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sinkd.core.profiles import Profile
from sinkd.core.schema import dump

# Keys that say where a fact comes from or describe it: they never change a verdict.
_DOCUMENTING = frozenset({"source", "assumption", "describe"})
# Top-level keys compared, in the order the diff prints them; "filters" is grouped per filter.
_SECTIONS = ("smtp", "scanning", "scoring", "lists", "replies", "dns_zones")
# Keys that identify an item of a list of nodes (rules by id, filters by name, DNSBL zones).
_ITEM_KEYS = ("id", "name", "zone")


@dataclass(frozen=True, slots=True)
class Change:
    """One setting that differs. ``group`` is what it belongs to ("scoring", "list
    blocked_ips", "filter spamhaus (dnsbl)"), ``setting`` its dotted path in that group ("" for
    the group as a whole). ``before``/``after`` are A's and B's values (``None``: not in that
    profile); for a list of plain values ``added``/``removed`` hold the entries B adds and
    drops instead."""

    group: str
    setting: str
    before: Any = None
    after: Any = None
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()

    @property
    def only_in(self) -> str | None:
        """ "A" or "B" when the whole setting exists in one profile only."""
        if self.added or self.removed:
            return None
        if self.before is None and self.after is not None:
            return "B"
        if self.after is None and self.before is not None:
            return "A"
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"group": self.group, "setting": self.setting}
        if self.added or self.removed:
            data |= {"added": list(self.added), "removed": list(self.removed)}
        else:
            data |= {"a": self.before, "b": self.after}
        return data


@dataclass(frozen=True, slots=True)
class ProfileDiff:
    """Every ``Change`` between profile A and profile B, grouped in print order."""

    a: str
    b: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def groups(self) -> dict[str, list[Change]]:
        grouped: dict[str, list[Change]] = {}
        for change in self.changes:
            grouped.setdefault(change.group, []).append(change)
        return grouped


def diff_profiles(a: Profile, b: Profile) -> ProfileDiff:
    """What B sets differently from A (both merged over their ``extends:``)."""
    data_a, data_b = _judging(dump(a)), _judging(dump(b))
    changes: list[Change] = []
    for section in _SECTIONS:
        before, after = data_a.get(section), data_b.get(section)
        if section == "lists":
            for name in _keys(before or {}, after or {}):
                _compare(
                    f"list {name}", "", (before or {}).get(name), (after or {}).get(name), changes
                )
        else:
            _compare(section, "", before, after, changes)
    filters_a = {_filter_label(f): f for f in data_a.get("filters", [])}
    filters_b = {_filter_label(f): f for f in data_b.get("filters", [])}
    for label in _keys(filters_a, filters_b):
        _compare(f"filter {label}", "", filters_a.get(label), filters_b.get(label), changes)
    # The pipeline runs filters in the order the profile lists them: the first to decide wins.
    common = [label for label in filters_a if label in filters_b]
    order_b = [label for label in filters_b if label in filters_a]
    if common != order_b:
        changes.append(Change("filters", "order", common, order_b))
    return ProfileDiff(a.id, b.id, tuple(changes))


def _judging(data: Any) -> Any:
    """``data`` without the keys that only document it."""
    if isinstance(data, dict):
        return {k: _judging(v) for k, v in data.items() if k not in _DOCUMENTING}
    if isinstance(data, list):
        return [_judging(item) for item in data]
    return data


def _keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """A's keys in order, then those only B has."""
    return [*a, *(k for k in b if k not in a)]


def _filter_label(spec: dict[str, Any]) -> str:
    return f"{spec.get('name', '?')} ({spec.get('kind', '?')})"


def _item_key(items: Sequence[Any]) -> str | None:
    """The key that names every item of a list of nodes uniquely, if one does."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in _ITEM_KEYS:
        values = [item.get(key) for item in items]
        if all(isinstance(v, str) for v in values) and len(set(values)) == len(values):
            return key
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _compare(group: str, path: str, a: Any, b: Any, out: list[Change]) -> None:
    if a == b:
        return
    if a is None or b is None:
        out.append(Change(group, path, a, b))
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for name in _keys(a, b):
            _compare(group, _join(path, name), a.get(name), b.get(name), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        scalar = all(not isinstance(v, (dict, list)) for v in (*a, *b))
        if scalar and (set(a) != set(b) or len(a) != len(b)):
            added = tuple(v for v in b if v not in a)
            removed = tuple(v for v in a if v not in b)
            if added or removed:
                out.append(Change(group, path, added=added, removed=removed))
                return
        key: str | None
        if a and b:
            key = _item_key(a) if _item_key(a) == _item_key(b) else None
        else:
            key = _item_key(a or b)
        if key is not None:
            items_a = {item[key]: item for item in a}
            items_b = {item[key]: item for item in b}
            for ident in _keys(items_a, items_b):
                _compare(group, _join(path, ident), items_a.get(ident), items_b.get(ident), out)
            same_a = [i for i in items_a if i in items_b]
            same_b = [i for i in items_b if i in items_a]
            if same_a != same_b:  # rules are tried in order: the first to decide wins
                out.append(Change(group, _join(path, "order"), same_a, same_b))
            return
    out.append(Change(group, path, a, b))
