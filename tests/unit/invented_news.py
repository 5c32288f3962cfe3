"""Invented news for the unit tests: short stories written for these tests, plus helpers.

The stories are fiction; names, places and numbers are made up. Each is a list of paragraphs so
tests can trim, drop or decorate them the way syndicating outlets do.
"""

from __future__ import annotations

from datetime import UTC, datetime

T0 = datetime(2024, 7, 2, 8, 0, tzinfo=UTC)

FERRY = [
    "The operator of the Kestrel Sound ferry service suspended all sailings between Port Alder and Greywater "
    "Island on Tuesday after inspectors found cracks in the hull of its largest vessel, leaving about 1,800 daily "
    "passengers to find other ways across the water.",
    "The company, Kestrel Marine Lines, said the damage was discovered during a routine dry-dock survey of the "
    "Morning Heron, a 74-metre vessel that entered service in 2009. Engineers traced two fractures near the bow "
    "thruster housing and a third along a weld seam below the car deck. A spokeswoman said no passenger had been "
    "at risk because the ship was out of the water when the cracks were found.",
    "Island residents reacted with frustration. Greywater has no bridge, and the only alternative is a small "
    "passenger launch that carries 60 people and no vehicles. Teodora Vance, who runs a bakery near the harbour, "
    "said she had already cancelled two flour deliveries and expected to close for several days if the suspension "
    "lasted into the weekend.",
    "The regional transport authority said it was negotiating to charter a replacement vessel from an operator on "
    "the northern coast, but that the ship would need at least nine days to arrive and be certified for the route. "
    "In the meantime, the authority plans to add four extra launch crossings a day and to fly urgent medical cases "
    "to the mainland by helicopter.",
    "Kestrel Marine Lines has faced criticism over the age of its fleet. An audit published last spring found that "
    "three of its five ferries were past their planned replacement dates, and the company postponed an order for "
    "two new vessels in January, citing rising steel prices. Its chief executive, Oren Halloway, said on Tuesday "
    "that the order would now be brought forward and that the firm would publish a full timetable for repairs by "
    "Friday.",
]

DEPOT = [
    "Councillors in Brennock voted 31 to 9 on Wednesday night to turn the city's disused tram depot on Calloway "
    "Street into 420 homes, ending a six-year dispute over one of the largest empty sites in the centre.",
    "Under the plan, a housing association will build five blocks of between four and eight storeys around the "
    "depot's brick engine shed, which is listed and will be restored as a covered market. Forty percent of the "
    "homes will be let at social rents, a higher share than the council's usual target of 25 percent, and the "
    "scheme includes a primary school annexe and a small park along the old tracks.",
    "Opponents, led by a residents' group from the neighbouring Lantern Hill district, had argued that the tallest "
    "blocks would overshadow existing terraces and that local roads could not cope with the extra traffic. The "
    "group's chair, Marguerite Osei, said after the vote that members would consider asking for a judicial review.",
    "The council's planning lead, Desmond Achterberg, said the depot had cost the city more than 300,000 a year "
    "in security and maintenance since the last trams left in 2017. Construction is expected to start next "
    "summer, with the first residents moving in by the end of 2027.",
]

TURTLES = [
    "Volunteers monitoring the beaches of the Saltmarsh Peninsula counted 612 loggerhead turtle nests this season, "
    "the highest figure since records began in 1994, according to a report released on Monday by the Coastal "
    "Wildlife Trust.",
    "The trust credited a ban on night-time vehicle access to the beaches, introduced four years ago, and a "
    "programme that pays landowners to switch off floodlights during the nesting months. Hatchlings are drawn "
    "towards bright light and often die on roads or in car parks when they head inland instead of towards the sea.",
    "Biologist Annika Ferreira, who led the survey, cautioned that one good year did not mean the population had "
    "recovered. Warmer sand produces more female hatchlings, she said, and several nests on the southern beaches "
    "had recorded temperatures that could leave future generations short of males.",
    "The trust plans to plant dune grasses along two of the hottest stretches of sand this winter to give the "
    "nests some shade, and it is recruiting another 40 volunteers for next year's count.",
]

CHROME_HEAD = ["Home > World", "Tuesday , July 2 2024", "Share this article"]
CHROME_FOOT = ["Sign up for our morning newsletter", "© 2024 Tidewater Courier Media. All rights reserved."]


def body(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)


def with_chrome(paragraphs: list[str]) -> str:
    """The paragraphs as a scraper keeps them from a syndicating site: chrome around and between them."""
    middle: list[str] = []
    for i, paragraph in enumerate(paragraphs):
        middle.append(paragraph)
        if i == 1:
            middle.append("Advertisement")
    return body(CHROME_HEAD + middle + CHROME_FOOT)
