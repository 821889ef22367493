"""Start-up time of the ``sinkd`` command: ``--help``, ``check`` of one file and of 20 files.

Each command runs as a fresh process (``python -m sinkd ...``, every ``SINKD_*`` variable
cleared) N times; the table gives the median wall time, the median CPU time of the process
(user + system, from ``getrusage``: what the process itself cost, less moved by other load on
the machine than wall time) and the ratio of the wall time to ``python -c pass`` run the same
way, with PASS/FAIL against the issue's targets (``--help`` <= 0.2 s, ``check one.eml`` <= 0.4 s,
wall). The message is 5 lines of plain text judged by the default profile.

``--rev REV`` also measures the package as it is at a git revision (``git archive`` into a
temporary directory put first on ``PYTHONPATH``), interleaved with the working tree's runs so
both see the same load: before/after figures from one run.

Bytecode: with ``PYTHONDONTWRITEBYTECODE`` set (as on the shared machine) an editable install
never gets ``.pyc`` files and every run compiles sinkd's sources again, which an installed
wheel never does. The bench compiles each measured tree first (``compileall``) unless
``--no-compile`` is given, so the figures are those of an installed sinkd.

    python bench/startup.py                      # this tree, 15 runs per command
    python bench/startup.py --rev b0cefe7 -n 21  # before (b0cefe7) and after, interleaved
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "From: a@example.com\nTo: b@example.com\nSubject: hi\n\nhello\n"
TARGETS = {"sinkd --help": 0.2, "sinkd check one.eml": 0.4}


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` in ``cwd``: not in the checkout, whose
    ``sinkd`` would shadow ``--rev``'s (``-c`` puts the working directory first)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A run that failed did not do the work measured: stop rather than print its time. 3, 4
    # and 5 are check's verdicts (quarantine, reject, not fully judged), not failures.
    if done.returncode not in (0, 3, 4, 5):
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def tree_at(rev: str, into: Path) -> Path:
    """The ``sinkd`` package and the built-in ``profiles`` beside it (where a checkout keeps
    them) as they are at ``rev``, unpacked under ``into``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "sinkd", "profiles"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into


def environment(pythonpath: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    env["SINKD_DB"] = os.devnull  # nothing a command measured here opens
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="runs per command (median)")
    parser.add_argument("--rev", help="also measure the package at this git revision")
    parser.add_argument(
        "--no-compile", action="store_true", help="do not compile the sources to bytecode first"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sinkd-startup-") as scratch:
        work = Path(scratch)
        one = work / "one.eml"
        one.write_text(MESSAGE)
        many = work / "twenty"
        many.mkdir()
        for i in range(20):
            (many / f"{i:02}.eml").write_text(MESSAGE.replace("hi", f"hi {i}"))

        trees: dict[str, Path | None] = {"this tree": None}
        if args.rev:
            trees[args.rev] = tree_at(args.rev, work / "before")
        if not args.no_compile:
            for path in (ROOT / "sinkd", *(p / "sinkd" for p in trees.values() if p)):
                compileall.compile_dir(path, quiet=1)

        python = [sys.executable]
        commands = {
            "python -c pass": [*python, "-c", "pass"],
            "sinkd --help": [*python, "-m", "sinkd", "--help"],
            "sinkd check one.eml": [*python, "-m", "sinkd", "check", str(one)],
            "sinkd check 20 files": [*python, "-m", "sinkd", "check", str(many)],
        }
        samples = {(t, c): Samples() for t in trees for c in commands}
        for _ in range(args.runs):  # interleaved: every tree and command sees the same load
            for tree, tree_path in trees.items():
                env = environment(tree_path)
                for command, argv in commands.items():
                    wall, cpu = run_once(argv, env, work)
                    samples[tree, command].wall.append(wall)
                    samples[tree, command].cpu.append(cpu)

    load = os.getloadavg()[0]
    print(f"# sinkd start-up, median of {args.runs} runs; load average {load:.1f},")
    print(f"# {os.cpu_count()} CPUs; bytecode {'not ' if args.no_compile else ''}precompiled")
    print()
    print("| tree | command | wall ms | CPU ms | x python -c pass | target |")
    print("|---|---|---:|---:|---:|---|")
    for tree in trees:
        base = statistics.median(samples[tree, "python -c pass"].wall)
        for command in commands:
            s = samples[tree, command]
            wall, cpu = statistics.median(s.wall), statistics.median(s.cpu)
            target = TARGETS.get(command)
            verdict = ""
            if target is not None:
                verdict = f"{'PASS' if wall <= target else 'FAIL'} (<= {target * 1000:.0f} ms)"
            print(
                f"| {tree} | {command} | {wall * 1000:.0f} | {cpu * 1000:.0f} | "
                f"{wall / base:.1f} | {verdict} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
