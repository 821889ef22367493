"""Tests for sinkd.core.matching: word/phrase lists, regex sets and GTUBE."""

from __future__ import annotations

import re

import pytest

from sinkd.core.matching import GTUBE_TEXT, RegexSet, WordMatcher, excerpt, has_gtube, tokenize

# --- WordMatcher ----------------------------------------------------------------------------


def test_a_word_matches_only_whole_words() -> None:
    matcher = WordMatcher(["cash"])
    assert matcher.find("cashew nuts, cashback and precash") == {}
    assert matcher.find("send cash now") == {"cash": 1}


def test_matching_ignores_case() -> None:
    assert WordMatcher(["Viagra"]).find("VIAGRA viagra ViAgRa") == {"Viagra": 3}


def test_non_ascii_words_match_case_insensitively() -> None:
    assert WordMatcher(["café"]).find("Le CAFÉ est ouvert") == {"café": 1}


def test_a_decomposed_accent_matches_the_composed_one() -> None:
    # NFKC composes "e" + U+0301 into "é".
    assert WordMatcher(["café"]).find("CAFE\u0301") == {"café": 1}


def test_an_accent_is_not_ignored() -> None:
    assert WordMatcher(["café"]).find("cafe") == {}


def test_sharp_s_casefolds_to_ss_so_strasse_matches_both_spellings() -> None:
    # str.casefold() maps "ß" to "ss" (Unicode full case folding).
    assert "Straße".casefold() == "strasse"
    matcher = WordMatcher(["Straße"])
    assert matcher.find("STRASSE und Strasse und straße") == {"Straße": 3}


def test_compatibility_forms_are_folded() -> None:
    # Full-width letters and the "ﬁ" ligature (NFKC).
    assert WordMatcher(["cash", "fine"]).find("ＣＡＳＨ is ﬁne") == {"cash": 1, "fine": 1}


def test_invisible_characters_inside_a_word_do_not_hide_it() -> None:
    assert WordMatcher(["cash"]).find("c\u200ba\u00adsh") == {"cash": 1}


def test_combining_marks_stay_inside_a_word() -> None:
    # Devanagari vowel signs are marks, not \w; the word must still be one token.
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert WordMatcher(["हिन्दी"]).find("यह हिन्दी है") == {"हिन्दी": 1}
    assert WordMatcher(["हि"]).find("यह हिन्दी है") == {}


def test_a_phrase_matches_across_punctuation_and_line_breaks() -> None:
    matcher = WordMatcher(["wire transfer"])
    text = "wire transfer, wire-transfer, WIRE\n   Transfer and wire/transfer"
    assert matcher.find(text) == {"wire transfer": 4}


def test_a_phrase_needs_its_words_in_order_and_adjacent() -> None:
    matcher = WordMatcher(["wire transfer"])
    assert matcher.find("transfer wire, wire the transfer, wires transfer") == {}


def test_a_hyphenated_entry_is_a_phrase() -> None:
    matcher = WordMatcher(["e-mail"])
    assert matcher.find("E-Mail, e mail, e.mail but not email") == {"e-mail": 3}


def test_occurrences_are_counted_and_may_overlap() -> None:
    matcher = WordMatcher(["free", "ha ha"])
    assert matcher.find("free FREE free! ha ha ha") == {"free": 3, "ha ha": 2}


def test_a_phrase_and_its_words_are_counted_independently() -> None:
    matcher = WordMatcher(["wire transfer", "transfer"])
    assert matcher.find("wire transfer") == {"wire transfer": 1, "transfer": 1}


def test_blank_and_punctuation_only_entries_are_ignored() -> None:
    matcher = WordMatcher(["", "   ", "!!!", "cash"])
    assert len(matcher) == 1
    assert matcher.find("!!! cash") == {"cash": 1}


