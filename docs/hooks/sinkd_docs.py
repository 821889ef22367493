"""The documentation site's generated reference: a mkdocs hook (``hooks:`` in ``mkdocs.yml``).

Owns turning sinkd's own declarations into Markdown at build time, so that the reference can
never drift from the code: a page says ``<!-- sinkd:NAME -->`` on a line of its own and
``on_page_markdown`` replaces that line with what ``GENERATORS[NAME]`` renders:

- ``codes``: the finding-code catalogue (``sinkd.core.codes.markdown``, the declarations of
  every filter kind and the engine);
- ``filter-kinds``: the filter registry (``sinkd.core.filters.REGISTRY``): kind, category,
  what its module says it does, the codes it declares;
- ``profiles``: every built-in profile through ``sinkd.core.profiles``: title, description,
  what it models with each source or assumption, and every rule, threshold, limit, reply and
  stage with its own (the printout of ``sinkd profiles show``);
- ``openapi``: the HTTP API from ``sinkd.web.openapi.document()``: every path, method,
  parameter, request body and response as Markdown tables (no Swagger UI: the site works
  offline);
- ``cli``: every subcommand of ``sinkd.cli.main.build_parser`` with its usage and options;
- ``serve-options``: ``sinkd serve``'s options with their environment variables
  (``sinkd.services.settings.markdown_table``).

It also adds ``bench/RESULTS.md`` to the site as ``benchmarks-results.md`` (the benchmark
page links to it; the file stays where the benchmarks write it).

An unknown marker stops the build (a typo must not publish an empty section). This module
reads the code and writes Markdown only: it judges no mail, starts no server and opens no
socket; the tests in ``tests/docs/`` import it by path and check that each generator covers
every code, profile, API path and subcommand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sinkd.cli.main import ALL, build_parser

# ``sinkd profiles show``'s printout: the one rendering of a profile with every source, which
# the site shows as it is rather than a second rendering that could say something else.
from sinkd.cli.profiles import _show_profile
from sinkd.core.codes import markdown as codes_markdown
from sinkd.core.filters import REGISTRY
from sinkd.core.profiles import ProfileSet
from sinkd.services.settings import markdown_table
from sinkd.web.openapi import document

ROOT = Path(__file__).resolve().parents[2]
BENCH_RESULTS = ROOT / "bench" / "RESULTS.md"
BENCH_RESULTS_PAGE = "benchmarks-results.md"
MARKER = re.compile(r"^<!-- sinkd:([a-z-]+) -->[ \t]*$", re.MULTILINE)
USAGE_WIDTH = 100  # fixed, so the usage lines do not depend on the terminal that builds


class UnknownMarker(Exception):
    """A page names a generator that does not exist (mkdocs reports it and stops)."""


CODE_SPAN = re.compile(r"(`[^`]*`)")


def _text(text: str) -> str:
    """Plain text from the code (a description, a source) for a Markdown page, on one line:
    outside code spans, ``<ip>`` would pass as an HTML tag and ``*.exe`` could start emphasis,
    so ``&``, ``<``, ``>`` and ``*`` are escaped; code spans are shown as they are."""
    pieces = CODE_SPAN.split(" ".join(text.split()))
    return "".join(
        piece
        if piece.startswith("`")
        else piece.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("*", "\\*")
        for piece in pieces
    )


def _cell(text: str) -> str:
    """``_text`` for one table cell: a ``|`` outside code spans would end the cell. Inside a
    code span Python-Markdown's tables keep ``|`` as it is, so it is not escaped there."""
    pieces = CODE_SPAN.split(_text(text))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in pieces)


# --- finding codes and filter kinds ---------------------------------------------------------


def codes() -> str:
    """The catalogue of finding codes, as ``python -m sinkd.core.codes --markdown`` prints."""
    return codes_markdown()


def filter_kinds() -> str:
    """One row per registered filter kind, in registry (evaluation-independent) order."""
    rows = ["| kind | category | what it checks | codes |", "|---|---|---|---|"]
    for kind, cls in REGISTRY.items():
        doc = sys.modules[cls.__module__].__doc__ or ""
        summary = doc.strip().split("\n\n")[0]
        declared = ", ".join(f"`{c.code}`" for c in cls.codes)
        rows.append(f"| `{kind}` | {cls.category.value} | {_cell(summary)} | {_cell(declared)} |")
    return "\n".join(rows) + "\n"


