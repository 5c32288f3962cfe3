"""The normalise stage's fast paths give what the plain steps they replace give.

normalise_text folds ASCII text with one bytes.translate and collapses whitespace with str.split;
is_chrome_line runs the chrome patterns as one alternation; clean_text counts words only as far as
its thresholds need. Each is held here to the plain version it replaced.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.stages import normalise
from consumers.stages.normalise import MAX_UNESCAPES, is_chrome_line, normalise_text

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # what normalise_text blanks besides whitespace


def plain_replace(replacements: dict[str, str], text: str) -> str:
    pattern = re.compile("[" + re.escape("".join(replacements)) + "]")
    return pattern.sub(lambda match: replacements[match.group()], text)


def plain_normalise_text(text: str) -> str:
    """normalise_text before its fast paths: every step on every text, whitespace by regex."""
    for _ in range(MAX_UNESCAPES):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = unicodedata.normalize("NFKC", plain_replace(ZERO_WIDTH, text)).casefold()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = CONTROL.sub(" ", plain_replace(TYPOGRAPHY, text))
    return re.sub(r"\s+", " ", text).strip()


def plain_is_chrome_line(line: str) -> bool:
    if len(line) > normalise.MAX_CHROME_LINE_CHARS:
        return False
    folded = plain_replace(TYPOGRAPHY, html.unescape(line)).strip(" \t*-–—|•·")
    patterns = [*normalise._CHROME_LINES, normalise._RIGHTS_RESERVED_LINE]
    return not folded or any(pattern.fullmatch(folded) for pattern in patterns)


ZERO_WIDTH = dict(normalise._strip_zero_width._replacements)
TYPOGRAPHY = dict(normalise._fold_typography._replacements)


@settings(max_examples=300)
@given(st.text(st.sampled_from("a ’“”—…\u00a0\u200b\u00adé\u2212\u00ab"), max_size=60) | st.text(max_size=60))
def test_replace_equals_one_regex_substitution(text: str) -> None:
    assert normalise._fold_typography(text) == plain_replace(TYPOGRAPHY, text)
    assert normalise._strip_zero_width(text) == plain_replace(ZERO_WIDTH, text)


def test_str_split_whitespace_is_the_regex_whitespace() -> None:
    space = re.compile(r"\s")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert char.isspace() == (space.fullmatch(char) is not None), hex(code)


def test_separators_are_the_controls_and_the_whitespace_but_the_space() -> None:
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        expected = char != " " and (char.isspace() or CONTROL.fullmatch(char) is not None)
        assert (normalise._SEPARATOR.fullmatch(char) is not None) == expected, hex(code)


def test_ascii_fold_table_is_lower_and_controls_to_space() -> None:
    for byte in range(128):
        char = chr(byte)
        expected = " " if CONTROL.fullmatch(char) or char.isspace() else char.casefold()
        assert chr(normalise._ASCII_FOLD[byte]) == expected, hex(byte)


ASCII = st.text(st.characters(max_codepoint=0x7F), max_size=120)
MIXED = st.text(st.sampled_from("aZ &amp;#1;ß\x85\x1c\x0b\t\n\u00a0\u200b\u2014\u201cé\u0301ſİ\x9f;<>."
                                "\u2028\u3000\u1680\u2003"),
                max_size=80)


@settings(max_examples=500)
@given(ASCII | MIXED | st.text(max_size=80))
def test_normalise_text_equals_the_plain_steps(text: str) -> None:
    assert normalise_text(text) == plain_normalise_text(text)


CHROME_LIKE = st.sampled_from([
    "Advertisement", "Share this article", "By Jane Doe, Reuters", "Updated 12 May 2024", "Home > News > World",
    "© 2024 Example Media. All rights reserved.", "Photo: Jane Doe/AP", "3 min read", "Read more: the story",
    "By noon, the river had risen", "Sign up for our newsletter", "The ferry left at dawn (Photo: AP)",
    "Click here to subscribe", "Editor's note: corrected", "Reuters contributed to this report",
    "(c) Example Media Ltd. ALL RIGHTS RESERVED", "Example Media, all rights reserved.", "All rightſ reserved",
    "Example All Rights Reserved", "Example, all rights reserved worldwide, 2024",
])


@settings(max_examples=500)
@given(CHROME_LIKE | st.text(max_size=60) | st.builds(lambda a, b: a + b, CHROME_LIKE, st.text(max_size=20)))
def test_is_chrome_line_equals_any_of_the_patterns(line: str) -> None:
    assert is_chrome_line(line) == plain_is_chrome_line(line)


@given(st.lists(st.text(st.sampled_from("ab \n\t"), max_size=30), max_size=8), st.integers(0, 40))
def test_has_words_is_the_word_count_threshold(paragraphs: list[str], minimum: int) -> None:
    assert normalise._has_words(paragraphs, minimum) == (sum(len(p.split()) for p in paragraphs) >= minimum)
