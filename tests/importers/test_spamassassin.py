"""``sinkd profiles import spamassassin``: local.cf read as SpamAssassin reads it (perldoc
Mail::SpamAssassin::Conf), the scoring design chosen so that no rule counts twice, every rule
pointing back to its line, everything else listed with its reason, and bad input exit 2."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.cli import main
from sinkd.core.engine import compile_profile
from sinkd.core.model import VerdictAction
from sinkd.core.profiles import ProfileSet
from tests.conftest import require_executable
from tests.support.judging import judge
from tests.support.paths import ROOT, TESTS

CORPUS = TESTS / "corpus" / "messages"
STOCK = Path("/usr/share/spamassassin")  # Debian's stock rules (package spamassassin)
SITE = Path("/etc/spamassassin")  # Debian's site directory: its *.pre files load the plugins

NATIVE_CF = """\
# a site's own rules
required_score 4.0
report_safe 0
body_part_scan_size 20000

header   LOCAL_SUBJ_MONEY  Subject =~ /\\b(?:cash|money)\\b/i
describe LOCAL_SUBJ_MONEY  Subject talks about money
score    LOCAL_SUBJ_MONEY  1.5
header   LOCAL_NO_MAILER   X-Mailer =~ /^UNSET$/ [if-unset: UNSET]
body\tLOCAL_CLICK\t/\\bclick here\\b/i
score    LOCAL_CLICK       2.0 1.0 2.0 1.0
body     T_LOCAL_TRIAL     /trial/
body     LOCAL_NICE        /regards/i
tflags   LOCAL_NICE        nice
body     LOCAL_HASH        /\\#1/
meta     LOCAL_BOTH        (LOCAL_SUBJ_MONEY && LOCAL_CLICK)
score    LOCAL_BOTH        1.0
score    LOCAL_BOTH        (0.5)
welcomelist_from *@partner.example
whitelist_from   *@old.example  *@gone.example
unwhitelist_from *@gone.example
blacklist_from   spammer@bad.example
rewrite_header Subject [SPAM]
"""


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def write(tmp_path: Path, text: str, name: str = "local.cf") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def imported(
    tmp_path: Path, text: str, *options: str, capsys: pytest.CaptureFixture[str] | None = None
) -> dict[str, Any]:
    cf = write(tmp_path, text)
    out = tmp_path / "imported.yaml"
    code, _ = run("profiles", "import", "spamassassin", cf, "-o", out, *options)
    assert code == 0
    document = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def filter_of(document: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(f for f in document["filters"] if f["kind"] == kind)


def test_own_rules_become_native_rules_with_their_line_score_and_description(
    tmp_path: Path,
) -> None:
    document = imported(tmp_path, NATIVE_CF)
    native = filter_of(document, "spamassassin_rules")
    rules = {r["id"]: r for r in native["rules"]}
    money = rules["LOCAL_SUBJ_MONEY"]
    assert money["header"] == "Subject" and money["pattern"] == r"/\b(?:cash|money)\b/i"
    assert money["describe"] == "Subject talks about money"
    assert money["score"] == 1.5
    assert money["source"].endswith("local.cf:6; score " + str(tmp_path / "local.cf") + ":8")
    assert rules["LOCAL_NO_MAILER"]["if_unset"] == "UNSET"
    assert rules["LOCAL_NO_MAILER"]["score"] == 1.0  # Conf.pm: no score line, 1.0
    assert rules["LOCAL_CLICK"]["score"] == 2.0  # score set 0: the first of four
    assert rules["T_LOCAL_TRIAL"]["score"] == 0.01  # T_ rules get 0.01
    assert rules["LOCAL_NICE"]["score"] == -1.0  # nice negates the default
    assert rules["LOCAL_HASH"]["pattern"] == "/#1/"  # an escaped # is no comment, unescaped
    assert rules["LOCAL_BOTH"]["expression"] == "(LOCAL_SUBJ_MONEY && LOCAL_CLICK)"
    assert rules["LOCAL_BOTH"]["score"] == 1.5  # (0.5) is relative to the score before it
    assert native["welcomelist_from"] == ["*@partner.example", "*@old.example"]
    assert native["blocklist_from"] == ["spammer@bad.example"]
    assert (native["welcomelist_score"], native["blocklist_score"]) == (-100.0, 100.0)


def test_a_native_configuration_adds_a_stock_rules_spamd_and_required_score_thresholds(
    tmp_path: Path,
) -> None:
    document = imported(tmp_path, NATIVE_CF)
    spamd = filter_of(document, "spamassassin")
    assert spamd["mode"] == "add"  # its score adds to the native rules' in the total
    assert "stock rules only" in spamd["source"]
    assert document["scoring"] == {"thresholds": {"quarantine": 4.0}}
    assert document["scanning"]["body_part_scan_size"]["size"] == 20000
    assert "WITHOUT these files" in document["description"]
    models = {m["what"]: m for m in document["models"]}
    assert models["required_score 4"]["source"].endswith("local.cf:2 required_score")
    assert any(w.startswith("report_safe 0") for w in models)


def test_spam_action_chooses_the_threshold_the_required_score_goes_to(tmp_path: Path) -> None:
    document = imported(tmp_path, NATIVE_CF, "--spam-action", "reject")
    assert document["scoring"] == {"thresholds": {"reject": 4.0}}
    assert "spam at or above required_score is rejected" in [m["what"] for m in document["models"]]


def test_cosmetic_directives_are_listed_as_not_translated_without_needing_spamd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = imported(tmp_path, NATIVE_CF)
    err = capsys.readouterr().err
    assert "local.cf:23: rewrite_header Subject [SPAM]: changes the Subject" in err
    assert filter_of(document, "spamassassin")["mode"] == "add"


STOCK_CF = """\
required_score 6
score HTML_MESSAGE 0.5
meta  LOCAL_HTML_FREE  (HTML_MESSAGE && LOCAL_FREE)
body  LOCAL_FREE       /\\bfree\\b/i
header LOCAL_EVAL      eval:check_for_missing_to_header()
body  LOCAL_KEEP       /foo\\Kbar/
loadplugin Mail::SpamAssassin::Plugin::Foo
ifplugin Mail::SpamAssassin::Plugin::Shortcircuit
shortcircuit USER_IN_WELCOMELIST on
endif
"""


def test_what_needs_spamassassin_itself_makes_a_spamd_profile_listing_every_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = imported(tmp_path, STOCK_CF)
    assert [f["kind"] for f in document["filters"]] == ["spamassassin"]  # no native rule
    spamd = document["filters"][0]
    assert spamd["mode"] == "own"
    assert spamd["thresholds"] == {"tag": None, "quarantine": 6.0, "reject": None}
    assert "scoring" not in document  # own mode: the points are judged once, by the filter
    err = capsys.readouterr().err
    for line, cause in [
        (2, "score HTML_MESSAGE: the score of a stock rule"),
        (3, "meta LOCAL_HTML_FREE: reads HTML_MESSAGE, which is no rule of these files"),
        (5, "header LOCAL_EVAL: an eval: test"),
        (6, "body LOCAL_KEEP: \\K"),
        (7, "loadplugin Mail::SpamAssassin::Plugin::Foo: loads a plugin"),
        (8, "ifplugin Mail::SpamAssassin::Plugin::Shortcircuit: an if/ifplugin block"),
        (9, "shortcircuit USER_IN_WELCOMELIST on: inside the if/ifplugin block"),
    ]:
        assert f"local.cf:{line}: {cause}" in err, cause
    assert "note: start spamd with --siteconfigpath DIR holding these files: " in err
    assert "--siteconfigpath" in document["description"]


def test_native_only_keeps_what_sinkd_evaluates_and_lists_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = imported(tmp_path, STOCK_CF, "--native-only")
    assert [f["kind"] for f in document["filters"]] == ["spamassassin_rules"]
    assert [r["id"] for r in document["filters"][0]["rules"]] == ["LOCAL_HTML_FREE", "LOCAL_FREE"]
    assert "stock rules are missing" in document["description"]
    assert "score HTML_MESSAGE" in capsys.readouterr().err


def test_spamd_only_scores_even_a_native_configuration_through_spamd(tmp_path: Path) -> None:
    document = imported(tmp_path, NATIVE_CF, "--spamd-only", "--spamd", "10.0.0.5:7830")
    assert [f["kind"] for f in document["filters"]] == ["spamassassin"]
    spamd = document["filters"][0]
    assert (spamd["host"], spamd["port"], spamd["mode"]) == ("10.0.0.5", 7830, "own")


def test_strict_refuses_a_configuration_with_anything_untranslated(tmp_path: Path) -> None:
    cf = write(tmp_path, STOCK_CF)
    code, _ = run("profiles", "import", "spamassassin", cf, "-o", tmp_path / "x.yaml", "--strict")
    assert code == 2 and not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("score LOCAL_X one\n", 1, "'one' is not a score"),
        ("required_score\n", 1, "required_score needs one number"),
        ("\nbody LOCAL_X\n", 2, "a body rule needs a name and a test"),
        ("body 9LOCAL /x/\n", 1, "is not a rule name"),
        ("ifplugin Foo\nbody LOCAL_X /x/\n", None, "has no endif"),
        ("endif\n", 1, "endif without if"),
        ("body LOCAL_X /x/ extra\n", 1, "unexpected text after the pattern"),
    ],
)
def test_a_malformed_line_is_exit_2_naming_the_file_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    line: int | None,
    message: str,
) -> None:
    cf = write(tmp_path, text)
    code, out = run("profiles", "import", "spamassassin", cf)
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert message in err
    if line is not None:
        assert f"{cf}:{line}" in err
    assert "Traceback" not in err


def test_a_missing_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("profiles", "import", "spamassassin", tmp_path / "nope.cf")
    assert code == 2
    assert "nope.cf: cannot read" in capsys.readouterr().err


async def test_the_imported_profile_judges_with_spamassassins_scores(tmp_path: Path) -> None:
    imported(tmp_path, NATIVE_CF, "--native-only")
    pipeline = compile_profile(ProfileSet([tmp_path]).resolve(str(tmp_path / "imported.yaml")))
    raw = (
        b"From: Alice <alice@sender.example>\r\nTo: bob@corp.example\r\n"
        b"Subject: Easy money\r\nX-Mailer: x\r\n\r\nClick here for a trial.\r\n"
    )
    verdict = await judge(pipeline, raw)
    total = next(f for f in verdict.findings if f.code == "SA_SCORE")
    # LOCAL_SUBJ_MONEY 1.5 + LOCAL_CLICK 2.0 + T_LOCAL_TRIAL 0.01 + LOCAL_BOTH 1.5
    assert total.score == 5.01
    assert verdict.verdict is VerdictAction.QUARANTINE
    listed = await judge(pipeline, raw.replace(b"alice@sender", b"bo@partner"))
    assert listed.verdict is VerdictAction.ACCEPT  # USER_IN_WELCOMELIST -100


# --- against SpamAssassin itself --------------------------------------------------------------

EXAMPLE_CF = ROOT / "docs" / "examples" / "spamassassin" / "local.cf"
# Stock files the comparison keeps beside the example (Mail::SpamAssassin(3) --configpath
# replaces the stock rules): the defaults (required_score, report template), the list of
# top-level domains (without it SpamAssassin takes no schemeless name or e-mail address in text
# for a URI) and the rules that give the sender lists their points.
KEPT_STOCK = ("10_default_prefs.cf", "20_aux_tlds.cf", "60_welcomelist.cf")
BEC = (
    "From: Dana <dana@supplier.example>\nTo: ap@corp.example\nSubject: Overdue invoice 4411\n"
    "Reply-To: dana.pay@elsewhere.example\n{extra}MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=us-ascii\n\n"
    "Please update the bank details for the wire transfer!!! Today!!!\n\nThanks!!! Really!!!\n"
)
HIDDEN = (
    "From: IT <it@helpdesk.example>\nTo: ap@corp.example\nSubject: Mailbox quota\n"
    "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n"
    '<html><body><p>Your mailbox is full.</p><div style="display: none">win</div>'
    '<p><a href="https://helpdesk.example/login.php?u=ap">Log in</a> to keep it.</p>'
    "</body></html>\n"
)


def spamassassin_status(
    mbox: bytes, rules: Path, site: Path
) -> dict[str, tuple[str, bool, set[str]]]:
    """(printed score, spam?, rules hit) of each message of ``mbox`` by its X-Case header,
    from the spamassassin script (the Mail::SpamAssassin spamd runs) with ``--local`` and only
    ``rules``. Its --mbox output does not keep the input's order, hence the header."""
    result = subprocess.run(
        [
            require_executable("spamassassin", "spamassassin"),
            "--local",
            "--mbox",
            "-C",
            str(rules),
            "--siteconfigpath",
            str(site),
        ],
        input=mbox,
        capture_output=True,
        timeout=300,
        check=True,
    )
    found = {}
    for chunk in re.split(rb"^From sinkd@test .*\n", result.stdout, flags=re.M)[1:]:
        case = re.search(rb"^X-Case: (\d+)", chunk, re.M)
        status = re.search(rb"^X-Spam-Status: (.*(?:\n\t.*)*)", chunk, re.M)
        assert case is not None and status is not None, chunk[:300]
        text = re.sub(r"(?<=[,=])\s+", "", " ".join(status.group(1).decode().split()))
        match = re.match(r"(Yes|No),\s*score=(\S+) required=\S+ tests=(\S+)", text)
        assert match is not None, text
        tests = set() if match[3] == "none" else set(match[3].split(","))
        found[case.group(1).decode()] = (match[2], match[1] == "Yes", tests)
    return found


