"""Word lists the generator draws names, streets, cities and merchant categories from.

Emails use ASCII transliterations because most providers still refuse non-ASCII local parts;
street names keep their native spelling, which the address normaliser has to cope with.
"""

from __future__ import annotations

from typing import Final

COUNTRIES: Final = ("GB", "DE", "FR", "PL")
COUNTRY_WEIGHTS: Final = (0.35, 0.30, 0.20, 0.15)
CURRENCIES: Final = ("EUR", "GBP", "USD", "PLN")
# Home currency of each country in COUNTRIES, as an index into CURRENCIES.
HOME_CURRENCY: Final = (1, 0, 0, 3)
# Rough value of one EUR in each currency, so that amounts look local.
EUR_RATE: Final = (1.0, 0.86, 1.08, 4.3)

FIRST_NAMES: Final = {
    "GB": "oliver george harry jack jacob noah charlie thomas oscar william james henry leo alfie "
    "olivia amelia isla ava emily sophie grace lily chloe ella mia ruby sarah emma jessica hannah "
    "daniel matthew ryan liam",
    "DE": "lukas leon finn jonas paul felix maximilian elias ben noah luis tim jan niklas "
    "mia emma hannah sofia anna lea lena marie laura lara julia sarah johanna katharina "
    "stefan michael andreas thomas sabine",
    "FR": "lucas louis gabriel jules adam hugo arthur raphael paul nathan theo tom leo "
    "emma louise jade alice chloe lina lea manon camille ines sarah juliette zoe lucie "
    "nicolas julien pierre antoine marie",
    "PL": "jakub jan szymon antoni filip kacper mateusz michal wojciech adam piotr pawel tomasz "
    "krzysztof anna zuzanna julia maja hanna lena alicja natalia katarzyna agnieszka "
    "magdalena joanna aleksandra ewa marta",
}
LAST_NAMES: Final = {
    "GB": "smith jones taylor brown williams wilson johnson davies robinson wright thompson evans "
    "walker white roberts green hall wood jackson clarke patel khan lewis harris morgan cooper "
    "hughes edwards turner hill",
    "DE": "mueller schmidt schneider fischer weber meyer wagner becker schulz hoffmann schaefer "
    "koch bauer richter klein wolf schroeder neumann schwarz zimmermann braun krueger hofmann "
    "hartmann lange schmitt werner krause meier lehmann",
    "FR": "martin bernard dubois thomas robert richard petit durand leroy moreau simon laurent "
    "lefebvre michel garcia david bertrand roux vincent fournier morel girard andre mercier "
    "dupont lambert bonnet francois martinez legrand",
    "PL": "nowak kowalski wisniewski wojcik kowalczyk kaminski lewandowski zielinski szymanski "
    "wozniak dabrowski kozlowski jankowski mazur wojciechowski kwiatkowski krawczyk kaczmarek "
    "piotrowski grabowski zajac pawlowski michalski krol wieczorek jablonski wrobel nowakowski "
    "majewski olszewski",
}
EMAIL_DOMAINS: Final = {
    "GB": (
        ("gmail.com", 0.45),
        ("outlook.com", 0.15),
        ("hotmail.co.uk", 0.12),
        ("yahoo.co.uk", 0.1),
        ("icloud.com", 0.1),
        ("btinternet.com", 0.05),
        ("sky.com", 0.03),
    ),
    "DE": (
        ("gmail.com", 0.3),
        ("gmx.de", 0.2),
        ("web.de", 0.2),
        ("t-online.de", 0.1),
        ("outlook.de", 0.08),
        ("icloud.com", 0.07),
        ("yahoo.de", 0.05),
    ),
    "FR": (
        ("gmail.com", 0.4),
        ("orange.fr", 0.15),
        ("hotmail.fr", 0.12),
        ("free.fr", 0.1),
        ("laposte.net", 0.08),
        ("yahoo.fr", 0.08),
        ("icloud.com", 0.07),
    ),
    "PL": (
        ("gmail.com", 0.35),
        ("wp.pl", 0.2),
        ("onet.pl", 0.15),
        ("o2.pl", 0.12),
        ("interia.pl", 0.1),
        ("outlook.com", 0.08),
    ),
}
# Handles for addresses that are not first.last (gamers, shop accounts, bots all use these).
HANDLE_WORDS: Final = (
    "sunny blue wolf tiger shadow pixel ninja storm lucky happy silver golden crazy cool dark "
    "star moon rocket dragon falcon panda fox bear eagle lion ghost hero king queen angel"
).split()

