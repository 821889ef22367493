"""core.html: what a corporate filter finds in an HTML body, and what stripping leaves."""

from __future__ import annotations

import base64
import random

import pytest

from sinkd.core.html import HTML_CLASSES, HtmlHit, HtmlReport, inspect_html, strip_html
from sinkd.core.message import parse
from tests.support.html import content_html
from tests.support.paths import MESSAGES

PREHEADER = (
    '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;mso-hide:all;">October news: three farms, '
    "one-click reorder and six soups &zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;</div>\n"
)


fixture = content_html


def benchmark_newsletter() -> str:
    """The clean newsletter with a marketing preheader: the per-message speed benchmark."""
    return fixture("newsletter.html").replace("<center style", PREHEADER + "<center style", 1)


def whats(report: HtmlReport, cls: str) -> list[str]:
    return [hit.what for hit in report.of(cls)]


def texts(report: HtmlReport) -> list[str]:
    return [hit.text or "" for hit in report.of("hidden_text")]


# --- the report ---------------------------------------------------------------------------------


def test_the_policy_classes_are_the_five_the_survey_names() -> None:
    assert HTML_CLASSES == (
        "images",
        "tracking_pixels",
        "multimedia",
        "active_script",
        "hidden_text",
    )


def test_a_report_selects_hits_by_class_and_names_the_classes_present() -> None:
    report = HtmlReport(
        (HtmlHit("images", "a"), HtmlHit("hidden_text", "b", "t"), HtmlHit("images", "c"))
    )
    assert [hit.what for hit in report.of("images")] == ["a", "c"]
    assert report.of("multimedia") == []
    assert report.classes() == frozenset({"images", "hidden_text"})


# --- a clean newsletter -------------------------------------------------------------------------


def test_a_realistic_newsletter_has_image_hits_and_nothing_else() -> None:
    report = inspect_html(fixture("newsletter.html"))
    assert report.classes() == {"images"}
    assert len(report.of("images")) == 12
    assert all("remote http(s):" in what for what in whats(report, "images"))


def test_the_benchmark_newsletter_is_20_kb_of_tables_with_200_style_attributes() -> None:
    html = benchmark_newsletter()
    assert 19_000 < len(html.encode()) < 24_000
    assert html.count(' style="') >= 200
    assert html.count("<table") >= 20 and html.count(" href=") >= 15


def test_a_newsletter_with_a_preheader_reports_only_that_preheader_as_hidden() -> None:
    report = inspect_html(benchmark_newsletter())
    assert texts(report) == ["October news: three farms, one-click reorder and six soups"]
    assert report.classes() == {"images", "hidden_text"}


# --- hidden preheaders --------------------------------------------------------------------------


def test_a_marketing_preheader_is_hidden_text_quoted_without_its_invisible_padding() -> None:
    report = inspect_html(fixture("hidden-preheader.html"))
    [hit] = report.hits
    assert hit.cls == "hidden_text"
    assert hit.what.startswith('<div style="display: none; font-size: 1px;')
    assert hit.text == "Your statement is ready – plus 20% off renewals this week only."


def test_a_long_hidden_text_is_collapsed_and_shortened_to_80_characters() -> None:
    words = " ".join(f"word{n}\n\t" for n in range(60))
    [hit] = inspect_html(f'<p style="display:none">{words}</p>').hits
    assert hit.text is not None
    assert len(hit.text) == 80 and hit.text.endswith("…")
    assert hit.text.startswith("word0 word1 word2 ")


# --- tracking pixels ----------------------------------------------------------------------------


def test_remote_images_of_one_pixel_or_less_are_tracking_pixels_and_images() -> None:
    report = inspect_html(fixture("tracking-pixel.html"))
    assert whats(report, "tracking_pixels") == [
        '<img src="https://t.example/o.gif"> 1x1',
        '<img src="https://open.tracker.example/pixel?u=4f2a"> 1x1',
        '<img src="https://beacon.example/b.png"> display:none',
        '<img src="https://stats.example/zero.gif"> 0x0',
    ]
    assert len(report.of("images")) == 8  # every <img>, pixels included


