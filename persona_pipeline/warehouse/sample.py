"""Synthetic retailer "Harbour & Finch": a deterministic, realistic sample warehouse.

The demo, the tests and the benchmarks need customer data whose segments are real: a clustering or an RFM
split should find groups a marketer would recognise. Every customer therefore gets a hidden *profile*
(young urban shopper, affluent catalogue buyer, bargain hunter, tech enthusiast, young family, outdoors
type) and a *lifecycle* (active, lapsed, new). Together they drive the demographics, the geography, how often
and when the customer orders, what and through which channel, the basket size, and the browsing events.
Neither is stored; downstream code has to rediscover them from behaviour.

Generation is vectorised with numpy and done in chunks of contiguous customer ids, so a million customers
(about ten million orders and twenty million events) take well under a minute and bounded memory. The same
``(customers, seed, as_of, chunk_customers)`` always gives identical tables.

All personal data is obviously fake: e-mail addresses use the reserved ``example.*`` domains and phone numbers
come from ranges reserved for fiction (``+44 7700 900xxx`` in the UK, ``+1 555-01xx`` elsewhere).

Tables (the column names and types are a contract):

* ``customers``: customer_id BIGINT, full_name, email, phone VARCHAR, birth_date DATE, gender, country,
  region, city VARCHAR, signup_date DATE, income_band, occupation VARCHAR, household_size INTEGER,
  marketing_consent, profiling_consent BOOLEAN
* ``orders``: order_id, customer_id BIGINT, ordered_at TIMESTAMP (naive UTC), amount DOUBLE, currency,
  channel, category, status VARCHAR
* ``events``: event_id, customer_id BIGINT, occurred_at TIMESTAMP (naive UTC), event_type, category,
  device VARCHAR
"""

from __future__ import annotations

import contextlib
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import duckdb
    import sqlalchemy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]

COMPANY_NAME = "Harbour & Finch"

SAMPLE_AS_OF: date = date(2026, 12, 1)
CATEGORIES: tuple[str, ...] = (
    "fashion",
    "electronics",
    "home",
    "beauty",
    "grocery",
    "wine",
    "sports",
    "books",
    "toys",
    "garden",
)
CHANNELS: tuple[str, ...] = ("web", "app", "store", "catalogue", "phone")
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "wishlist",
    "email_open",
    "email_click",
    "app_open",
)
GENDERS: tuple[str, ...] = ("female", "male", "non_binary")
INCOME_BANDS: tuple[str, ...] = ("<25k", "25-50k", "50-75k", "75-100k", "100-150k", "150k+")  # low -> high
OCCUPATIONS: tuple[str, ...] = (
    "student",
    "creative",
    "tech professional",
    "manager",
    "healthcare",
    "teacher",
    "trades",
    "retail worker",
    "retired",
    "homemaker",
    "executive",
    "freelancer",
)
ORDER_STATUSES: tuple[str, ...] = ("completed", "returned", "cancelled")
TABLE_NAMES: tuple[str, ...] = ("customers", "orders", "events")

# --------------------------------------------------------------------------------------------------------------
# Table schemas: one definition, rendered as Arrow, DuckDB DDL and SQLAlchemy Core.
# --------------------------------------------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (
        ("customer_id", "BIGINT"),
        ("full_name", "VARCHAR"),
        ("email", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("birth_date", "DATE"),
        ("gender", "VARCHAR"),
        ("country", "VARCHAR"),
        ("region", "VARCHAR"),
        ("city", "VARCHAR"),
        ("signup_date", "DATE"),
        ("income_band", "VARCHAR"),
        ("occupation", "VARCHAR"),
        ("household_size", "INTEGER"),
        ("marketing_consent", "BOOLEAN"),
        ("profiling_consent", "BOOLEAN"),
    ),
    "orders": (
        ("order_id", "BIGINT"),
        ("customer_id", "BIGINT"),
        ("ordered_at", "TIMESTAMP"),
        ("amount", "DOUBLE"),
        ("currency", "VARCHAR"),
        ("channel", "VARCHAR"),
        ("category", "VARCHAR"),
        ("status", "VARCHAR"),
    ),
    "events": (
        ("event_id", "BIGINT"),
        ("customer_id", "BIGINT"),
        ("occurred_at", "TIMESTAMP"),
        ("event_type", "VARCHAR"),
        ("category", "VARCHAR"),
        ("device", "VARCHAR"),
    ),
}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}

#: Arrow schema of each sample table, in column order.
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    table: pa.schema([pa.field(name, _ARROW_TYPES[sql_type]) for name, sql_type in columns])
    for table, columns in _COLUMNS.items()
}

# --------------------------------------------------------------------------------------------------------------
# Latent structure. Rows of every per-profile table follow _PROFILES.
# --------------------------------------------------------------------------------------------------------------

_PROFILES: tuple[str, ...] = (
    "young_urban",
    "affluent_catalogue",
    "bargain_hunter",
    "tech_enthusiast",
    "young_family",
    "outdoors",
)
_PROFILE_WEIGHTS = np.array([0.22, 0.13, 0.20, 0.13, 0.19, 0.13])

_ACTIVE, _LAPSED, _NEW = 0, 1, 2
_LIFECYCLE_WEIGHTS = np.array([0.78, 0.14, 0.08])
_BROWSER_SHARE = 0.05  # customers who browse but have never ordered

_CHUNK_CUSTOMERS = 200_000  # ~2M orders and ~4M events per chunk: under 1 GB while generating
_HISTORY_DAYS = 6 * 365  # signups spread over about six years
_NEW_WINDOW_DAYS = 60


def _rows(*rows: Sequence[float]) -> FloatArray:
    """Stack probability rows and normalise each to sum to one."""
    table = np.asarray(rows, dtype=np.float64)
    return table / table.sum(axis=1, keepdims=True)


