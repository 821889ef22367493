"""Every command the documentation shows in a ```sh block (README.md and docs/**/*.md) is run or,
where nothing here can run it, checked another way chosen by its kind; each is its own test,
named ``file:line``, and a command no kind fits fails.

One-shot commands run in a temporary directory against a real ``sinkd serve`` (a subprocess on
free ports with a temporary store, shared by the module; a block that starts its own ``sinkd
serve ARGS`` gets a server started with exactly those arguments). Only the documented addresses
(127.0.0.1:2525, :8025), placeholders (``<ID>``, ``<FILE>``) and input files (``campaign.eml``
...) are made real; see tests/support/doc_commands.py for how commands are read and classified.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import re
import shlex
import smtplib
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sinkd.cli import build_parser
from sinkd.core.profiles import ProfileSet
from sinkd.services.settings import from_namespace
from tests.conftest import free_port, in_ci, require_executable
from tests.support.doc_commands import (
    CORPUS_MESSAGES,
    OUTPUT_OPTIONS,
    REPLY,
    Command,
    Kind,
    Target,
    all_commands,
    background_serve,
    ci_commands,
    ci_packages,
    classify,
    command_env,
    distinct_commands,
    env_prefix,
    normalise,
    parse_markdown,
    prepare_inputs,
    private_tmp,
    rewrite,
    run,
    serving,
    start,
    synopsis_of,
    user_variables,
)
from tests.support.paths import ROOT
from tests.support.servers import QUEUED, START_TIMEOUT, TIMEOUT

COMMANDS = all_commands()
SERVER_WIDE = re.compile(r"/api/v1/chaos\b")  # PUT: every later session of that server
DOCKER = ROOT / "docker"


# --- servers -------------------------------------------------------------------------------------


def deliver(target: Target, sample: str = "tx-order-receipt.eml") -> str:
    """Send a corpus message to a server over SMTP; the id its 250 names ("" when refused)."""
    host, port = target.smtp.rsplit(":", 1)
    raw = (CORPUS_MESSAGES / sample).read_bytes()
    with smtplib.SMTP(host, int(port), timeout=TIMEOUT) as smtp:
        smtp.ehlo("docs.test")
        try:
            smtp.mail("alice@sender.example")
            smtp.rcpt("bob@corp.example")
            code, reply = smtp.data(raw)
        except smtplib.SMTPResponseException:
            return ""
    match = QUEUED.match(reply.decode())
    return match.group(1) if code == 250 and match else ""


@dataclass
class Servers:
    """The module's ``sinkd serve`` processes, started on first use and stopped at the end."""

    root: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    started: dict[str, tuple[Target, Path]] = field(default_factory=dict)

    def get(self, key: str, serve: str | None = None) -> tuple[Target, Path]:
        """The server a documented ``sinkd serve ...`` line starts (with its working directory),
        with two messages stored in it; ``key`` tells servers with the same line apart."""
        serve = serve or key
        if key not in self.started:
            cwd = Path(tempfile.mkdtemp(prefix="server-", dir=self.root))  # a retry gets a new one
            prepare_inputs(serve, cwd)
            env = command_env(cwd, SINKD_PORT="0", SINKD_HTTP_PORT="0")
            _, target = self.stack.enter_context(serving(private_tmp(serve, cwd), cwd, env))
            ham = deliver(target)
            deliver(target, "spam-casino-bonus.eml")  # a second verdict in the list
            self.started[key] = (Target(target.smtp, target.http, ham), cwd)
        return self.started[key]

    def for_command(self, command: Command) -> tuple[Target, Path]:
        """A block that starts ``sinkd serve ARGS`` before a command has that server; a command
        that changes how the whole server answers (chaos triggers over the API) gets a server of
        its own, so the commands after it see the server the docs describe; the others share the
        plain ``sinkd serve`` the quick start runs."""
        serves = [
            background_serve(t) or t
            for t in command.previous
            if classify_text(t) is Kind.SERVE or background_serve(t)
        ]
        if serves:
            return self.get(serves[-1])
        if SERVER_WIDE.search(command.text):
            return self.get(f"sinkd serve  # alone for {command.where}", "sinkd serve")
        return self.get("sinkd serve")