def test_only_images_fetched_from_the_network_are_marked_remote() -> None:
    html = (
        '<img src="https://cdn.example/a.png"><img src="//cdn.example/b.png">'
        '<img src="cid:logo"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<input type="image" src="http://cdn.example/go.png">'
        '<img srcset="https://cdn.example/c.png 2x">'
    )
    assert [hit.remote for hit in inspect_html(html).of("images")] == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]


def test_embedded_spacers_thin_dividers_and_banners_are_not_tracking_pixels() -> None:
    pixels = " ".join(whats(inspect_html(fixture("tracking-pixel.html")), "tracking_pixels"))
    for src in ("cid:spacer@shop.example", "divider.png", "banner.jpg", "logo.png"):
        assert src not in pixels


def test_an_image_inside_a_display_none_block_is_a_tracking_pixel() -> None:
    html = '<div style="display:none"><img src="https://t.example/x.gif"></div><p>Hi</p>'
    assert whats(inspect_html(html), "tracking_pixels") == [
        '<img src="https://t.example/x.gif"> display:none'
    ]


def test_an_image_shown_on_phones_by_a_media_query_is_not_a_tracking_pixel() -> None:
    html = (
        "<style>.mob { display: none } @media (max-width: 480px) { .mob { display: block } }"
        '</style><img class="mob" src="https://x.example/hero-mobile.jpg">'
        '<div class="mob" style="display:none"><img src="https://x.example/m.jpg"></div>'
    )
    report = inspect_html(html)
    assert report.of("tracking_pixels") == []
    assert len(report.of("images")) == 2


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "what"),
    [
        ('<img src="cid:logo@x">', '<img src="cid:logo@x"> cid: attachment'),
        ('<img src="https://x.example/a.png">', '<img src="https://x.example/a.png"> remote'),
        ('<img src="data:image/gif;base64,R0lGOD">', "data: URI, 1 KB"),
        ('<img srcset="a.png 1x, b.png 2x">', '<img srcset="a.png 1x, b.png 2x"> relative URL'),
        ('<input type="image" src="go.png">', '<input type="image" src="go.png">'),
        ('<picture><source srcset="a.webp"><img src="a.jpg"></picture>', "in <picture>"),
        ('<table background="bg.gif"><tr><td>x</td></tr></table>', "background attribute"),
        ('<div style="background-image: url(bg.png)">x</div>', "background-image in style"),
        ("<div style=\"background:#fff url('bg.png') no-repeat\">x</div>", "background in style"),
        ("<style>.hero { background: url(hero.jpg) }</style>", "in <style> rule '.hero'"),
        ('<svg><image href="https://x.example/i.png"/></svg>', "in <svg>"),
    ],
)
def test_every_kind_of_image_is_an_images_hit(html: str, what: str) -> None:
    assert any(what in hit for hit in whats(inspect_html(html), "images"))


def test_background_colours_and_gradients_are_not_images() -> None:
    html = (
        '<td style="background: #ffffff; background-color: #eee">a</td>'
        '<div style="background-image: linear-gradient(#fff, #000)">b</div>'
    )
    assert inspect_html(html).of("images") == []


# --- multimedia ---------------------------------------------------------------------------------


def test_every_multimedia_element_is_found_and_flash_is_named() -> None:
    report = inspect_html(fixture("multimedia.html"))
    found = whats(report, "multimedia")
    assert found[0] == "<video>"
    assert sum("in a media element" in what for what in found) == 2  # the two <source>s
    assert '<audio src="https://cdn.example/jingle.mp3">' in found
    assert '<embed src="https://cdn.example/intro.swf"> (Flash)' in found
    assert any(what.startswith("<object") and what.endswith("(Flash)") for what in found)
    assert '<bgsound src="https://cdn.example/theme.mid">' in found
    assert len(found) == 7
    # <embed> and <object> also run plugin code
    assert len(report.of("active_script")) == 2


# --- active script ------------------------------------------------------------------------------