# (mean, sd, min, max) of age in years
_AGE = np.array(
    [
        [23.0, 3.5, 18.0, 30.0],
        [65.0, 6.0, 55.0, 80.0],
        [42.0, 12.0, 20.0, 75.0],
        [34.0, 6.0, 23.0, 50.0],
        [38.0, 4.5, 29.0, 48.0],
        [37.0, 7.5, 24.0, 56.0],
    ]
)
_GENDER_P = _rows(  # female, male, non_binary
    [0.64, 0.32, 0.04],
    [0.52, 0.47, 0.01],
    [0.60, 0.385, 0.015],
    [0.18, 0.80, 0.02],
    [0.56, 0.43, 0.01],
    [0.45, 0.535, 0.015],
)
_INCOME_P = _rows(
    [0.40, 0.35, 0.15, 0.06, 0.03, 0.01],
    [0.02, 0.06, 0.14, 0.22, 0.30, 0.26],
    [0.32, 0.40, 0.18, 0.07, 0.02, 0.01],
    [0.03, 0.12, 0.28, 0.27, 0.22, 0.08],
    [0.08, 0.25, 0.32, 0.20, 0.11, 0.04],
    [0.06, 0.22, 0.32, 0.22, 0.13, 0.05],
)
_OCCUPATION_P = _rows(  # columns follow OCCUPATIONS
    [0.34, 0.20, 0.06, 0.02, 0.06, 0.03, 0.05, 0.14, 0.00, 0.01, 0.00, 0.09],
    [0.00, 0.03, 0.01, 0.08, 0.05, 0.04, 0.02, 0.01, 0.50, 0.06, 0.18, 0.02],
    [0.05, 0.03, 0.02, 0.05, 0.10, 0.06, 0.20, 0.22, 0.10, 0.12, 0.00, 0.05],
    [0.04, 0.06, 0.58, 0.12, 0.02, 0.02, 0.03, 0.01, 0.00, 0.00, 0.04, 0.08],
    [0.00, 0.06, 0.10, 0.14, 0.14, 0.12, 0.14, 0.08, 0.00, 0.14, 0.03, 0.05],
    [0.03, 0.08, 0.10, 0.12, 0.14, 0.12, 0.18, 0.07, 0.02, 0.03, 0.03, 0.08],
)
# redraws for occupations that contradict the age (a 40-year-old "retired")
_WORKING_AGE_P = _rows([0.0, 0.08, 0.11, 0.13, 0.12, 0.10, 0.14, 0.12, 0.0, 0.08, 0.04, 0.08])
_HOUSEHOLD_P = _rows(  # sizes 1..6
    [0.45, 0.35, 0.12, 0.05, 0.02, 0.01],
    [0.30, 0.55, 0.08, 0.04, 0.02, 0.01],
    [0.22, 0.28, 0.20, 0.18, 0.08, 0.04],
    [0.40, 0.35, 0.13, 0.09, 0.02, 0.01],
    [0.00, 0.03, 0.32, 0.38, 0.18, 0.09],
    [0.25, 0.35, 0.18, 0.15, 0.05, 0.02],
)
_URBAN_PULL = np.array(  # weight multiplier for (rural, urban) cities
    [[0.35, 1.6], [1.8, 0.8], [1.1, 1.0], [0.6, 1.4], [1.4, 0.85], [2.2, 0.7]]
)
_MARKETING_CONSENT = np.array([0.55, 0.72, 0.78, 0.45, 0.62, 0.60])
_PROFILING_CONSENT = np.array([0.93, 0.94, 0.93, 0.86, 0.93, 0.93])

_CATEGORY_P = _rows(  # columns follow CATEGORIES
    [0.38, 0.06, 0.05, 0.28, 0.06, 0.02, 0.07, 0.04, 0.01, 0.03],
    [0.06, 0.04, 0.26, 0.05, 0.05, 0.36, 0.02, 0.08, 0.02, 0.06],
    [0.08, 0.04, 0.20, 0.05, 0.36, 0.03, 0.03, 0.03, 0.15, 0.03],
    [0.04, 0.48, 0.05, 0.02, 0.04, 0.03, 0.06, 0.22, 0.03, 0.03],
    [0.10, 0.05, 0.18, 0.04, 0.25, 0.03, 0.05, 0.04, 0.24, 0.02],
    [0.07, 0.06, 0.05, 0.03, 0.06, 0.04, 0.40, 0.04, 0.02, 0.23],
)
# what people browse is close to what they buy, plus a few aspirations
_INTEREST_P = _rows(
    [0.34, 0.12, 0.08, 0.22, 0.02, 0.02, 0.10, 0.05, 0.01, 0.04],
    [0.08, 0.06, 0.28, 0.05, 0.02, 0.28, 0.03, 0.10, 0.03, 0.07],
    [0.12, 0.14, 0.22, 0.07, 0.22, 0.03, 0.04, 0.03, 0.10, 0.03],
    [0.04, 0.46, 0.06, 0.02, 0.02, 0.03, 0.09, 0.22, 0.03, 0.03],
    [0.11, 0.08, 0.22, 0.05, 0.14, 0.03, 0.06, 0.05, 0.22, 0.04],
    [0.08, 0.08, 0.05, 0.03, 0.03, 0.05, 0.42, 0.05, 0.02, 0.19],
)
_CHANNEL_P = _rows(  # web, app, store, catalogue, phone
    [0.25, 0.58, 0.14, 0.01, 0.02],
    [0.15, 0.03, 0.22, 0.42, 0.18],
    [0.62, 0.15, 0.18, 0.02, 0.03],
    [0.68, 0.15, 0.14, 0.01, 0.02],
    [0.35, 0.30, 0.30, 0.03, 0.02],
    [0.40, 0.25, 0.31, 0.02, 0.02],
)
_DEVICE_P = _rows(  # mobile, desktop, tablet
    [0.85, 0.10, 0.05],
    [0.25, 0.35, 0.40],
    [0.55, 0.38, 0.07],
    [0.30, 0.62, 0.08],
    [0.60, 0.20, 0.20],
    [0.60, 0.30, 0.10],
)
# rows 0-5 by profile, row 6 for lapsed customers (whose activity is mostly opening marketing e-mails)
_EVENT_TYPE_P = _rows(  # columns follow EVENT_TYPES
    [0.22, 0.24, 0.08, 0.08, 0.08, 0.06, 0.02, 0.22],
    [0.25, 0.20, 0.05, 0.05, 0.03, 0.30, 0.10, 0.02],
    [0.25, 0.25, 0.14, 0.10, 0.04, 0.12, 0.06, 0.04],
    [0.28, 0.32, 0.18, 0.07, 0.05, 0.05, 0.02, 0.03],
    [0.30, 0.25, 0.10, 0.08, 0.05, 0.10, 0.04, 0.08],
    [0.30, 0.26, 0.10, 0.07, 0.06, 0.10, 0.04, 0.07],
    [0.15, 0.10, 0.03, 0.02, 0.02, 0.55, 0.10, 0.03],
)
_LAPSED_EVENT_ROW = 6
# browsing right before a purchase
_PRE_PURCHASE_EVENT_P = _rows([0.06, 0.45, 0.13, 0.32, 0.04, 0.0, 0.0, 0.0])
_PRE_PURCHASE_SHARE = 0.35
_EMAIL_EVENTS = np.array([EVENT_TYPES.index("email_open"), EVENT_TYPES.index("email_click")])

