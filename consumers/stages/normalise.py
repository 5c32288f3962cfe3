"""Normalise: scraped text → the story's own words, one spelling for each.

Two steps, kept apart because the first keeps the text readable (it is what gets stored) and
the second is only for comparison:

- ``clean_text`` drops lines that are site chrome rather than story (date lines, breadcrumbs,
  "Advertisement", share / newsletter / related lines, copyright footers, photo credits) and
  strips wire datelines ("WASHINGTON (AP) —") from the lead.
- ``normalise_text`` folds Unicode (NFKC), entities, typographic quotes and dashes, zero-width
  and control characters, and case, then collapses whitespace.
"""

from __future__ import annotations

import html
import re
import unicodedata


class _Replace:
    """Replace a fixed set of non-ASCII characters, each by ASCII text.

    One ``in`` test per character (a memchr-speed scan) and a str.replace for each one present:
    several times faster than a regex character class, which checks every character of the text
    against the class, and much faster than str.translate with a dict table. The order of the
    replaces cannot matter, as no replacement holds a replaced character.
    """

    def __init__(self, replacements: dict[str, str]) -> None:
        if not all(value.isascii() for value in replacements.values()):
            raise ValueError("replacements must be ASCII, so that no replacement is replaced again")
        self._replacements = tuple(replacements.items())

    def __call__(self, text: str) -> str:
        if text.isascii():  # every character replaced is outside ASCII, and most news text is ASCII
            return text
        for char, replacement in self._replacements:
            if char in text:
                text = text.replace(char, replacement)
        return text