def test_every_active_script_case_in_the_zoo_is_found() -> None:
    found = whats(inspect_html(fixture("script-zoo.html")), "active_script")
    assert found == [
        '<meta http-equiv="refresh" content="5;url=https://evil.example/landing">',
        "<script> (inline)",
        '<script> (src="https://evil.example/track.js")',
        "script in CSS behavior:url(https://evil.example/badge.htc) in <style> rule '.badge'",
        "onload attribute on <body>",
        "javascript: URL in <a href>",
        "javascript: URL in <a href>",
        "javascript: URL in <a href>",
        "vbscript: URL in <a href>",
        "onclick attribute on <a>",
        "onerror attribute on <img>",
        "onmouseover attribute on <div>",
        "script in CSS width:expression(alert(5)) in style attribute on <div>",
        '<iframe src="https://evil.example/frame.html">',
        '<object data="https://evil.example/applet.bin">',
        '<embed src="https://evil.example/plugin.bin">',
        '<applet code="Evil.class">',
        '<form action="https://evil.example/collect" method="post">',
        "javascript: URL in <button formaction>",
        "onload attribute on <svg>",
        "<script> (inline) inside <svg>",
        "javascript: URL in <a xlink:href> inside <svg>",
    ]


def test_json_ld_is_data_not_script() -> None:
    html = '<script type="application/ld+json">{"@type": "EmailMessage"}</script><p>Hi</p>'
    assert inspect_html(html).hits == ()


def test_ordinary_links_and_base_href_are_not_script() -> None:
    html = (
        '<base href="https://x.example/"><a href="https://x.example/a">a</a>'
        '<a href="mailto:a@x.example">m</a><a href="#top">t</a><a href="/javascript:">r</a>'
        '<a href="https://x.example/?next=javascript:x">q</a>'
    )
    assert inspect_html(html).hits == ()


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " \t\njavascript:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;&#x61;vascript:alert(1)",
        "java&Tab;script:alert(1)",
        "\x01javascript:alert(1)",
        "vbscript:MsgBox(1)",
    ],
)
def test_script_urls_are_recognised_as_a_browser_reads_them(href: str) -> None:
    report = inspect_html(f'<a href="{href}">x</a>')
    assert len(report.of("active_script")) == 1


def test_a_script_url_padded_far_beyond_its_scheme_is_still_found() -> None:
    padded = " " * 300 + "java" + "&#9;" * 100 + "script:alert(1)"
    assert len(inspect_html(f'<a href="{padded}">x</a>').of("active_script")) == 1


def test_a_frame_in_a_frameset_is_script() -> None:
    html = '<html><frameset><frame src="https://x.example/f.html"></frameset></html>'
    assert whats(inspect_html(html), "active_script") == ['<frame src="https://x.example/f.html">']


def test_an_svg_animation_that_writes_a_javascript_url_is_script() -> None:
    html = '<svg><a><set attributeName="href" to="javascript:alert(1)"/><text>x</text></a></svg>'
    assert whats(inspect_html(html), "active_script") == [
        "javascript: URL in <set to> inside <svg>"
    ]


# --- hidden text --------------------------------------------------------------------------------


def test_every_hidden_case_in_the_zoo_is_reported_exactly_once() -> None:
    found = texts(inspect_html(fixture("hidden-zoo.html")))
    for n in range(1, 19):
        marker = f"HIDDEN-{n:02d}"
        assert sum(marker in text for text in found) == 1, marker


def test_visible_text_in_the_zoo_is_not_reported() -> None:
    found = " ".join(texts(inspect_html(fixture("hidden-zoo.html"))))
    assert "VISIBLE" not in found


def test_hidden_hits_say_how_the_text_was_hidden() -> None:
    found = whats(inspect_html(fixture("hidden-zoo.html")), "hidden_text")
    assert '<div style="display: none;">' in found
    assert "<p class=\"hide-me\"> hidden by <style> rule '.hide-me' (display:none)" in found
    assert '<p style="color: #fefefe;"> (text colour #fefefe on background #ffffff)' in found
    assert '<p class="ghost"> (text colour #ffffff on background #ffffff)' in found
    assert '<span style="color: #232323;"> (text colour #232323 on background #222222)' in found
    assert '<div style="mso-hide: all;">' in found
    assert "<div hidden>" in found