# basket size: median order value per profile, customer-level and order-level log spread
_AOV_MEDIAN = np.array([38.0, 150.0, 24.0, 125.0, 58.0, 72.0])
_AOV_CUSTOMER_SIGMA = 0.35
_AOV_ORDER_SIGMA = 0.5
_CATEGORY_PRICE = np.array([1.0, 1.8, 1.2, 0.7, 0.6, 1.1, 1.1, 0.5, 0.8, 1.0])
_CHANNEL_PRICE = np.array([1.0, 0.95, 1.0, 1.1, 1.1])
_RETURN_RATE = np.array([0.13, 0.07, 0.06, 0.035, 0.01, 0.02, 0.07, 0.025, 0.06, 0.045])
_CANCEL_RATE = 0.04
_RETURN_WINDOW_DAYS = 3  # orders from the last days cannot have come back yet

# expected orders per customer-year^0.6 of tenure (active customers), and events per customer
_ORDER_RATE = np.array([8.7, 4.6, 10.6, 5.1, 7.7, 5.7])
_EVENT_RATE = np.array([31.0, 11.0, 23.0, 29.0, 17.0, 18.0])
_EVENT_LIFECYCLE = np.array([1.0, 0.55, 0.6])
_BROWSER_EVENT_BOOST = 1.5
_ENGAGEMENT_SHAPE = 2.0  # gamma shape of the per-customer activity multiplier (mean 1)


def _hour_profile(peaks: Sequence[tuple[float, float, float]], floor: float = 0.05) -> FloatArray:
    """Hour-of-day weights: a floor plus circular Gaussian bumps (centre hour, width, height)."""
    hours = np.arange(24) + 0.5
    weights = np.full(24, floor)
    for centre, width, height in peaks:
        distance = np.abs(hours - centre)
        distance = np.minimum(distance, 24 - distance)
        weights += height * np.exp(-0.5 * (distance / width) ** 2)
    return weights / weights.sum()


_HOUR_P = np.vstack(
    [
        _hour_profile([(13.0, 1.5, 0.4), (21.5, 2.0, 1.0), (0.5, 1.2, 0.4)], floor=0.02),
        _hour_profile([(10.5, 2.0, 1.0), (15.0, 2.0, 0.8)], floor=0.01),
        _hour_profile([(12.5, 1.5, 0.8), (20.0, 2.0, 1.0)], floor=0.02),
        _hour_profile([(21.0, 2.0, 1.0), (23.5, 1.5, 0.5), (13.0, 1.5, 0.3)], floor=0.02),
        _hour_profile([(9.5, 1.5, 0.6), (20.5, 1.5, 1.0)], floor=0.02),
        _hour_profile([(7.0, 1.5, 0.6), (19.0, 2.0, 1.0)], floor=0.02),
    ]
)
# relative demand by calendar month: spring lull, Black Friday and Christmas peak
_SEASON = np.array([0.85, 0.80, 0.90, 0.95, 1.00, 0.95, 0.95, 0.95, 1.00, 1.05, 1.40, 1.60])

# --------------------------------------------------------------------------------------------------------------
# Geography and names
# --------------------------------------------------------------------------------------------------------------

# (country, share of customers, currency)
_COUNTRIES: tuple[tuple[str, float, str], ...] = (
    ("United Kingdom", 0.40, "GBP"),
    ("Germany", 0.18, "EUR"),
    ("France", 0.15, "EUR"),
    ("Netherlands", 0.10, "EUR"),
    ("Spain", 0.10, "EUR"),
    ("Ireland", 0.07, "EUR"),
)
_UK = 0
# (country index, region, city, relative size within the country, urban?)
_CITIES: tuple[tuple[int, str, str, float, bool], ...] = (
    (0, "London", "London", 30.0, True),
    (0, "North West", "Manchester", 9.0, True),
    (0, "West Midlands", "Birmingham", 9.0, True),
    (0, "Yorkshire and the Humber", "Leeds", 7.0, True),
    (0, "Scotland", "Glasgow", 6.0, True),
    (0, "Scotland", "Edinburgh", 5.0, True),
    (0, "South West", "Bristol", 5.0, True),
    (0, "Wales", "Cardiff", 4.0, True),
    (0, "Northern Ireland", "Belfast", 3.0, True),
    (0, "South East", "Brighton", 3.0, True),
    (0, "South East", "Guildford", 3.0, False),
    (0, "East of England", "Norwich", 2.5, False),
    (0, "South West", "Truro", 2.0, False),
    (0, "Yorkshire and the Humber", "Harrogate", 2.0, False),
    (0, "North West", "Kendal", 1.5, False),
    (0, "Scotland", "Inverness", 1.5, False),
    (0, "Wales", "Aberystwyth", 1.0, False),
    (0, "West Midlands", "Ludlow", 1.0, False),
    (1, "Berlin", "Berlin", 18.0, True),
    (1, "Bavaria", "Munich", 12.0, True),
    (1, "Hamburg", "Hamburg", 9.0, True),
    (1, "North Rhine-Westphalia", "Cologne", 9.0, True),
    (1, "Hesse", "Frankfurt", 7.0, True),
    (1, "North Rhine-Westphalia", "Düsseldorf", 6.0, True),
    (1, "Baden-Württemberg", "Stuttgart", 6.0, True),
    (1, "Saxony", "Leipzig", 5.0, True),
    (1, "Lower Saxony", "Hanover", 4.0, True),
    (1, "North Rhine-Westphalia", "Münster", 3.0, False),
    (1, "Baden-Württemberg", "Freiburg", 3.0, False),
    (1, "Bavaria", "Bamberg", 2.0, False),
    (1, "Saxony", "Görlitz", 1.5, False),
    (1, "Lower Saxony", "Lüneburg", 1.5, False),
    (1, "Schleswig-Holstein", "Husum", 1.0, False),
    (2, "Île-de-France", "Paris", 30.0, True),
    (2, "Auvergne-Rhône-Alpes", "Lyon", 9.0, True),
    (2, "Provence-Alpes-Côte d'Azur", "Marseille", 8.0, True),
    (2, "Occitanie", "Toulouse", 7.0, True),
    (2, "Nouvelle-Aquitaine", "Bordeaux", 6.0, True),
    (2, "Hauts-de-France", "Lille", 6.0, True),
    (2, "Provence-Alpes-Côte d'Azur", "Nice", 5.0, True),
    (2, "Brittany", "Rennes", 4.0, True),
    (2, "Grand Est", "Strasbourg", 4.0, True),
    (2, "Normandy", "Rouen", 3.0, True),
    (2, "Auvergne-Rhône-Alpes", "Annecy", 3.0, False),
    (2, "Occitanie", "Albi", 1.5, False),
    (2, "Nouvelle-Aquitaine", "Périgueux", 1.5, False),
    (2, "Brittany", "Quimper", 1.5, False),
    (2, "Normandy", "Bayeux", 1.0, False),
    (3, "North Holland", "Amsterdam", 25.0, True),
    (3, "South Holland", "Rotterdam", 18.0, True),
    (3, "South Holland", "The Hague", 14.0, True),
    (3, "Utrecht", "Utrecht", 10.0, True),
    (3, "North Brabant", "Eindhoven", 8.0, True),
    (3, "Groningen", "Groningen", 6.0, True),
    (3, "North Holland", "Haarlem", 5.0, True),
    (3, "Gelderland", "Apeldoorn", 4.0, False),
    (3, "Friesland", "Leeuwarden", 3.0, False),
    (3, "Zeeland", "Middelburg", 2.0, False),
    (4, "Community of Madrid", "Madrid", 28.0, True),
    (4, "Catalonia", "Barcelona", 22.0, True),
    (4, "Valencian Community", "Valencia", 9.0, True),
    (4, "Andalusia", "Seville", 8.0, True),
    (4, "Andalusia", "Málaga", 7.0, True),
    (4, "Basque Country", "Bilbao", 5.0, True),
    (4, "Catalonia", "Girona", 3.0, False),
    (4, "Galicia", "Santiago de Compostela", 3.0, False),
    (4, "Castile and León", "Salamanca", 3.0, False),
    (4, "Andalusia", "Ronda", 1.5, False),
    (4, "Galicia", "Lugo", 1.5, False),
    (4, "Castile and León", "Soria", 1.0, False),
    (5, "Leinster", "Dublin", 45.0, True),
    (5, "Munster", "Cork", 15.0, True),
    (5, "Connacht", "Galway", 9.0, True),
    (5, "Munster", "Limerick", 8.0, True),
    (5, "Leinster", "Kilkenny", 5.0, False),
    (5, "Munster", "Killarney", 4.0, False),
    (5, "Ulster", "Letterkenny", 4.0, False),
    (5, "Connacht", "Westport", 3.0, False),
)


