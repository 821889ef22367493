"""core.html.scan: the walk skips the elements no detector reads (no attribute it reads, a tag
it ignores, an inert style, no <style> rule), so these pin what it finds and strips where an
element it skips stands between the one that hides and the text hidden."""

from __future__ import annotations

from sinkd.core.html import HtmlHit, inspect_html, strip_html

STRIP = {"active_script", "hidden_text"}


def found(html: str) -> list[tuple[str, str, str | None]]:
    return [(hit.cls, hit.what, hit.text) for hit in inspect_html(html).hits]


def stripped(html: str) -> str:
    return strip_html(html, STRIP)[0]


def test_a_colour_inherited_through_plain_elements_is_hidden_text_of_the_outer_element() -> None:
    html = (
        '<div style="color:#fff;background:#fff"><table><tr><td><span>white on white</span>'
        "</td></tr></table></div>"
    )
    what = '<div style="color:#fff;background:#fff"> (text colour #ffffff on background #ffffff)'

    assert found(html) == [("hidden_text", what, "white on white")]
    assert stripped(html) == (
        '<div style="color:#fff;background:#fff"><table><tbody><tr><td><span></span></td></tr>'
        "</tbody></table></div>"
    )


def test_a_style_rule_hiding_an_element_without_attributes_is_hidden_text() -> None:
    html = (
        "<html><head><style>td { display: none }</style></head><body><table><tr><td>hidden cell"
        "</td></tr></table><p>shown</p></body></html>"
    )

    assert found(html) == [
        ("hidden_text", "<td> hidden by <style> rule 'td' (display:none)", "hidden cell")
    ]
    assert "hidden cell" not in stripped(html)


def test_handlers_and_script_urls_are_found_whatever_the_case_of_their_names() -> None:
    html = '<P ONCLICK="x()">a</P><A HREF=" JaVa&#x09;Script:go()">b</A><B On="javascript:1">c</B>'

    assert [what for _cls, what, _text in found(html)] == [
        "onclick attribute on <p>",
        "javascript: URL in <a href>",
        "javascript: URL in <b on>",  # an attribute named "on" is read as a URL
    ]
    assert stripped(html) == "<p>a</p><a>b</a><b>c</b>"


def test_malformed_nesting_is_judged_on_the_tree_the_parser_builds() -> None:
    html = '<table><b><tr><td><font color=white>in a cell</td></b><p><span style="font-size:0">tiny'

    assert found(html) == [
        ("hidden_text", '<span style="font-size:0"> (tiny font)', "tiny"),
        (
            "hidden_text",
            '<font color="white"> (text colour #ffffff on background #ffffff)',
            "in a cell",
        ),
    ]


def test_an_svg_animation_below_plain_svg_elements_is_active_script() -> None:
    html = '<svg><g><a><g><set attributeName="href" to="javascript:alert(1)"/></g></a></g></svg>'

    assert found(html) == [("active_script", "javascript: URL in <set to> inside <svg>", None)]
    assert stripped(html) == '<svg><g><a><g><set attributeName="href"></set></g></a></g></svg>'


def test_a_colour_equal_to_the_inherited_one_changes_nothing_and_a_faint_one_hides() -> None:
    html = (
        '<div style="color:#000000"><span style="color:black">same colour</span>'
        '<span style="color:#fefefe">faint</span></div>'
    )

    assert found(html) == [
        (
            "hidden_text",
            '<span style="color:#fefefe"> (text colour #fefefe on background #ffffff)',
            "faint",
        )
    ]


def test_image_and_script_css_on_plain_elements_are_found() -> None:
    html = (
        '<span style="background-image:url(http://i.example/b.png)">x</span>'
        '<span style="behavior:url(a.htc)">y</span>'
    )

    assert [(cls, what) for cls, what, _text in found(html)] == [
        ("images", "background-image in style attribute on <span>: url(http://i.example/b.png)"),
        ("active_script", "script in CSS behavior:url(a.htc) in style attribute on <span>"),
    ]
    assert stripped(html) == (
        '<span style="background-image:url(http://i.example/b.png)">x</span><span>y</span>'
    )


def test_zero_width_characters_below_plain_elements_are_named_by_their_parent() -> None:
    html = "<div><span><em>fr\u200bee mo\u200bney</em></span></div>"

    assert strip_html(html, STRIP) == (
        "<div><span><em>free money</em></span></div>",
        [
            HtmlHit(
                "hidden_text",
                "zero-width characters (U+200B ×2) in <em>",
                "fr[U+200B]ee mo[U+200B]ney",
            )
        ],
    )


def test_an_element_a_media_rule_shows_again_is_not_hidden_text() -> None:
    html = (
        "<html><head><style>@media (max-width:600px){.m{display:block!important;"
        'max-height:none!important}}</style></head><body><div class="m" style="display:none;'
        'max-height:0;overflow:hidden">mobile text</div></body></html>'
    )

    assert found(html) == []
