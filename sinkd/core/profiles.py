"""Profiles: the YAML schema, loading with located errors, ``extends`` and the reply catalogue.

Owns turning files in ``profiles/`` into validated ``Profile`` models: unknown keys, bad values
and dangling references are ``ProfileError``s that name the file, the field path and, where
known, the line. Loading compiles each profile once (``compile_loaded``: its filters from
``filters.REGISTRY`` and its replies) so that a dangling reference fails with its location; the
engine wraps the same compile in a ``Pipeline``. It never evaluates mail (``engine.py`` does),
never imports the engine and never writes files.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from sinkd.core.filters import Filter, FilterSpec, compile_filters
from sinkd.core.filters.scanning import ScanningFilter
from sinkd.core.limits import (
    SPAMASSASSIN_BODY_SOURCE,
    SPAMASSASSIN_RAWBODY_SOURCE,
    HeaderScope,
    ScanLimits,
)
from sinkd.core.schema import (
    CompileContext,
    CompileError,
    ListValue,
    Origin,
    ReplyRef,
    ReplyTemplate,
    Spec,
    parse_literal_reply,
)
from sinkd.errors import ProfileError

SCHEMA = "sinkd.profile/v1"
CATALOGUE_FILE = "replies.yaml"
# Files in a profiles directory that are not profiles.
NOT_PROFILES = frozenset({CATALOGUE_FILE, "population.yaml"})

ProfileId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
ListName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]


class Provenance(Spec):
    """One line of the profile's summary: what it models and where that comes from."""

    what: str

    @model_validator(mode="after")
    def _says_where_from(self) -> Provenance:
        if self.provenance is None:
            raise ValueError("say where this comes from: source: (a document) or assumption: (why)")
        return self


class Survey(Spec):
    """Which survey findings the profile exercises (used by reports)."""

    trigger_words: bool = False
    strip_rich_content: bool = False
    lists: bool = False
    spf_or_senderid: bool = False
    no_filtering: bool = False


class NamedList(Spec):
    kind: Literal[
        "address_glob",
        "domain",
        "hostname_glob",
        "cidr",
        "word",
        "phrase",
        "regex",
        "extension",
        "mime_type",
    ]
    entries: list[str] = []
    describe: str | None = None


class Thresholds(Spec):
    """Score thresholds, ascending; a missing one is not used (SpamAssassin-style totals)."""

    tag: float | None = None
    junk: float | None = None
    quarantine: float | None = None
    reject: float | None = None

    @model_validator(mode="after")
    def _ascending(self) -> Thresholds:
        named = [(k, getattr(self, k)) for k in ("tag", "junk", "quarantine", "reject")]
        present = [(k, v) for k, v in named if v is not None]
        for (k1, v1), (k2, v2) in itertools.pairwise(present):
            if v1 > v2:
                raise ValueError(f"thresholds must ascend: {k1} ({v1}) is above {k2} ({v2})")
        return self


class Scoring(Spec):
    thresholds: Thresholds = Thresholds()
    reject_reply: ReplyRef = "generic.spam"


Seconds = Annotated[float, Field(ge=0, le=300)]


class Tarpit(Spec):
    """Seconds the server waits before answering: before the 220 greeting (the default
    profile's), before each RCPT reply (the recipient's profile) and before the reply to the
    end of DATA (the slowest profile among the recipients'). RFC 5321 §4.5.3.2 gives clients
    at least 5 minutes for each, which is why 300 is the most."""

    banner: Seconds = 0.0
    rcpt: Seconds = 0.0
    data: Seconds = 0.0


class SmtpSettings(Spec):
    # Postfix answers envelope restrictions at RCPT TO by default (smtpd_delay_reject = yes),
    # which also lets it log the recipient; "mail" answers sender checks at MAIL FROM; "data"
    # accepts every recipient and answers at the end of DATA, as Gmail answers its SPF and
    # DMARC refusals (5.7.26) once it has the whole message. A SIZE= too large is still
    # refused at MAIL FROM (RFC 1870 §6.1) whatever the stage.
    envelope_reply_stage: Literal["mail", "rcpt", "data"] = "rcpt"
    # Open connections one client IP may hold (the default profile's applies): the next one
    # gets 421 and is closed, as Postfix's smtpd_client_connection_count_limit (default 50).
    max_connections_per_ip: int | None = Field(default=None, gt=0, le=100000)
    connection_limit_reply: ReplyRef = "postfix.connection_limit"
    tarpit: Tarpit = Tarpit()


