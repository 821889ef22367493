"""The deliverability report: per-profile verdicts plus the population estimate, as text, JSON
or one self-contained HTML page.

Owns the presentation only (``sinkd report``): verdicts come from the engine, shares and causes
from ``sinkd.core.population``. The HTML has inline CSS and an inline SVG chart, no scripts and no
remote assets, and everything taken from the message is escaped.

Checks that offline DNS left without data (``Verdict.without_dns_data``) are said plainly in
every format: which checks, for which names, and how to give the data (``--dns-zone FILE``,
``--dns live``); so are checks that could not answer at all (``Verdict.incomplete``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from sinkd.core.model import Finding, Verdict
from sinkd.core.population import Cause, Estimate, Outcome, culprits
from sinkd.core.ports import NO_DNS_DATA_HINT

STRIPPED_SHOWN = 6  # items per profile in the HTML table; the text and JSON list every one
COLOURS = {
    Outcome.INTACT: "#2e7d32",
    Outcome.STRIPPED: "#f9a825",
    Outcome.QUARANTINE: "#ef6c00",
    Outcome.REJECT: "#c62828",
}


@dataclass(frozen=True, slots=True)
class MessageReport:
    message: str  # the file name as given
    subject: str | None
    verdicts: Sequence[Verdict]  # one per profile
    estimate: Estimate

    def profile_rows(self) -> list[dict[str, Any]]:
        return [profile_row(v) for v in self.verdicts]

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "profiles": self.profile_rows(),
            "without_dns_data": without_dns_data(self.verdicts),
            "dns_note": dns_note(self.verdicts),
            **self.estimate.to_json(),
        }


def _names(finding: Finding) -> list[str]:
    return [str(n) for n in finding.detail.get("dns_names") or ()]


def without_dns_data(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """The checks offline DNS left without data, once each (code and names), over profiles."""
    seen: dict[str, list[str]] = {}
    for verdict in verdicts:
        for finding in verdict.without_dns_data:
            names = seen.setdefault(finding.code, [])
            names.extend(n for n in _names(finding) if n not in names)
    return [{"code": code, "dns_names": names} for code, names in seen.items()]


_CHECK_LABELS = (  # finding-code prefix -> the check's name for a reader
    ("SENDER_AUTH_", "sender authentication"),
    ("SENDERID_", "Sender ID"),
    ("SPF_", "SPF"),
    ("DKIM_", "DKIM"),
    ("DMARC_", "DMARC"),
    ("DNSBL_", "blocklists"),
    ("RHSBL_", "blocklists"),
    ("URIBL_", "blocklists"),
)


def _check_label(code: str) -> str:
    return next((label for prefix, label in _CHECK_LABELS if code.startswith(prefix)), code)


def dns_note(verdicts: Sequence[Verdict]) -> str | None:
    """One plain paragraph when checks were judged without DNS data, else None."""
    checks = without_dns_data(verdicts)
    if not checks:
        return None
    names: list[str] = []
    for check in checks:
        names.extend(n for n in check["dns_names"] if n not in names)
    labels: list[str] = []
    for check in checks:
        label = _check_label(check["code"])
        if label not in labels:
            labels.append(label)
    codes = ", ".join(labels)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (
        f"Judged without DNS data: sinkd's DNS is offline and no fixture has data for "
        f"{shown or 'the names these checks need'}, so {codes} could not be judged (they are "
        f"recorded, never counted as a pass or a failure). {NO_DNS_DATA_HINT}"
    )


def incomplete_note(verdicts: Sequence[Verdict]) -> str | None:
    """One plain sentence when a check could not answer (scanner down, live DNS timeout)."""
    codes: list[str] = []
    for verdict in verdicts:
        codes.extend(f.code for f in verdict.incomplete if f.code not in codes)
    if not codes:
        return None
    return (
        f"Not fully judged: {', '.join(codes)} could not answer, so the verdict was reached "
        "without them."
    )


def profile_row(verdict: Verdict) -> dict[str, Any]:
    """One profile's line of the report (and of the dashboard's compare page): verdict, stage,
    the SMTP reply, the deciding reasons and what was stripped."""
    reply = verdict.reply
    return {
        "profile": verdict.profile,
        "verdict": verdict.verdict.value,
        "stage": verdict.stage.value,
        "reply": f"{reply.code} {reply.enhanced} {reply.text}",
        "reasons": [f.reason for f in culprits(verdict)],
        "stripped": list(verdict.stripped),
        "fully_judged": not verdict.incomplete,
        "without_dns_data": [
            {"code": f.code, "dns_names": _names(f)} for f in verdict.without_dns_data
        ],
    }


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def gain_text(cause: Cause) -> str:
    """What fixing one cause alone gains. A cause that overlaps others (the same companies also
    strip or refuse for another reason) gains nothing alone: say so instead of "+0.0"."""
    gain = 100 * float(cause.gain_intact)
    if round(gain, 1) == 0:
        return "no gain on its own: other causes hit the same recipients"
    return f"+{gain:.1f} points intact"


def gain_all_text(est: Estimate) -> str | None:
    """The gain of fixing every cause, when it says more than the single gains do."""
    if len(est.causes) < 2:
        return None
    return f"fix all {len(est.causes)} causes: +{100 * float(est.gain_all):.1f} points intact"


def write_text(report: MessageReport, out: TextIO) -> None:
    print(f"== {report.message}  (subject: {report.subject or '-'})", file=out)
    for note in (dns_note(report.verdicts), incomplete_note(report.verdicts)):
        if note:
            print(f"   ! {note}", file=out)
    rows = report.profile_rows()
    width = max((len(r["profile"]) for r in rows), default=7)
    for row in rows:
        print(
            f"{row['profile']:<{width}}  {row['verdict'].upper():<10} {row['stage']:<4}  "
            f"{row['reply']}",
            file=out,
        )
        for reason in row["reasons"]:
            print(f"{'':<{width}}    because: {reason}", file=out)
        for item in row["stripped"]:
            print(f"{'':<{width}}    stripped: {item}", file=out)
    est = report.estimate
    print("\nOf the companies you send to (survey model):", file=out)
    for outcome in Outcome:
        print(f"  {outcome.value:<11} {_pct(float(est.share(outcome))):>6}", file=out)
    if est.causes:
        print("\nWhat costs you recipients, and what a fix gains:", file=out)
        for cause in est.causes:
            print(
                f"  {cause.code:<26} costs {_pct(float(cause.share_lost)):>6}   "
                f"{cause.fix}: {gain_text(cause)}",
                file=out,
            )
        together = gain_all_text(est)
        if together:
            print(f"  {'':<26}              {together}", file=out)
    print(f"\nModel: {est.source}", file=out)
    for assumption in est.assumptions:
        print(f"  - {assumption}", file=out)
    print(file=out)


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}.v-accept{color:#2e7d32}.v-quarantine{color:#ef6c00}
.v-reject{color:#c62828}.chart{display:flex;gap:2em;align-items:center;flex-wrap:wrap}
.legend td{border:none;padding:.15em .5em}.swatch{display:inline-block;width:1em;height:1em}
ul{margin:.2em 0;padding-left:1.2em}code{font-size:.9em}small{color:#666}
.note{background:#fff8e1;border:1px solid #f9a825;padding:.5em .8em}
"""