def test_duplicates_are_merged_under_the_first_spelling() -> None:
    matcher = WordMatcher(["Cash", "cash", "CASH", "wire transfer", "Wire-Transfer"])
    assert len(matcher) == 2
    assert matcher.find("cash wire transfer") == {"Cash": 1, "wire transfer": 1}


def test_an_empty_matcher_finds_nothing() -> None:
    matcher = WordMatcher([])
    assert len(matcher) == 0
    assert matcher.find("anything at all") == {}


def test_ten_thousand_entries_find_the_planted_hits_in_twenty_kilobytes() -> None:
    entries = [f"word{i:05d}" for i in range(9_000)]
    entries += [f"phrase{i:04d} part{i:04d}" for i in range(1_000)]
    matcher = WordMatcher(entries)
    assert len(matcher) == 10_000

    filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    text = filler * (20_000 // len(filler))
    planted = " word00042 word08999 phrase0007\npart0007 word00042 phrase0999-part0999 "
    text = text[:10_000] + planted + text[10_000:] + " part0005 phrase0005"
    assert len(text) > 20_000

    assert matcher.find(text) == {
        "word00042": 2,
        "word08999": 1,
        "phrase0007 part0007": 1,
        "phrase0999 part0999": 1,
    }


# --- RegexSet -------------------------------------------------------------------------------


def test_a_regex_set_reports_the_first_match_of_each_pattern() -> None:
    regexes = RegexSet([r"\bacc(?:ou)?nt\b", r"\d{4}-\d{4}", r"nomatch"])
    found = regexes.find("Your ACCOUNT 1234-5678 and 9999-0000")
    assert found == {r"\bacc(?:ou)?nt\b": "ACCOUNT", r"\d{4}-\d{4}": "1234-5678"}


def test_a_regex_set_can_be_case_sensitive() -> None:
    assert RegexSet(["Cash"], ignore_case=False).find("cash CASH") == {}
    assert RegexSet(["Cash"], ignore_case=False).find("Cash") == {"Cash": "Cash"}


def test_a_long_match_is_shortened_to_eighty_characters_with_an_ellipsis() -> None:
    found = RegexSet([r"x+"]).find("x" * 500)
    assert found == {"x+": "x" * 79 + "\u2026"}


def test_an_excerpt_is_one_line_and_short_text_is_kept_whole() -> None:
    assert excerpt("wire\n  transfer") == "wire transfer"
    assert excerpt("y" * 80) == "y" * 80


def test_a_regex_match_never_spans_two_lines() -> None:
    # Body text has one paragraph per line; SpamAssassin matches each line on its own.
    regexes = RegexSet([r"free\s+money"])
    assert regexes.find("it is free\nmoney is not") == {}
    assert regexes.find("it is free\nbut free money later") == {r"free\s+money": "free money"}


def test_anchors_match_at_each_line() -> None:
    regexes = RegexSet([r"^dear friend$"])
    assert regexes.find("Hello\nDear friend\nBye") == {"^dear friend$": "Dear friend"}


def test_an_invalid_pattern_raises_re_error_at_construction() -> None:
    with pytest.raises(re.error):
        RegexSet([r"fine", r"(unclosed"])


def test_a_regex_set_compiles_each_pattern_once() -> None:
    assert len(RegexSet(["a", "b", "a"])) == 2


# --- GTUBE ----------------------------------------------------------------------------------


def test_gtube_in_decoded_text_is_detected() -> None:
    assert has_gtube(f"This is the GTUBE, the {GTUBE_TEXT} test")


def test_gtube_split_by_a_space_is_not_detected() -> None:
    # A hard line break inside a paragraph is a space by the time body rules read the text.
    assert not has_gtube(f"{GTUBE_TEXT[:30]} {GTUBE_TEXT[30:]}")


def test_a_damaged_gtube_is_not_detected() -> None:
    assert not has_gtube(GTUBE_TEXT.replace("GTUBE", "GTUBX"))
    assert not has_gtube(GTUBE_TEXT.lower())