_strip_zero_width = _Replace(dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e", ""))
_fold_typography = _Replace({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ",
})
# The same folding for the characters that fold alike before and after NFKC and casefold (all but "´"
# and "″", which NFKC turns into a space + accent and two primes): normalise_text folds them first,
# after which most news text is ASCII and skips NFKC and casefold (a unit test holds the condition).
_fold_before_nfkc = _Replace({
    char: replacement for char, replacement in _fold_typography._replacements if char not in "\u00b4\u2033"
})
MAX_UNESCAPES = 4  # "&amp;amp;lt;" needs three; a bound keeps a hostile text from looping long
# No chrome pattern below matches more than about 330 characters; longer lines are story text.
MAX_CHROME_LINE_CHARS = 400
# What normalise_text turns into word separators: the C0 and C1 control characters and every
# whitespace character but the space itself (str.isspace, which is also what the regex \s matches).
# The ASCII ones go by bytes.translate (the tables below), the others by str.replace of those present.
_NON_ASCII_SEPARATORS = frozenset(map(chr, (*range(0x80, 0xA1), 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                                            0x202F, 0x205F, 0x3000)))
_SPACE_RUN_BYTES = re.compile(b"  +")
# Tables for bytes.translate over UTF-8 text (bytes from 0x80 up, non-ASCII characters, pass unchanged):
# every ASCII control character (whitespace or not) to a space, and for ASCII text also upper case to lower.
_ASCII_CONTROLS_TO_SPACE = bytes(ord(" ") if byte < 0x20 or byte == 0x7F else byte for byte in range(256))
_ASCII_FOLD = bytes(
    ord(" ") if byte < 0x20 or byte == 0x7F else ord(chr(byte).lower()) if byte < 0x80 else byte
    for byte in range(256)
)
_ASCII_LOWER = bytes(ord(chr(byte).lower()) if byte < 0x80 else byte for byte in range(256))
_ASCII_BYTES = bytes(range(0x80))
# Above this many distinct non-ASCII characters (a text in Greek or Cyrillic, not a few accents and a
# pound sign), one str.casefold of the whole text costs less than a str.replace for each of them.
MAX_REPLACED_CHARACTERS = 24

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_WEEKDAYS = r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)[a-z]*"
# Whole lines that are page chrome. Each pattern is anchored at both ends: a chrome line is
# short and formulaic, and story sentences that merely mention these words must survive.
_CHROME_LINES = [re.compile(p, re.IGNORECASE) for p in (
    rf"(?:{_WEEKDAYS}\s*,?\s*)?(?:{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?\s*,?\s*\d{{4}}|\d{{1,2}}\s+{_MONTHS}\s*,?\s*\d{{4}})"
    r"(?:\s*(?:,|at|-)?\s*\d{1,2}[:.]\d{2}(?:\s*[ap]\.?m\.?)?(?:\s*[a-z]{2,4})?)?",
    r"\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?z?)?",
    rf"(?:published|updated|posted|last updated|first published)\s*(?::|on|at)?\s*"
    rf"(?:\d|{_MONTHS}|{_WEEKDAYS}).{{0,50}}",
    r"(?:home|news)\s*(?:[>/»|›]\s*[^>/»|›]{1,60}){1,5}",
    r"(?:advertisement|advertising|sponsored(?: content)?|ad|story continues below(?: advertisement)?|"
    r"continue reading(?: below)?|scroll to continue.*|read more|related|related (?:stories|articles|content|coverage)|"
    r"more from .{1,40}|recommended(?: for you)?|trending(?: now)?|most read|popular)\s*:?",
    r"(?:related|read more|see also|more|also read|read also|recommended|watch)\s*:\s*.{0,200}",
    r"(?:share|share this|share on|share this article|share via|tweet|email|print|facebook|twitter|whatsapp|"
    r"linkedin|reddit|pinterest|copy link|comments?)(?:\s*[|/·•,]?\s*(?:share|facebook|twitter|x|whatsapp|"
    r"email|linkedin|reddit|print|pinterest|copy link|messenger|comments?))*\s*:?",
    r"(?:sign up|subscribe|get|receive|join)\b.{0,80}\b(?:newsletters?|alerts|emails?|briefing|inbox)\b.{0,60}",
    r"(?:breaking news alerts|newsletter)\b.{0,80}",
    r"(?:©|\(c\)|copyright)\s*.{0,160}",
    r"(?:photo|image|picture|photograph|video|file photo)s?\s*(?:credit)?\s*:.{0,160}",
    r".{0,160}\((?:photo|image|picture)(?:\s+credit)?\s*:?\s*[^)]{0,80}\)",
    r"(?:follow|like) us on .{0,80}",
    r"(?:click|tap) here.{0,120}",
    r"\d+\s+(?:min(?:ute)?s?|hours?)\s+(?:read|ago)",
    r"(?:editor'?s note|this story has been (?:updated|corrected)).{0,300}",
    r"(?:this (?:article|story) (?:was|is) (?:originally )?(?:published|first published|produced)).{0,200}",
    r"(?:the associated press|associated press|reuters|afp|pa media) (?:contributed|writers?).{0,200}",
)] + [
    # Bylines: the names must be capitalised, so "By noon, the river had risen" stays story text.
    re.compile(r"(?i:by|from|reporting by|writing by|editing by|compiled by|additional reporting by)\s+"
               r"[A-Z][\w.'-]*(?:\s+(?:[A-Z][\w.'-]*|and|&|of|the|de|van|von))*"
               r"(?:\s*[,|/-]\s*[A-Z][\w .,'&-]{0,40})?"),
]
# The characters each pattern's match can begin with, in any case (None: any); the alternation below
# checks one of them before trying the pattern's words, which spares most story lines most patterns.
_CHROME_FIRST_CHARACTERS = (
    r"\dadfjmnostw", r"\d", "flpu", "hn", "acmprst", "amrsw", "ceflprstw", "gjrs", "bn", "©(c", "fipv", None,
    "fl", "ct", r"\d", "et", "t", "aprt", "abcefrw",
)
# The patterns as one alternation, each keeping its own flags: one fullmatch call per line instead of
# up to 21 (the same lines match: fullmatch of an alternation matches when one alternative does).
_CHROME_LINE = re.compile("|".join(
    ("" if first is None else f"(?i:(?=[{first}]))")
    + (f"(?i:{pattern.pattern})" if pattern.flags & re.IGNORECASE else f"(?:{pattern.pattern})")
    for pattern, first in zip(_CHROME_LINES, _CHROME_FIRST_CHARACTERS, strict=True)
))
# One more chrome pattern, kept apart: it tries its phrase after each of a line's first 120
# characters, and cost as much as all the others together, so it only runs on lines that hold the phrase.
_RIGHTS_RESERVED_PHRASE = "all rights reserved"
_RIGHTS_RESERVED_LINE = re.compile(rf".{{0,120}}\b{_RIGHTS_RESERVED_PHRASE}\b.{{0,80}}", re.IGNORECASE)
# Wire datelines at the start of the lead: "WASHINGTON (AP) —", "LONDON, July 2 (Reuters) -". A
# lead without the agency is not tried: _DATELINE backtracks there for microseconds, the search is fast.
_WIRE_AGENCY = re.compile(r"\((?:AP|Reuters|AFP|PA|UPI|Bloomberg|dpa|ANSA|EFE|Xinhua|CNN|IANS|PTI)\)", re.IGNORECASE)
_DATELINE = re.compile(
    r"^\s*(?:UPDATE\s*\d*\s*[-:]\s*)?[A-Z][A-Za-z.'\- ]{1,40}(?:,\s*[A-Z][A-Za-z.' ]{1,30})?"
    r"(?:,?\s*" + _MONTHS.replace("[a-z]", "[A-Za-z]") + r"\s*\d{1,2})?"
    r"\s*" + _WIRE_AGENCY.pattern + r"\s*[-\u2013\u2014:]+\s*",
    re.IGNORECASE,
)