def _donut(est: Estimate) -> str:
    """An SVG donut of the four shares (circle strokes with dash arrays: no scripts)."""
    radius = 70.0
    circumference = 2 * math.pi * radius
    parts = [
        '<svg id="population-chart" xmlns="http://www.w3.org/2000/svg" width="220" '
        'height="220" viewBox="0 0 220 220" role="img" aria-label="population estimate">',
        '<circle cx="110" cy="110" r="70" fill="none" stroke="#eee" stroke-width="36"/>',
    ]
    offset = 0.0
    for outcome in Outcome:
        share = float(est.share(outcome))
        if share <= 0:
            continue
        length = share * circumference
        parts.append(
            f'<circle class="slice slice-{outcome.value}" cx="110" cy="110" r="70" fill="none" '
            f'stroke="{COLOURS[outcome]}" stroke-width="36" '
            f'stroke-dasharray="{length:.3f} {circumference - length:.3f}" '
            f'stroke-dashoffset="{-offset:.3f}" transform="rotate(-90 110 110)">'
            f"<title>{outcome.value} {_pct(share)}</title></circle>"
        )
        offset += length
    intact = _pct(float(est.share(Outcome.INTACT)))
    parts.append(
        f'<text x="110" y="106" text-anchor="middle" font-size="22" font-weight="bold">'
        f'{intact}</text><text x="110" y="128" text-anchor="middle" font-size="13">intact</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _bars(est: Estimate) -> str:
    rows = []
    for index, outcome in enumerate(Outcome):
        share = float(est.share(outcome))
        y = 8 + index * 30
        rows.append(
            f'<rect class="bar bar-{outcome.value}" x="110" y="{y}" height="20" '
            f'width="{max(share * 300, 0.5):.2f}" fill="{COLOURS[outcome]}"/>'
            f'<text x="100" y="{y + 15}" text-anchor="end" font-size="13">{outcome.value}</text>'
            f'<text x="{118 + share * 300:.2f}" y="{y + 15}" font-size="13">{_pct(share)}</text>'
        )
    return (
        '<svg id="population-bars" xmlns="http://www.w3.org/2000/svg" width="480" height="130" '
        'viewBox="0 0 480 130" role="img" aria-label="shares">' + "".join(rows) + "</svg>"
    )


def render_html(reports: Sequence[MessageReport], *, back: tuple[str, str] | None = None) -> str:
    """The report page; ``back`` is a (relative URL, text) link above it (the dashboard's)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>sinkd deliverability report</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    if back is not None:
        out.append(f'<p class="back"><a href="{e(back[0])}">← {e(back[1])}</a></p>')
    out.append("<h1>Deliverability report</h1>")
    for report in reports:
        est = report.estimate
        out.append('<section class="message">')
        out.append(
            f"<h2>{e(report.message)}</h2><p>Subject: <strong>{e(report.subject or '-')}"
            "</strong></p>"
        )
        note = dns_note(report.verdicts)
        if note:
            out.append(f'<p class="note dns-note">{e(note)}</p>')
        unfinished = incomplete_note(report.verdicts)
        if unfinished:
            out.append(f'<p class="note incomplete-note">{e(unfinished)}</p>')
        out.append("<h3>Of the companies you send to</h3>")
        legend = "".join(
            f'<tr><td><span class="swatch" style="background:{COLOURS[o]}"></span></td>'
            f"<td>{o.value}</td><td>{_pct(float(est.share(o)))}</td></tr>"
            for o in Outcome
        )
        out.append(
            f'<div class="chart">{_donut(est)}{_bars(est)}'
            f'<table class="legend" style="width:auto">{legend}</table></div>'
        )
        out.append("<h3>What costs you recipients, and what to change</h3>")
        if est.causes:
            out.append(
                '<table id="causes"><tr><th>cause</th><th>costs</th><th>fix</th><th>gain</th></tr>'
            )
            for c in est.causes:
                out.append(
                    f"<tr><td><code>{e(c.code)}</code><br><small>{e(c.reason)}</small></td>"
                    f"<td>{_pct(float(c.share_lost))}</td><td>{e(c.fix)}</td>"
                    f"<td>{e(gain_text(c))}</td></tr>"
                )
            together = gain_all_text(est)
            if together:
                out.append(
                    f'<tr class="all"><td colspan="3">All of the above</td><td>{e(together)}'
                    "</td></tr>"
                )
            out.append("</table>")
        else:
            out.append("<p>Nothing: every modelled recipient gets the message intact.</p>")
        out.append("<h3>Per profile</h3>")
        out.append(
            '<table id="profiles"><tr><th>profile</th><th>verdict</th><th>stage</th>'
            "<th>SMTP reply</th><th>deciding reasons</th><th>stripped</th></tr>"
        )
        for row in report.profile_rows():
            reasons = "".join(f"<li>{e(r)}</li>" for r in row["reasons"]) or "-"
            shown = row["stripped"][:STRIPPED_SHOWN]
            stripped = "".join(f"<li>{e(s)}</li>" for s in shown) or "-"
            if len(row["stripped"]) > len(shown):
                stripped += f"<li><small>and {len(row['stripped']) - len(shown)} more</small></li>"
            out.append(
                f"<tr><td>{e(row['profile'])}</td>"
                f'<td class="v-{e(row["verdict"])}">{e(row["verdict"])}</td>'
                f"<td>{e(row['stage'])}</td><td><code>{e(row['reply'])}</code></td>"
                f"<td><ul>{reasons}</ul></td><td><ul>{stripped}</ul></td></tr>"
            )
        out.append("</table>")
        out.append("<h3>Every finding, in plain language</h3>")
        for verdict in report.verdicts:
            items = "".join(
                f"<li><code>{e(f.code)}</code> ({e(f.action.value)}"
                f"{f', {f.score:+g} points' if f.score else ''}"
                f"{f', not judged: {f.unjudged.value}' if f.unjudged else ''}): {e(f.reason)}</li>"
                for f in verdict.findings
            )
            out.append(f"<h4>{e(verdict.profile)}</h4><ul>{items or '<li>none</li>'}</ul>")
        out.append("<h3>The model</h3>")
        out.append(f"<p>{e(est.source)}</p><ul>")
        out.extend(f"<li>{e(a)}</li>" for a in est.assumptions)
        out.append("</ul></section>")
    out.append("</body></html>")
    return "\n".join(out)
