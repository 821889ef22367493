"""Fuzzing: hostile HTML, CSS and MIME structure through every profile's inspect and strip paths.

Each case is a message built from a seeded ``random.Random``: HTML with unclosed tags, deep
nesting, random and huge attributes, inline styles and ``<style>`` blocks with broken CSS,
entities, control and zero-width characters; MIME with missing, duplicated, nested and overlong
boundaries, wrong or unknown transfer encodings, broken base64 and quoted-printable, unknown
charsets, truncated parts, non-ASCII and duplicated headers, lines dropped, doubled and moved,
nested messages, and attachments (zip archives, Office and OLE documents, gzip, programs)
truncated or with bytes flipped. Every case goes through the transaction the server runs
(``check_message``) for every built-in profile, through the attachment inspector with default
and tight limits, and through the strip path (``apply_strip``) with every HTML class and every
leaf planned for removal. The assertions: no filter raises (no finding is unjudged because of
an error), nothing raises, and every filtered message parses again into as many parts as before.

The run is bounded by a case count and a time budget, whichever comes first: the budget bounds
the work on a busy machine, it asserts nothing. A failure prints the seed and case number that
reproduce it. For longer local runs::

    SINKD_FUZZ_SEED=12345 SINKD_FUZZ_CASES=5000 SINKD_FUZZ_SECONDS=600 \\
        python -m pytest tests/test_fuzz.py -q -p no:cacheprovider

``SINKD_FUZZ_SEED`` (default: a fixed seed, so CI is reproducible), ``SINKD_FUZZ_CASES``
(default 400) and ``SINKD_FUZZ_SECONDS`` (default 20) override the bounds.
"""

from __future__ import annotations

import base64
import io
import os
import random
import time
import traceback
import zipfile

import pytest

from sinkd.core.attachments import Limits, inspect_file
from sinkd.core.html import HTML_CLASSES, inspect_html, strip_html
from sinkd.core.message import ParsedMessage, parse
from sinkd.core.model import ClientIdentity, StripPlan, Unjudged
from sinkd.core.profiles import ProfileSet
from sinkd.core.strip import apply_strip
from sinkd.services.judge import Identity, Judge, MailEnvelope
from sinkd.web.marking import mark_html
from tests.conftest import refused_port
from tests.support.attachments import pe_bytes

SEED = int(os.environ.get("SINKD_FUZZ_SEED", "20261206"))
CASES = int(os.environ.get("SINKD_FUZZ_CASES", "400"))
SECONDS = float(os.environ.get("SINKD_FUZZ_SECONDS", "20"))

# --- HTML and CSS ---------------------------------------------------------------------------------

# fmt: off
TAGS = [
    "div", "span", "p", "a", "b", "i", "font", "table", "tr", "td", "center", "img", "script",
    "style", "iframe", "frame", "object", "embed", "applet", "video", "audio", "source",
    "picture", "svg", "image", "form", "input", "button", "select", "textarea", "meta", "link",
    "body", "head", "html", "title", "template", "noscript", "math", "bgsound", "marquee", "base",
    "br", "hr", "ul", "li", "sinkd-mark", "xml",
]
ATTRS = [
    "style", "src", "href", "srcset", "width", "height", "hidden", "class", "id", "color",
    "bgcolor", "background", "text", "type", "data", "action", "onclick", "onload", "onerror",
    "http-equiv", "content", "xlink:href", "values", "to", "from", "name", "alt",
]
URLS = (
    "https://cdn.example/logo.png",
    "http://t.example/o.gif?u=1",
    "//img.example/x.jpg",
    "cid:logo@x",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
    " \tjava\nscript:x",
    "vbscript:msgbox",
    "&#106;avascript:x",
    "https://www.youtube.com/embed/abc",
    "",
    "relative/path.swf",
    "http://[::1",
    "https://exa mple.com/%zz",
)
CSS_PROPS = [
    "display", "visibility", "opacity", "position", "left", "top", "text-indent", "height",
    "max-height", "width", "max-width", "overflow", "overflow-x", "mso-hide", "font-size", "font",
    "color", "background", "background-color", "background-image", "list-style-image",
    "border-image", "behavior", "-moz-binding", "content",
]
# fmt: on