def test_nested_hidden_elements_report_only_the_outermost_with_all_its_text() -> None:
    found = texts(inspect_html(fixture("hidden-zoo.html")))
    assert "HIDDEN-16 outer hidden with a hidden inner span." in found
    assert not any("with a hidden inner span" in t and "HIDDEN-16" not in t for t in found)


@pytest.mark.parametrize(
    ("color", "hidden"),
    [
        ("#ffffff", True),
        ("#fefefe", True),
        ("#eeeeee", True),  # distance 29.4: still unreadable on white
        ("rgba(0, 0, 0, 0.02)", True),
        ("transparent", True),
        ("#e5e5e5", False),  # distance 45
        ("#999999", False),
        ("#333", False),
        ("currentColor", False),
    ],
)
def test_text_is_hidden_when_its_colour_is_near_the_white_default_background(
    color: str, hidden: bool
) -> None:
    report = inspect_html(f'<p style="color: {color}">Words</p>')
    assert bool(report.of("hidden_text")) is hidden


def test_the_background_is_the_nearest_colour_set_by_attribute_or_style() -> None:
    html = (
        '<table bgcolor="000000"><tr><td><p style="color:#fff">on black</p>'
        '<div style="background: #ffffff"><p style="color:#fff">white on white</p></div>'
        "</td></tr></table>"
    )
    assert texts(inspect_html(html)) == ["white on white"]


def test_text_over_a_background_image_is_not_judged_by_colour() -> None:
    html = '<div style="background: url(hero.jpg)"><p style="color: #fff">Headline</p></div>'
    assert inspect_html(html).of("hidden_text") == []


def test_a_hover_rule_does_not_hide_a_link() -> None:
    html = '<style>a:hover { color: #ffffff !important; }</style><a href="https://x.example">Go</a>'
    assert inspect_html(html).hits == ()


def test_invalid_selectors_in_a_style_block_are_ignored_and_valid_ones_still_apply() -> None:
    html = (
        "<style>p::before, .gone { display: none } p:nth-child(]) { display: none }"
        "p:unknown-pseudo, .also { display: none }</style>"
        '<p>Stays</p><p class="gone">Goes</p><p class="also">Also goes</p>'
    )
    assert texts(inspect_html(html)) == ["Goes", "Also goes"]


def test_a_block_shown_again_by_a_media_query_is_responsive_layout_not_hidden_text() -> None:
    html = (
        "<style>.m { display: none; max-height: 0; overflow: hidden }"
        "@media (max-width: 480px) { .m { display: block !important; max-height: none } }</style>"
        '<div class="m">On phones</div><div style="display:none" class="m">Also phones</div>'
    )
    assert inspect_html(html).hits == ()


def test_zero_width_characters_in_visible_text_are_one_hit_per_element_with_the_text() -> None:
    report = inspect_html(fixture("hidden-zoo.html"))
    [hit] = [hit for hit in report.of("hidden_text") if hit.what.startswith("zero-width")]
    assert hit.what == "zero-width characters (U+200B ×3) in <p>"
    assert hit.text == "ZW-01 Claim your fr[U+200B]ee pr[U+200B]ize n[U+200B]ow."


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_each_zero_width_character_between_latin_letters_is_reported(char: str) -> None:
    report = inspect_html(f"<p>Buy che{char}ap now</p>")
    assert [hit.what for hit in report.hits] == [
        f"zero-width characters (U+{ord(char):04X} ×1) in <p>"
    ]


def test_emoji_joiners_persian_non_joiners_and_real_hyphenation_are_typography() -> None:
    html = (
        "<p>Family \U0001f468\u200d\U0001f469\u200d\U0001f467 day</p>"
        "<p>\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645</p>"
        "<p>Donau\u00addampf\u00adschiff\u00adfahrts\u00adgesellschaft</p>"
    )
    assert inspect_html(html).hits == ()


