"""The simulated Cainiao-like network: cities, facilities, lanes, carriers and leg timings.

Static reference data only (no randomness, no clock): the simulator draws from these
tables. Numbers are plausible rather than measured; they are tuned so that the default
scenario gives international deliveries of mostly 60-120 h and domestic ones of
12-36 h, with on-time shares against the contract's 24 h / 72 h defaults that differ
by lane. Time zones are those in force in November 2026.
"""

from __future__ import annotations

from dataclasses import dataclass

from projections.events import Location


@dataclass(frozen=True, slots=True)
class City:
    """A city where parcels start or end; `code` names its facilities."""

    country: str
    name: str
    code: str
    tz: int
    """Local UTC offset in minutes (November 2026)."""
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Facility:
    """A scanning point: the event `location` plus its local offset."""

    facility_id: str
    city: City

    @property
    def location(self) -> Location:
        return Location(
            country=self.city.country, facility_id=self.facility_id, city=self.city.name
        )


@dataclass(frozen=True, slots=True)
class OriginCity:
    """A Chinese merchant city with its sorting centre and export hub."""

    city: City
    merchants: int
    """Number of distinct merchant ids drawn from."""
    export_hub: str
    """Key into EXPORT_HUBS."""
    truck_hours_to_export: float
    """Median line-haul hours from the sorting centre to the export hub."""
    domestic_region: str
    """Coarse region for domestic line-haul distances."""


@dataclass(frozen=True, slots=True)
class ExportHub:
    code: str
    city: City
    congestion: float
    """Extra dwell per unit of surplus load (1.0 = average hub)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A destination country: gateway, import customs, last mile."""

    country: str
    cities: tuple[City, ...]
    weight: float
    """Share of international volume (relative)."""
    gateway: City
    """Airport (or border crossing) city where import customs happens."""
    gateway_code: str
    airlines: tuple[str, ...]
    flight_hours: float
    departures_cn: tuple[int, ...]
    """Scheduled local departure hours (China time) from the export hub."""
    linehaul_mode: str
    """`air` or `truck` (raw codes and custodians differ)."""
    customs_hours: float
    """Median import clearance without a hold."""
    hold_rate: float
    refusal_rate: float
    """Share of held parcels that end refused."""
    carriers: tuple[tuple[str, float], ...]
    """Last-mile carriers and their shares."""
    pickup_share: float
    """Share of parcels sent to a pickup point or locker."""
    attempt_fail: float
    """Probability that a home-delivery attempt fails."""
    lastmile_hours: float
    """Median hours from gateway release to the destination hub."""
    variability: float
    """Lognormal sigma of this lane's legs."""


def _c(country: str, name: str, code: str, tz: int, weight: float = 1.0) -> City:
    return City(country=country, name=name, code=code, tz=tz, weight=weight)


CN = 480

# Origin cities: merchant clusters and where their parcels clear export.
ORIGINS: tuple[tuple[OriginCity, float], ...] = (
    (OriginCity(_c("CN", "Yiwu", "YIW", CN), 900, "PVG", 5.0, "east"), 0.20),
    (OriginCity(_c("CN", "Shenzhen", "SZX", CN), 1200, "SZX", 1.5, "south"), 0.20),
    (OriginCity(_c("CN", "Guangzhou", "CAN", CN), 1000, "SZX", 2.5, "south"), 0.16),
    (OriginCity(_c("CN", "Hangzhou", "HGH", CN), 800, "HGH", 1.5, "east"), 0.14),
    (OriginCity(_c("CN", "Shanghai", "SHA", CN), 700, "PVG", 1.5, "east"), 0.10),
    (OriginCity(_c("CN", "Dongguan", "DGG", CN), 500, "SZX", 2.0, "south"), 0.06),
    (OriginCity(_c("CN", "Ningbo", "NGB", CN), 300, "PVG", 4.0, "east"), 0.04),
    (OriginCity(_c("CN", "Beijing", "PEK", CN), 400, "PEK", 1.5, "north"), 0.05),
    (OriginCity(_c("CN", "Chengdu", "CTU", CN), 200, "CAN", 26.0, "west"), 0.03),
    (OriginCity(_c("CN", "Xiamen", "XMN", CN), 200, "CAN", 10.0, "south"), 0.02),
)