def classify_text(text: str) -> Kind | None:
    return classify(Command(Path("-"), 0, text))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    found = Servers(tmp_path_factory.mktemp("doc-servers"))
    with found.stack:
        yield found


# --- the checks, one per kind ---------------------------------------------------------------------


def check_run(command: Command, servers: Servers, tmp_path: Path) -> None:
    target, cwd = servers.for_command(command)
    text = rewrite(command.text, target)
    prepare_inputs(text, cwd)
    for before in command.previous:  # the profile an import above it in its block writes
        if classify_text(before) is Kind.IMPORT and not EXPECTS_EXIT_2.search(before):
            prepare_inputs(before, cwd)
            result = run(before, cwd, command_env(cwd))
            assert result.returncode == 0, f"$ {before}\n{result.stdout}{result.stderr}"
    result = run(text, cwd, command_env(cwd, SINKD_URL=f"http://{target.http}"))
    shown = f"$ {text}\nexit {result.returncode}\n{result.stdout}{result.stderr}"
    refusals = [m for c in command.comments for m in REPLY.finditer(c) if m.group(1) >= "400"]
    if refusals:  # the docs say the server refuses it: that reply, and a failing client
        assert result.returncode != 0, shown
        for refusal in refusals:
            assert refusal.group(0) in result.stdout, shown
        return
    assert result.returncode == 0, shown
    words = shlex.split(text)
    written = [v for o, v in itertools.pairwise(words) if o in OUTPUT_OPTIONS]
    for value in written:
        assert (cwd / value).stat().st_size > 0, f"{value} is empty or missing\n{shown}"
    assert result.stdout.strip() or written, f"printed nothing\n{shown}"
    if words[0] == "curl" and result.stdout.startswith("{"):
        body = json.loads(result.stdout)
        assert "error" not in body, shown  # curl exits 0 on a 4xx: the body says
    if command.output:
        assert_output_shape(command.output, result.stdout)


PROM_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? \S+$")


def sample_shapes(lines: list[str] | tuple[str, ...]) -> set[tuple[str, frozenset[str]]]:
    shapes = set()
    for line in lines:
        if match := PROM_SAMPLE.match(line.strip()):
            labels = re.findall(r'(\w+)="', match["labels"] or "")
            shapes.add((match["name"], frozenset(labels)))
    return shapes


VARYING = [  # what differs between the docs' run and this one: ids, times, numbers
    (re.compile(r"\b[0-9A-F]{12,40}\b"), "ID"),
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z?"), "TIME"),
    (re.compile(r"\d+(?:\.\d+)?"), "N"),
]


def masked(line: str) -> str:
    for pattern, name in VARYING:
        line = pattern.sub(name, line)
    return " ".join(line.split())


def assert_output_shape(shown: tuple[str, ...], actual: str) -> None:
    """Output the docs show: comment lines (Prometheus ``# HELP``/``# TYPE``) exactly, samples by
    metric name and label names (values depend on what was sent), any other line with ids, times
    and numbers masked; ``...`` elides."""
    lines = actual.splitlines()
    for line in (s.strip() for s in shown):
        if line == "..." or not line:
            continue
        if line.startswith("#"):
            assert line in lines, f"shown {line!r}, not printed:\n{actual}"
        elif sample_shapes([line]):
            assert sample_shapes([line]) <= sample_shapes(lines), f"{line!r} not in\n{actual}"
        else:
            assert masked(line) in map(masked, lines), f"{line!r}: no such line in\n{actual}"


EXPECTS_EXIT_2 = re.compile(r"--strict\b")


