"""The normalise stage's fast paths give what the plain steps they replace give.

normalise_text folds ASCII text with one bytes.translate and collapses whitespace with str.split,
and casefolds and blanks separators in mostly-ASCII text character by distinct character;
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
        if code < 0x80:
            assert (normalise._ASCII_CONTROLS_TO_SPACE[code] == ord(" ") != code) == expected, hex(code)
        else:
            assert (char in normalise._NON_ASCII_SEPARATORS) == expected, hex(code)
    assert normalise._ASCII_CONTROLS_TO_SPACE[0x80:] == bytes(range(0x80, 0x100))


def test_casefold_maps_each_character_to_a_fixed_point() -> None:
    """What makes _casefold exact: casefold works character by character, and a casefolded character
    casefolds to itself (so replacing one character never changes another's replacement)."""
    for code in range(sys.maxunicode + 1):
        folded = chr(code).casefold()
        assert folded.casefold() == folded, hex(code)
        assert all(ch.casefold() == ch for ch in folded), hex(code)


@settings(max_examples=500)
@given(st.text(max_size=80) | st.text(st.sampled_from("aZ ÉéİıſKßẞͅ"
                                                       "ΣσςΙⅠⅫⒶJ̌㎁£"),
                                      max_size=60))
def test_casefold_equals_str_casefold(text: str) -> None:
    assert normalise._casefold(text) == text.casefold()


def test_casefold_of_many_distinct_characters_equals_str_casefold() -> None:
    text = "".join(map(chr, range(0x391, 0x3C9))) + " ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ Ωραία"
    assert len(normalise._non_ascii_characters(text)) > normalise.MAX_REPLACED_CHARACTERS
    assert normalise._casefold(text) == text.casefold()


def test_ascii_fold_table_is_lower_and_controls_to_space() -> None:
    for byte in range(128):
        char = chr(byte)
        expected = " " if CONTROL.fullmatch(char) or char.isspace() else char.casefold()
        assert chr(normalise._ASCII_FOLD[byte]) == expected, hex(byte)


ASCII = st.text(st.characters(max_codepoint=0x7F), max_size=120)
MIXED = st.text(st.sampled_from("aZ &amp;#1;ß\x85\x1c\x0b\t\n\u00a0\u200b\u2014\u201cé\u0301ſİ\x9f;<>."
                                "\u2028\u3000\u1680\u2003"),
                max_size=80)
# Where folding ASCII apart from the other characters could go wrong: NFKC making upper case ASCII
# ("㎁" is "nA", "Ⅻ" is "XII"), a letter that composes with a mark only once lower-cased ("J" + caron),
# compatibility characters, Greek final sigma, a pound sign, and more distinct characters than
# MAX_REPLACED_CHARACTERS.
UNICODE_EDGES = st.text(st.sampled_from("aJ \u030c\u0301\u3381\u216b\u2160\u00b4\u2033\u2011\u2026\ufb01\uff21"
                                        "\u03a3\u03c2\u0130\u00a3\u00c9\u1e9e\u0345\u2028\x85\u00a0\u3000"
                                        "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩабвгдежзийклмнопрстуфхцчшщ"),
                        max_size=80)


@settings(max_examples=500)
@given(ASCII | MIXED | UNICODE_EDGES | st.text(max_size=80))
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


def test_characters_folded_before_nfkc_fold_alike_after_it() -> None:
    """normalise_text may fold these first: NFKC and casefold leave them as they are or turn them
    into what they fold to anyway, they are starters that no accent combines with, and neither are
    their ASCII replacements."""
    early = dict(normalise._fold_before_nfkc._replacements)
    assert set(early) == set(TYPOGRAPHY) - {"\u00b4", "\u2033"}
    marks = [chr(code) for code in range(sys.maxunicode + 1) if unicodedata.combining(chr(code))]
    second_of_a_pair = {unicodedata.decomposition(chr(code)).split()[-1] for code in range(sys.maxunicode + 1)
                        if unicodedata.decomposition(chr(code))[:1] not in ("", "<")}
    for char, replacement in early.items():
        assert normalise._fold_typography(unicodedata.normalize("NFKC", char)) == replacement, hex(ord(char))
        assert char.casefold() == char and unicodedata.combining(char) == 0
        assert f"{ord(char):04X}" not in second_of_a_pair
        for text in (char, replacement):
            assert all(unicodedata.normalize("NFC", text + mark) == text + unicodedata.normalize("NFC", mark)
                       for mark in marks), hex(ord(char))



# One line for each keyword that can begin a chrome pattern, pattern by pattern (_CHROME_LINES order).
CHROME_BY_PATTERN = [
    ["Monday, July 1, 2024", "Tue Jan 2 2024", "wed, feb 3, 2024", "Thursday March 4, 2024 10:00 am",
     "Fri 5 apr 2024", "Sat May 6, 2024", "Sun Jun 7 2024", "Jul 8, 2024", "Aug 9 2024", "Sept 10, 2024",
     "Oct 11 2024", "Nov 12 2024", "Dec 13 2024", "1 January 2024", "12 oct 2024", "Mar 3, 2024"],
    ["2024-07-01", "2024-07-01T10:00Z"],
    ["Published: 1 July 2024", "Updated on July 2", "Posted at 10:00", "Last updated: Monday",
     "First published on Jan 5"],
    ["Home > News > World", "News / Politics"],
    ["Advertisement", "advertising", "Sponsored content", "Ad", "Story continues below advertisement",
     "Continue reading", "Scroll to continue with content", "Read more", "Related", "Related stories",
     "More from CNN", "Recommended for you", "Trending now", "Most read", "Popular"],
    ["Related: the story", "Read more: x", "See also: y", "More: z", "Also read: a", "Read also: b",
     "Recommended: c", "Watch: d"],
    ["Share", "Share this", "Share on", "Share this article", "Share via", "Tweet", "Email", "Print", "Facebook",
     "Twitter", "WhatsApp", "LinkedIn", "Reddit", "Pinterest", "Copy link", "Comments", "Comment"],
    ["Sign up for our newsletter", "Subscribe to our newsletters", "Get the briefing in your inbox",
     "Receive alerts", "Join our newsletter"],
    ["Breaking news alerts", "Newsletter"],
    ["© 2024 Example", "(c) Example", "Copyright 2024"],
    ["Photo: AP", "Image: x", "Picture: y", "Photograph: z", "Video: v", "File photo: w", "Photos credit: q"],
    ["The ferry left (Photo: AP)"],
    ["Follow us on X", "Like us on Facebook"],
    ["Click here to read", "Tap here for more"],
    ["3 min read", "2 hours ago"],
    ["Editor's note: corrected", "Editors note: x", "This story has been updated"],
    ["This article was originally published by X", "This story is produced by Y"],
    ["The Associated Press contributed to this report.", "Associated Press writers x", "Reuters contributed",
     "AFP contributed", "PA Media contributed"],
    ["By Jane Doe", "From Jane Doe", "Reporting by Jane Doe", "Writing by Jane Doe", "Editing by John",
     "Compiled by Ann", "Additional reporting by Bo"],
]
# Characters IGNORECASE takes for ASCII letters besides their two cases.
OTHER_CASES = {"s": "\u017f", "k": "\u212a", "i": "\u0130\u0131"}


def test_chrome_first_characters_admit_every_chrome_keyword_in_every_case() -> None:
    assert len(CHROME_BY_PATTERN) == len(normalise._CHROME_LINES) == len(normalise._CHROME_FIRST_CHARACTERS)
    for pattern, lines in zip(normalise._CHROME_LINES, CHROME_BY_PATTERN, strict=True):
        for line in lines:
            assert pattern.fullmatch(line), (pattern.pattern[:40], line)
            first = line[0].lower()
            variants = {line, line.upper(), line.lower(), line.title(), line[0].swapcase() + line[1:]}
            variants |= {other + line[1:] for other in OTHER_CASES.get(first, "")}
            for variant in variants:
                assert is_chrome_line(variant) == plain_is_chrome_line(variant), variant
            assert is_chrome_line(line), line


AGENCIES = ["AP", "Reuters", "AFP", "PA", "UPI", "Bloomberg", "dpa", "ANSA", "EFE", "Xinhua", "CNN", "IANS", "PTI"]
DATELINES = st.builds(
    lambda update, city, date, agency, case, dash: f"{update}{city}{date} ({case(agency)}) {dash} The ferry left.",
    st.sampled_from(["", "UPDATE 2 - "]), st.sampled_from(["WASHINGTON", "St. John's", "NEW YORK, N.Y.", "Paris"]),
    st.sampled_from(["", ", July 2", " Sept 14"]), st.sampled_from(AGENCIES),
    st.sampled_from([str, str.upper, str.lower, lambda a: a.replace("s", "\u017f")]), st.sampled_from(["—", "-", ":"]))


@settings(max_examples=300)
@given(DATELINES | st.lists(st.sampled_from(["WASHINGTON", "London,", "July 2", " ", "(AP)", "(reuters)", "(ap",
                                             "AP)", "—", "-", "The", "ferry", "(", ")", "\u212a"]),
                            max_size=12).map(" ".join))
def test_dateline_needs_a_wire_agency(lead: str) -> None:
    """clean_text tries _DATELINE only on a lead where _WIRE_AGENCY finds one: never on a lead it would strip."""
    if normalise._DATELINE.match(lead):
        assert normalise._WIRE_AGENCY.search(lead)


def test_every_agency_dateline_is_stripped() -> None:
    for agency in AGENCIES:
        for lead in (f"WASHINGTON ({agency}) — The ferry left.", f"LONDON, July 2 ({agency.upper()}) - Ferries."):
            assert normalise._WIRE_AGENCY.search(lead) and normalise._DATELINE.match(lead), lead