def _names(text: str) -> tuple[str, ...]:
    """Split a comma-separated name list (names may contain spaces and apostrophes)."""
    return tuple(name.strip() for name in text.split(","))


_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "female": _names(
        "Anna, Laura, Sophie, Emma, Julia, Maria, Sara, Clara, Lena, Eva, Nina, Lucía, Chloé, Emily, "
        "Olivia, Mia, Hannah, Léa, Inès, Aoife, Saoirse, Fenna, Sanne, Isabel, Carmen, Charlotte, "
        "Amelia, Zoe, Fatima, Priya"
    ),
    "male": _names(
        "Lucas, Thomas, David, Daniel, Martin, Jan, Luca, Paul, Max, Leon, Hugo, Louis, Pablo, Javier, "
        "Seán, Jack, Oliver, James, Finn, Noah, Lars, Daan, Sem, Mateo, Jonas, Felix, Omar, Arjun, "
        "Ciarán, Théo"
    ),
    "non_binary": _names(
        "Alex, Sam, Charlie, Robin, Jamie, Kim, Sascha, Toni, Jordan, Morgan, Sky, River, Eden, Noor, Luka"
    ),
}
_LAST_NAMES: tuple[tuple[str, ...], ...] = (  # by country index
    _names(
        "Smith, Jones, Taylor, Brown, Williams, Wilson, Johnson, Davies, Patel, Robinson, Wright, "
        "Thompson, Evans, Walker, Khan, Hughes, Clarke, Green, Campbell, Ahmed"
    ),
    _names(
        "Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, Hoffmann, Schäfer, "
        "Koch, Yilmaz, Richter, Klein, Wolf, Neumann, Schwarz"
    ),
    _names(
        "Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, Simon, Laurent, "
        "Lefèvre, Michel, Garcia, Fournier, Girard, Benali"
    ),
    _names(
        "de Jong, Jansen, de Vries, van den Berg, van Dijk, Bakker, Janssen, Visser, Smit, Meijer, "
        "de Boer, Mulder, de Groot, Bos, Vos, Peters, Hendriks"
    ),
    _names(
        "García, Rodríguez, González, Fernández, López, Martínez, Sánchez, Pérez, Gómez, Martín, "
        "Jiménez, Ruiz, Hernández, Díaz, Moreno, Álvarez"
    ),
    _names(
        "Murphy, Kelly, O'Sullivan, Walsh, Smith, O'Brien, Byrne, Ryan, O'Connor, O'Neill, Reilly, "
        "Doyle, McCarthy, Gallagher, Doherty, Kennedy"
    ),
)
_EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")

_DAY_US = 86_400_000_000
_SECOND_US = 1_000_000
_EPOCH = date(1970, 1, 1)

# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleData:
    """The three sample tables, as Arrow tables with the schemas in :data:`ARROW_SCHEMAS`."""

    customers: pa.Table
    orders: pa.Table
    events: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        """The tables by name, in load order (customers first)."""
        return {"customers": self.customers, "orders": self.orders, "events": self.events}


def generate_sample(customers: int = 20_000, *, seed: int = 7, as_of: date = SAMPLE_AS_OF) -> SampleData:
    """Generate the whole sample company in memory.

    Equal to concatenating :func:`iter_sample_batches` with its default chunk size. ``as_of`` is the
    "today" of the data: every timestamp lies strictly before its midnight.
    """
    batches = list(iter_sample_batches(customers, seed=seed, as_of=as_of))
    if not batches:
        return SampleData(*(ARROW_SCHEMAS[name].empty_table() for name in TABLE_NAMES))
    return SampleData(
        customers=pa.concat_tables([batch.customers for batch in batches]),
        orders=pa.concat_tables([batch.orders for batch in batches]),
        events=pa.concat_tables([batch.events for batch in batches]),
    )


def iter_sample_batches(
    customers: int,
    *,
    seed: int = 7,
    as_of: date = SAMPLE_AS_OF,
    chunk_customers: int = _CHUNK_CUSTOMERS,
) -> Iterator[SampleData]:
    """Yield the sample company in chunks of ``chunk_customers`` contiguous customer ids.

    Each chunk holds its customers with all their orders and events, so chunks can be written one after
    another with bounded memory. Order and event ids continue across chunks. The output is deterministic for
    the same ``(customers, seed, as_of, chunk_customers)``; a different chunk size gives different (equally
    valid) data.
    """
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    if chunk_customers < 1:
        raise ValueError(f"chunk_customers must be >= 1, got {chunk_customers}")
    clock = _Clock.for_date(as_of)
    next_order_id = 1
    next_event_id = 1
    for chunk_index, start in enumerate(range(0, customers, chunk_customers)):
        batch = _generate_chunk(
            seed,
            chunk_index,
            first_customer_id=start + 1,
            size=min(chunk_customers, customers - start),
            first_order_id=next_order_id,
            first_event_id=next_event_id,
            clock=clock,
        )
        next_order_id += batch.orders.num_rows
        next_event_id += batch.events.num_rows
        yield batch
        del batch  # don't keep the previous chunk alive while the next one is generated