def test_soft_hyphens_between_most_letters_of_a_word_are_reported() -> None:
    report = inspect_html("<p>Cheap V\u00adi\u00ada\u00adg\u00adr\u00ada here</p>")
    assert [hit.what for hit in report.hits] == ["zero-width characters (U+00AD ×5) in <p>"]


# --- malformed and huge input -------------------------------------------------------------------


def test_malformed_html_with_5000_nested_divs_is_inspected_without_error() -> None:
    html = fixture("malformed.html")
    assert html.count("<div>") >= 5000
    report = inspect_html(html)
    assert '<img src="https://cdn.example/a.png"> remote http(s):' in whats(report, "images")
    assert "javascript: URL in <a href>" in whats(report, "active_script")
    assert texts(report) == ["Hidden in broken style"]


def test_malformed_html_is_stripped_of_every_class_without_error() -> None:
    out, removed = strip_html(fixture("malformed.html"), HTML_CLASSES)
    assert "deep text" in out and "semicolon data uri" in out
    assert inspect_html(out).hits == ()
    assert len(removed) == len(inspect_html(fixture("malformed.html")).hits)


def test_nul_and_control_characters_do_not_break_anything() -> None:
    html = '\x00<p>\x01a\x00b</p><img src="\x00https://x.example/p.gif" width=1 height=1>'
    report = inspect_html(html)
    assert report.classes() == {"images"}
    out, _ = strip_html(html, ["images"])
    assert "<img" not in out


def test_random_tag_soup_is_inspected_and_stripped_without_error() -> None:
    pieces = [
        "<div>", "</div>", "<p style='display:none'>", "<img src=x>", "<svg>", "<table>",
        "<td bgcolor=#000>", "<font color=#fff>", "<form>", "<input>", "<script>", "</script>",
        "<style>.a{color:#fff}</style>", "<a href='javascript:x'>", "text", "\u200b", "&zwnj;",
        "<!--", "-->", "<", ">", '"', "<video><source src=v.mp4>", "<picture>", "<object>",
    ]  # fmt: skip
    rng = random.Random(20240601)
    for _ in range(300):
        html = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        report = inspect_html(html)
        out, removed = strip_html(html, HTML_CLASSES)
        assert len(removed) == len(report.hits)
        # Hidden text may appear anew: a link stripped of its javascript: href loses its blue.
        assert inspect_html(out).classes() <= {"hidden_text"}


def test_a_2_mb_inline_image_is_one_image_hit_described_by_its_size() -> None:
    payload = base64.b64encode(random.Random(7).randbytes(1_500_000)).decode()
    html = f'<p>Before</p><img src="data:image/png;base64,{payload}" alt="big"><p>After</p>'
    report = inspect_html(html)
    [hit] = report.hits
    assert hit.cls == "images"
    assert hit.what.endswith("data: URI, 1.9 MB") and len(hit.what) < 120
    out, removed = strip_html(html, ["images"])
    assert out == "<p>Before</p><p>After</p>"
    assert removed == [hit]


# --- strip_html ---------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [["active_script"], ["hidden_text", "multimedia"], []])
def test_strip_returns_the_input_unchanged_when_nothing_of_those_classes_is_there(
    classes: list[str],
) -> None:
    html = fixture("newsletter.html")
    out, removed = strip_html(html, classes)
    assert out is html
    assert removed == []


def test_strip_rejects_an_unknown_class() -> None:
    with pytest.raises(ValueError, match="scripts"):
        strip_html("<p>x</p>", ["scripts"])


@pytest.mark.parametrize(
    "name",
    [
        "newsletter.html",
        "hidden-preheader.html",
        "tracking-pixel.html",
        "script-zoo.html",
        "hidden-zoo.html",
        "multimedia.html",
    ],
)
@pytest.mark.parametrize("cls", HTML_CLASSES)
def test_after_stripping_a_class_inspection_finds_none_of_it(name: str, cls: str) -> None:
    html = fixture(name)
    out, removed = strip_html(html, [cls])
    assert inspect_html(out).of(cls) == []
    assert [hit for hit in removed if hit.cls == cls] == inspect_html(html).of(cls)


