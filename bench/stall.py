"""Whether one large message stalls the others (issue 18, "No message may stall the others").

Owns the stall benchmark: one ``sinkd serve`` child (free loopback ports, a temporary store,
``--dns offline`` with the demo zone, so nothing leaves the machine), a probe SMTP session
(aiosmtplib) sending a small message every 50 ms and timing MAIL FROM to the 250 after DATA,
and an HTTP probe (``GET /readyz`` every 50 ms). The probes run idle first (the baseline), then
while each of three big messages is sent on another session by a child process of this script,
then idle again (what the big messages left behind: a WAL checkpoint, a garbage collection):

- ``html``: a newsletter whose HTML body is repeated up to the size;
- ``headers``: the same size in header fields (many ``X-`` lines of ~200 bytes, a short body);
- ``parts``: multipart/mixed of many ~2 KB text/plain and text/html parts.

For each it prints the big message's own time to its reply (and the reply), the probes' p50,
p99 and max while it was sent and judged, and the ratio of p99 to the idle p99 (issue 18's
target: at most 2x). A probe that waits during a stall records one long sample, not the ones
it would have sent meanwhile: max is the figure that shows how long the sink was frozen.

    python bench/stall.py                      # ~20 MB messages, typical-corporate
    python bench/stall.py --quick              # ~5 MB messages, shorter idle window
    python bench/stall.py --profile no-filter --size 9M   # under no-filter's 10,240,000 bytes
    python bench/stall.py --judge-offload-bytes off       # every message judged in the loop
    python bench/stall.py --warm-pool                     # judge workers started before idle
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

SELF = Path(__file__).resolve()
HERE = SELF.parent
ROOT = HERE.parent
NEWSLETTER = ROOT / "tests" / "messages" / "content" / "newsletter.html"
DEMO_ZONE = ROOT / "profiles" / "dns" / "demo.zone"
HOST = "127.0.0.1"
SENDER = "news@shop.example"
RECIPIENT = "bob@corp.example"
CLIENT_IP = "192.0.2.25"  # shop.example's server in demo.zone: SPF passes, listed nowhere
PROBE_EVERY = 0.05
SETTLE = 1.0  # seconds of probing between two big messages, so windows do not touch
READY = re.compile(
    r"sinkd ready smtp=(?P<smtp>\S+):(?P<sp>\d+)(?: http=(?P<http>\S+):(?P<hp>\d+))?"
)
KINDS = ("html", "headers", "parts")
MIB = 1024 * 1024


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KkMm]?)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 20M, 512K, 1000000)")
    scale = {"": 1, "k": 1024, "m": MIB}[match[2].lower()]
    return int(float(match[1]) * scale)


# --- the big messages --------------------------------------------------------------------------


def envelope_headers(subject: str) -> str:
    return (
        f"From: News <{SENDER}>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <{subject.replace(' ', '.')}."
        f"{time.monotonic_ns()}@shop.example>\r\nMIME-Version: 1.0\r\n"
    )


def html_message(size: int) -> tuple[bytes, str]:
    """A newsletter whose body rows repeat until the HTML part is about ``size`` bytes."""
    html = NEWSLETTER.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
    start = html.index(">", html.index("<body")) + 1
    end = html.rindex("</body>")
    inner = html[start:end]
    copies = max(1, (size - len(html)) // len(inner) + 1)
    body = html[:start] + inner * copies + html[end:]
    raw = (
        envelope_headers("Spring collection")
        + 'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Our spring collection is here. Read it online.\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body + "\r\n--b1--\r\n"
    ).encode()
    return raw, f"one text/html part: the newsletter's body {copies:,} times"


def header_message(size: int) -> tuple[bytes, str]:
    """About ``size`` bytes of header fields: ~200-byte ``X-`` lines (well under RFC 5322's
    998 and sinkd's 65,536-byte DATA line limit), then a one-line body."""
    filler = "campaign tracking data " * 8
    lines = []
    total = 0
    n = 0
    while total < size:
        line = f"X-Bench-Field-{n:07d}: {filler}{n}\r\n"
        lines.append(line)
        total += len(line)
        n += 1
    raw = (
        envelope_headers("Many header fields")
        + "".join(lines)
        + "Content-Type: text/plain; charset=utf-8\r\n\r\nA short body.\r\n"
    ).encode()
    head = raw.index(b"\r\n\r\n")
    return raw, f"{len(lines) + 7:,} header lines, {head / MIB:.1f} MiB of header"


PART_SIZE = 1800


def parts_message(size: int, part_size: int = PART_SIZE) -> tuple[bytes, str]:
    """multipart/mixed of ``part_size`` parts, text/plain and text/html in turn, up to
    ``size``. sinkd inspects the first 1,000 parts (``build_tree``'s ``max_parts``): a larger
    ``part_size`` (~21K for 20 MiB) keeps every part inspected."""
    para = "Our spring collection is here: linen shirts, canvas shoes and more. " * 3
    rows = max(1, part_size // 212)
    plain = (para + "\r\n") * rows
    # One row fewer in HTML, whose rows carry a link: both kinds of part about the same size.
    link_row = f'<p>{para}<a href="https://shop.example/p">shop</a></p>\r\n'
    html = "<html><body>" + link_row * max(1, rows - 1)
    html += "</body></html>\r\n"
    chunks: list[str] = []
    total = 0
    n = 0
    while total < size:
        if n % 2:
            part = f"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}"
        else:
            part = f"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}"
        chunks.append(part)
        total += len(part)
        n += 1
    raw = (
        envelope_headers("Many parts")
        + 'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
        + "".join(chunks)
        + "--b2--\r\n"
    ).encode()
    average = (total / n) / 1024
    return raw, f"{n:,} parts of ~{average:.1f} KiB, text/plain and text/html"


BUILDERS = {"html": html_message, "headers": header_message, "parts": parts_message}
LABELS = {
    "html": "HTML body",
    "headers": "header fields",
    "parts": "small MIME parts",
}


# --- the big sender: a child process, so its 20 MB of writes never delay the probes' loop ----


def read_reply(sock: socket.socket, buf: bytearray) -> str:
    """One SMTP reply (all its lines) from ``sock``; ``buf`` keeps what came after it."""
    lines: list[str] = []
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed: " + " | ".join(lines))
            buf += chunk
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        text = line.decode("utf-8", "replace")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            return "\n".join(lines)


def send_big(port: int, path: Path) -> dict[str, object]:
    """Send the message in ``path`` once: the reply and the monotonic times of MAIL FROM and
    of the reply (CLOCK_MONOTONIC is system-wide, so the parent compares them with its own)."""
    raw = path.read_bytes()
    body = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    stuffed = re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"
    buf = bytearray()
    with socket.create_connection((HOST, port), timeout=600) as sock:
        read_reply(sock, buf)
        sock.sendall(b"EHLO big.shop.example\r\n")
        read_reply(sock, buf)
        mail_at = time.monotonic()
        for command in (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>", "DATA"):
            sock.sendall(command.encode() + b"\r\n")
            reply = read_reply(sock, buf)
            if not reply.startswith(("2", "3")):
                at = time.monotonic()
                return {"mail_at": mail_at, "reply_at": at, "reply": f"{command[:4]}: {reply}"}
        sock.sendall(stuffed)
        reply = read_reply(sock, buf)
        reply_at = time.monotonic()
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    return {"mail_at": mail_at, "reply_at": reply_at, "reply": reply}


# --- the probes --------------------------------------------------------------------------------


@dataclass
class Sample:
    start: float
    end: float
    ok: bool


@dataclass
class Probes:
    smtp: list[Sample] = field(default_factory=list)
    http: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def probe_message() -> bytes:
    return (envelope_headers("probe") + "Content-Type: text/plain\r\n\r\nping\r\n").encode()


async def tick(next_at: float) -> float:
    """Sleep until ``next_at``; a probe that came back late starts the next one at once."""
    delay = next_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    return max(next_at, time.monotonic()) + PROBE_EVERY


async def smtp_probe(port: int, probes: Probes) -> None:
    import aiosmtplib

    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=port,
        timeout=300,
        start_tls=False,
        # A fixed EHLO name: aiosmtplib's default is socket.getfqdn(), a DNS lookup.
        local_hostname="probe.shop.example",
    )
    await client.connect()
    message = probe_message()
    next_at = time.monotonic()
    try:
        while not probes.stop.is_set():
            next_at = await tick(next_at)
            start = time.monotonic()
            ok = True
            try:
                await client.sendmail(SENDER, [RECIPIENT], message)
            except aiosmtplib.SMTPResponseException as exc:
                ok = False
                probes.errors.append(f"smtp probe: {exc.code} {exc.message}")
            probes.smtp.append(Sample(start, time.monotonic(), ok))
    finally:
        with contextlib.suppress(Exception):
            await client.quit()


async def http_probe(port: int, probes: Probes) -> None:
    import httpx

    # trust_env=False: no proxy from the environment, the request stays on loopback. A new
    # connection per request, as a readiness probe makes: a reused keep-alive connection
    # answered in ~44 ms instead of ~2 ms on this machine (a delayed-ACK pattern), which
    # would hide a stall's ratio behind an idle p99 twenty times too high.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", trust_env=False, limits=no_keepalive
    ) as client:
        next_at = time.monotonic()
        while not probes.stop.is_set():
            next_at = await tick(next_at)
            start = time.monotonic()
            try:
                response = await client.get("/readyz", timeout=300)
                ok = response.status_code == 200
                if not ok:
                    probes.errors.append(f"http probe: {response.status_code}")
            except httpx.HTTPError as exc:
                ok = False
                probes.errors.append(f"http probe: {exc!r}")
            probes.http.append(Sample(start, time.monotonic(), ok))


# --- figures -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the largest, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Window:
    label: str
    start: float
    end: float


def overlapping(samples: list[Sample], *windows: Window) -> list[float]:
    """Latencies (ms) of the samples that were in flight at any time during one of
    ``windows``."""
    return [
        (s.end - s.start) * 1000
        for s in samples
        if s.ok and any(s.start <= w.end and s.end >= w.start for w in windows)
    ]


def stats(values: list[float]) -> tuple[int, float, float, float]:
    if not values:
        return 0, math.nan, math.nan, math.nan
    return len(values), pct(values, 0.5), pct(values, 0.99), max(values)


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


# --- the run -----------------------------------------------------------------------------------


def start_sinkd(
    workdir: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], int, int]:
    limit = max(50 * MIB, 2 * args.size)  # the server's DATA limit must not refuse them first
    command = [sys.executable, "-m", "sinkd", "serve", "--host", HOST, "--port", "0"]
    command += ["--http-host", HOST, "--http-port", "0", "--db", str(workdir / "sinkd.db")]
    command += ["--profile", args.profile, "--max-message-size", str(limit)]
    command += ["--dns", "offline", "--dns-zone", str(DEMO_ZONE), "--client-ip", CLIENT_IP]
    # --hostname: the greeting's name, or sinkd would ask for this host's FQDN (a lookup).
    command += ["--helo", "mx.shop.example", "--hostname", "sinkd.bench"]
    if args.judge_offload_bytes is not None:
        command += ["--judge-offload-bytes", args.judge_offload_bytes]
    if args.judge_workers is not None:
        command += ["--judge-workers", args.judge_workers]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    log_path = workdir / "sinkd.log"
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_path.open("ab"),
        env=env | {"PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        match = READY.search(line)
        if match and match["hp"]:
            return process, int(match["sp"]), int(match["hp"])
    stop(process)
    raise SystemExit(f"sinkd did not get ready:\n{log_path.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def stored_verdict(db: Path, reply: str) -> str:
    """The stored verdict, disposition and finding codes of the message ``reply`` queued, so
    the table shows the big message was judged, and how (read after the server stopped)."""
    match = re.search(r"queued as (\S+)", reply)
    if match is None or not db.exists():
        return "– (the reply names no queue id)"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT seq, verdict, disposition FROM messages WHERE id = ?", (match[1],)
        ).fetchone()
        if row is None:
            return "not in the store"
        codes = [
            c for (c,) in conn.execute("SELECT code FROM finding_codes WHERE seq = ?", row[:1])
        ]
    return f"{row[1]} ({row[2]}): {', '.join(sorted(codes)) or 'no findings'}"


async def run_big(port: int, path: Path) -> dict[str, object]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SELF),
        "--send",
        str(port),
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        return {"mail_at": None, "reply": f"sender failed (exit {child.returncode})"}
    result: dict[str, object] = json.loads(out)
    return result


