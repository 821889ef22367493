"""The shell commands the documentation shows, found and classified for tests/docs/test_commands.py.

Owns reading ```sh fenced blocks out of README.md and docs/**/*.md (one logical command per line,
``\\`` continuations joined, ``# comments`` dropped but kept beside the command as what the docs
say about it, ``$ `` prompts followed by shown output), placing each command in a ``Kind`` (how a
test can check it here), rewriting the documented addresses and placeholders to a running
server's, writing the input files a command names, and running a ``sinkd serve`` process until
its readiness line. It never decides whether a command passes: the test module does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.servers import READY, START_TIMEOUT, TIMEOUT

DOCS = ROOT / "docs"
CORPUS_MESSAGES = ROOT / "tests" / "corpus" / "messages"
CI_RUN = ROOT / ".ci" / "run"

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")
# A message id written out in an API path where <ID> was meant (README's evaluate example):
# sinkd's ids are 12-40 upper-case hex digits (tests/support/servers.py QUEUED).
LITERAL_ID = re.compile(r"(?<=/messages/)[0-9A-F]{12,40}(?=[/'\"\s]|$)")
SMTP_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):2525\b")
HTTP_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):8025\b")
# A reply the docs say a command gets, in a comment above it: "550 5.7.23" (RFC 3463 codes).
REPLY = re.compile(r"\b([245]\d\d) ([245]\.\d{1,3}\.\d{1,3})\b")


def doc_files() -> list[Path]:
    """README.md and every Markdown page of the documentation site, in a stable order."""
    pages = sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []
    return [ROOT / "README.md", *pages]


@dataclass(frozen=True)
class Command:
    """One logical command of a ```sh block."""

    path: Path  # relative to the repository
    line: int  # 1-based line of its first physical line
    text: str  # continuations joined, comment and ``$ `` prompt dropped
    comments: tuple[str, ...] = ()  # comment lines directly above it and its trailing comment
    output: tuple[str, ...] = ()  # the lines the docs show it printing (after a ``$ `` prompt)
    block: int = 0  # line of the block's opening fence
    previous: tuple[str, ...] = ()  # the commands before it in the same block

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment): a ``#`` starting a word outside quotes."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def commands_in(path: Path) -> list[Command]:
    """Every command of the ```sh blocks of one Markdown file."""
    return parse_markdown(path.read_text(encoding="utf-8"), path.relative_to(ROOT))


def parse_markdown(markdown: str, relative: Path) -> list[Command]:
    """Every command of the ```sh blocks of a Markdown text (``relative`` names it)."""
    found: list[Command] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        index += 1
        if not fence:
            continue
        marker, language = fence.group(2), fence.group(3)
        block_line = index
        body: list[tuple[int, str]] = []
        while index < len(lines) and not lines[index].strip().startswith(marker):
            body.append((index + 1, lines[index]))
            index += 1
        index += 1  # the closing fence
        if language == "sh":
            found.extend(_block_commands(relative, block_line, body))
    return found


def _block_commands(path: Path, block: int, body: list[tuple[int, str]]) -> list[Command]:
    prompted = any(text.lstrip().startswith("$ ") for _, text in body)
    result: list[Command] = []
    comments: list[str] = []
    pending: tuple[int, str, list[str]] | None = None  # a command continued with "\"
    for number, raw in body:
        text = raw.strip()
        if pending is not None:
            code, comment = split_comment(text)
            start, joined, notes = pending
            joined += " " + code.removesuffix("\\").strip()
            notes += [comment] if comment else []
            if code.endswith("\\"):
                pending = (start, joined, notes)
            else:
                pending = None
                result.append(_command(path, block, start, joined, notes, result))
            continue
        if prompted and not text.startswith("$ "):
            if result:  # shown output of the prompted command above
                last = result[-1]
                result[-1] = dataclasses.replace(last, output=(*last.output, raw))
            continue
        text = text.removeprefix("$ ")
        if not text:
            comments = []
            continue
        code, comment = split_comment(text)
        if not code:
            comments.append(comment)
            continue
        notes = [*comments, *([comment] if comment else [])]
        comments = []
        if code.endswith("\\"):
            pending = (number, code.removesuffix("\\").strip(), notes)
        else:
            result.append(_command(path, block, number, code, notes, result))
    if pending is not None:  # a block ending in "\": the command as far as it goes
        start, joined, notes = pending
        result.append(_command(path, block, start, joined, notes, result))
    return result


def _command(
    path: Path, block: int, line: int, text: str, notes: list[str], before: list[Command]
) -> Command:
    return Command(
        path=path,
        line=line,
        text=text,
        comments=tuple(notes),
        block=block,
        previous=tuple(c.text for c in before),
    )


def all_commands() -> list[Command]:
    return [command for path in doc_files() for command in commands_in(path)]


def distinct_commands(commands: list[Command]) -> list[tuple[Command, tuple[str, ...]]]:
    """Each check once, with every place it is shown: the README repeats the quick start and
    the examples of docs/getting-started.md word for word. The same text, comments, shown output
    and commands before it in its block make the same check, run once (the first place names
    it in a failure)."""
    places: dict[tuple[object, ...], list[Command]] = {}
    for command in commands:
        key = (command.text, command.comments, command.output, command.previous)
        places.setdefault(key, []).append(command)
    return [(same[0], tuple(c.where for c in same)) for same in places.values()]


# --- kinds ---------------------------------------------------------------------------------------


class Kind(enum.Enum):
    """How a documented command is checked here; every command must have one."""

    RUN = "run against a running sinkd serve, exit status (and shown output) checked"
    SERVE = "sinkd serve: started, readiness line awaited, stopped"
    STREAM = "an endless stream (curl -N): read until an event arrives, then stopped"
    SYNOPSIS = "a usage synopsis: every option it names is one of that subcommand's"
    BACKGROUND = "a server in the background, readyz, then pytest: run with a small test file"
    QUICKSTART = "the quick start: the same venv, install and test commands .ci/run runs"
    APT = "Debian packages: the ones .ci/run installs"
    DOCKER = "docker / docker compose: no engine here; files, image and sinkd arguments checked"
    BENCH = "bench/peers.py runs for minutes: its options parse with its own parser"
    MKDOCS = "the docs site: the build is the one .ci/run makes; serve is started and stopped"
    IMPORT = (
        "sinkd profiles import: run for real on the repository's example files, the exit "
        "status the docs give (0, or 2 where they say so) and the written profile loaded"
    )


CLIENTS = ("sinkd", "curl", "swaks", "jq")


def classify(command: Command) -> Kind | None:
    """The kind of a command, or None: a command no test can place (which fails)."""
    # Leading NAME=value assignments set the environment of the command that follows.
    text = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", command.text)
    word = text.split()[0]
    if re.match(r"^(sudo )?apt(-get)? install ", text):
        return Kind.APT
    if word == "docker":
        return Kind.DOCKER
    if re.match(r"^python3? bench/\S+\.py\b", text):
        return Kind.BENCH
    if word == "mkdocs":
        return Kind.MKDOCS
    if text.startswith("python3 -m venv "):
        return Kind.QUICKSTART
    if re.search(r"\bsinkd serve\b[^&|;]*&(?!&)", text):
        return Kind.BACKGROUND
    if word == "sinkd" and re.search(r"\s\[", text):
        return Kind.SYNOPSIS
    if word.startswith("[") and synopsis_of(command):  # a synopsis's next line, unescaped
        return Kind.SYNOPSIS
    if text.startswith("sinkd serve"):
        return Kind.SERVE
    if text.startswith("sinkd profiles import "):
        return Kind.IMPORT
    if word == "curl" and "-N" in text.split():
        return Kind.STREAM
    if word in CLIENTS:
        return Kind.RUN
    return None


def synopsis_of(command: Command) -> str | None:
    """The ``sinkd ...`` synopsis a command line belongs to: itself, or for a line of bracketed
    options only, the synopsis above it in the same block."""
    if command.text.startswith("sinkd "):
        return command.text
    for text in reversed(command.previous):
        if text.startswith("sinkd ") and re.search(r"\s\[", text):
            return text
        if not text.startswith("["):
            return None
    return None


def env_prefix(text: str) -> tuple[dict[str, str], str]:
    """``NAME=value ... command`` -> ({NAME: value}, command)."""
    assignments: dict[str, str] = {}
    while match := re.match(r"^([A-Z_][A-Z0-9_]*)=(\S*)\s+", text):
        assignments[match.group(1)] = match.group(2)
        text = text[match.end() :]
    return assignments, text


# --- rewriting and inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the documented addresses point in this run, and a stored message's id."""

    smtp: str  # host:port
    http: str  # host:port
    message_id: str


def rewrite(text: str, target: Target) -> str:
    """The documented addresses to the server's real ones, placeholders to real values; nothing
    else changes (the command is what the docs say)."""
    text = SMTP_ADDRESS.sub(target.smtp, text)
    text = HTTP_ADDRESS.sub(target.http, text)

    def message_id(_: re.Match[str]) -> str:
        assert target.message_id, f"no message was stored to stand for the id in {text!r}"
        return target.message_id

    text = LITERAL_ID.sub(message_id, text)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ID":
            return message_id(match)
        if name == "FILE":
            return "message.eml"
        raise AssertionError(f"no value for the placeholder <{name}>")

    # "…" after arguments means "more of the same": the command runs with the ones shown.
    return PLACEHOLDER.sub(value, text).replace(" …", "")


def private_tmp(text: str, directory: Path) -> str:
    """A documented ``/tmp/...`` path moved into ``directory``: runs beside each other (other
    engineers' tests on one machine) must not share a store."""
    return text.replace("/tmp/", f"{directory}/")


def background_serve(text: str) -> str | None:
    """``sinkd serve ARGS`` of a line that only starts it in the background (``... &``)."""
    match = re.fullmatch(r"(sinkd serve\b[^&|;]*?)\s*&", text.strip())
    return match.group(1) if match else None


# The sample a documented file name gets: a newsletter where the docs judge a campaign, a
# transactional message where they check templates that must pass (--fail-on quarantine).
SAMPLES = {
    "campaign.eml": "nl-product-launch.eml",
    "newsletter.eml": "nl-weekly-digest.eml",
    "a.eml": "nl-product-launch.eml",
    "b.eml": "spam-casino-bonus.eml",
}
TEMPLATES = ("tx-order-receipt.eml", "tx-password-reset.eml")
DEFAULT_SAMPLE = "tx-order-receipt.eml"
OUTPUT_OPTIONS = {"--write-filtered", "--junit-xml", "--html", "--output"}


def prepare_inputs(text: str, cwd: Path) -> None:
    """Write the files a command reads, under the names the docs give them, into ``cwd``:
    ``*.eml`` from tests/corpus, a templates directory, a profile to validate. The repository's
    ``profiles/`` is linked in (the docs run from a checkout: ``--dns-zone profiles/dns/...``)."""
    with contextlib.suppress(FileExistsError):
        (cwd / "profiles").symlink_to(ROOT / "profiles", target_is_directory=True)
    with contextlib.suppress(FileExistsError):  # the example configurations an import reads
        (cwd / "docs").symlink_to(ROOT / "docs", target_is_directory=True)
    with contextlib.suppress(FileExistsError):  # the golden corpus a diff --corpus reads
        (cwd / "tests").mkdir()
        (cwd / "tests" / "corpus").symlink_to(ROOT / "tests" / "corpus", target_is_directory=True)
    words = shlex.split(text, comments=True)
    for before, word in zip(["", *words], words, strict=False):
        if before in OUTPUT_OPTIONS or word.startswith("-"):
            continue
        name = word.rstrip("/")
        if name.startswith("templates") or name == "/templates":
            templates = cwd / "templates"
            templates.mkdir(exist_ok=True)
            for sample in TEMPLATES:
                shutil.copyfile(CORPUS_MESSAGES / sample, templates / sample)
        elif name.endswith(".eml") and "/" not in name and not (cwd / name).exists():
            shutil.copyfile(CORPUS_MESSAGES / SAMPLES.get(name, DEFAULT_SAMPLE), cwd / name)
        elif name.endswith((".yaml", ".yml")) and "/" not in name and "import" in words:
            continue  # the profile an import writes
        elif name.endswith((".yaml", ".yml")) and "/" not in name and "validate" in words:
            shutil.copyfile(ROOT / "profiles" / "typical-corporate.yaml", cwd / name)


# --- processes ------------------------------------------------------------------------------------


def command_env(cwd: Path, **extra: str) -> dict[str, str]:
    """The environment documented commands run in: no SINKD_* from the caller, so the store is
    the documented default under ``$XDG_DATA_HOME``, which points into ``cwd``; the HTTP API on;
    this virtualenv's ``sinkd`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["XDG_DATA_HOME"] = str(cwd / "xdg-data")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def user_variables(text: str) -> dict[str, str]:
    """A value for each shell variable a command reads that the user is meant to have set
    (``--relay-password "$RELAY_PASSWORD"``); the shell's own (``$PWD``, ``$HOME``) stay."""
    names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text)) - {"PWD", "HOME", "PATH", "USER"}
    return {name: f"docs-{name.lower().replace('_', '-')}" for name in sorted(names)}