def test_stripping_images_removes_them_and_keeps_every_story_and_link() -> None:
    html = fixture("newsletter.html")
    out, removed = strip_html(html, ["images"])
    assert "<img" not in out
    assert len(removed) == 12
    for words in ("Three farms, one valley", "Reorder in one click", "Unsubscribe"):
        assert words in out
    assert out.count("<a ") == html.count("<a ")


def test_stripping_images_keeps_the_other_declarations_of_a_style_attribute() -> None:
    html = '<td style="background:#fafafa url(bg.png) no-repeat; color: #333">Text</td>'
    out, _ = strip_html(f"<table><tr>{html}</tr></table>", ["images"])
    assert 'style="background-color: #fafafa; color: #333"' in out


def test_stripping_images_rewrites_style_rules_and_keeps_their_other_declarations() -> None:
    html = (
        "<style>.hero { background-image: url(hero.jpg); color: #333 } .x { top: 0 }</style>"
        '<div class="hero">Hi</div>'
    )
    out, removed = strip_html(html, ["images"])
    assert "url(" not in out and "color: #333" in out and ".x { top: 0 }" in out
    assert [hit.cls for hit in removed] == ["images"]


def test_stripping_rewrites_only_style_rules_and_leaves_font_faces_alone() -> None:
    css = (
        "@font-face { font-family: Brand; src: url(brand.woff2) } "
        "@media screen { .a { background: url(a.png); color: red } } .b { behavior: url(b.htc) }"
    )
    out, removed = strip_html(f'<style>{css}</style><p class="a">t</p>', HTML_CLASSES)
    assert "@font-face { font-family: Brand; src: url(brand.woff2) }" in out
    assert "@media screen { .a {color: red } }" in out  # the rule keeps its colour
    assert "a.png" not in out and "b.htc" not in out
    assert [hit.cls for hit in removed] == ["images", "active_script"]


def test_stripping_tracking_pixels_removes_only_the_pixels() -> None:
    out, removed = strip_html(fixture("tracking-pixel.html"), ["tracking_pixels"])
    for kept in ("logo.png", "banner.jpg", "divider.png", "cid:spacer@shop.example"):
        assert kept in out
    for gone in ("o.gif", "pixel?u=4f2a", "b.png", "zero.gif"):
        assert gone not in out
    # a removed pixel takes its images hit with it
    assert sorted({hit.cls for hit in removed}) == ["images", "tracking_pixels"]
    assert len(removed) == 8


def test_stripping_multimedia_removes_players_and_keeps_the_words() -> None:
    out, removed = strip_html(fixture("multimedia.html"), ["multimedia"])
    for gone in ("<video", "<audio", "<embed", "<object", "<bgsound", "Your mail client"):
        assert gone not in out
    assert "Watch our new product film." in out and "Thanks for watching." in out
    # the plugin hits of <embed> and <object> went with them
    assert len(removed) == 9


def test_stripping_active_script_leaves_the_message_readable() -> None:
    out, removed = strip_html(fixture("script-zoo.html"), ["active_script"])
    assert inspect_html(out).classes() == {"images"}
    # the multimedia hits of the removed <object> and <embed> went with them
    assert [hit.cls for hit in removed].count("active_script") == 22
    assert [hit.cls for hit in removed].count("multimedia") == 2
    for words in ("Track it here", "plain javascript link", "hover me", "svg link"):
        assert words in out
    assert 'href="https://shop.example/orders/1"' in out
    assert "application/ld+json" in out and '<base href="https://assets.example/">' in out


def test_a_stripped_form_keeps_its_words_and_loses_its_fields() -> None:
    html = '<p>Intro</p><form action="https://x.example"><label>Name <input name="n"></label>'
    html += "<select><option>a</option></select> and <button>Send</button> done</form>"
    out, removed = strip_html(html, ["active_script"])
    assert out == "<p>Intro</p><label>Name </label> and  done"
    assert [hit.what for hit in removed] == ['<form action="https://x.example">']