STREETS: Final = {
    "GB": "High Church Station Victoria Park Mill Queens Kings Manor Green Albert Springfield "
    "Grange Windsor School North South West New London York Chapel Orchard Elm".split(),
    "DE": "Haupt Schul Garten Bahnhof Dorf Berg Linden Kirch Wald Ring Wiesen Birken Sonnen "
    "Eichen Feld Rosen Mühlen Blumen Goethe Schiller Friedhof Tal Buchen".split(),
    "FR": [
        "Victor Hugo",
        "de la République",
        "Pasteur",
        "Jean Jaurès",
        "de la Gare",
        "Nationale",
        "du Général de Gaulle",
        "de l'Église",
        "des Écoles",
        "Voltaire",
        "de Paris",
        "du Moulin",
        "Gambetta",
        "de la Liberté",
        "du Château",
        "Émile Zola",
        "des Lilas",
        "de la Paix",
    ],
    "PL": "Polna Leśna Słoneczna Krótka Szkolna Ogrodowa Lipowa Łąkowa Brzozowa Kwiatowa Kościelna "
    "Sosnowa Zielona Parkowa Akacjowa Mickiewicza Kolejowa Długa Sienkiewicza Wiejska".split(),
}
STREET_SUFFIX: Final = {
    "GB": (
        ("Street", "St"),
        ("Road", "Rd"),
        ("Lane", "Ln"),
        ("Avenue", "Ave"),
        ("Close", "Cl"),
        ("Drive", "Dr"),
        ("Way", "Way"),
    ),
    "DE": (("straße", "str."), ("weg", "weg"), ("gasse", "g."), ("allee", "allee")),
    "FR": (("rue", "r."), ("avenue", "av."), ("boulevard", "bd"), ("place", "pl."), ("chemin", "ch.")),
    "PL": (("ul.", "ul"), ("al.", "al")),
}
CITIES: Final = {
    "GB": "London Birmingham Manchester Leeds Glasgow Liverpool Bristol Sheffield Edinburgh Cardiff "
    "Leicester Nottingham Newcastle Brighton Southampton Reading Oxford Cambridge York Norwich".split(),
    "DE": "Berlin Hamburg München Köln Frankfurt Stuttgart Düsseldorf Leipzig Dortmund Essen Bremen "
    "Dresden Hannover Nürnberg Duisburg Bochum Bonn Münster Mannheim Freiburg".split(),
    "FR": "Paris Marseille Lyon Toulouse Nice Nantes Strasbourg Montpellier Bordeaux Lille Rennes "
    "Reims Toulon Grenoble Dijon Angers Nîmes Brest Limoges Amiens".split(),
    "PL": "Warszawa Kraków Łódź Wrocław Poznań Gdańsk Szczecin Bydgoszcz Lublin Białystok Katowice "
    "Gdynia Częstochowa Radom Toruń Kielce Rzeszów Gliwice Olsztyn Opole".split(),
}
GB_POSTCODE_AREAS: Final = "E EC N NW SE SW W WC B M LS G L BS S EH CF LE NG NE BN SO RG OX CB YO NR".split()

# Merchant categories: (name, share of honest merchants, median amount in EUR, log-sd).
CATEGORIES: Final = (
    ("grocery", 0.20, 35.0, 0.7),
    ("restaurants", 0.16, 28.0, 0.6),
    ("fuel", 0.06, 55.0, 0.4),
    ("online_retail", 0.12, 45.0, 0.9),
    ("transport", 0.06, 12.0, 0.8),
    ("fashion", 0.08, 60.0, 0.7),
    ("electronics", 0.04, 150.0, 1.0),
    ("utilities", 0.03, 80.0, 0.5),
    ("telecom", 0.03, 30.0, 0.4),
    ("travel", 0.04, 220.0, 0.9),
    ("entertainment", 0.06, 25.0, 0.7),
    ("health", 0.05, 30.0, 0.7),
    ("jewellery", 0.02, 180.0, 0.9),
    ("gift_cards", 0.02, 50.0, 0.6),
    ("gambling", 0.02, 40.0, 1.0),
    ("money_transfer", 0.01, 150.0, 0.9),
)
# Categories the giant merchants (a supermarket chain, a marketplace, a ride app) belong to.
GIANT_CATEGORIES: Final = ("online_retail", "grocery", "transport", "grocery", "restaurants", "online_retail")
# What colluding bust-out merchants sell: goods easy to resell or refund.
BUST_OUT_CATEGORIES: Final = ("electronics", "jewellery", "gift_cards", "online_retail")

# Card BIN prefixes (issuer identification numbers), 6 digits, Visa and Mastercard ranges.
CARD_BINS: Final = (
    "453201",
    "455673",
    "492181",
    "476173",
    "414720",
    "426684",
    "448590",
    "462294",
    "510510",
    "520082",
    "535522",
    "542418",
    "552433",
    "518791",
    "527515",
    "539923",
)

# Mobile numbers: (calling code, national prefixes, digits after the prefix), ranges checked with
# phonenumbers.is_valid_number.
PHONE_PLANS: Final = {
    "GB": ("44", ("74", "75", "78"), 8),
    "DE": ("49", ("151", "152", "157", "159", "160", "162", "170", "171", "172", "176", "177", "178"), 8),
    "FR": ("33", ("60", "61", "62", "64", "65", "66", "67", "68", "73", "75", "76", "77", "78"), 7),
    "PL": ("48", ("50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"), 7),
}
# How a number is split for the spaced international format, per country (digit group sizes).
PHONE_GROUPS: Final = {"GB": (4, 6), "DE": (3, 8), "FR": (1, 2, 2, 2, 2), "PL": (3, 3, 3)}

# First octets of consumer broadband and mobile ranges in Europe; avoids reserved blocks.
ISP_FIRST_OCTETS: Final = (
    2,
    5,
    31,
    37,
    46,
    62,
    77,
    78,
    79,
    80,
    81,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    93,
    94,
    95,
    109,
    151,
    176,
    178,
    185,
    188,
    193,
    212,
    213,
    217,
)
# First octets of hosting/VPN ranges, where device farms and proxies live (honest VPN users too).
HOSTING_FIRST_OCTETS: Final = (45, 104, 107, 134, 138, 139, 146, 159, 167, 185, 198, 209)


def words(text: str) -> list[str]:
    """Split a whitespace-separated word list."""
    return text.split()