def check_import(command: Command, tmp_path: Path) -> None:
    """``sinkd profiles import PRODUCT FILE… -o OUT``: run in a directory where the repository's
    ``docs/`` (its example configurations) is linked in; exit 0, or 2 where a comment says so
    (``--strict`` with something untranslated); a profile written with ``-o`` loads."""
    prepare_inputs(command.text, tmp_path)
    result = run(command.text, tmp_path, command_env(tmp_path))
    shown = f"$ {command.text}\nexit {result.returncode}\n{result.stdout}{result.stderr}"
    said = " ".join(command.comments)
    if "exit 2" in said:
        assert result.returncode == 2, shown
        assert "nothing written" in result.stderr, shown
        return
    assert result.returncode == 0, shown
    words = shlex.split(command.text)
    if "-o" in words:
        written = tmp_path / words[words.index("-o") + 1]
        ProfileSet().load(written)  # raises, naming the field, if it does not load
    else:
        assert result.stdout.startswith("# Imported by"), shown


def check_serve(command: Command, tmp_path: Path) -> None:
    prepare_inputs(command.text, tmp_path)
    env = command_env(tmp_path, SINKD_PORT="0", SINKD_HTTP_PORT="0")
    with serving(private_tmp(command.text, tmp_path), tmp_path, env) as (running, _):
        pass
    assert running.process.returncode == 0, running.output()


def check_stream(command: Command, servers: Servers, tmp_path: Path) -> None:
    target, cwd = servers.for_command(command)
    running = start(rewrite(command.text, target), cwd, command_env(cwd), stderr=False)
    try:
        running.wait_for(re.compile(r"^: subscribed"), TIMEOUT)  # the stream is in place
        message_id = deliver(target)
        running.wait_for(re.compile(rf"^data: .*{message_id}"), TIMEOUT)
    finally:
        running.stop()