async def measure(args: argparse.Namespace, workdir: Path) -> int:
    files: dict[str, tuple[Path, str, int]] = {}
    for kind in args.kinds:
        if kind == "parts":
            raw, what = parts_message(args.size, args.part_size)
        else:
            raw, what = BUILDERS[kind](args.size)
        path = workdir / f"{kind}.eml"
        path.write_bytes(raw)
        files[kind] = (path, what, len(raw))
        log(f"{kind}: {len(raw):,} bytes ({files[kind][1]})")

    server, smtp_port, http_port = start_sinkd(workdir, args)
    log(f"sinkd pid {server.pid}: smtp {smtp_port}, http {http_port}, profile {args.profile}")
    probes = Probes()
    results: list[tuple[str, dict[str, object], Window]] = []
    try:
        tasks = [
            asyncio.create_task(smtp_probe(smtp_port, probes)),
            asyncio.create_task(http_probe(http_port, probes)),
        ]
        await asyncio.sleep(0.5)  # warm-up: first connection, first verdict, imports
        if args.warm_pool:  # one message over the offload threshold starts the judge workers
            warm = workdir / "warm.eml"
            warm.write_bytes(html_message(MIB)[0])
            log(f"warming the judge workers: {(await run_big(smtp_port, warm)).get('reply')}")
        idle_start = time.monotonic()
        await asyncio.sleep(args.idle)
        idle = [Window("idle before", idle_start, time.monotonic())]
        for task in tasks:  # a probe that died measures nothing: say why now
            if task.done():
                task.result()
        for kind in args.kinds:
            path, _, _ = files[kind]
            log(f"sending {kind} …")
            result = await run_big(smtp_port, path)
            end = result.get("reply_at")
            mail_at = result.get("mail_at")
            if isinstance(mail_at, float) and isinstance(end, float):
                results.append((kind, result, Window(kind, mail_at, end)))
            else:
                results.append((kind, result, Window(kind, math.nan, math.nan)))
            log(f"{kind}: {str(result.get('reply')).splitlines()[-1]}")
            await asyncio.sleep(SETTLE)
        idle_start = time.monotonic()
        await asyncio.sleep(args.idle)
        idle.append(Window("idle after", idle_start, time.monotonic()))
        probes.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    finally:
        stop(server)
    for _, result, _ in results:
        result["stored"] = stored_verdict(workdir / "sinkd.db", str(result.get("reply", "")))

    report(args, idle, results, files, probes)
    return 0