def test_a_stripped_form_loses_its_handlers_along_with_its_fields() -> None:
    html = (
        '<form onsubmit="send()" action="https://x.example">Hi <input onclick="x()"> there</form>'
    )
    out, removed = strip_html(html, ["active_script"])
    assert out == "Hi  there"
    assert len(removed) == 3


def test_stripping_hidden_text_removes_the_preheader_and_keeps_the_message() -> None:
    out, removed = strip_html(fixture("hidden-preheader.html"), ["hidden_text"])
    assert "renewals" not in out and "\u200c" not in out
    assert "Your October statement is ready" in out
    assert [hit.cls for hit in removed] == ["hidden_text"]


def test_stripping_hidden_text_removes_zero_width_characters_and_keeps_the_words() -> None:
    out, _ = strip_html("<p>Claim your fr&#8203;ee pr&zwnj;ize</p>", ["hidden_text"])
    assert out == "<p>Claim your free prize</p>"


def test_stripping_faint_text_keeps_what_a_descendant_made_visible_again() -> None:
    html = (
        '<div style="color:#ffffff">Ghost words<table><tr><td bgcolor="#000000">Seen words'
        "</td></tr></table></div>"
    )
    out, removed = strip_html(html, ["hidden_text"])
    assert "Ghost words" not in out and "Seen words" in out
    assert [hit.text for hit in removed] == ["Ghost words"]


def test_a_stripped_fragment_stays_a_fragment() -> None:
    html = '<style>.a { color: red }</style><p class="a">Hi <img src="x.png"></p>'
    out, _ = strip_html(html, ["images"])
    assert out == '<style>.a { color: red }</style><p class="a">Hi </p>'


def test_a_fragment_that_starts_with_a_header_element_is_not_taken_for_a_document() -> None:
    out, _ = strip_html('<header>Hi</header><img src="x.png">', ["images"])
    assert out == "<header>Hi</header>"


def test_a_stripped_document_stays_a_whole_document() -> None:
    out, _ = strip_html(fixture("tracking-pixel.html"), ["images"])
    assert out.startswith("<html><head></head><body>")
    assert out.endswith("</body></html>")
    out, _ = strip_html(fixture("hidden-preheader.html"), ["hidden_text"])
    assert out.startswith("<!DOCTYPE html><html")
    assert "<title>Your October statement</title>" in out


# --- hostile HTML: judged and stripped, never an exception ----------------------------------------

HOSTILE = MESSAGES / "hostile"


def test_a_style_block_ending_in_an_unfinished_rule_is_rewritten_without_it() -> None:
    # SpamAssassin corpus spam-2/01042: "<!-- ... //-->" around the CSS leaves "//-->" as a rule
    # with no block, which tinycss2 cannot serialize and browsers drop.
    css = "<!--\nbody { background-image: url(http://x.example/bg.gif); color: red }\n//-->\n"
    html = f"<style>{css}</style><p>Offer</p>"
    out, removed = strip_html(html, ["images"])
    assert [hit.cls for hit in removed] == ["images"]
    assert "bg.gif" not in out and "//-->" not in out
    assert "body {color: red }" in out
    assert [hit.cls for hit in inspect_html(html, plan=HTML_CLASSES).hits] == ["images"]


def test_the_corpus_style_tail_reproduction_strips_its_script_and_image_rules() -> None:
    html = (HOSTILE / "style-comment-tail.eml").read_bytes().split(b"\r\n\r\n", 1)[1].decode()
    out, removed = strip_html(html, HTML_CLASSES)
    assert sorted(hit.cls for hit in removed) == ["active_script", "images"]
    assert "badge.htc" not in out and "bg.gif" not in out
    assert "background-repeat: repeat-y" in out and "Special offer inside." in out


def test_a_hidden_root_element_hides_the_whole_document_and_stripping_empties_it() -> None:
    # An <html hidden> tag inside the body moves its attribute onto the root element (WHATWG
    # HTML, "in body" insertion mode): the root cannot be removed, its content can.
    html = "<body><p>Visible at first</p><html hidden><p>Secret words</p>"
    [hit] = inspect_html(html).of("hidden_text")
    assert hit.what == "<html hidden>" and hit.text == "Visible at firstSecret words"
    out, removed = strip_html(html, ["hidden_text"])
    assert [h.cls for h in removed] == ["hidden_text"]
    assert out == '<html hidden=""></html>'