def write_duckdb(
    path: str | Path,
    customers: int = 20_000,
    *,
    seed: int = 7,
    as_of: date = SAMPLE_AS_OF,
    replace: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write the sample company into the DuckDB file at ``path`` and return the rows written per table.

    Tables ``customers``, ``orders`` and ``events`` get explicit column types. With ``replace`` they are
    replaced; without it they are created if missing and the rows are appended (so don't append the same
    seed twice: ids would repeat). Other tables in the file are left alone, and the data is the same as
    :func:`generate_sample` gives for the same arguments.

    Chunks are generated and inserted through DuckDB's Arrow scan into staging tables, committing per chunk
    (one huge transaction would hold every row in memory), then swapped in with one short transaction: readers
    see the old tables or the new ones, never a half-written state. ``progress`` gets one line per chunk.
    """
    import duckdb

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = {name: f"{name}__sample_loading" for name in TABLE_NAMES}
    written = dict.fromkeys(TABLE_NAMES, 0)
    total_chunks = -(-customers // _CHUNK_CUSTOMERS)
    started = time.perf_counter()
    with duckdb.connect(str(target)) as con:
        try:
            for name in TABLE_NAMES:
                con.execute(_duckdb_ddl(name, staging[name], replace=True))
            batches = iter_sample_batches(customers, seed=seed, as_of=as_of, chunk_customers=_CHUNK_CUSTOMERS)
            for chunk_number, batch in enumerate(batches, start=1):
                con.execute("BEGIN TRANSACTION")
                for name, table in batch.tables().items():
                    columns = ", ".join(f'"{column}"' for column, _ in _COLUMNS[name])
                    con.register("sample_batch", table)
                    con.execute(f"INSERT INTO {staging[name]} ({columns}) SELECT {columns} FROM sample_batch")
                    con.unregister("sample_batch")
                    written[name] += table.num_rows
                con.execute("COMMIT")
                if progress is not None:
                    first_id = batch.customers.column("customer_id")[0].as_py()
                    progress(
                        f"chunk {chunk_number}/{total_chunks}: customers {first_id:,}-"
                        f"{first_id + batch.customers.num_rows - 1:,}, {batch.orders.num_rows:,} orders, "
                        f"{batch.events.num_rows:,} events ({time.perf_counter() - started:.1f}s)"
                    )
                del batch  # free this chunk before the next one is generated

            con.execute("BEGIN TRANSACTION")
            for name in TABLE_NAMES:
                if replace:
                    con.execute(f"DROP TABLE IF EXISTS {name}")
                    con.execute(f"ALTER TABLE {staging[name]} RENAME TO {name}")
                else:
                    con.execute(_duckdb_ddl(name, name, replace=False))
                    con.execute(f"INSERT INTO {name} SELECT * FROM {staging[name]}")
                    con.execute(f"DROP TABLE {staging[name]}")
            con.execute("COMMIT")
        except BaseException:
            _discard_staging(con, staging.values())
            raise
    return written


def load_into_engine(
    engine: sqlalchemy.Engine,
    data: SampleData,
    *,
    schema: str | None = None,
    replace: bool = True,
) -> dict[str, int]:
    """Load the sample tables into any SQLAlchemy database and return the rows loaded per table.

    Tables are defined with SQLAlchemy Core (mirroring :data:`ARROW_SCHEMAS`) and created in ``schema``
    (created too, on PostgreSQL). With ``replace`` existing tables are dropped first; without it rows are
    appended. PostgreSQL through psycopg 3 is loaded with ``COPY``; other databases get batched
    ``executemany`` inserts. Everything happens in one transaction.
    """
    import sqlalchemy as sa

    metadata = sa.MetaData(schema=schema)
    tables = {name: _sqlalchemy_table(name, metadata) for name in TABLE_NAMES}
    use_copy = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    loaded: dict[str, int] = {}
    with engine.begin() as conn:
        if schema is not None and engine.dialect.name == "postgresql":
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        if replace:
            metadata.drop_all(conn)
        metadata.create_all(conn)
        for name, arrow_table in data.tables().items():
            if use_copy:
                _copy_into_postgres(conn, name, schema, arrow_table)
            else:
                _insert_batches(conn, tables[name], arrow_table)
            loaded[name] = arrow_table.num_rows
    return loaded


# --------------------------------------------------------------------------------------------------------------
# Loading helpers
# --------------------------------------------------------------------------------------------------------------


def _duckdb_ddl(name: str, table: str, *, replace: bool) -> str:
    """``CREATE TABLE`` for sample table ``name``'s columns under the (possibly staging) name ``table``."""
    columns = ", ".join(f'"{column}" {sql_type} NOT NULL' for column, sql_type in _COLUMNS[name])
    create = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    return f"{create} {table} ({columns})"


def _discard_staging(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
    """Best-effort cleanup after a failed load; the original error is what matters."""
    import duckdb

    with contextlib.suppress(duckdb.Error):  # no transaction may be open
        con.execute("ROLLBACK")
    for table in tables:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP TABLE IF EXISTS {table}")


def _sqlalchemy_table(name: str, metadata: sqlalchemy.MetaData) -> sqlalchemy.Table:
    import sqlalchemy as sa

    types: dict[str, Any] = {
        "BIGINT": sa.BigInteger,
        "INTEGER": sa.Integer,
        "DOUBLE": sa.Double,
        "VARCHAR": sa.String,
        "BOOLEAN": sa.Boolean,
        "DATE": sa.Date,
        "TIMESTAMP": sa.DateTime,
    }
    columns = [
        sa.Column(column, types[sql_type](), nullable=False, primary_key=index == 0)
        for index, (column, sql_type) in enumerate(_COLUMNS[name])
    ]
    return sa.Table(name, metadata, *columns)


def _insert_batches(conn: sqlalchemy.Connection, table: sqlalchemy.Table, data: pa.Table) -> None:
    for batch in data.to_batches(max_chunksize=10_000):
        conn.execute(table.insert(), batch.to_pylist())


def _copy_into_postgres(conn: sqlalchemy.Connection, name: str, schema: str | None, data: pa.Table) -> None:
    from psycopg import sql

    target = sql.Identifier(schema, name) if schema is not None else sql.Identifier(name)
    column_list = sql.SQL(", ").join(sql.Identifier(column) for column in data.column_names)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, column_list)
    # the DBAPI connection under SQLAlchemy's, so COPY joins the same transaction
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError(f"no open PostgreSQL connection to COPY table {name!r} through")
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for batch in data.to_batches(max_chunksize=50_000):
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)


# --------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    """Day arithmetic for one ``as_of``: days are counted since 1970-01-01."""

    as_of_day: int
    first_day: int  # earliest day any timestamp can fall on
    season_accept: FloatArray  # per day since first_day: chance a drawn day is kept (seasonality)

    @classmethod
    def for_date(cls, as_of: date) -> _Clock:
        as_of_day = (as_of - _EPOCH).days
        first_day = as_of_day - _HISTORY_DAYS - 400
        days = np.arange(first_day, as_of_day + 1, dtype=np.int64).astype("datetime64[D]")
        months = days.astype("datetime64[M]").astype(np.int64) % 12
        return cls(as_of_day, first_day, _SEASON[months] / _SEASON.max())