CSS_VALUES = (
    "none",
    "hidden",
    "0",
    "0.01",
    "absolute",
    "-9999px",
    "1px",
    "0/0 a",
    "#fff",
    "#ffffff",
    "rgb(255,255,254)",
    "rgba(0,0,0,0)",
    "hsl(0, 0%, 100%)",
    "transparent",
    "currentColor",
    "url(http://x.example/bg.gif)",
    "url(data:image/png;base64,AAAA;)",
    "url(bad url)",
    'url("unterminated',
    "expression(alert(1))",
    "javascript:x",
    "linear-gradient(red, blue)",
    "calc(1px + )",
    "!important",
    "1e400px",
    "-0.0em",
    "NaN",
    "inf",
    "\\",
    "\x00",
    "1.5.5px",
    "}",
    ")",
    "]",
    "'",
    '"',
)
GARBAGE = (
    "<!--",
    "-->",
    "//-->",
    "/*",
    "*/",
    "}",
    "{",
    "@media",
    "@media screen {",
    "@supports (display:none) {",
    "@import url(x.css);",
    "@font-face {",
    "@charset 'x';",
    ":::",
    ">>",
    "[",
    "(",
    ";",
    "\\",
    '"',
    "'",
    "\x00",
    "\ufffd",
    "\ud800",
    "@",
    "!",
    "#",
    "@media{@media{@media{@media{@media{",
)
TEXTS = (
    "Hello",
    "Your statement is ready",
    "&nbsp;",
    "&zwnj;&#847;",
    "&amp",
    "&#0;",
    "&#x110000;",
    "&#xd800;",
    "&bogus;",
    "\u200b\u200c\u200d",
    "V\u00adi\u00adag\u00adr\u00ada",
    "\x00\x01\x07\x1b",
    "\r",
    "\u202e",
    "شركة\u200cكبيرة",
    "😀\u200d😀",
    "<![CDATA[x]]>",
    "<!doctype html>",
    "<?xml?>",
    "</",
    "<",
    ">",
)


def css_value(rnd: random.Random) -> str:
    return " ".join(rnd.choice(CSS_VALUES) for _ in range(rnd.randint(1, 3)))


def declarations(rnd: random.Random) -> str:
    pieces = []
    for _ in range(rnd.randint(0, 5)):
        if rnd.random() < 0.15:
            pieces.append(rnd.choice(GARBAGE))
        else:
            pieces.append(f"{rnd.choice(CSS_PROPS)}:{css_value(rnd)}")
    return rnd.choice((";", "; ", ";;", "")).join(pieces)


def selector(rnd: random.Random) -> str:
    simple = ("div", "p", ".hidden", "#x", "*", "a:hover", "td > span", "[hidden]", "img", "body")
    broken = (":::", "div[", "p::before", ":nth-child(", ">>", "a,,b", "\\", "::-moz-x", "")
    pool = broken if rnd.random() < 0.25 else simple
    return ", ".join(rnd.choice(pool) for _ in range(rnd.randint(1, 3)))


def stylesheet(rnd: random.Random, depth: int = 0) -> str:
    out = []
    for _ in range(rnd.randint(0, 5)):
        roll = rnd.random()
        if roll < 0.15 and depth < 7:
            prelude = rnd.choice(("", "screen", "(max-width: 600px)", "only screen", "print"))
            at = rnd.choice(("media", "supports", "media", "font-face", "page"))
            close = "}" if rnd.random() < 0.8 else ""
            out.append(f"@{at} {prelude} {{{stylesheet(rnd, depth + 1)}{close}")
        elif roll < 0.3:
            out.append(rnd.choice(GARBAGE))
        else:
            close = "}" if rnd.random() < 0.85 else ""
            out.append(f"{selector(rnd)} {{{declarations(rnd)}{close}")
    return "\n".join(out)