# Paragraphs that belong to the page rather than the story, though they are not formulaic
# enough to be chrome lines: embedded tweets (quoted by independent stories alike), script code
# left by the scraper, and short fragments (menus, buttons, live-blog times, related headlines).
# Photo captions stay: copies of one page carry the same captions, and a gallery page's captions
# are what ties it to its story (measured on real scrapes: dropping them cost recall).
_TWEET_SIGNATURE = re.compile(r"^[—–-]\s*.{1,80}\(@\w{1,30}\)\s+\w+\.? \d{1,2}, \d{4}$")
_DASHES = ("—", "–", "-")  # what a tweet signature starts with (a str test before the regex call)
_CODE = re.compile(r"\bwindow\.\w|\bfunction\s*\(|_taboola|\bgoogletag\b|\bdocument\.\w")
_CODE_NEEDLES = ("window.", "function", "_taboola", "googletag", "document.")  # _CODE matches none without one
_CODE_ENDINGS = ("{", "}", ");")
_BLANK_LINE = re.compile(r"\n\s*\n")
_SENTENCE_ENDINGS = tuple(".!?…\"'”’)]")
MIN_PARAGRAPH_WORDS = 4  # shorter paragraphs are buttons and labels ("More", "Close", "Edit")
MIN_UNPUNCTUATED_WORDS = 10  # shorter ones without a sentence end are headings and links
MIN_STORY_WORDS = 30  # below this the "fragments" are all the page has (a gallery, a video): keep them


def clean_text(body: str) -> str:
    """Drop chrome, tweets, code and fragments, and the wire dateline; keep the story readable."""
    paragraphs = _without_chrome_lines(body)
    story = _story_paragraphs(paragraphs)
    if not _has_words(story, MIN_STORY_WORDS):
        story = [p for p in paragraphs if not _looks_like_code(p)]
    if story and _WIRE_AGENCY.search(story[0]):
        story[0] = _DATELINE.sub("", story[0], count=1)
    return "\n\n".join(p for p in story if p)


def _without_chrome_lines(body: str) -> list[str]:
    paragraphs = []
    for block in _BLANK_LINE.split(_strip_zero_width(body)):
        kept = [line.strip() for line in block.splitlines() if line.strip() and not is_chrome_line(line)]
        if kept:
            paragraphs.append(" ".join(kept))
    return paragraphs


def _has_words(paragraphs: list[str], minimum: int) -> bool:
    """``sum(len(p.split()) for p in paragraphs) >= minimum``, stopping once it is known."""
    count = 0
    for paragraph in paragraphs:
        if count >= minimum:
            break
        count += len(paragraph.split(maxsplit=minimum))  # min(words, minimum + 1): enough to decide
    return count >= minimum


def _story_paragraphs(paragraphs: list[str]) -> list[str]:
    story: list[str] = []
    for paragraph in paragraphs:
        text = _fold_typography(html.unescape(paragraph)).strip()
        # The word count, up to MIN_UNPUNCTUATED_WORDS: all the tests below need (split(maxsplit=k)
        # gives min(words, k + 1) parts, without making a list of every word).
        words = len(text.split(maxsplit=MIN_UNPUNCTUATED_WORDS))
        if text.startswith(_DASHES) and _TWEET_SIGNATURE.match(text):
            if story and len(story[-1].split()) <= 80:
                story.pop()  # the tweet this signature signs
            continue
        if words < MIN_PARAGRAPH_WORDS or _looks_like_code(text):
            continue
        if words < MIN_UNPUNCTUATED_WORDS and not text.endswith(_SENTENCE_ENDINGS):
            continue
        story.append(paragraph)
    return story


