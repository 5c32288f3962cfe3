"""consumers.stages.normalise: chrome removal (clean_text) and the comparison form (normalise_text)."""

from __future__ import annotations

import pytest

from consumers.stages.normalise import clean_text, is_chrome_line, normalise_text

STORY = [
    "Councillors in Brennock voted 31 to 9 on Wednesday night to turn the disused tram depot into 420 homes.",
    "Opponents had argued that the tallest blocks would overshadow existing terraces on Lantern Hill.",
]


@pytest.mark.parametrize("line", [
    "Monday , July 1 2024",
    "Tuesday, 2 July 2024",
    "July 2, 2024 09:15",
    "2024-07-02",
    "Updated: July 2, 2024 at 9:15 a.m.",
    "Published 3 hours ago",
    "Home > Business",
    "Home > World > Europe",
    "News / Local",
    "Advertisement",
    "ADVERTISEMENT",
    "Story continues below advertisement",
    "Share this article",
    "Share on Facebook",
    "Share | Twitter | Email",
    "Sign up for our morning newsletter",
    "© 2024 Tidewater Courier Media",
    "Copyright 2024 Northfield Daily Media Group",
    "(c) Bayline Wire Service. All rights reserved.",
    "Photo: Ines Marlowe / Bayline Wire",
    "Image credit: Coastal Wildlife Trust",
    "By Bayline Wire Staff",
    "Related: Council approves new bus lanes",
    "Read more",
    "5 min read",
    "Follow us on social media",
    "",
    "  ---  ",
])
def test_chrome_lines(line: str) -> None:
    assert is_chrome_line(line)


@pytest.mark.parametrize("line", [
    "The council rejected an advertisement for the new stadium after residents complained, officials said.",
    "The ferry company will share the cost of the replacement vessel with the regional transport authority.",
    "Readers were asked to photograph the turtle nests at home and send the pictures to the trust in July.",
    "Home prices in Brennock rose 4 percent in the year to June, the statistics office said.",
    "The mayor said the copyright dispute over the depot mural would be settled by the courts next year.",
    "Residents who called the helpline on Monday, July 1 2024, were told the launch would run twice an hour.",
])
def test_story_sentences_that_mention_chrome_words_are_kept(line: str) -> None:
    assert not is_chrome_line(line)


@pytest.mark.parametrize("line", [
    "By noon, the river had risen two metres above its usual level.",
    "From Monday, buses on the route will run every ten minutes.",
    "Published figures show unemployment fell to 4.1 percent in May.",
    "Customers who subscribe before June will keep the old price, the company said.",
], ids=["starts-with-by", "starts-with-from", "starts-with-published", "mentions-subscribe"])
def test_short_story_paragraphs_that_start_like_chrome_are_kept(line: str) -> None:
    # BUG: the byline pattern "(by|from|...)\\s+[\\w .,'&-]{1,80}", the "(published|updated|...)\\b.{0,60}"
    # pattern and the ".{0,80}\\b(sign up|subscribe|newsletter...)\\b.{0,120}" pattern fullmatch ordinary
    # one-sentence paragraphs (common in wire copy), so clean_text silently deletes story text.
    assert not is_chrome_line(line)


def test_clean_text_drops_chrome_and_keeps_the_story() -> None:
    scraped = "\n\n".join([
        "Home > Business",
        "Monday , July 1 2024",
        "Share this article",
        STORY[0],
        "Advertisement",
        STORY[1],
        "Photo: Ines Marlowe / Bayline Wire",
        "© 2024 Northfield Daily. All rights reserved.",
    ])
    assert clean_text(scraped) == "\n\n".join(STORY)


def test_clean_text_keeps_paragraphs_and_joins_hard_wrapped_lines() -> None:
    scraped = "Councillors in Brennock voted 31 to 9\non Wednesday night.\n\n\n  Opponents may appeal.  "
    assert clean_text(scraped) == "Councillors in Brennock voted 31 to 9 on Wednesday night.\n\nOpponents may appeal."


def test_clean_text_drops_chrome_lines_inside_a_paragraph() -> None:
    scraped = f"{STORY[0]}\nAdvertisement\n{STORY[1]}"
    assert clean_text(scraped) == f"{STORY[0]} {STORY[1]}"


@pytest.mark.parametrize("dateline", [
    "WASHINGTON (AP) — ",
    "WASHINGTON (AP) -- ",
    "LONDON, July 2 (Reuters) - ",
    "PORT ALDER, Harbour State (AP) \u2013 ",
    "UPDATE 2-BRENNOCK (Reuters) - ",
])
def test_wire_dateline_is_stripped_from_the_lead(dateline: str) -> None:
    assert clean_text(dateline + STORY[0] + "\n\n" + STORY[1]) == "\n\n".join(STORY)


def test_dateline_is_only_stripped_from_the_first_paragraph() -> None:
    second = "WASHINGTON (AP) — a quote from the wire service appeared here."
    assert clean_text(STORY[0] + "\n\n" + second) == STORY[0] + "\n\n" + second


