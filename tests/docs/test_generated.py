"""The documentation site's generated reference (``docs/hooks/sinkd_docs.py``): each generator
covers everything the code declares (every finding code and filter kind, every built-in profile
with its sources, every HTTP path and method, every subcommand and option), the pages ask for
each generator, and the whole site builds with ``mkdocs build --strict`` and loads nothing from
another host."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sinkd.cli.main import ALL, build_parser
from sinkd.core.codes import catalogue
from sinkd.core.filters import REGISTRY
from sinkd.core.profiles import ProfileSet
from sinkd.web.openapi import document
from tests.support.docs import MKDOCS_YML, hook, markers, page, pages, rendered
from tests.support.paths import DOCS, README, ROOT

# The page each generator's output belongs on.
WHERE = {
    "codes": "filters.md",
    "filter-kinds": "filters.md",
    "profiles": "profiles.md",
    "openapi": "http-api.md",
    "cli": "cli.md",
    "serve-options": "cli.md",
}


def sections(markdown: str, level: str) -> dict[str, str]:
    """The text under each heading of ``level`` (e.g. ``"###"``), by heading, up to the next
    heading of that level or above."""
    found: dict[str, str] = {}
    current: str | None = None
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = re.match(r"^(#+) (.*)$", line) if not fence else None
        if heading and len(heading.group(1)) <= len(level):
            current = heading.group(2) if heading.group(1) == level else None
            if current is not None:
                found[current] = ""
            continue
        if current is not None:
            found[current] += line + "\n"
    return found


def test_every_generator_is_asked_for_once_on_its_page() -> None:
    asked = {p.name: markers(p.read_text(encoding="utf-8")) for p in pages()}
    assert sorted(hook().GENERATORS) == sorted(WHERE)
    for name, where in WHERE.items():
        assert asked.get(where, []).count(name) == 1, f"docs/{where} must say <!-- sinkd:{name} -->"
    everywhere = [name for names in asked.values() for name in names]
    assert sorted(everywhere) == sorted(WHERE)


def test_an_unknown_marker_is_an_error_naming_the_page_and_the_known_ones() -> None:
    with pytest.raises(hook().UnknownMarker, match=r"x\.md: .*sinkd:codez.*known: codes"):
        hook().expand("# X\n\n<!-- sinkd:codez -->\n", "x.md")


def test_a_marker_inside_a_sentence_is_left_alone() -> None:
    text = "Say `<!-- sinkd:codes -->` on a line of its own.\n"
    assert hook().expand(text) == text


def test_every_declared_finding_code_is_in_the_catalogue_with_its_meaning() -> None:
    shown = rendered("filters.md")
    for declared in catalogue():
        row = f"| `{declared.code.code}` | {declared.by} |"
        assert row in shown, declared.code.code


def test_every_filter_kind_is_in_the_kinds_table_with_its_codes() -> None:
    table = hook().filter_kinds()
    for kind, cls in REGISTRY.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{kind}` |"))
        assert f"| {cls.category.value} |" in row
        assert all(f"`{code.code}`" in row for code in cls.codes), kind
    # and each kind has its own section of prose on the page
    prose = sections(page("filters.md"), "###")
    assert {f"`{kind}`" for kind in REGISTRY} <= set(prose)


def test_every_builtin_profile_is_shown_with_what_it_models_and_every_source() -> None:
    by_id = sections(rendered("profiles.md"), "###")
    profiles = list(ProfileSet())
    assert len(profiles) >= 8
    for loaded in profiles:
        profile = loaded.profile
        shown = by_id.get(f"`{profile.id}`")
        assert shown is not None, f"{profile.id} is not on docs/profiles.md"
        flat = " ".join(shown.split())
        assert profile.title in flat
        cell = hook()._cell  # the table's escaping of a cell (<ip>, pipes)
        for model in profile.models:
            assert model.provenance is not None
            kind, text = model.provenance
            assert f"| {cell(model.what)} | {cell(f'{kind}: {text}')} |" in shown, model.what
        for spec in profile.filters:
            assert f"{spec.name} ({spec.kind})" in shown, f"{profile.id}: filter {spec.name}"
            if spec.provenance is not None:
                # the printout wraps long sources: compare word by word
                assert " ".join(spec.provenance[1].split()[:4]) in flat, (
                    f"{profile.id}: {spec.name}"
                )
        thresholds = profile.scoring.thresholds
        for level in ("tag", "junk", "quarantine", "reject"):
            value = getattr(thresholds, level)
            if value is not None:
                assert f"{level} at {value:g}" in shown, f"{profile.id}: {level}"


def test_every_api_path_and_method_is_documented_with_its_parameters_and_answers() -> None:
    shown = sections(rendered("http-api.md"), "###")
    doc = document()
    operations = [(p, m, op) for p, ms in doc["paths"].items() for m, op in ms.items()]
    assert len(operations) >= 20
    for path, method, operation in operations:
        section = shown.get(f"`{method.upper()} {path}`")
        assert section is not None, f"{method.upper()} {path} is not on docs/http-api.md"
        for parameter in operation.get("parameters", []):
            assert f"| `{parameter['name']}` | {parameter['in']} |" in section, (path, parameter)
        for status in operation["responses"]:
            assert re.search(rf"^\| {status} \| ", section, re.MULTILINE), (path, method, status)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        for field in (body or {}).get("schema", {}).get("properties", {}):
            assert f"| `{field}` |" in section, (path, method, field)
    schemas = sections(rendered("http-api.md"), "####")
    for name, schema in doc["components"]["schemas"].items():
        heading = next(h for h in schemas if h.startswith(f"{name} "))
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in schemas[heading], (name, field)


def _commands(
    parser: argparse.ArgumentParser,
) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *_commands(sub)]
    return found


def test_every_subcommand_is_documented_with_every_option() -> None:
    shown = sections(rendered("cli.md"), "###")
    commands = _commands(build_parser(ALL))
    progs = {c.prog for c in commands}
    assert {"sinkd serve", "sinkd check", "sinkd report", "sinkd readyz"} <= progs
    assert {"sinkd profiles show", "sinkd messages list", "sinkd messages show"} <= progs
    for command in commands:
        section = shown.get(f"`{command.prog}`")
        assert section is not None, f"{command.prog} is not on docs/cli.md"
        for action in command._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in section, f"{command.prog} {flag}"
            if not action.option_strings:
                assert f"`{action.metavar or action.dest}`" in section, command.prog


def test_the_readme_links_into_the_docs_and_shows_both_screenshots() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert {"docs/images/dashboard.png", "docs/images/report.png"} <= set(links)
    pages_linked = {link for link in links if link.endswith(".md")}
    assert len(pages_linked) >= 15
    assert [link for link in pages_linked if not (ROOT / link).is_file()] == []


def test_every_page_is_in_the_navigation() -> None:
    nav = MKDOCS_YML.read_text(encoding="utf-8")
    listed = set(re.findall(r":\s+([a-z0-9-]+\.md)\s*$", nav, flags=re.MULTILINE))
    on_disk = {str(p.relative_to(DOCS)) for p in pages()}
    assert on_disk <= listed
    assert listed - on_disk == {hook().BENCH_RESULTS_PAGE}  # generated from bench/RESULTS.md


def test_the_site_builds_strictly_and_loads_nothing_from_another_host(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    html = {p: p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    assert len(html) >= 20
    # Generated sections reached the built site.
    assert "SPF_PASS" in (site / "filters" / "index.html").read_text(encoding="utf-8")
    assert "/api/v1/openapi.json" in (site / "http-api" / "index.html").read_text(encoding="utf-8")
    assert (site / "benchmarks-results" / "index.html").is_file()
    # Offline: no stylesheet, script, font or image from another host in any page (links to
    # documents elsewhere are fine: following one is the reader's choice).
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    assert [str(p.relative_to(site)) for p, text in html.items() if remote.search(text)] == []
    assert "fonts.googleapis.com" not in "".join(html.values())