ByteCount = Annotated[int, Field(ge=0, le=2_147_483_647)]


class ScanSize(Spec):
    """One per-part scan size in characters of decoded text; 0 reads the whole part."""

    size: ByteCount


class HeaderSizeLimit(Spec):
    """How much header the product keeps, and what it does with more: ``truncate`` (rules
    read the kept part, as Postfix's cleanup discards the excess) or ``reject`` (the product's
    reply at the end of DATA, as Exchange's receive connector answers 552 5.3.4)."""

    size: Annotated[int, Field(gt=0, le=2_147_483_647)]
    applies_to: HeaderScope  # field, value or block: see sinkd.core.limits.HeaderScope
    action: Literal["truncate", "reject"] = "truncate"
    reply: ReplyRef | None = None

    @model_validator(mode="after")
    def _reply_only_to_reject(self) -> HeaderSizeLimit:
        if self.action == "reject" and self.reply is None:
            raise ValueError("action reject needs the product's reply: (e.g. '552 5.3.4 ...')")
        if self.action == "truncate" and self.reply is not None:
            raise ValueError("a truncated header is not refused: reply: goes with action reject")
        return self


# SpamAssassin's defaults, which sinkd applied to every profile before profiles said.
_BODY_PART_SCAN_SIZE = ScanSize(size=50_000, source=SPAMASSASSIN_BODY_SOURCE)
_RAWBODY_PART_SCAN_SIZE = ScanSize(size=500_000, source=SPAMASSASSIN_RAWBODY_SOURCE)


class Scanning(Spec):
    """How much of a message the profile's rules read, after the product it models: a header
    size limit (none unless given) and SpamAssassin's per-part scan sizes (its defaults unless
    given). The content filter says in a finding when it read a part only in part."""

    header_size_limit: HeaderSizeLimit | None = None
    body_part_scan_size: ScanSize = _BODY_PART_SCAN_SIZE
    rawbody_part_scan_size: ScanSize = _RAWBODY_PART_SCAN_SIZE

    def limits(self) -> ScanLimits:
        """The values filters read (a reject limit is the scanning filter's, not a cut)."""
        header = self.header_size_limit
        truncate = header is not None and header.action == "truncate"
        return ScanLimits(
            body_part_scan_size=self.body_part_scan_size.size,
            body_source=_provenance_text(self.body_part_scan_size),
            rawbody_part_scan_size=self.rawbody_part_scan_size.size,
            rawbody_source=_provenance_text(self.rawbody_part_scan_size),
            header_size_limit=header.size if header is not None and truncate else None,
            header_scope=header.applies_to if header is not None else "field",
            header_source=_provenance_text(header) if header is not None else "",
        )


def _provenance_text(node: Spec) -> str:
    origin = node.provenance
    if origin is None:
        return ""
    return origin[1] if origin[0] == "source" else f"assumption: {origin[1]}"


class Profile(Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["sinkd.profile/v1"] = Field(alias="schema")
    id: ProfileId
    title: str
    description: str = ""
    extends: ProfileId | None = None
    models: list[Provenance] = Field(min_length=1)
    survey: Survey = Survey()
    lists: dict[ListName, NamedList] = {}
    smtp: SmtpSettings = SmtpSettings()
    scanning: Scanning = Scanning()
    scoring: Scoring = Scoring()
    replies: dict[str, ReplyRef] = {}
    # DNS fixtures (master files or record maps) the profile's checks rely on; relative paths
    # are relative to the file that names them, made absolute by the loader.
    dns_zones: list[str] = []
    filters: list[FilterSpec] = []

    @field_validator("filters")
    @classmethod
    def _unique_filter_names(cls, filters: list[FilterSpec]) -> list[FilterSpec]:
        seen: set[str] = set()
        for spec in filters:
            if spec.name in seen:
                raise ValueError(f"two filters are named {spec.name!r}; names must be unique")
            seen.add(spec.name)
        return filters


# --- YAML with locations -------------------------------------------------------------------


# libyaml's parser where PyYAML was built with it: it reads a profile several times faster
# than the pure-Python one (start-up of ``sinkd check``, bench/startup.py), with the same nodes,
# marks and resolvers.
if TYPE_CHECKING or yaml.__with_libyaml__:
    from yaml import CSafeLoader as _SafeLoader
else:
    from yaml import SafeLoader as _SafeLoader


class _Loader(_SafeLoader):
    """YAML 1.2 booleans: only true/false. PyYAML follows YAML 1.1, where on/off/yes/no are
    booleans too, which would turn the ``on:`` outcome maps of spf, dkim and dmarc into True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    data: dict[str, Any]
    node: yaml.Node | None


def _read_yaml(path: Path) -> _Source:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text", path=str(path)) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(f"{path}{line}: YAML syntax error: {problem}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping", path=str(path))
    return _Source(path, data, node)


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The line of the deepest node on ``loc``; union tags pydantic adds to loc are skipped."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _clean_loc(loc: Sequence[str | int], data: Any) -> list[str | int]:
    """Drop the discriminator tags pydantic inserts (``filters.0.envelope.rules``)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, Mapping):
            if part in data:
                data = data[part]
                out.append(part)
            elif part != data.get("kind"):  # a missing key; the union tag itself is dropped
                out.append(part)
                data = None
            continue
        if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            out.append(part)
            continue
        out.append(part)
        data = None
    return out