def attribute(rnd: random.Random) -> str:
    name = rnd.choice(ATTRS)
    roll = rnd.random()
    if name == "style":
        value = declarations(rnd)
    elif name in ("src", "href", "data", "action", "background", "xlink:href", "values", "to"):
        value = rnd.choice(URLS)
    elif name == "srcset":
        value = f"{rnd.choice(URLS)} 1x, {rnd.choice(URLS)} 2x"
    elif name in ("width", "height"):
        value = rnd.choice(("1", "0", "1px", "100%", "-1", "abc", "1e9", ""))
    elif name in ("color", "bgcolor", "text"):
        value = rnd.choice(("#fff", "ffffff", "white", "#fffffe", "red", "#zzz", ""))
    else:
        value = rnd.choice(TEXTS)
    if roll < 0.03:
        value = value * rnd.randint(2000, 20000)  # huge values
    quote = rnd.choice(('"', "'", ""))
    if quote and value.count(quote):
        value = value.replace(quote, "&quot;")
    if rnd.random() < 0.1:
        return name  # bare attribute
    return f"{name}={quote}{value}{quote}"


def html_tree(rnd: random.Random, depth: int, budget: list[int]) -> str:
    out = []
    while budget[0] > 0 and rnd.random() < 0.8:
        budget[0] -= 1
        roll = rnd.random()
        if roll < 0.25:
            out.append(rnd.choice(TEXTS))
        elif roll < 0.3:
            out.append(f"<style>{stylesheet(rnd)}</style>")
        else:
            tag = rnd.choice(TAGS)
            attrs = " ".join(attribute(rnd) for _ in range(rnd.randint(0, 4)))
            inner = html_tree(rnd, depth + 1, budget) if depth < 12 else ""
            close = f"</{tag}>" if rnd.random() < 0.85 else ""
            out.append(f"<{tag} {attrs}>{inner}{close}")
    return "".join(out)


def html_document(rnd: random.Random) -> str:
    body = html_tree(rnd, 0, [rnd.randint(1, 60)])
    roll = rnd.random()
    if roll < 0.05:
        depth = rnd.choice((300, 3000, 7000))  # past MAX_DEPTH too: reported, not parsed
        body = "<div>" * depth + body + "</div>" * rnd.randint(0, depth)
    elif roll < 0.1:
        body = "<table><tr><td>" * rnd.randint(50, 400) + body
    if rnd.random() < 0.5:
        head = f"<head><style>{stylesheet(rnd)}</style></head>" if rnd.random() < 0.7 else ""
        body = f"<!doctype html><html>{head}<body {attribute(rnd)}>{body}</body></html>"
    return mutate_text(rnd, body)


def mutate_text(rnd: random.Random, text: str) -> str:
    """Byte-level damage: truncation, duplication, and random characters inserted."""
    for _ in range(rnd.randint(0, 3)):
        if not text:
            break
        at = rnd.randrange(len(text) + 1)
        roll = rnd.random()
        if roll < 0.3:
            text = text[:at]
        elif roll < 0.6:
            end = min(len(text), at + rnd.randint(1, 200))
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at] + rnd.choice(GARBAGE + TEXTS) + text[at:]
    return text


# --- MIME -----------------------------------------------------------------------------------------

CHARSETS = (
    "utf-8",
    "us-ascii",
    "iso-8859-1",
    "windows-1252",
    "x-foo",
    "utf-7",
    "utf-16",
    "utf-32",
    "iso-2022-jp",
    "",
    '"utf-8',
    "unicode-1-1-utf-7",
    "base64",
    "utf-8\x00",
)
ENCODINGS = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", "")


def transfer_encode(rnd: random.Random, data: bytes, cte: str) -> bytes:
    if cte == "base64":
        encoded = base64.encodebytes(data)
        roll = rnd.random()
        if roll < 0.15:
            encoded = encoded[: rnd.randrange(len(encoded) + 1)]  # truncated
        elif roll < 0.3:
            encoded = encoded.replace(b"A", b"*").replace(b"=", b"")  # invalid characters
        return encoded
    if cte == "quoted-printable":
        import quopri

        encoded = quopri.encodestring(data)
        if rnd.random() < 0.3:
            encoded += rnd.choice((b"=", b"=Z", b"=ZZ", b"=\r", b"=0"))
        return encoded
    return data


def charset_bytes(rnd: random.Random, text: str, charset: str) -> bytes:
    name = charset.strip('"').strip("\x00")
    try:
        return text.encode(name or "utf-8", errors="surrogatepass")
    except (LookupError, UnicodeError):
        data = text.encode("utf-8", errors="surrogatepass")
    if rnd.random() < 0.3:
        data += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 9)))
    return data