def test_a_css_number_longer_than_python_converts_is_read_and_stripped() -> None:
    # CPython refuses int() of more than 4300 digits, and tinycss2 int()s every integer token.
    digits = "9" * 5000
    html = (
        f"<style>.wide {{ width: {digits}px; behavior: url(x.htc) }} .gone {{ display: none }}"
        '</style><p class="wide">Hello</p><p class="gone">Secret</p>'
    )
    report = inspect_html(html, plan=HTML_CLASSES)
    assert sorted(hit.cls for hit in report.hits) == ["active_script", "hidden_text"]
    out, removed = strip_html(html, HTML_CLASSES)
    assert sorted(hit.cls for hit in removed) == ["active_script", "hidden_text"]
    assert "x.htc" not in out and "Secret" not in out and "Hello" in out
    assert f"width: {digits[:4000]}px" in out  # the number is cut, the rule kept


def test_the_huge_number_reproduction_is_inspected() -> None:
    raw = (HOSTILE / "css-huge-number.eml").read_bytes()
    [node] = parse(raw).tree.leaves()
    [hit] = inspect_html(node.text(raw)).hits
    assert hit.label == "script in <style> rule '.wide'"


# --- labels: the element a reason names ------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "cls", "label"),
    [
        (
            '<iframe src="https://www.youtube.com/embed/x?a=1"></iframe>',
            "active_script",
            "<iframe> from www.youtube.com",
        ),
        (
            '<script src="https://evil.example:8443/t.js"></script>',
            "active_script",
            "<script> from evil.example",
        ),
        ("<script>document.write(1)</script>", "active_script", "inline <script>"),
        ('<a href="#" onclick="go()">x</a>', "active_script", "onclick handler on <a>"),
        ('<a href=" java\tscript:go()">x</a>', "active_script", "javascript: link in <a>"),
        (
            '<form action="https://collect.example/p"><input></form>',
            "active_script",
            "<form> sending to collect.example",
        ),
        (
            '<form action="thankyou.php"><input></form>',
            "active_script",
            '<form> sending to "thankyou.php"',
        ),
        ("<form><input></form>", "active_script", "<form>"),
        (
            '<meta http-equiv="refresh" content="0; url=https://go.example/x">',
            "active_script",
            "<meta> refresh to go.example",
        ),
        (
            '<div style="width:expression(alert(1))">x</div>',
            "active_script",
            "script in the style of <div>",
        ),
        ('<img src="https://cdn.esp.example/logo.png">', "images", "<img> from cdn.esp.example"),
        ('<img src="cid:logo@shop.example">', "images", "<img> cid:logo@shop.example"),
        ('<img src="data:image/png;base64,AAAA">', "images", "<img> (data: URI)"),
        (
            '<table><tr><td style="background: url(//img.example/bg.png)">x</td></tr></table>',
            "images",
            "background image on <td> from img.example",
        ),
        (
            "<style>.hero { background-image: url(https://a.example/h.jpg) }</style>",
            "images",
            "background image in <style> rule '.hero' from a.example",
        ),
        (
            '<img src="https://t.example/o.gif" width="1" height="1">',
            "tracking_pixels",
            "1x1 <img> from t.example",
        ),
        (
            '<img src="https://t.example/o.gif" style="display:none">',
            "tracking_pixels",
            "hidden <img> from t.example",
        ),
        (
            '<video src="https://cdn.example/film.mp4"></video>',
            "multimedia",
            "<video> from cdn.example",
        ),
        (
            '<embed src="https://cdn.example/intro.swf">',
            "multimedia",
            "<embed> (Flash) from cdn.example",
        ),
    ],
)
def test_every_hit_names_its_element_and_where_its_content_comes_from(
    html: str, cls: str, label: str
) -> None:
    assert [hit.label for hit in inspect_html(f"<div>{html}</div>").of(cls)] == [label]