def test_clean_text_removes_zero_width_characters() -> None:
    assert clean_text("Ferry\u200b sailings\u00ad resumed.\ufeff") == "Ferry sailings resumed."


def test_clean_text_of_pure_chrome_is_empty() -> None:
    assert clean_text("Advertisement\n\nShare this article\n\n© 2024 Tidewater Courier") == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("\u201cWe will appeal,\u201d she said. It\u2019s over.", "\"we will appeal,\" she said. it's over."),
    ("\u00abNon\u00bb", "\"non\""),
    ("2019\u20132024 \u2014 a decade\u2026", "2019-2024 - a decade..."),
    ("Ferry\u200b\u200csail\u2060ings", "ferrysailings"),
    ("Tom &amp; Jerry &lt;3 &quot;cats&quot;", "tom & jerry <3 \"cats\""),
    ("\uff26\uff45\uff52\uff52\uff59 \u2460", "ferry 1"),  # NFKC: full-width letters, circled digit
    ("\ufb01nal o\ufb00er", "final offer"),  # NFKC: ligatures
    ("Stra\u00dfe GROSS", "strasse gross"),  # casefold, not lower
    ("  many \t spaces\n\nand\u00a0lines ", "many spaces and lines"),
    ("bell\x07 and\x00 nul", "bell and nul"),
])
def test_normalise_text_folds_spelling(text: str, expected: str) -> None:
    assert normalise_text(text) == expected


def test_normalise_text_makes_typographic_variants_equal() -> None:
    plain = normalise_text('"It\'s a blow to the island," said Teodora Vance - a baker.')
    fancy = normalise_text("\u201cIt\u2019s a blow to the island,\u201d said Teodora\u00a0Vance \u2014 a baker.")
    html = normalise_text("&ldquo;It&rsquo;s a blow to the island,&rdquo; said Teodora Vance &mdash; a baker.")
    assert plain == fancy == html


def test_normalise_text_is_idempotent() -> None:
    text = "\u201cIt\u2019s\u201d &amp; \ufb01ne \u2014 STRASSE\u200b"
    assert normalise_text(normalise_text(text)) == normalise_text(text)


# -- paragraphs that belong to the page: headings, buttons, left-over script -----------------------

LONG_STORY = [
    "The fire started in a flat on the third floor of Carrow House shortly after midnight, the brigade said. "
    "Crews arrived within six minutes and had the blaze under control by two in the morning.",
    "Fifteen residents were treated for smoke inhalation at Tollmere General Hospital and later released.",
]


@pytest.mark.parametrize("page_paragraph", [
    "Brightwell recalls 40,000 e-scooters after battery fires",  # a heading: short, no sentence end
    "More",
    "Close",
    "window.dataLayer = window.dataLayer || [];",
    "googletag.cmd.push(function() { googletag.display('ad-slot-3'); });",
], ids=["heading", "button-more", "button-close", "script", "ad-script"])
def test_clean_text_drops_page_paragraphs_between_story_paragraphs(page_paragraph: str) -> None:
    scraped = "\n\n".join([LONG_STORY[0], page_paragraph, LONG_STORY[1]])
    assert clean_text(scraped) == "\n\n".join(LONG_STORY)


def test_photo_captions_are_kept_because_copies_of_a_page_share_them() -> None:
    caption = "Firefighters outside Carrow House in Tollmere on Tuesday. (AP Photo/Ines Marlowe)"
    scraped = "\n\n".join([LONG_STORY[0], caption, LONG_STORY[1]])
    assert clean_text(scraped) == "\n\n".join([LONG_STORY[0], caption, LONG_STORY[1]])


def test_short_story_paragraph_with_a_sentence_end_is_kept() -> None:
    scraped = "\n\n".join([LONG_STORY[0], "No one was seriously hurt.", LONG_STORY[1]])
    assert clean_text(scraped).split("\n\n") == [LONG_STORY[0], "No one was seriously hurt.", LONG_STORY[1]]


def test_a_page_with_too_little_story_text_keeps_its_short_paragraphs() -> None:
    gallery = "Carrow House after the fire\n\nThe burnt-out third floor\n\nResidents outside at dawn"
    assert clean_text(gallery) == gallery


def test_story_paragraph_that_mentions_a_window_is_kept() -> None:
    # BUG: _CODE contains r"\bwindow\." meant for JavaScript ("window.dataLayer"), but it also
    # matches the word "window" at the end of a sentence, so _story_paragraphs drops ordinary
    # story paragraphs such as this one.
    middle = ("A neighbour, Sam Oduya, said he was woken by smoke and escaped with his two children through a "
              "ground-floor window.")
    scraped = "\n\n".join([LONG_STORY[0], middle, LONG_STORY[1]])
    assert clean_text(scraped) == "\n\n".join([LONG_STORY[0], middle, LONG_STORY[1]])