def header_noise(rnd: random.Random) -> bytes:
    options = (
        b"Subject: =?utf-8?B?###?=\r\n",
        b"Subject: =?x-foo?Q?caf=E9?=\r\n",
        b"Subject: caf\xe9 \xff\xfe\r\n",
        b"From: \xc3\x28 <a@b>\r\n",
        b"X-Dup: 1\r\nX-Dup: 2\r\n",
        b"Content-Type: text/plain\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%FF%FE%zz.exe\r\n",
        b"Content-Disposition: attachment; filename*0*=utf-8''a; filename*1=b.js\r\n",
        b'Content-Disposition: inline; filename="' + b"a" * 3000 + b'.pdf"\r\n',
        b"X-Long: " + b"x" * 1500 + b"\r\n",
        b"no colon here\r\n",
        b" folded continuation\r\n",
        b"Content-ID: <\x00>\r\n",
        b"",
    )
    return b"".join(rnd.choice(options) for _ in range(rnd.randint(0, 2)))


def zip_bytes(rnd: random.Random, depth: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(rnd.randint(0, 4)):
            name = rnd.choice(("invoice.exe", "a.pdf.js", "doc/readme.txt", "inner.zip", "ü.scr"))
            if name.endswith(".zip") and depth < 3:
                archive.writestr(f"{index}{name}", zip_bytes(rnd, depth + 1))
            elif name.endswith((".exe", ".scr")):
                archive.writestr(f"{index}{name}", pe_bytes())
            else:
                archive.writestr(f"{index}{name}", b"hello " * rnd.randint(0, 50))
    data = buffer.getvalue()
    if rnd.random() < 0.2:
        data = data[: rnd.randrange(len(data) + 1)]  # truncated archive
    return data


OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
GZIP_MAGIC = b"\x1f\x8b\x08"


def file_bytes(rnd: random.Random) -> tuple[str, bytes]:
    """An attachment's name and bytes: archives, Office and OLE documents, gzip, programs, all
    of them possibly truncated or with bytes flipped."""
    roll = rnd.random()
    if roll < 0.3:
        name, data = "statement.zip", zip_bytes(rnd)
    elif roll < 0.5:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(
                "[Content_Types].xml",
                rnd.choice(
                    (
                        b'<Types><Override ContentType="application/'
                        b'vnd.ms-word.document.macroEnabled.main+xml"/></Types>',
                        b"<Types><Override ContentType=",
                        b"\xff\xfe\x00<",
                        b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><Types>&a;&a;</Types>",
                    )
                ),
            )
            if rnd.random() < 0.5:
                archive.writestr("word/vbaProject.bin", OLE_MAGIC + bytes(rnd.randint(0, 600)))
        name, data = rnd.choice(("report.docm", "report.docx", "sheet.xlsx")), buffer.getvalue()
    elif roll < 0.65:
        name = rnd.choice(("letter.doc", "sheet.xls", "setup.msi"))
        data = OLE_MAGIC + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 1500)))
    elif roll < 0.8:
        name = rnd.choice(("data.csv.gz", "a.tgz", "x.gz"))
        data = GZIP_MAGIC + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300)))
    else:
        name, data = rnd.choice(("invoice.pdf.exe", "run.scr", "noext")), pe_bytes()
    for _ in range(rnd.randint(0, 3) if rnd.random() < 0.4 else 0):
        if data:
            at = rnd.randrange(len(data))
            data = data[:at] + bytes([rnd.randrange(256)]) + data[at + 1 :]  # a flipped byte
    return name, data