EXPORT_HUBS: dict[str, ExportHub] = {
    "PVG": ExportHub("CN-PVG-EXP", _c("CN", "Shanghai", "PVG", CN), 1.2),
    "SZX": ExportHub("CN-SZX-EXP", _c("CN", "Shenzhen", "SZX", CN), 1.0),
    "HGH": ExportHub("CN-HGH-EXP", _c("CN", "Hangzhou", "HGH", CN), 0.8),
    "CAN": ExportHub("CN-CAN-EXP", _c("CN", "Guangzhou", "CAN", CN), 1.0),
    "PEK": ExportHub("CN-PEK-EXP", _c("CN", "Beijing", "PEK", CN), 0.9),
}

# Domestic (CN -> CN): destination cities, their region, and line-haul hours by region pair.
DOMESTIC_CITIES: tuple[tuple[City, str], ...] = (
    (_c("CN", "Shanghai", "SHA", CN, 1.6), "east"),
    (_c("CN", "Beijing", "PEK", CN, 1.5), "north"),
    (_c("CN", "Guangzhou", "CAN", CN, 1.2), "south"),
    (_c("CN", "Shenzhen", "SZX", CN, 1.2), "south"),
    (_c("CN", "Hangzhou", "HGH", CN, 0.9), "east"),
    (_c("CN", "Chengdu", "CTU", CN, 0.9), "west"),
    (_c("CN", "Wuhan", "WUH", CN, 0.8), "central"),
    (_c("CN", "Nanjing", "NKG", CN, 0.7), "east"),
    (_c("CN", "Xi'an", "XIY", CN, 0.6), "west"),
    (_c("CN", "Tianjin", "TSN", CN, 0.6), "north"),
    (_c("CN", "Chongqing", "CKG", CN, 0.6), "west"),
    (_c("CN", "Harbin", "HRB", CN, 0.3), "northeast"),
    (_c("CN", "Urumqi", "URC", CN, 0.15), "far-west"),
)

# Median road line-haul hours between regions (symmetric); same city is handled apart.
_REGION_HOURS: dict[frozenset[str], float] = {
    frozenset({"east"}): 4.0,
    frozenset({"south"}): 4.0,
    frozenset({"north"}): 4.0,
    frozenset({"west"}): 6.0,
    frozenset({"central"}): 4.0,
    frozenset({"northeast"}): 5.0,
    frozenset({"far-west"}): 6.0,
    frozenset({"east", "south"}): 10.0,
    frozenset({"east", "north"}): 9.0,
    frozenset({"east", "central"}): 6.0,
    frozenset({"east", "west"}): 14.0,
    frozenset({"east", "northeast"}): 15.0,
    frozenset({"east", "far-west"}): 30.0,
    frozenset({"south", "north"}): 14.0,
    frozenset({"south", "central"}): 7.0,
    frozenset({"south", "west"}): 12.0,
    frozenset({"south", "northeast"}): 20.0,
    frozenset({"south", "far-west"}): 32.0,
    frozenset({"north", "central"}): 8.0,
    frozenset({"north", "west"}): 12.0,
    frozenset({"north", "northeast"}): 9.0,
    frozenset({"north", "far-west"}): 26.0,
    frozenset({"central", "west"}): 8.0,
    frozenset({"central", "northeast"}): 16.0,
    frozenset({"central", "far-west"}): 28.0,
    frozenset({"west", "northeast"}): 22.0,
    frozenset({"west", "far-west"}): 22.0,
    frozenset({"northeast", "far-west"}): 34.0,
}


def domestic_linehaul_hours(origin_region: str, dest_region: str) -> float:
    return _REGION_HOURS[frozenset({origin_region, dest_region})]