def parser_for(words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of ``sinkd WORD WORD ...``: the deepest subcommand named."""
    parser = build_parser()
    for word in words[1:]:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


def check_synopsis(command: Command, tmp_path: Path) -> None:
    synopsis = synopsis_of(command)
    assert synopsis, f"{command.where}: a line of options with no sinkd synopsis above it"
    parser = parser_for(synopsis.split())
    assert parser.prog != build_parser().prog, f"{command.where}: no sinkd subcommand named"
    known = {option for action in parser._actions for option in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command.text))
    assert named, f"{command.where}: a synopsis that names no option"
    assert named <= known, f"{command.where}: {sorted(named - known)} not options of {parser.prog}"


def check_background(command: Command, tmp_path: Path) -> None:
    """``sinkd serve ... & sinkd readyz --wait ... && pytest``: the server starts in the background,
    readyz waits for it, and pytest runs a test of the user's (written here) against it. A line
    that only starts the server (``sinkd serve ... &``) is a serve line (the commands after it in
    its block run against a server started with its arguments)."""
    serve = background_serve(command.text)
    if serve is not None:
        check_serve(dataclasses.replace(command, text=serve), tmp_path)
        return
    smtp, http = free_port(), free_port()
    text = rewrite(private_tmp(command.text, tmp_path), Target("", "", ""))
    (tmp_path / "test_reaches_sinkd.py").write_text(
        "import os, smtplib, urllib.request\n\n\n"
        "def test_sinkd_answers_smtp_and_http():\n"
        "    with urllib.request.urlopen(os.environ['SINKD_URL'] + '/readyz') as response:\n"
        "        assert response.status == 200\n"
        "    with smtplib.SMTP('127.0.0.1', int(os.environ['SINKD_PORT'])) as smtp:\n"
        "        assert smtp.ehlo()[0] == 250\n",
        encoding="utf-8",
    )
    env = command_env(
        tmp_path,
        SINKD_PORT=str(smtp),
        SINKD_HTTP_PORT=str(http),
        SINKD_URL=f"http://127.0.0.1:{http}",  # where readyz and the test find the server
    )
    running = start(text, tmp_path, env)
    try:
        code = running.process.wait(timeout=START_TIMEOUT * 2)
        summary = running.wait_for(re.compile(r"^=+ (.+) in [\d.]+s =+$"), TIMEOUT)  # pytest's
    finally:
        running.stop()  # the backgrounded server is in the same process group
    assert code == 0 and summary.group(1) == "1 passed", running.output()
    for path in re.findall(r"/tmp/(\S+)", command.text):  # the store it named, made
        assert (tmp_path / path).exists(), path


def check_quickstart(command: Command, tmp_path: Path) -> None:
    """The quick start's venv, install and test commands are the ones .ci/run runs (a nested
    run of the whole suite is not possible); ``sinkd serve`` in it is started and stopped."""
    ci = ci_commands()
    for part in (p.strip() for p in command.text.split("&&")):
        if part.startswith("sinkd serve"):
            check_serve(Command(command.path, command.line, part), tmp_path)
        elif part == "pip install .":
            # Not in .ci/run (it installs the same project editable, with the test extras), so:
            # the image installs exactly this way, and this checkout is an installed `sinkd`.
            assert "pip install -e .[test]" in {p.replace("'", "") for p in ci}
            # The image adds the postgresql extra ("./[postgresql]": hadolint's DL3013 takes a
            # path with a slash for a local package, ".[postgresql]" for an unpinned name).
            install = r"pip install [^&]*\s\"?\./?(\[[\w,-]+\])?\"?(\s|$)"
            assert re.search(install, (DOCKER / "Dockerfile").read_text())
            assert (Path(sys.executable).parent / "sinkd").exists()
        else:
            assert normalise(part) in ci, f"{command.where}: {part!r} is not what .ci/run runs"


def check_apt(command: Command, tmp_path: Path) -> None:
    documented = set(command.text.split()[command.text.split().index("install") + 1 :])
    ci = ci_packages()
    assert documented <= ci, f"{sorted(documented - ci)} are not installed by .ci/run"
    # npm only fetches the public corpus in CI; every other package .ci/run installs is named.
    assert ci - documented <= {"npm"}, f"{sorted(ci - documented)} missing from {command.where}"


def check_bench(command: Command, tmp_path: Path) -> None:
    """bench/peers.py runs for minutes: its options are ones its own parser offers, and its
    --help runs."""
    words = shlex.split(command.text)
    result = subprocess.run(
        [sys.executable, words[1], "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=START_TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    offered = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))
    for word in words[2:]:
        assert not word.startswith("-") or word in offered, f"{word} is not a bench option"


def check_mkdocs(command: Command, tmp_path: Path) -> None:
    """``mkdocs build`` is the build .ci/run makes (strict, so a broken link or generator fails
    there); ``mkdocs serve`` starts on a free port (the documented 127.0.0.1:8000 may be taken
    here), serves the home page and is stopped."""
    words = shlex.split(command.text)
    if words[1] == "build":
        assert normalise(command.text) in ci_commands(), f"{command.text!r}: not what .ci/run runs"
        return
    assert words[1:] == ["serve"], f"{command.where}: a mkdocs command the docs check"
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        reason = "mkdocs is not installed: pip install -e '.[test]' installs it"
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)
    address = f"127.0.0.1:{free_port()}"
    running = start(f"{command.text} --dev-addr {address}", ROOT, command_env(tmp_path))
    try:
        running.wait_for(re.compile(r"Serving on http://"), START_TIMEOUT * 2)  # built first
        with urllib.request.urlopen(f"http://{address}/", timeout=TIMEOUT) as response:
            assert response.status == 200 and b"sinkd" in response.read()
    finally:
        running.stop()


# --- docker: no engine here -----------------------------------------------------------------------


def built_images() -> set[str]:
    """Tags the docs build with ``docker build -t``."""
    tags = set()
    for command in COMMANDS:
        words = shlex.split(command.text)
        if words[:2] == ["docker", "build"] and "-t" in words:
            tags.add(words[words.index("-t") + 1])
    return tags


def sinkd_reads(variable: str) -> bool:
    """An environment variable ``sinkd serve`` reads (its help names each: "env NAME")."""
    serve = parser_for(["sinkd", "serve"])
    return f"env {variable}" in " ".join(serve.format_help().split())


def check_sinkd_argv(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SINKD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        assert sinkd_reads(name), f"{name}: not a variable sinkd serve reads"
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(argv)  # an unknown option or a bad value exits
    if args.command == "serve":
        from_namespace(args)


def check_docker(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variables, text = env_prefix(command.text)
    words = shlex.split(text)
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    if words[1] == "build":
        assert (ROOT / words[words.index("-f") + 1]).is_file()
        assert (ROOT / words[-1]).is_dir(), "the build context"
    elif words[1] == "run":
        rest = words[2:]
        env: dict[str, str] = {}
        mounts: list[str] = []
        published: list[str] = []
        while rest[0].startswith("-"):
            option = rest.pop(0)
            if option in ("-e", "-v", "-p"):
                value = rest.pop(0)
                if option == "-e":
                    name, _, env[name] = value.partition("=")
                else:
                    (mounts if option == "-v" else published).append(value)
            else:
                assert option == "--rm", f"{option}: not a docker run option the docs check"
        image, argv = rest[0], rest[1:] or ["serve"]  # the image's CMD
        assert image in built_images(), f"image {image} is not the one the docs build"
        exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
        assert exposed
        for spec in published:
            assert spec.rsplit(":", 1)[1] in exposed.group(1).split(), spec
        for spec in mounts:
            inside = spec.split(":")[1]
            assert inside in ("/data", "/etc/sinkd/profiles") or inside in argv, spec
        check_sinkd_argv(argv, env, monkeypatch)
    elif words[1] == "compose":
        compose_file = ROOT / words[words.index("-f") + 1]
        compose = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
        services = compose["services"]
        if "--profile" in words:
            profile = words[words.index("--profile") + 1]
            assert any(profile in s.get("profiles", []) for s in services.values()), profile
        for name, value in variables.items():  # interpolated by compose: ${NAME:-default}
            assert "${" + name in compose_file.read_text(encoding="utf-8"), name
            if name == "SINKD_PROFILE":
                ProfileSet([]).resolve(value)
        action = [w for w in words[2:] if w in ("up", "down", "cp")]
        assert action, f"{text}: a compose command the docs check (up, down, cp)"
        if action[0] == "cp":
            source = words[words.index("cp") + 1]
            service, _, path = source.partition(":")
            assert service in services, source
            volumes = [v.split(":")[1] for v in services[service].get("volumes", [])]
            assert any(path.startswith(v + "/") for v in volumes), source
    else:
        pytest.fail(f"{command.where}: docker {words[1]} is not a docker command the docs check")


# --- the tests ------------------------------------------------------------------------------------

Check = Callable[..., None]
CHECKS: dict[Kind, Check] = {
    Kind.SERVE: check_serve,
    Kind.SYNOPSIS: check_synopsis,
    Kind.BACKGROUND: check_background,
    Kind.QUICKSTART: check_quickstart,
    Kind.APT: check_apt,
    Kind.BENCH: check_bench,
    Kind.MKDOCS: check_mkdocs,
    Kind.IMPORT: check_import,
}
NEEDS = {"swaks": ("swaks", "swaks"), "curl": ("curl", "curl"), "jq": ("jq", "jq")}


@pytest.mark.parametrize(
    "command", [pytest.param(c, id="=".join(places)) for c, places in distinct_commands(COMMANDS)]
)
def test_the_documented_command_works(
    command: Command, servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = classify(command)
    if kind is None:
        pytest.fail(
            f"{command.where}: no test can place {command.text!r}: make it a command sinkd's "
            "tests can run or a kind tests/support/doc_commands.py knows (not a ```sh block?)"
        )
    for word in re.findall(r"(?:^|\|\s*|&&\s*)(\w+)", command.text):
        if word in NEEDS and kind in (Kind.RUN, Kind.STREAM):
            require_executable(*NEEDS[word])
    if kind is Kind.RUN:
        check_run(command, servers, tmp_path)
    elif kind is Kind.STREAM:
        check_stream(command, servers, tmp_path)
    elif kind is Kind.DOCKER:
        check_docker(command, tmp_path, monkeypatch)
    else:
        CHECKS[kind](command, tmp_path)


def test_the_docs_are_found_and_their_commands_read() -> None:
    kinds = {classify(command) for command in COMMANDS}
    assert len(COMMANDS) > 40  # README.md alone shows that many today
    assert {Kind.RUN, Kind.SERVE, Kind.DOCKER} <= kinds


# --- the machinery can fail -----------------------------------------------------------------------


def test_a_command_shown_twice_alike_is_one_check_naming_both_places() -> None:
    markdown = "```sh\nsinkd messages list\n```\n\n```sh\nsinkd messages list\n```\n"
    commands = parse_markdown(markdown, Path("x.md"))
    assert distinct_commands(commands) == [(commands[0], ("x.md:2", "x.md:6"))]
    other = parse_markdown("```sh\n# 550 5.7.1 refused\nsinkd messages list\n```\n", Path("y.md"))
    assert len(distinct_commands([*commands, *other])) == 2  # what it says of it differs


def test_a_command_no_kind_fits_is_not_placed() -> None:
    [command] = parse_markdown("```sh\nmake docs\n```\n", Path("x.md"))
    assert classify(command) is None


def test_commands_are_read_with_continuations_comments_prompts_and_output() -> None:
    markdown = (
        "text\n```sh\n# what it does\nsinkd check a.eml \\\n    --json   # as JSON\n"
        "```\n```yaml\nnot: a command\n```\n```sh\n$ curl -s http://127.0.0.1:8025/x\n"
        "# HELP x y\nx 1\n```\n"
    )
    first, second = parse_markdown(markdown, Path("page.md"))
    assert (first.where, first.text) == ("page.md:4", "sinkd check a.eml --json")
    assert first.comments == ("what it does", "as JSON")
    assert (second.where, second.text, second.output) == (
        "page.md:11",
        "curl -s http://127.0.0.1:8025/x",
        ("# HELP x y", "x 1"),
    )


def test_addresses_placeholders_and_ids_are_rewritten_and_nothing_else() -> None:
    target = Target("127.0.0.1:40001", "127.0.0.1:40002", "1A2B3C4D5E6F70")
    text = (
        "curl http://127.0.0.1:8025/api/v1/messages/1A219ECD5612A3F0C1/evaluate "
        "--server localhost:2525 <ID> x.eml … --port 2525"
    )
    assert rewrite(text, target) == (
        "curl http://127.0.0.1:40002/api/v1/messages/1A2B3C4D5E6F70/evaluate "
        "--server 127.0.0.1:40001 1A2B3C4D5E6F70 x.eml --port 2525"
    )


def test_a_variable_the_user_sets_gets_a_value_and_the_shells_own_stay() -> None:
    text = 'sinkd serve --relay-password "$RELAY_PASSWORD" -v "$PWD/x:/x" ${TOKEN}'
    variables = user_variables(text)
    assert variables == {"RELAY_PASSWORD": "docs-relay-password", "TOKEN": "docs-token"}
    result = run('test "$RELAY_PASSWORD" = docs-relay-password', ROOT, command_env(ROOT))
    assert result.returncode == 0


def test_a_serve_line_with_an_unknown_flag_fails_its_check(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="no line matching"):
        check_serve(Command(Path("x.md"), 1, "sinkd serve --no-such-flag"), tmp_path)


def test_a_synopsis_naming_an_unknown_option_fails_its_check(tmp_path: Path) -> None:
    command = Command(Path("x.md"), 1, "sinkd check FILE [--profile P] [--no-such-option]")
    with pytest.raises(AssertionError, match="no-such-option"):
        check_synopsis(command, tmp_path)


def test_shown_output_of_another_shape_fails_its_check() -> None:
    printed = '# HELP a_total A\n# TYPE a_total counter\na_total{code="X"} 1.0\n'
    assert_output_shape(("# HELP a_total A", 'a_total{code="Y"} 3.0', "..."), printed)
    with pytest.raises(AssertionError):
        assert_output_shape(('a_total{profile="x"} 1.0',), printed)
    with pytest.raises(AssertionError):
        assert_output_shape(("# HELP b_total B",), printed)
    listed = "1A24B1FA1D4F846122  2026-12-06T11:31:33.974Z  accept  data 250 2.0.0  'x'\n"
    assert_output_shape(
        ("1A219ECD5612A3F0C1  2024-01-01T10:00:00.000Z  accept  data 250 2.0.0  'x'",), listed
    )
    with pytest.raises(AssertionError):
        assert_output_shape(
            ("1A219ECD5612A3F0C1  2024-01-01T10:00:00.000Z  reject  data 250 2.0.0  'x'",), listed
        )