@dataclass(frozen=True)
class _People:
    """Hidden per-customer state (one entry per customer of the chunk) that drives orders and events."""

    first_id: int
    profile: IntArray
    lifecycle: IntArray
    signup_day: IntArray
    order_end_day: IntArray  # exclusive; lapsed customers stopped ordering long before as_of
    event_end_day: IntArray  # exclusive; e-mail events of lapsed customers still run to as_of
    n_orders: IntArray
    n_events: IntArray
    is_uk: BoolArray
    aov: FloatArray
    category_p: FloatArray
    channel_p: FloatArray
    device_p: FloatArray
    interest_p: FloatArray


@dataclass(frozen=True)
class _Orders:
    """Per-order arrays the event generator reuses (pre-purchase browsing)."""

    at_us: IntArray
    category: Int8Array
    channel: Int8Array
    offsets: IntArray  # first order of each customer (orders are grouped by customer)


def _sample_rows(rng: np.random.Generator, probs: FloatArray, group: IntArray) -> IntArray:
    """Draw one category index per element, element ``i`` from the distribution ``probs[group[i]]``.

    All rows are laid end to end on one axis (row ``g`` occupies ``[g, g + 1)``), so a single
    ``searchsorted`` samples millions of elements from thousands of distributions.
    """
    n_groups, width = probs.shape
    cumulative = np.cumsum(probs, axis=1)
    cumulative /= cumulative[:, -1:]
    edges = (np.arange(n_groups, dtype=np.float64)[:, None] + cumulative).ravel()
    position = rng.random(group.size)
    position += group
    index: IntArray = np.searchsorted(edges, position, side="right").astype(np.int64, copy=False)
    del position
    index -= group * width
    # rounding of ``g + u`` just below ``g + 1`` can land on the next row's first edge
    np.minimum(index, width - 1, out=index)
    return index


def _sample_fixed(rng: np.random.Generator, probs: FloatArray, size: int) -> IntArray:
    """Draw ``size`` category indices from one distribution."""
    return _sample_rows(rng, probs.reshape(1, -1), np.zeros(size, dtype=np.int64))


def _dirichlet_rows(rng: np.random.Generator, base: FloatArray, concentration: float) -> FloatArray:
    """Per-row Dirichlet draws around ``base`` (rows are means); higher concentration = closer to the mean."""
    draws = rng.standard_gamma(base * concentration)
    draws += 1e-12  # keeps rows with all-tiny draws normalisable
    result: FloatArray = draws / draws.sum(axis=1, keepdims=True)
    return result


def _truncated_normal(
    rng: np.random.Generator, mean: FloatArray, sd: FloatArray, low: FloatArray, high: FloatArray
) -> FloatArray:
    """Normal draws; the few outside ``[low, high]`` are redrawn uniformly inside (no pile-up at the bounds)."""
    values = rng.normal(mean, sd)
    outside = (values < low) | (values > high)
    values[outside] = rng.uniform(low[outside], high[outside])
    return values


def _dictionary_strings(values: Sequence[str], indices: IntArray | Int8Array) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(indices))


def _ascii_handle(text: str) -> str:
    """Lower-case ASCII form of a name for e-mail addresses ("O'Brien" -> "obrien", "Müller" -> "muller")."""
    stripped = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in stripped.lower() if ch.isalnum())


def _days_to_dates(days: IntArray) -> pa.Array:
    return pa.array(days.astype("datetime64[D]"), type=pa.date32())


def _draw_days(
    rng: np.random.Generator, start: IntArray, end: IntArray, skew: FloatArray | float, clock: _Clock
) -> IntArray:
    """Days in ``[start, end)``; ``skew`` < 1 leans towards ``end``; busy months are favoured.

    Seasonality by a single accept-or-redraw step: a rejected first draw is replaced by an independent
    second one, which shifts mass towards high-demand months without loops.
    """
    span = end - start
    last = end - 1
    first = np.minimum(start + (rng.random(start.size) ** skew * span).astype(np.int64), last)
    second = np.minimum(start + (rng.random(start.size) ** skew * span).astype(np.int64), last)
    keep = rng.random(start.size) < clock.season_accept[first - clock.first_day]
    return np.where(keep, first, second)


def _draw_timestamps(rng: np.random.Generator, days: IntArray, hour_group: IntArray) -> IntArray:
    """Microseconds since the epoch: the given day, an hour from the profile's rhythm, a random second."""
    hours = _sample_rows(rng, _HOUR_P, hour_group)
    seconds = hours * 3600 + rng.integers(0, 3600, size=days.size)
    return days * _DAY_US + seconds * _SECOND_US