def only_these_rules(tmp_path: Path, cf: Path) -> tuple[Path, Path]:
    """A rules directory holding ``cf`` and ``KEPT_STOCK`` (for --configpath), and a site
    directory holding Debian's *.pre plugin loaders (for --siteconfigpath)."""
    rules, site = tmp_path / "rules", tmp_path / "site"
    rules.mkdir()
    site.mkdir()
    for name in KEPT_STOCK:
        shutil.copyfile(STOCK / name, rules / name)
    shutil.copyfile(cf, rules / "local.cf")
    for pre in sorted(SITE.iterdir()):
        if pre.suffix == ".pre":
            shutil.copyfile(pre, site / pre.name)
    return rules, site


def printed(score: float, required: float, spam: bool) -> str:
    """A total as SpamAssassin prints _SCORE_: rounded to 3 then 1 decimals; not-spam at or
    above required_score shown as required_score - 0.1 (Util.pm get_tag_value_for_score)."""
    shown, need = f"{float(f'{score:.3f}'):.1f}", f"{required:.1f}"
    return shown if spam or float(shown) < float(need) else f"{float(need) - 0.1:.1f}"


async def scores_as_spamassassin(
    tmp_path: Path, cf: Path, messages: list[str], required: float
) -> dict[str, tuple[str, bool, set[str]]]:
    """Import ``cf`` --native-only and judge ``messages`` with it; assert that each gets the
    printed score, verdict and rules hit SpamAssassin gives with only ``cf``; return those."""
    raws = [f"X-Case: {n}\n{m}".replace("\r\n", "\n").encode() for n, m in enumerate(messages)]
    assert not any(re.search(rb"^From ", raw[1:], re.M) for raw in raws)  # no mbox escaping
    mbox = b"".join(b"From sinkd@test Thu Jan  1 00:00:00 2026\n" + raw + b"\n" for raw in raws)
    expected = spamassassin_status(mbox, *only_these_rules(tmp_path, cf))
    assert len(expected) == len(raws)
    profile = tmp_path / "imported.yaml"
    code, _ = run("profiles", "import", "spamassassin", cf, "--native-only", "-o", profile)
    assert code == 0
    pipeline = compile_profile(ProfileSet([tmp_path]).resolve(str(profile)))
    for number, raw in enumerate(raws):
        score, spam, tests = expected[str(number)]
        verdict = await judge(pipeline, raw.replace(b"\n", b"\r\n"))
        total = sum(f.score for f in verdict.findings if f.code == "SA_SCORE")
        hit = {f.code[3:] for f in verdict.findings if f.code.startswith("SA_")} - {"SCORE"}
        mine = verdict.verdict is VerdictAction.QUARANTINE
        assert (printed(total, required, mine), mine, hit) == (score, spam, tests), raw[:200]
    return expected