DOMESTIC_CARRIERS: tuple[tuple[str, float], ...] = (
    ("zto", 0.28),
    ("yto", 0.22),
    ("yunda", 0.18),
    ("sto", 0.14),
    ("cainiao-express", 0.12),
    ("jtexpress", 0.06),
)
DOMESTIC_PICKUP_SHARE = 0.35
"""Cainiao Post stations and lockers: a large share of Chinese parcels end there."""
DOMESTIC_ATTEMPT_FAIL = 0.04

# Europe in November: standard time.
EU1 = 60

DESTINATIONS: tuple[Destination, ...] = (
    Destination(
        "ES",
        (
            _c("ES", "Madrid", "MAD", EU1, 3),
            _c("ES", "Barcelona", "BCN", EU1, 2.5),
            _c("ES", "Valencia", "VLC", EU1, 1),
            _c("ES", "Sevilla", "SVQ", EU1, 0.8),
        ),
        1.6,
        _c("ES", "Madrid", "MAD", EU1),
        "MAD",
        ("CK", "CA", "MU"),
        13.0,
        (2, 10, 18),
        "air",
        5.0,
        0.025,
        0.08,
        (("correos", 0.7), ("seur", 0.3)),
        0.2,
        0.07,
        4.0,
        0.35,
    ),
    Destination(
        "FR",
        (
            _c("FR", "Paris", "PAR", EU1, 3),
            _c("FR", "Lyon", "LYS", EU1, 1),
            _c("FR", "Marseille", "MRS", EU1, 1),
            _c("FR", "Toulouse", "TLS", EU1, 0.7),
        ),
        1.3,
        _c("FR", "Paris", "CDG", EU1),
        "CDG",
        ("CK", "AF", "MU"),
        12.5,
        (1, 9, 17),
        "air",
        6.0,
        0.03,
        0.08,
        (("colissimo", 0.75), ("chronopost", 0.25)),
        0.3,
        0.09,
        4.5,
        0.4,
    ),
    Destination(
        "DE",
        (
            _c("DE", "Berlin", "BER", EU1, 2),
            _c("DE", "Hamburg", "HAM", EU1, 1.2),
            _c("DE", "Munich", "MUC", EU1, 1.2),
            _c("DE", "Cologne", "CGN", EU1, 1),
        ),
        1.0,
        _c("DE", "Leipzig", "LEJ", EU1),
        "LEJ",
        ("CK", "CA", "LH"),
        11.5,
        (3, 15),
        "air",
        4.0,
        0.02,
        0.06,
        (("dhl-paket", 0.8), ("hermes", 0.2)),
        0.25,
        0.05,
        3.5,
        0.3,
    ),
    Destination(
        "GB",
        (
            _c("GB", "London", "LON", 0, 3),
            _c("GB", "Manchester", "MAN", 0, 1),
            _c("GB", "Birmingham", "BHX", 0, 1),
        ),
        1.0,
        _c("GB", "London", "LHR", 0),
        "LHR",
        ("CA", "BA", "CK"),
        12.5,
        (0, 8, 16),
        "air",
        4.0,
        0.02,
        0.05,
        (("royal-mail", 0.6), ("evri", 0.4)),
        0.1,
        0.06,
        4.0,
        0.3,
    ),
    Destination(
        "NL",
        (
            _c("NL", "Amsterdam", "AMS", EU1, 2),
            _c("NL", "Rotterdam", "RTM", EU1, 1.2),
            _c("NL", "Utrecht", "UTC", EU1, 0.8),
        ),
        0.6,
        _c("NL", "Amsterdam", "AMS", EU1),
        "AMS",
        ("CK", "KL"),
        11.5,
        (4, 16),
        "air",
        3.5,
        0.015,
        0.05,
        (("postnl", 0.85), ("dhl-parcel-nl", 0.15)),
        0.15,
        0.05,
        3.0,
        0.25,
    ),
    Destination(
        "BE",
        (
            _c("BE", "Brussels", "BRU", EU1, 1.5),
            _c("BE", "Antwerp", "ANR", EU1, 1),
            _c("BE", "Liege", "LGG", EU1, 0.6),
        ),
        0.5,
        _c("BE", "Liege", "LGG", EU1),
        "LGG",
        ("CK", "Y8"),
        12.0,
        (5, 13, 21),
        "air",
        3.0,
        0.015,
        0.05,
        (("bpost", 1.0),),
        0.3,
        0.05,
        3.0,
        0.25,
    ),
    Destination(
        "PL",
        (
            _c("PL", "Warsaw", "WAW", EU1, 2),
            _c("PL", "Krakow", "KRK", EU1, 1),
            _c("PL", "Wroclaw", "WRO", EU1, 0.8),
        ),
        1.1,
        _c("PL", "Warsaw", "WAW", EU1),
        "WAW",
        ("CK", "LO"),
        10.5,
        (6, 18),
        "air",
        4.5,
        0.03,
        0.06,
        (("inpost", 0.7), ("poczta-polska", 0.3)),
        0.6,
        0.05,
        4.0,
        0.3,
    ),
    Destination(
        "US",
        (
            _c("US", "New York", "NYC", -300, 2),
            _c("US", "Los Angeles", "LAX", -480, 1.6),
            _c("US", "Chicago", "CHI", -360, 1.2),
            _c("US", "Houston", "HOU", -360, 1),
            _c("US", "Miami", "MIA", -300, 0.8),
        ),
        1.8,
        _c("US", "Los Angeles", "LAX", -480),
        "LAX",
        ("5Y", "CK", "CZ"),
        11.5,
        (3, 11, 19),
        "air",
        5.0,
        0.04,
        0.1,
        (("usps", 0.7), ("uniuni", 0.3)),
        0.05,
        0.04,
        10.0,
        0.35,
    ),
    Destination(
        "BR",
        (
            _c("BR", "Sao Paulo", "SAO", -180, 3),
            _c("BR", "Rio de Janeiro", "RIO", -180, 1.5),
            _c("BR", "Curitiba", "CWB", -180, 0.7),
            _c("BR", "Belo Horizonte", "BHZ", -180, 0.7),
        ),
        1.2,
        _c("BR", "Sao Paulo", "GRU", -180),
        "GRU",
        ("CK", "ET", "QR"),
        27.0,
        (9, 21),
        "air",
        12.0,
        0.14,
        0.12,
        (("correios", 0.8), ("jadlog", 0.2)),
        0.1,
        0.12,
        9.0,
        0.5,
    ),
    Destination(
        "RU",
        (
            _c("RU", "Moscow", "MOW", 180, 3),
            _c("RU", "Saint Petersburg", "LED", 180, 1.2),
            _c("RU", "Novosibirsk", "OVB", 420, 0.6),
        ),
        1.0,
        _c("RU", "Moscow", "SVO", 180),
        "SVO",
        ("SU", "CK"),
        9.5,
        (4, 16),
        "air",
        8.0,
        0.06,
        0.1,
        (("russian-post", 0.5), ("cdek", 0.5)),
        0.5,
        0.06,
        7.0,
        0.45,
    ),
    Destination(
        "SA",
        (
            _c("SA", "Riyadh", "RUH", 180, 2),
            _c("SA", "Jeddah", "JED", 180, 1.5),
            _c("SA", "Dammam", "DMM", 180, 0.7),
        ),
        0.6,
        _c("SA", "Riyadh", "RUH", 180),
        "RUH",
        ("SV", "CK"),
        9.5,
        (20,),
        "air",
        7.0,
        0.05,
        0.1,
        (("spl", 0.6), ("aramex", 0.4)),
        0.15,
        0.1,
        5.0,
        0.4,
    ),
    Destination(
        "IL",
        (
            _c("IL", "Tel Aviv", "TLV", 120, 2),
            _c("IL", "Jerusalem", "JRS", 120, 1),
            _c("IL", "Haifa", "HFA", 120, 0.7),
        ),
        0.5,
        _c("IL", "Tel Aviv", "TLV", 120),
        "TLV",
        ("LY", "CK"),
        11.0,
        (8,),
        "air",
        9.0,
        0.09,
        0.12,
        (("israel-post", 0.8), ("hfd", 0.2)),
        0.45,
        0.08,
        4.0,
        0.4,
    ),
    Destination(
        "KR",
        (
            _c("KR", "Seoul", "SEL", 540, 3),
            _c("KR", "Busan", "PUS", 540, 1),
            _c("KR", "Incheon", "ICN", 540, 0.8),
        ),
        1.2,
        _c("KR", "Incheon", "ICN", 540),
        "ICN",
        ("OZ", "KE", "CK"),
        2.0,
        (7, 11, 15, 19, 23),
        "air",
        3.0,
        0.02,
        0.05,
        (("cj-logistics", 0.7), ("hanjin", 0.3)),
        0.05,
        0.03,
        2.5,
        0.25,
    ),
    Destination(
        "JP",
        (
            _c("JP", "Tokyo", "TYO", 540, 3),
            _c("JP", "Osaka", "OSA", 540, 1.5),
            _c("JP", "Nagoya", "NGO", 540, 0.7),
        ),
        0.8,
        _c("JP", "Tokyo", "NRT", 540),
        "NRT",
        ("NH", "JL", "CK"),
        3.5,
        (9, 15, 21),
        "air",
        3.0,
        0.015,
        0.04,
        (("japan-post", 0.6), ("yamato", 0.4)),
        0.05,
        0.08,
        3.0,
        0.2,
    ),
    Destination(
        "CL",
        (
            _c("CL", "Santiago", "SCL", -180, 3),
            _c("CL", "Valparaiso", "VAP", -180, 0.6),
            _c("CL", "Concepcion", "CCP", -180, 0.5),
        ),
        0.6,
        _c("CL", "Santiago", "SCL", -180),
        "SCL",
        ("LA", "CK"),
        30.0,
        (10,),
        "air",
        8.0,
        0.06,
        0.1,
        (("chilexpress", 0.5), ("correos-chile", 0.5)),
        0.2,
        0.08,
        6.0,
        0.45,
    ),
    Destination(
        "MX",
        (
            _c("MX", "Mexico City", "MEX", -360, 3),
            _c("MX", "Guadalajara", "GDL", -360, 1),
            _c("MX", "Monterrey", "MTY", -360, 1),
        ),
        0.9,
        _c("MX", "Mexico City", "MEX", -360),
        "MEX",
        ("CZ", "AM", "CK"),
        16.0,
        (12,),
        "air",
        10.0,
        0.07,
        0.1,
        (("estafeta", 0.5), ("dhl-mx", 0.3), ("correos-mx", 0.2)),
        0.1,
        0.1,
        7.0,
        0.45,
    ),
)