def leaf(rnd: random.Random, depth: int) -> bytes:
    roll = rnd.random()
    charset = rnd.choice(CHARSETS)
    disposition = b""
    if roll < 0.35:
        ctype = f"text/html; charset={charset}".encode()
        data = charset_bytes(rnd, html_document(rnd), charset)
    elif roll < 0.5:
        ctype = f"text/plain; charset={charset}".encode()
        data = charset_bytes(rnd, mutate_text(rnd, "Hello,\nsee attached.\n" * 3), charset)
    elif roll < 0.58:
        ctype = b"image/svg+xml"
        data = f"<svg><script>x()</script>{html_document(rnd)}</svg>".encode(
            "utf-8", "surrogatepass"
        )
    elif roll < 0.66:
        ctype, data = b"image/png", b"\x89PNG\r\n\x1a\n" + bytes(rnd.randint(0, 300))
        disposition = rnd.choice((b"inline", b'attachment; filename="logo.png"', b""))
    elif roll < 0.76:
        name, data = file_bytes(rnd)
        ctype = b"application/octet-stream; name=" + name.encode()
        disposition = b'attachment; filename="' + name.encode() + b'"'
    elif roll < 0.82:
        ctype, data = b"application/octet-stream", pe_bytes()
        disposition = b'attachment; filename="invoice.pdf.exe"'
    elif roll < 0.88 and depth < 4:
        ctype, data = b"message/rfc822", message_bytes(rnd, depth + 1)
    elif roll < 0.92:
        ctype, data = b"video/mp4", bytes(rnd.randint(0, 64))
    else:
        ctype = rnd.choice((b"text/html", b"application/x-unknown", b"", b"text/", b"/", b"x"))
        data = mutate_text(rnd, "<p>part without much of a header</p>").encode("utf-8", "replace")
    cte = rnd.choice(ENCODINGS)
    if ctype.startswith(b"message/") and rnd.random() < 0.7:
        cte = "7bit"
    headers = b""
    if ctype or rnd.random() < 0.8:
        headers += b"Content-Type: " + ctype + b"\r\n"
    if cte:
        headers += b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n"
    if disposition:
        headers += b"Content-Disposition: " + disposition + b"\r\n"
    headers += header_noise(rnd) if rnd.random() < 0.2 else b""
    return headers + b"\r\n" + transfer_encode(rnd, data, cte)