def _looks_like_code(text: str) -> bool:
    # Checking the ending with str methods, not a "...\s*$" regex, which retries at every character.
    if text.rstrip().endswith(_CODE_ENDINGS):
        return True
    for needle in _CODE_NEEDLES:  # a plain loop: a generator in any() cost a quarter of this function
        if needle in text:
            return _CODE.search(text) is not None
    return False


def is_chrome_line(line: str) -> bool:
    """True when the whole line is page chrome, not story text."""
    if len(line) > MAX_CHROME_LINE_CHARS:
        return False
    folded = _fold_typography(html.unescape(line)).strip(" \t*-–—|•·")
    if not folded:
        return True
    if _CHROME_LINE.fullmatch(folded):
        return True
    # In ASCII text the phrase can only be ASCII letters in some case (the other letters IGNORECASE
    # takes for them, as "ſ" for "s", are not ASCII), which a lower-cased substring test finds.
    if folded.isascii() and _RIGHTS_RESERVED_PHRASE not in folded.lower():
        return False
    return _RIGHTS_RESERVED_LINE.fullmatch(folded) is not None


def normalise_text(text: str) -> str:
    """Fold a text to its comparison form: one spelling per word, single spaces.

    Idempotent: entities are decoded until none is left (scrapers double-escape), zero-width
    characters go before NFKC (so they cannot keep an accent apart from its letter), and NFKC runs
    again after casefolding (which can leave sequences NFKC would compose, as "ß" + accent).
    """
    for _ in range(MAX_UNESCAPES):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if not text.isascii():
        text = _fold_before_nfkc(text)
    if not text.isascii():  # (no step of this block changes an ASCII character, except casefold's lower case)
        text = _casefold(unicodedata.normalize("NFKC", _strip_zero_width(text)))
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        text = _fold_typography(text)
    if text.isascii():
        # Most news text is ASCII by now (its typographic quotes and dashes folded): one
        # bytes.translate lower-cases it and turns its control and whitespace characters to spaces.
        return _collapse_spaces(text.encode("ascii").translate(_ASCII_FOLD)).decode("ascii")
    # No lower-casing here: NFKC may have made upper case ASCII ("㎁" is "nA") that stays as it is.
    for char in _non_ascii_characters(text) & _NON_ASCII_SEPARATORS:
        text = text.replace(char, " ")
    return _collapse_spaces(text.encode("utf-8").translate(_ASCII_CONTROLS_TO_SPACE)).decode("utf-8")


def _casefold(text: str) -> str:
    """``text.casefold()``, faster for text that is ASCII but for a few characters.

    ASCII is lower-cased by one bytes.translate and each distinct other character replaced by its
    casefold. Exact because casefold maps each character on its own, and a casefolded character
    casefolds to itself, so no replacement is changed by another (a unit test holds both, for
    every character).
    """
    data = text.encode("utf-8")
    others = _non_ascii_characters(text, data)
    if len(others) > MAX_REPLACED_CHARACTERS:
        return text.casefold()
    text = data.translate(_ASCII_LOWER).decode("utf-8")
    for char in others:
        folded = char.casefold()
        if folded != char:
            text = text.replace(char, folded)
    return text


def non_ascii(text: str, data: bytes | None = None) -> str:
    """The non-ASCII characters of ``text``, in order (``data``: its UTF-8, when at hand).

    Deleting the ASCII bytes from the UTF-8 leaves whole sequences of the others: in news text a
    few dozen characters to look at instead of thousands.
    """
    if data is None:
        data = text.encode("utf-8")
    return data.translate(None, _ASCII_BYTES).decode("utf-8")


def _non_ascii_characters(text: str, data: bytes | None = None) -> set[str]:
    """The distinct non-ASCII characters of ``text`` (see ``non_ascii``)."""
    return set(non_ascii(text, data))


def _collapse_spaces(data: bytes) -> bytes:
    """``b" ".join(data.split())`` for text whose only whitespace is the space, without a list of its words.

    The regex finds runs by their literal two-space prefix, faster than bytes.replace loops here.
    """
    return _SPACE_RUN_BYTES.sub(b" ", data).strip(b" ")