# Service profiles (international): multipliers on lane legs and line-haul handling.
SERVICE_SHARES_INTERNATIONAL: tuple[tuple[str, float], ...] = (
    ("EXPRESS", 0.15),
    ("STANDARD", 0.65),
    ("ECONOMY", 0.20),
)
SERVICE_SHARES_DOMESTIC: tuple[tuple[str, float], ...] = (
    ("EXPRESS", 0.25),
    ("STANDARD", 0.70),
    ("ECONOMY", 0.05),
)

# Explicit promises (when a registration carries one): hours by (domestic, service).
EXPLICIT_PROMISES: dict[tuple[bool, str], tuple[int, ...]] = {
    (True, "EXPRESS"): (12, 18),
    (True, "STANDARD"): (24, 48),
    (True, "ECONOMY"): (48, 72),
    (False, "EXPRESS"): (48, 60),
    (False, "STANDARD"): (72, 96),
    (False, "ECONOMY"): (120, 168),
}

MERCHANT_PLATFORMS: tuple[tuple[str, float], ...] = (
    ("aliexpress", 0.55),
    ("taobao", 0.2),
    ("tmall", 0.15),
    ("miravia", 0.05),
    ("lazada", 0.05),
)

CARRIER_PREFIX: dict[str, str] = {
    "cainiao": "CN",
    "cainiao-customs": "CC",
}


def source_prefix(source: str) -> str:
    """Short event-id prefix per producer, so ids from different producers never clash."""
    cleaned = "".join(ch for ch in source.upper() if ch.isalnum())
    return CARRIER_PREFIX.get(source, cleaned[:6])