@dataclass
class Running:
    """A process whose output lines are drained by a thread; waits are on events, never sleeps."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    ended: bool = False

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first output line matching ``pattern``; fails when the process ends or the time is
        up first, with what it printed."""
        with self.changed:
            found: list[re.Match[str]] = []

            def seen() -> bool:
                found[:] = [m for m in map(pattern.search, self.lines) if m]
                return bool(found) or self.ended

            self.changed.wait_for(seen, timeout)
            assert found, f"no line matching {pattern.pattern!r}: {self.output()}"
            return found[0]

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM to its process group, then wait; SIGKILL if it does not end in time."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(timeout=TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # what it left in the background
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def start(text: str, cwd: Path, env: dict[str, str], *, stderr: bool = True) -> Running:
    """Run a shell command line in its own process group, its output drained: stdout and stderr
    merged, or stdout alone (``stderr=False``: curl's progress meter would cut into the lines)."""
    process = subprocess.Popen(
        ["bash", "-c", text],
        cwd=cwd,
        env=user_variables(text) | env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    running = Running(process)
    threading.Thread(target=running._drain, daemon=True).start()
    return running


@contextlib.contextmanager
def serving(text: str, cwd: Path, env: dict[str, str]) -> Iterator[tuple[Running, Target]]:
    """A documented ``sinkd serve ...`` line, run until its readiness line; stopped after."""
    running = start(text, cwd, env)
    try:
        ready = running.wait_for(READY)
        smtp = f"{ready['host']}:{ready['port']}"
        assert ready["http_host"], f"{text}: no HTTP API in {ready.group(0)!r}"
        yield running, Target(smtp, f"{ready['http_host']}:{ready['http_port']}", "")
    finally:
        running.stop()


def run(text: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A one-shot command in the shell (pipes and ``&&`` as the docs write them)."""
    return subprocess.run(
        ["bash", "-c", text],
        cwd=cwd,
        env=user_variables(text) | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=START_TIMEOUT,
        check=False,
    )


# --- .ci/run -----------------------------------------------------------------------------------


def ci_packages() -> set[str]:
    """The Debian packages .ci/run installs (its ``need+=(...)`` lines)."""
    return set(re.findall(r"need\+=\(([\w.+-]+)\)", CI_RUN.read_text(encoding="utf-8")))


def ci_commands() -> set[str]:
    """.ci/run's command lines, normalised (see ``normalise``)."""
    found = set()
    for line in CI_RUN.read_text(encoding="utf-8").splitlines():
        code, _ = split_comment(line.strip())
        if code:
            found.add(normalise(code))
    return found


def normalise(command: str) -> str:
    """A command line compared with .ci/run's: ``-q`` and a ``--site-dir DIR`` (CI builds the site
    into a temporary directory) dropped, ``python -m pytest`` as ``pytest``."""
    try:
        words = [w for w in shlex.split(command) if w != "-q"]
    except ValueError:  # not one simple command (an unbalanced quote, a trailing "\\")
        return command
    if "--site-dir" in words[:-1]:
        at = words.index("--site-dir")
        del words[at : at + 2]
    if words[:3] == ["python", "-m", "pytest"]:
        words = words[2:]
    return shlex.join(words)