# --- profiles -------------------------------------------------------------------------------


def _origin(provenance: tuple[str, str] | None) -> str:
    if provenance is None:
        return "–"
    kind, text = provenance
    return f"{kind}: {text}"


def profiles() -> str:
    """Every built-in profile: what it models and where from, then every rule with its source."""
    found = ProfileSet()
    parts: list[str] = []
    for loaded in found:
        profile = loaded.profile
        parts += [f"### `{profile.id}`", "", f"**{_text(profile.title)}**", ""]
        if profile.extends:
            parts += [f"Extends `{profile.extends}`.", ""]
        if profile.description:
            parts += [_text(profile.description), ""]
        parts += ["| what it models | where that comes from |", "|---|---|"]
        parts += [f"| {_cell(m.what)} | {_cell(_origin(m.provenance))} |" for m in profile.models]
        printout = _show_profile(loaded, found.catalogue_provenance).splitlines()
        # The printout starts with the title, the file's absolute path on the building machine,
        # the description and what the profile models: all above already (the path says
        # nothing on a website), so the settings start at its "SMTP:" line.
        start = next(i for i, line in enumerate(printout) if line.startswith("SMTP: "))
        body = "\n".join(printout[start:]).strip("\n")
        parts += [
            "",
            f"Every rule, threshold, limit, reply and stage with its source "
            f"(`sinkd profiles show {profile.id}`):",
            "",
            "```text",
            body,
            "```",
            "",
        ]
    return "\n".join(parts)


# --- the HTTP API from the OpenAPI document -------------------------------------------------


def _anchor(name: str) -> str:
    return f"#schema-{name.lower()}"


def _type(schema: dict[str, Any]) -> str:
    """A short, readable type for a JSON schema: references link to the schema section."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}]({_anchor(name)})"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(_type(s) for s in schema[combinator])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    text = str(kind) if kind else "any"
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _constraints(schema: dict[str, Any]) -> str:
    said = []
    if "minimum" in schema:
        said.append(f"min {schema['minimum']}")
    if "maximum" in schema:
        said.append(f"max {schema['maximum']}")
    if "default" in schema:
        said.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(said)


def _properties(schema: dict[str, Any]) -> list[str]:
    """A table of an object schema's properties (empty when it has none)."""
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in properties.items():
        described = "; ".join(t for t in (prop.get("description", ""), _constraints(prop)) if t)
        rows.append(
            f"| `{name}` | {_cell(_type(prop))} | {'yes' if name in required else 'no'} "
            f"| {_cell(described)} |"
        )
    return rows


def _body(content: dict[str, Any]) -> tuple[str, list[str]]:
    """A request or response body: its media types and type, and a table when it is an object
    described in place."""
    kinds = []
    table: list[str] = []
    for media, media_object in content.items():
        schema = media_object.get("schema", {})
        kinds.append(f"`{media}` {_type(schema)}")
        table = table or _properties(schema)
    return ", ".join(kinds), table