def _generate_customers(
    rng: np.random.Generator, *, first_id: int, size: int, clock: _Clock
) -> tuple[_People, pa.Table]:
    profile = _sample_fixed(rng, _PROFILE_WEIGHTS, size)
    lifecycle = _sample_fixed(rng, _LIFECYCLE_WEIGHTS, size)
    browser = rng.random(size) < _BROWSER_SHARE

    # demographics
    age_params = _AGE[profile]
    age = _truncated_normal(rng, age_params[:, 0], age_params[:, 1], age_params[:, 2], age_params[:, 3])
    birth_day = clock.as_of_day - (age * 365.25).astype(np.int64) - rng.integers(0, 365, size=size)
    gender = _sample_rows(rng, _GENDER_P, profile)
    income = _sample_rows(rng, _INCOME_P, profile)
    occupation = _sample_rows(rng, _OCCUPATION_P, profile)
    occupation = _reconcile_occupation(rng, occupation, age)
    household = _sample_rows(rng, _HOUSEHOLD_P, profile) + 1

    # geography: city weight = country share x city size x the profile's pull to towns or the countryside
    city_country = np.array([city[0] for city in _CITIES])
    city_size = np.array([city[3] for city in _CITIES])
    city_urban = np.array([city[4] for city in _CITIES], dtype=np.int64)
    country_share = np.array([country[1] for country in _COUNTRIES])
    size_in_country = city_size / np.bincount(city_country, weights=city_size)[city_country]
    city_p = country_share[city_country] * size_in_country * _URBAN_PULL[:, city_urban]
    city = _sample_rows(rng, city_p / city_p.sum(axis=1, keepdims=True), profile)
    country = city_country[city]
    is_uk = country == _UK

    # lifecycle: signup date and the window in which the customer orders
    u = rng.random(size)
    signup_ago = (_NEW_WINDOW_DAYS + 1 + (_HISTORY_DAYS - _NEW_WINDOW_DAYS - 1) * u**1.3).astype(np.int64)
    lapse = rng.integers(365, 3 * 365, size=size)  # days since the last possible order
    lapsed = lifecycle == _LAPSED
    new = lifecycle == _NEW
    lapsed_signup = lapse + 30 + ((_HISTORY_DAYS - lapse - 30) * rng.random(size) ** 0.8).astype(np.int64)
    signup_ago = np.where(lapsed, lapsed_signup, signup_ago)
    signup_ago = np.where(new, rng.integers(1, _NEW_WINDOW_DAYS + 1, size=size), signup_ago)
    signup_day = clock.as_of_day - signup_ago
    order_end_day = np.where(lapsed, clock.as_of_day - lapse, clock.as_of_day)
    event_end_day = np.minimum(order_end_day + np.where(lapsed, 90, 0), clock.as_of_day)

    # activity: one engagement multiplier drives both orders and browsing
    engagement = rng.gamma(_ENGAGEMENT_SHAPE, 1.0 / _ENGAGEMENT_SHAPE, size=size)
    tenure_years = np.maximum((order_end_day - signup_day) / 365.25, 0.25)
    active_mean = _ORDER_RATE[profile] * tenure_years**0.6 * engagement
    n_orders = 1 + rng.poisson(np.maximum(active_mean - 1.0, 0.0))
    n_orders = np.where(lapsed, 1 + rng.poisson(1.8 * np.sqrt(engagement)), n_orders)
    n_orders = np.where(new, 1 + (rng.random(size) < 0.35), n_orders)
    n_orders = np.where(browser, 0, n_orders).astype(np.int64)
    event_mean = (
        _EVENT_RATE[profile]
        * _EVENT_LIFECYCLE[lifecycle]
        * engagement**0.7
        * np.where(browser, _BROWSER_EVENT_BOOST, 1.0)
    )
    n_events = rng.poisson(event_mean).astype(np.int64)
    n_events = np.where(browser, np.maximum(n_events, 1), n_events)  # browsers are known by their events

    # tastes: per-customer mixes scattered around the profile's
    category_p = _dirichlet_rows(rng, _CATEGORY_P[profile], 12.0)
    interest_p = 0.6 * category_p + 0.4 * _dirichlet_rows(rng, _INTEREST_P[profile], 6.0)
    channel_p = _dirichlet_rows(rng, _CHANNEL_P[profile], 10.0)
    device_p = _dirichlet_rows(rng, _DEVICE_P[profile], 10.0)
    aov = _AOV_MEDIAN[profile] * np.exp(rng.normal(0.0, _AOV_CUSTOMER_SIGMA, size=size))

    marketing = rng.random(size) < _MARKETING_CONSENT[profile] * np.where(lapsed, 0.9, 1.0)
    profiling = rng.random(size) < _PROFILING_CONSENT[profile]

    customer_id = np.arange(first_id, first_id + size, dtype=np.int64)
    full_name, email, phone = _personal_details(rng, customer_id, gender, country)
    table = pa.Table.from_arrays(
        [
            pa.array(customer_id),
            full_name,
            email,
            phone,
            _days_to_dates(birth_day),
            _dictionary_strings(GENDERS, gender),
            _dictionary_strings([c[0] for c in _COUNTRIES], country),
            _dictionary_strings([c[1] for c in _CITIES], city),
            _dictionary_strings([c[2] for c in _CITIES], city),
            _days_to_dates(signup_day),
            _dictionary_strings(INCOME_BANDS, income),
            _dictionary_strings(OCCUPATIONS, occupation),
            pa.array(household.astype(np.int32)),
            pa.array(marketing),
            pa.array(profiling),
        ],
        schema=ARROW_SCHEMAS["customers"],
    )
    people = _People(
        first_id=first_id,
        profile=profile,
        lifecycle=lifecycle,
        signup_day=signup_day,
        order_end_day=order_end_day,
        event_end_day=event_end_day,
        n_orders=n_orders,
        n_events=n_events,
        is_uk=is_uk,
        aov=aov,
        category_p=category_p,
        channel_p=channel_p,
        device_p=device_p,
        interest_p=interest_p,
    )
    return people, table


def _reconcile_occupation(rng: np.random.Generator, occupation: IntArray, age: FloatArray) -> IntArray:
    """Make occupation plausible for the age: most over-67s are retired, no 40-year-old students, ..."""
    student = OCCUPATIONS.index("student")
    retired = OCCUPATIONS.index("retired")
    chance = rng.random(occupation.size)
    occupation = np.where((age >= 67) & (chance < 0.85), retired, occupation)
    occupation = np.where((age < 22) & (chance < 0.6), student, occupation)
    implausible = ((occupation == retired) & (age < 57)) | ((occupation == student) & (age > 32) & (chance < 0.85))
    occupation[implausible] = _sample_fixed(rng, _WORKING_AGE_P, int(implausible.sum()))
    return occupation