def located_error(source: _Source, loc: Sequence[str | int], message: str) -> ProfileError:
    line = _line_of(source.node, loc)
    where = f"{source.path}:{line}" if line else str(source.path)
    return ProfileError(f"{where}: {format_loc(loc)}: {message}", path=str(source.path))


def _validation_error(source: _Source, exc: ValidationError, data: Any) -> ProfileError:
    lines: list[str] = []
    first: ProfileError | None = None
    for error in exc.errors(include_url=False):
        loc = _clean_loc(error["loc"], data)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in error and error["type"] not in ("missing",):
            given = error["input"]
            if isinstance(given, (str, int, float, bool)) or given is None:
                message += f" (got {given!r})"
        located = located_error(source, loc, message)
        first = first or located
        lines.append(str(located))
    assert first is not None
    return ProfileError("\n".join(lines), path=first.path)


# --- extends --------------------------------------------------------------------------------


def _merge(parent: Any, child: Any, key: str | None = None) -> Any:
    """Deep-merge maps; lists replace, except ``filters``, merged by filter name."""
    if isinstance(parent, dict) and isinstance(child, dict):
        merged = dict(parent)
        for k, v in child.items():
            merged[k] = _merge(parent[k], v, k) if k in parent else copy.deepcopy(v)
        return merged
    if key == "filters" and isinstance(parent, list) and isinstance(child, list):
        by_name = {f.get("name"): i for i, f in enumerate(parent) if isinstance(f, dict)}
        merged_list = list(parent)
        for item in child:
            name = item.get("name") if isinstance(item, dict) else None
            if name in by_name:
                merged_list[by_name[name]] = _merge(parent[by_name[name]], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(child)


def _absolute_zones(source: _Source) -> dict[str, Any]:
    """The file's data with ``dns_zones`` made absolute against the file's own directory, so
    that a profile extending another keeps its parent's zones where the parent meant them."""
    zones = source.data.get("dns_zones")
    if not isinstance(zones, list):
        return source.data  # absent, or wrong: validation reports it with its line
    resolved: list[Any] = []
    for index, zone in enumerate(zones):
        if not isinstance(zone, str):
            resolved.append(zone)
            continue
        path = (source.path.parent / zone).resolve()
        if not path.is_file():
            raise located_error(source, ["dns_zones", index], f"DNS zone file {path} not found")
        resolved.append(str(path))
    return {**source.data, "dns_zones": resolved}


# --- reply catalogue ------------------------------------------------------------------------


# Keys of one catalogue entry: the reply and where its wording comes from (see Spec).
_CATALOGUE_ENTRY_KEYS = ("reply", "source", "assumption")


def _catalogue_entries(
    path: Path,
) -> Iterator[tuple[str, ReplyTemplate, Origin | None]]:
    """The entries of one ``replies.yaml``: key, template and its source or assumption.

    An entry is ``key: "550 5.7.1 text"`` or ``key: {reply: ..., source: ...}`` (or
    ``assumption:`` instead of ``source:``, as on every profile node)."""
    source = _read_yaml(path)
    replies = source.data.get("replies")
    if not isinstance(replies, dict):
        raise located_error(source, ["replies"], "expected a mapping of key -> {reply, source}")
    for key, entry in replies.items():
        provenance: Origin | None = None
        if isinstance(entry, dict):
            for field in entry:
                if field not in _CATALOGUE_ENTRY_KEYS:
                    raise located_error(source, ["replies", key, field], "unknown key")
            given = [(k, entry[k]) for k in ("source", "assumption") if k in entry]
            for field, value in given:
                if not isinstance(value, str) or not value.strip():
                    raise located_error(source, ["replies", key, field], "must be a non-empty text")
            if len(given) == 2:
                raise located_error(
                    source, ["replies", key], "give either source: or assumption:, not both"
                )
            if given:
                provenance = (
                    ("source", given[0][1]) if "source" in entry else ("assumption", given[0][1])
                )
        text = entry.get("reply") if isinstance(entry, dict) else entry
        template = parse_literal_reply(text) if isinstance(text, str) else None
        if template is None:
            raise located_error(source, ["replies", key], "expected a reply like '550 5.7.1 text'")
        yield str(key), template, provenance


def load_catalogue(paths: Sequence[Path]) -> dict[str, ReplyTemplate]:
    """Read ``replies.yaml`` files (later ones override earlier ones)."""
    return {key: template for path in paths for key, template, _ in _catalogue_entries(path)}


def catalogue_provenance(paths: Sequence[Path]) -> dict[str, Origin | None]:
    """Where each catalogue reply's wording comes from (later files override earlier ones)."""
    return {key: where for path in paths for key, _, where in _catalogue_entries(path)}


# --- profile sets ---------------------------------------------------------------------------


def builtin_profiles_dir() -> Path:
    """``profiles/`` of a source checkout, or the copy packaged inside the wheel."""
    package = Path(__file__).resolve().parents[1]  # sinkd/, this file is sinkd/core/profiles.py
    here = package
    for candidate in (package.parent / "profiles", package / "_profiles"):
        if (candidate / CATALOGUE_FILE).is_file():
            return candidate
    raise ProfileError(f"built-in profiles not found next to {here}")


@dataclass(frozen=True, slots=True)
class LoadedProfile:
    profile: Profile
    path: Path
    catalogue: Mapping[str, ReplyTemplate]

    @property
    def dns_zones(self) -> tuple[Path, ...]:
        """The profile's DNS fixture files, absolute (the loader resolved them)."""
        return tuple(Path(zone) for zone in self.profile.dns_zones)


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    """A loaded profile's filters instantiated and its own replies resolved (the engine's
    ``compile_profile`` wraps it in a ``Pipeline``)."""

    filters: tuple[Filter, ...]
    reject_reply: ReplyTemplate
    policy_reply: ReplyTemplate
    tempfail_reply: ReplyTemplate
    connection_reply: ReplyTemplate  # smtp.max_connections_per_ip exceeded (421)


def compile_loaded(loaded: LoadedProfile) -> CompiledProfile:
    """Instantiate a profile's filters and resolve its replies; errors are ``CompileError``s
    located by field."""
    profile = loaded.profile
    lists = {
        name: ListValue(spec.kind, tuple(spec.entries)) for name, spec in profile.lists.items()
    }
    filters = compile_filters(
        profile.filters, lists, loaded.catalogue, profile.scanning.limits(), profile=profile.id
    )
    header = profile.scanning.header_size_limit
    if header is not None and header.action == "reject" and header.reply is not None:
        # The product refuses an oversized header before any filter runs: first, so that its
        # reply is the one given when another filter refuses too.
        here = CompileContext(
            lists=lists, replies=loaded.catalogue, loc=("scanning", "header_size_limit")
        )
        reply = here.reply(header.reply)
        source = _provenance_text(header) or None
        filters = (ScanningFilter(header.size, header.applies_to, reply, source), *filters)
    scoring = CompileContext(lists=lists, replies=loaded.catalogue, loc=("scoring",))
    smtp = CompileContext(lists=lists, replies=loaded.catalogue, loc=("smtp",))
    return CompiledProfile(
        filters=filters,
        reject_reply=scoring.reply(profile.scoring.reject_reply, "reject_reply"),
        policy_reply=scoring.reply("generic.policy"),
        tempfail_reply=scoring.reply("generic.tempfail"),
        connection_reply=smtp.reply(profile.smtp.connection_limit_reply, "connection_limit_reply"),
    )


def dns_zones_of(loaded: Iterable[LoadedProfile]) -> list[Path]:
    """The DNS fixture files these profiles name, each once, in order of first mention."""
    zones: dict[Path, None] = {}
    for profile in loaded:
        zones.update(dict.fromkeys(profile.dns_zones))
    return list(zones)


class ProfileSet:
    """The profiles a server or a command can use: built-ins plus ``--profiles-dir``."""

    def __init__(self, extra_dirs: Sequence[Path] = ()) -> None:
        self.dirs = [builtin_profiles_dir(), *extra_dirs]
        for directory in extra_dirs:
            if not directory.is_dir():
                raise ProfileError(
                    f"{directory}: profiles directory not found", path=str(directory)
                )
        self._files: dict[str, Path] = {}
        for directory in self.dirs:
            for path in sorted(directory.glob("*.yaml")):
                if path.name not in NOT_PROFILES:
                    self._files[path.stem] = path
        catalogues = [d / CATALOGUE_FILE for d in self.dirs if (d / CATALOGUE_FILE).is_file()]
        self.catalogue = load_catalogue(catalogues)
        self.catalogue_provenance = catalogue_provenance(catalogues)
        self._cache: dict[Path, LoadedProfile] = {}

    def names(self) -> list[str]:
        return sorted(self._files)

    def path_of(self, name: str) -> Path:
        if name not in self._files:
            raise ProfileError(
                f"unknown profile {name!r}; available: {', '.join(self.names())}", path=None
            )
        return self._files[name]

    def resolve(self, name_or_path: str) -> LoadedProfile:
        """A profile by id, or by the path of a YAML file."""
        if name_or_path in self._files:
            return self.load(self._files[name_or_path])
        looks_like_path = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
        if looks_like_path:
            return self.load(Path(name_or_path))
        return self.load(self.path_of(name_or_path))

    def __iter__(self) -> Iterator[LoadedProfile]:
        for name in self.names():
            yield self.load(self._files[name])

    def load(self, path: Path) -> LoadedProfile:
        path = path.resolve() if path.exists() else path
        if path in self._cache:
            return self._cache[path]
        if not path.is_file():
            raise ProfileError(f"{path}: profile file not found", path=str(path))
        loaded = self._load(path, chain=())
        self._cache[path] = loaded
        return loaded

    def _raw(self, path: Path, chain: tuple[Path, ...]) -> tuple[_Source, dict[str, Any]]:
        """The file's data merged over its ``extends`` chain, unvalidated."""
        if path in chain:
            cycle = " -> ".join(p.stem for p in (*chain, path))
            raise ProfileError(f"{path}: extends: cycle {cycle}", path=str(path))
        source = _read_yaml(path)
        source = _Source(source.path, _absolute_zones(source), source.node)
        parent_id = source.data.get("extends")
        if parent_id is None:
            return source, source.data
        if not isinstance(parent_id, str) or parent_id not in self._files:
            raise located_error(
                source,
                ["extends"],
                f"unknown profile {parent_id!r} (available: {', '.join(self.names())})",
            )
        _, parent = self._raw(self._files[parent_id], (*chain, path))
        merged = _merge({k: v for k, v in parent.items() if k != "id"}, source.data)
        return source, merged

    def _load(self, path: Path, chain: tuple[Path, ...]) -> LoadedProfile:
        source, data = self._raw(path, chain)
        try:
            profile = Profile.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(source, exc, data) from None
        if (
            path.suffix in (".yaml", ".yml")
            and path.stem != profile.id
            and path.parent in self.dirs
        ):
            raise located_error(source, ["id"], f"must equal the file name {path.stem!r}")
        catalogue = dict(self.catalogue)
        for key, text in profile.replies.items():
            template = parse_literal_reply(text)
            if template is None:
                raise located_error(
                    source, ["replies", key], "expected a reply like '550 5.7.1 text'"
                )
            catalogue[key] = template
        loaded = LoadedProfile(profile, path, catalogue)
        # Compile once here so that dangling references fail at load time with a location.
        try:
            compile_loaded(loaded)
        except CompileError as exc:
            raise located_error(source, exc.loc, exc.message) from None
        return loaded