def report(
    args: argparse.Namespace,
    idle: list[Window],
    results: list[tuple[str, dict[str, object], Window]],
    files: dict[str, tuple[Path, str, int]],
    probes: Probes,
) -> None:
    idle_smtp = stats(overlapping(probes.smtp, idle[0]))
    idle_http = stats(overlapping(probes.http, idle[0]))
    print(
        f"\n### bench/stall.py — profile {args.profile}, messages ~{args.size / MIB:g} MiB, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}; probes every {PROBE_EVERY * 1000:.0f} ms, "
        f"idle windows of {idle[0].end - idle[0].start:.1f} s; ratios are to the first; "
        f"--judge-offload-bytes {args.judge_offload_bytes or 'default'}, --judge-workers "
        f"{args.judge_workers or 'default'}{', workers warmed' if args.warm_pool else ''}.\n"
    )
    print(
        "| window | big message | its time to reply | SMTP probe n, p50 / p99 / max | "
        "p99 ÷ idle p99 | HTTP /readyz n, p50 / p99 / max | p99 ÷ idle p99 |"
    )
    print("|---|---|---|---|---|---|---|")

    def cells(s: tuple[int, float, float, float], base: float) -> tuple[str, str]:
        n, p50, p99, top = s
        ratio = "–" if not n or math.isnan(base) else f"{p99 / base:.1f}×"
        return f"{n}, {fmt_ms(p50)} / {fmt_ms(p99)} / {fmt_ms(top)}", ratio

    s_cell, _ = cells(idle_smtp, idle_smtp[2])
    h_cell, _ = cells(idle_http, idle_http[2])
    print(f"| idle before | – | – | {s_cell} | 1.0× | {h_cell} | 1.0× |")
    for kind, result, window in results:
        _, what, size = files[kind]
        reply = str(result.get("reply", "")).splitlines()[-1][:60].replace("|", "\\|")
        took = window.end - window.start
        took_text = "–" if math.isnan(took) else f"{took:.1f} s: `{reply}`"
        s_cell, s_ratio = cells(stats(overlapping(probes.smtp, window)), idle_smtp[2])
        h_cell, h_ratio = cells(stats(overlapping(probes.http, window)), idle_http[2])
        print(
            f"| {LABELS[kind]} | {size / MIB:.1f} MiB, {what} | {took_text} | "
            f"{s_cell} | {s_ratio} | {h_cell} | {h_ratio} |"
        )
    if len(idle) > 1:
        s_cell, s_ratio = cells(stats(overlapping(probes.smtp, idle[1])), idle_smtp[2])
        h_cell, h_ratio = cells(stats(overlapping(probes.http, idle[1])), idle_http[2])
        print(f"| idle after | – | – | {s_cell} | {s_ratio} | {h_cell} | {h_ratio} |")
    print()
    for kind, result, _ in results:
        print(f"- {LABELS[kind]}: stored verdict {result.get('stored')}")
    if probes.errors:
        print(
            f"- probe errors ({len(probes.errors)}): {'; '.join(sorted(set(probes.errors)))[:500]}"
        )
    print("- target (issue 18): every p99 ÷ idle p99 ≤ 2×; big messages no slower than today.")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--profile", default="typical-corporate", help="default typical-corporate")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="each big message (default 20M; 5M with --quick)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=None,
        help="each idle window (before, after), s (default 5; 3 with --quick)",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated of {', '.join(KINDS)}"
    )
    parser.add_argument(
        "--part-size",
        type=parse_size,
        default=PART_SIZE,
        help="each part of the parts message (default 1800; 21K: ~900 parts at 20M, all inspected)",
    )
    parser.add_argument("--quick", action="store_true", help="~5 MB messages, 3 s idle windows")
    parser.add_argument(
        "--judge-offload-bytes",
        metavar="N|off",
        help="passed to sinkd serve (default: the server's); off judges every message in its loop",
    )
    parser.add_argument(
        "--judge-workers", metavar="N|auto", help="passed to sinkd serve (default: the server's)"
    )
    parser.add_argument(
        "--warm-pool",
        action="store_true",
        help="send one 1 MiB message before the idle window, so the judge workers are started",
    )
    # Internal: the child process that sends one big message.
    parser.add_argument("--send", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        print(json.dumps(send_big(int(args.send[0]), Path(args.send[1]))))
        return 0
    args.size = args.size or (5 * MIB if args.quick else 20 * MIB)
    args.idle = args.idle if args.idle is not None else (3.0 if args.quick else 5.0)
    args.kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="sinkd-stall-") as tmp:
        return asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