async def test_the_example_scores_as_spamassassin_does_on_a_handful_of_messages(
    tmp_path: Path,
) -> None:
    messages = [
        BEC.format(extra=""),
        BEC.format(extra="List-Id: <ap.corp.example>\n"),
        BEC.format(extra="").replace("dana@supplier.example", "bo@partner.example"),
        BEC.format(extra="").replace("dana@supplier.example", "x@promo-deals.example"),
        HIDDEN,
        *(
            (CORPUS / name).read_text(encoding="utf-8")
            for name in ("tx-order-receipt.eml", "nl-weekly-digest.eml", "spam-casino-bonus.eml")
        ),
    ]
    expected = await scores_as_spamassassin(tmp_path, EXAMPLE_CF, messages, 6.0)
    assert expected["0"][1] and not expected["1"][1]  # the messages exercise both verdicts


EDGES_CF = """\
required_score 3
header   M_RECV_TWO     Received =~ /^from a.*\\nfrom b/m
header   M_RECV_END     Received =~ /relay$/
header   M_NAME_QUOTED  From:name =~ /^Foo Bar$/
header   M_UNSET_NEG    X-Nope !~ /yes/ [if-unset: yes]
header   M_SUBJ_RAW     Subject:raw =~ /=\\?utf-8\\?/i
header   M_SUBJ_DEC     Subject =~ /caf\\xc3\\xa9/
header   M_TOCC         ToCc =~ /carol\\@/
header   M_ALL_X        ALL =~ /^X-Mailer: Foo\\s*$/m
body     T_M_TRIAL      /trial/
body     M_NICE         /kind regards/i
tflags   M_NICE         nice
body     M_MULTI        /\\bbuy\\b/i
tflags   M_MULTI        multiple maxhits=2 nosubject
rawbody  M_RAW_TAG      /<table/i
full     M_FULL_BOUND   /^--XYZ--\\r?$/m
uri      M_URI_MAIL     /^mailto:sales\\@/
uri      M_URI_WWW      /^http:\\/\\/www\\./
meta     M_META_ARITH   (M_MULTI * 2 + T_M_TRIAL) > 3
meta     M_META_NOT     !M_RAW_TAG && M_NICE
"""
EDGE_MESSAGES = [
    'Received: from a by b\nReceived: from b by relay\nFrom: "Foo Bar" <foo@x.example>\n'
    "To: t@corp.example\nCc: carol@corp.example\nSubject: =?utf-8?q?caf=C3=A9_buy?=\n"
    "X-Mailer: Foo \nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
    "buy buy buy now, free trial. Write to sales@shop.example or www.shop.example\n\n"
    "Kind regards\n",
    "From: Foo Bar <foo@x.example>\nTo: t@corp.example\nSubject: hello\nMIME-Version: 1.0\n"
    'Content-Type: multipart/alternative; boundary="XYZ"\n\n--XYZ\nContent-Type: text/plain\n\n'
    "plain buy at www.shop.com\n--XYZ\nContent-Type: text/html\n\n"
    '<table><tr><td>buy BUY</td></tr></table><a href="mailto:sales@shop.example?subject=x">m</a>'
    "\n--XYZ--\n",
]


async def test_header_pseudo_fields_flags_metas_and_uris_score_as_spamassassin_does(
    tmp_path: Path,
) -> None:
    cf = write(tmp_path, EDGES_CF, "edges.cf")
    expected = await scores_as_spamassassin(tmp_path, cf, EDGE_MESSAGES, 3.0)
    assert len(expected["0"][2]) >= 10  # most rules hit: the comparison is not vacuous