def _response(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        resolved: dict[str, Any] = doc["components"]["responses"][name]
        return resolved
    return response


def openapi() -> str:
    """The API reference: one section per path and method, then the shared schemas."""
    doc = document()
    out: list[str] = []
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            summary = operation.get("summary", "")
            out += [
                f"### `{method.upper()} {path}`",
                "",
                _cell(summary[:1].upper() + summary[1:]),
                "",
            ]
            parameters = operation.get("parameters", [])
            if parameters:
                out += [
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                for p in parameters:
                    schema = p.get("schema", {})
                    described = "; ".join(
                        t for t in (p.get("description", ""), _constraints(schema)) if t
                    )
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_cell(_type(schema))} "
                        f"| {'yes' if p.get('required') else 'no'} | {_cell(described)} |"
                    )
                out.append("")
            body = operation.get("requestBody")
            if body is not None:
                kinds, table = _body(body.get("content", {}))
                needed = "required" if body.get("required") else "optional"
                out += [f"Request body ({needed}): {kinds}", ""]
                if table:
                    out += [*table, ""]
            out += ["| status | description | body |", "|---|---|---|"]
            tables: list[tuple[str, list[str]]] = []
            for status, raw in operation.get("responses", {}).items():
                response = _response(doc, raw)
                kinds, table = _body(response.get("content", {}))
                out.append(f"| {status} | {_cell(response.get('description', ''))} | {kinds} |")
                if table:
                    tables.append((status, table))
            out.append("")
            for status, table in tables:
                out += [f"The {status} body:", "", *table, ""]
    out += ["### Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        out += [f"#### {name} {{ #{_anchor(name)[1:]} }}", ""]
        if schema.get("description"):
            out += [schema["description"], ""]
        table = _properties(schema)
        out += [*(table or [f"{_type(schema)}"]), ""]
    return "\n".join(out)


# --- the command line -----------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, argparse.ArgumentParser] = dict(action.choices)
            return choices
    return {}


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    if action.choices is not None:
        argument = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        argument = str(action.metavar or action.dest.upper())
    return ", ".join(f"`{s} {argument}`" for s in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    params = {**vars(action), "prog": parser.prog}
    if action.choices is not None:
        params["choices"] = ", ".join(str(c) for c in action.choices)
    try:
        return str(action.help) % params
    except (KeyError, TypeError, ValueError):
        return str(action.help)


def _command_section(parser: argparse.ArgumentParser, helped: str) -> list[str]:
    out = [f"### `{parser.prog}`", ""]
    if helped:
        out += [helped[0].upper() + helped[1:] + ".", ""]
    out += ["```text", _usage(parser), "```", ""]
    rows = [
        f"| {_cell(_option(a))} | {_cell(_help(parser, a))} |"
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.help != argparse.SUPPRESS
    ]
    if rows:
        out += ["| argument | meaning |", "|---|---|", *rows, ""]
    return out


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {c.dest: str(c.help or "") for c in action._choices_actions}
    return {}


def _walk(parser: argparse.ArgumentParser, helped: str) -> Iterable[list[str]]:
    yield _command_section(parser, helped)
    helps = _helps(parser)
    for name, sub in _subcommands(parser).items():
        yield from _walk(sub, helps.get(name, ""))


def cli() -> str:
    """Every ``sinkd`` subcommand (and theirs, for ``profiles`` and ``messages``), in the
    order ``sinkd --help`` lists them: usage, then every argument with its help."""
    top = build_parser(ALL)
    helps = _helps(top)
    sections: list[str] = []
    for name, sub in _subcommands(top).items():
        for lines in _walk(sub, helps.get(name, "")):
            sections += lines
    return "\n".join(sections)


def serve_options() -> str:
    """``sinkd serve``'s options, environment variables and defaults. ``markdown_table``
    escapes ``|`` inside code spans as GitHub needs (``N\\|auto``); Python-Markdown keeps the
    backslash there, and needs no escape inside a code span."""
    return CODE_SPAN.sub(lambda m: m.group(1).replace("\\|", "|"), markdown_table("serve"))


GENERATORS: dict[str, Callable[[], str]] = {
    "codes": codes,
    "filter-kinds": filter_kinds,
    "profiles": profiles,
    "openapi": openapi,
    "cli": cli,
    "serve-options": serve_options,
}


def expand(markdown: str, where: str = "page") -> str:
    """``markdown`` with every ``<!-- sinkd:NAME -->`` line replaced by that generator's
    output; an unknown NAME raises ``UnknownMarker`` naming the page."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise UnknownMarker(
                f"{where}: unknown marker <!-- sinkd:{name} -->; known: {', '.join(GENERATORS)}"
            )
        return GENERATORS[name]().rstrip("\n")

    return MARKER.sub(replace, markdown)


# --- the mkdocs hook events -----------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown, page.file.src_uri)


def on_files(files: Any, config: Any) -> Any:
    # Imported here, not at the top: mkdocs is a documentation tool (the test extras), and
    # the generators above are imported by tests that need only sinkd.
    from mkdocs.structure.files import File

    files.append(
        File.generated(
            config, BENCH_RESULTS_PAGE, content=BENCH_RESULTS.read_text(encoding="utf-8")
        )
    )
    return files