def _personal_details(
    rng: np.random.Generator, customer_id: IntArray, gender: IntArray, country: IntArray
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Obviously fake names, e-mail addresses (example.* domains) and phone numbers (fiction ranges)."""
    size = customer_id.size
    first_pool = [name for key in GENDERS for name in _FIRST_NAMES[key]]
    first_offset = np.cumsum([0] + [len(_FIRST_NAMES[key]) for key in GENDERS])
    first_count = np.diff(first_offset)
    first = first_offset[gender] + (rng.random(size) * first_count[gender]).astype(np.int64)
    last_pool = [name for names in _LAST_NAMES for name in names]
    last_offset = np.cumsum([0] + [len(names) for names in _LAST_NAMES])
    last_count = np.diff(last_offset)
    last = last_offset[country] + (rng.random(size) * last_count[country]).astype(np.int64)

    first_names = _dictionary_strings(first_pool, first)
    last_names = _dictionary_strings(last_pool, last)
    full_name = pc.binary_join_element_wise(first_names, last_names, " ")

    first_handle = _dictionary_strings([_ascii_handle(name) for name in first_pool], first)
    last_handle = _dictionary_strings([_ascii_handle(name) for name in last_pool], last)
    initial = pc.utf8_slice_codeunits(first_handle, 0, 1)
    number = pc.cast(pa.array(customer_id), pa.string())  # the id keeps every address unique
    domain = _dictionary_strings(_EMAIL_DOMAINS, _sample_fixed(rng, np.array([0.5, 0.3, 0.2]), size))
    style = rng.integers(0, 3, size=size)
    local = pc.case_when(
        pc.make_struct(pa.array(style == 0), pa.array(style == 1)),
        pc.binary_join_element_wise(first_handle, ".", last_handle, number, ""),
        pc.binary_join_element_wise(initial, last_handle, number, ""),
        pc.binary_join_element_wise(last_handle, ".", first_handle, number, ""),
    )
    email = pc.binary_join_element_wise(local, domain, "@")

    # Ofcom's drama range for UK mobiles, the North American 555-01xx fiction range for everyone else
    uk_digits = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 1000, size=size)), pa.string()), 3, "0")
    other_digits = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 100, size=size)), pa.string()), 2, "0")
    phone = pc.if_else(
        pa.array(country == _UK),
        pc.binary_join_element_wise("+44 7700 900", uk_digits, ""),
        pc.binary_join_element_wise("+1 555-01", other_digits, ""),
    )
    return full_name, email, phone


def _generate_chunk(
    seed: int,
    chunk_index: int,
    *,
    first_customer_id: int,
    size: int,
    first_order_id: int,
    first_event_id: int,
    clock: _Clock,
) -> SampleData:
    """One chunk of customers with all their orders and events."""
    # an independent stream per chunk, derived from the seed
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(chunk_index,))))
    people, customers = _generate_customers(rng, first_id=first_customer_id, size=size, clock=clock)
    placed, orders = _generate_orders(rng, people, first_id=first_order_id, clock=clock)
    events = _generate_events(rng, people, placed, first_id=first_event_id, clock=clock)
    return SampleData(customers=customers, orders=orders, events=events)


def _generate_orders(
    rng: np.random.Generator, people: _People, *, first_id: int, clock: _Clock
) -> tuple[_Orders, pa.Table]:
    owner = np.repeat(np.arange(people.profile.size, dtype=np.int64), people.n_orders)
    offsets = (np.cumsum(people.n_orders) - people.n_orders).astype(np.int64)
    lifecycle = people.lifecycle[owner]
    # active customers order more lately, lapsed ones bunch up before they drifted away
    skew = np.where(lifecycle == _ACTIVE, 0.75, np.where(lifecycle == _LAPSED, 0.6, 1.0))
    del lifecycle
    days = _draw_days(rng, people.signup_day[owner], people.order_end_day[owner], skew, clock)
    del skew
    at_us = _draw_timestamps(rng, days, people.profile[owner])
    # chronological within each customer (owner is already sorted), so order ids grow with time
    chronological = np.argsort(owner * (1 << 40) + at_us // _SECOND_US, kind="stable")
    days = days[chronological]
    at_us = at_us[chronological]
    del chronological

    category = _sample_rows(rng, people.category_p, owner).astype(np.int8)
    channel = _sample_rows(rng, people.channel_p, owner).astype(np.int8)
    amount = people.aov[owner] * _CATEGORY_PRICE[category] * _CHANNEL_PRICE[channel]
    amount *= np.exp(rng.normal(-0.5 * _AOV_ORDER_SIGMA**2, _AOV_ORDER_SIGMA, size=owner.size))
    amount = np.maximum(np.round(amount, 2), 1.0)

    chance = rng.random(owner.size)
    returned = (chance >= _CANCEL_RATE) & (chance < _CANCEL_RATE + _RETURN_RATE[category])
    returned &= days < clock.as_of_day - _RETURN_WINDOW_DAYS  # too recent to have come back yet
    status = np.where(chance < _CANCEL_RATE, 2, returned.astype(np.int8))
    del chance, returned, days

    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(first_id, first_id + owner.size, dtype=np.int64)),
            pa.array(owner + people.first_id),
            pa.array(at_us.view("datetime64[us]"), type=pa.timestamp("us")),
            pa.array(amount),
            _dictionary_strings(("EUR", "GBP"), people.is_uk[owner].astype(np.int8)),
            _dictionary_strings(CHANNELS, channel),
            _dictionary_strings(CATEGORIES, category),
            _dictionary_strings(ORDER_STATUSES, status),
        ],
        schema=ARROW_SCHEMAS["orders"],
    )
    return _Orders(at_us=at_us, category=category, channel=channel, offsets=offsets), table


def _generate_events(
    rng: np.random.Generator, people: _People, orders: _Orders, *, first_id: int, clock: _Clock
) -> pa.Table:
    owner = np.repeat(np.arange(people.profile.size, dtype=np.int64), people.n_events)
    size = owner.size
    at_us = np.empty(size, dtype=np.int64)
    event_type = np.empty(size, dtype=np.int8)
    category = np.empty(size, dtype=np.int8)
    on_app = np.zeros(size, dtype=np.bool_)

    # part of the browsing leads up to an actual order: same category, shortly before it
    pre = rng.random(size) < _PRE_PURCHASE_SHARE
    pre &= people.n_orders[owner] > 0
    pre_owner = owner[pre]
    which = orders.offsets[pre_owner] + (rng.random(pre_owner.size) * people.n_orders[pre_owner]).astype(np.int64)
    lead_us = rng.exponential(3 * 3600, size=pre_owner.size).astype(np.int64) * _SECOND_US
    at_us[pre] = np.maximum(orders.at_us[which] - lead_us, people.signup_day[pre_owner] * _DAY_US)
    event_type[pre] = _sample_fixed(rng, _PRE_PURCHASE_EVENT_P, pre_owner.size)
    category[pre] = orders.category[which]
    on_app[pre] = orders.channel[which] == CHANNELS.index("app")
    del pre_owner, which, lead_us

    # the rest follows the customer's interests over the whole relationship
    free = ~pre
    del pre
    free_owner = owner[free]
    lapsed = people.lifecycle[free_owner] == _LAPSED
    free_type = _sample_rows(rng, _EVENT_TYPE_P, np.where(lapsed, _LAPSED_EVENT_ROW, people.profile[free_owner]))
    # marketing e-mails keep arriving after a customer lapsed
    end = np.where(np.isin(free_type, _EMAIL_EVENTS), clock.as_of_day, people.event_end_day[free_owner])
    free_days = _draw_days(rng, people.signup_day[free_owner], end, 0.6, clock)
    del end, lapsed
    at_us[free] = _draw_timestamps(rng, free_days, people.profile[free_owner])
    event_type[free] = free_type
    category[free] = _sample_rows(rng, people.interest_p, free_owner)
    del free, free_owner, free_type, free_days

    device = _sample_rows(rng, people.device_p, owner).astype(np.int8)
    # app activity happens on phones or tablets
    on_app |= event_type == EVENT_TYPES.index("app_open")
    device[on_app & (device == DEVICES.index("desktop"))] = DEVICES.index("mobile")
    del on_app

    chronological = np.argsort(owner * (1 << 40) + at_us // _SECOND_US, kind="stable")
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(first_id, first_id + size, dtype=np.int64)),
            pa.array(owner + people.first_id),
            pa.array(at_us[chronological].view("datetime64[us]"), type=pa.timestamp("us")),
            _dictionary_strings(EVENT_TYPES, event_type[chronological]),
            _dictionary_strings(CATEGORIES, category[chronological]),
            _dictionary_strings(DEVICES, device[chronological]),
        ],
        schema=ARROW_SCHEMAS["events"],
    )