def entity(rnd: random.Random, depth: int) -> bytes:
    if depth >= 5 or rnd.random() < 0.5:
        return leaf(rnd, depth)
    subtype = rnd.choice((b"mixed", b"alternative", b"related", b"signed", b"digest"))
    boundary = rnd.choice(
        (
            f"b{depth}-{rnd.randrange(1000)}".encode(),
            b"same",  # nested parts reuse it
            b"",
            b"x" * 100,  # longer than RFC 2046 allows
            b"with space",
            b"\xff\xfe",
        )
    )
    children = [entity(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    quoted = rnd.random() < 0.5
    param = b'"' + boundary + b'"' if quoted else boundary
    header = b"Content-Type: multipart/" + subtype
    if rnd.random() < 0.9:
        header += b"; boundary=" + param
    header += b"\r\n"
    if rnd.random() < 0.05:
        header += b"Content-Type: multipart/mixed; boundary=other\r\n"  # duplicate field
    body = b"preamble\r\n" if rnd.random() < 0.3 else b""
    for child in children:
        delimiter = boundary if rnd.random() < 0.9 else boundary[:-1] + b"!"
        body += b"--" + delimiter + b"\r\n" + child + b"\r\n"
    if rnd.random() < 0.8:
        body += b"--" + boundary + b"--\r\n"
    if rnd.random() < 0.2:
        body += b"epilogue --" + boundary + b"\r\nstray\r\n"
    return header + b"\r\n" + body


def message_bytes(rnd: random.Random, depth: int = 0) -> bytes:
    head = (
        b"From: News <news@sender.example>\r\n"
        b"To: Bob <bob@corp.example>\r\n"
        b"Subject: Fuzz\r\n"
        b"Date: Mon, 03 Jun 2024 10:00:00 +0000\r\n"
        b"Message-ID: <fuzz@sender.example>\r\n"
        b"MIME-Version: 1.0\r\n"
    )
    if rnd.random() < 0.2:
        head = header_noise(rnd) + head
    raw = head + entity(rnd, depth)
    if depth == 0:
        roll = rnd.random()
        if roll < 0.1:
            raw = raw[: rnd.randrange(len(raw) + 1)]  # truncated in transit
        elif roll < 0.15:
            raw = raw.replace(b"\r\n", b"\n")
        elif roll < 0.2:
            raw = raw.replace(b"\r\n", rnd.choice((b"\r", b"\n\r", b"\r\r\n")), 5)
        elif roll < 0.35:
            raw = shuffle_lines(rnd, raw)
    return raw


def shuffle_lines(rnd: random.Random, raw: bytes) -> bytes:
    """Line-level damage: lines (headers, boundaries, blank separators) dropped, doubled, moved."""
    lines = raw.split(b"\r\n")
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(lines))
        roll = rnd.random()
        if roll < 0.4:
            del lines[at]
        elif roll < 0.7:
            lines.insert(at, lines[at])
        else:
            lines.insert(rnd.randrange(len(lines) + 1), lines.pop(at))
        if not lines:
            break
    return b"\r\n".join(lines)


# --- the paths ------------------------------------------------------------------------------------


def exercise_parse(message: ParsedMessage) -> None:
    """Everything filters read from a message."""
    _ = message.tree
    _ = message.message
    _ = message.subject
    _ = message.header_from
    _ = message.body_text
    _ = message.html_bodies
    _ = message.defects
    _ = message.raw_issues
    _ = getattr(message, "body_parts", None)  # the decoded text the content rules read
    for node in message.tree.leaves():
        node.payload(message.raw)
        if node.content_type.startswith("text/"):
            node.text(message.raw)


def file_paths(raw: bytes) -> None:
    """The attachment inspector on every leaf, with the default limits and with tight ones."""
    message = parse(raw)
    for node in message.tree.leaves():
        data = node.payload(raw)
        for limits in (Limits(), Limits(max_depth=1, max_members=3, max_total_bytes=4096)):
            for _ in inspect_file(node.filename, node.content_type, data, limits).walk():
                pass


def html_paths(html: str) -> None:
    """The HTML policy's own entry points, on one HTML text."""
    inspect_html(html)
    inspect_html(html, plan=HTML_CLASSES)
    strip_html(html, HTML_CLASSES)
    mark_html(html, HTML_CLASSES, "data-sinkd")
    for cls in HTML_CLASSES:
        strip_html(html, (cls,))


def strip_everything(raw: bytes) -> None:
    """The strip path with every HTML class planned for every HTML part and every other leaf
    replaced by a notice: the filtered message parses again, with as many leaves as before."""
    message = parse(raw)
    tree = message.tree
    parts: dict[str, str] = {}
    html: dict[str, frozenset[str]] = {}
    for node in tree.leaves():
        if node.content_type == "text/html":
            html[node.path] = frozenset(HTML_CLASSES)
            html_paths(node.text(raw))
        else:  # the message itself too, when it is one part (a lone attachment)
            parts[node.path] = f"[{node.filename} was removed]"
    filtered, _lines = apply_strip(message, StripPlan(parts, html))
    again = parse(filtered)
    exercise_parse(again)
    assert len(again.tree.leaves()) == len(tree.leaves()), "the filtered message lost parts"


async def judge_everywhere(raw: bytes, profiles: ProfileSet, spamd: tuple[str, int]) -> None:
    for name in profiles.names():
        verdicts = await Judge(profiles, profile=name, spamd=spamd).evaluate(
            raw,
            MailEnvelope("news@sender.example", ("bob@corp.example",)),
            Identity(ClientIdentity(ip="192.0.2.10", helo="mail.sender.example", source="option")),
        )
        for verdict in verdicts:
            errors = [
                f"{f.code}: {f.detail.get('error', f.reason)}"
                for f in verdict.findings
                if f.unjudged is Unjudged.ERROR
            ]
            assert not errors, f"profile {name}: {errors}"
            if verdict.filtered is not None:
                exercise_parse(parse(verdict.filtered))


async def test_hostile_html_css_and_mime_never_make_a_filter_raise() -> None:
    profiles = ProfileSet()
    rnd = random.Random(SEED)
    started = time.monotonic()
    done = 0
    with refused_port() as port:
        for case in range(CASES):
            # One generator per case, seeded from the run's: a failing case replays alone.
            case_seed = rnd.randrange(2**32)
            raw = message_bytes(random.Random(case_seed))
            try:
                exercise_parse(parse(raw))
                file_paths(raw)
                strip_everything(raw)
                await judge_everywhere(raw, profiles, ("127.0.0.1", port))
            except Exception as exc:
                detail = "".join(traceback.format_exception(exc))
                pytest.fail(
                    f"SINKD_FUZZ_SEED={SEED}: case {case} (message seed {case_seed}, "
                    f"rebuild with message_bytes(random.Random({case_seed}))) failed:\n{detail}"
                )
            done += 1
            if time.monotonic() - started > SECONDS:
                break
    assert done > 0
