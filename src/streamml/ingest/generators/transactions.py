"""Synthetic card payments with injected fraud, deterministic given a seed.

:func:`transactions` yields events in event-time order, each with its record and its
ground-truth label (which the Kafka runner publishes later, at ``label_time``). No Kafka is
needed to use it.

Record fields (the value written to ``<ns>.raw.<stream>``, key ``card_id``):

==================  =========  =================================================================
field               type       meaning
==================  =========  =================================================================
event_id            string     unique id, ``tx<seed>-<n>``; labels are keyed by it
event_time          int        ms since the epoch (UTC)
card_id             string     ``c000042``; cards have a home country and a typical spend
merchant_id         string     ``m0007``
merchant_category   string     grocery, restaurant, fuel, pharmacy, entertainment, online_retail,
                               electronics, travel, jewelry, gift_cards
amount              float      in ``currency``, 2 decimals, > 0
currency            string     the merchant country's currency
country             string     where the payment happened (ISO 3166 alpha-2)
card_country        string     the card's home country
lat, lon            float      where the payment happened
channel             string     ``pos`` (card present) or ``online``
hour                int        hour of day of event_time (UTC), 0-23
==================  =========  =================================================================

Label fields (``<ns>.labels.<stream>``, key ``event_id``): ``event_id``, ``is_fraud`` (0/1),
``pattern`` (null, or the fraud pattern), ``event_time``, ``label_time`` (when the truth is
known: ``event_time`` plus a delay).

Fraud patterns: ``card_testing`` (a burst of tiny online payments on one card, seconds
apart), ``high_amount`` (one payment many times the card's usual spend at a jewelry or
electronics merchant abroad), ``geo_jump`` (a payment in another continent minutes after one
at home). From event ``new_pattern_at`` on, a **new** pattern appears as well:
``gift_card_cashout`` (several round-amount card-present gift-card purchases at home, minutes apart),
which models trained on the old patterns do not know: the drift the monitoring demo injects.

>>> evs = list(transactions(seed=7, count=2000, fraud_rate=0.02))
>>> len(evs), evs[0].record["event_id"], sorted(evs[0].record)[:4]
(2000, 'tx7-000000000', ['amount', 'card_country', 'card_id', 'channel'])
>>> [e.record for e in transactions(seed=7, count=3)] == [e.record for e in evs[:3]]
True
>>> 0 < sum(e.label["is_fraud"] for e in evs) < 400
True
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from streamml.errors import ConfigError

__all__ = ["transactions", "Event", "PATTERNS", "NEW_PATTERN", "CATEGORIES", "DEFAULT_START_MS"]

DEFAULT_START_MS = 1_704_067_200_000          # 2024-01-01T00:00:00Z
PATTERNS = ("card_testing", "high_amount", "geo_jump")
NEW_PATTERN = "gift_card_cashout"

# category -> (median amount in EUR, lognormal sigma, online share)
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "grocery": (38.0, 0.55, 0.05), "restaurant": (42.0, 0.5, 0.1), "fuel": (55.0, 0.3, 0.0),
    "pharmacy": (24.0, 0.5, 0.1), "entertainment": (30.0, 0.6, 0.5), "online_retail": (65.0, 0.8, 1.0),
    "electronics": (220.0, 0.9, 0.5), "travel": (380.0, 0.8, 0.8), "jewelry": (450.0, 0.9, 0.2),
    "gift_cards": (50.0, 0.5, 0.6),
}
_CAT_WEIGHTS = {"grocery": 30, "restaurant": 20, "fuel": 10, "pharmacy": 8, "entertainment": 8,
                "online_retail": 15, "electronics": 3, "travel": 2, "jewelry": 1, "gift_cards": 3}
# country -> (lat, lon, currency, EUR per unit, share of cards)
COUNTRIES: dict[str, tuple[float, float, str, float, float]] = {
    "DE": (51.2, 10.4, "EUR", 1.0, 0.30), "FR": (46.6, 2.2, "EUR", 1.0, 0.20), "NL": (52.1, 5.3, "EUR", 1.0, 0.10),
    "ES": (40.4, -3.7, "EUR", 1.0, 0.10), "GB": (54.0, -2.0, "GBP", 1.17, 0.15), "US": (39.8, -98.6, "USD", 0.92, 0.15),
    "BR": (-14.2, -51.9, "BRL", 0.18, 0.0), "NG": (9.1, 8.7, "NGN", 0.0006, 0.0),
    "JP": (36.2, 138.3, "JPY", 0.0062, 0.0),
    "IN": (20.6, 79.0, "INR", 0.011, 0.0),
}
_HOME = [c for c, v in COUNTRIES.items() if v[4] > 0]
_FAR = {"DE": "BR", "FR": "NG", "NL": "JP", "ES": "IN", "GB": "BR", "US": "NG"}


@dataclass(frozen=True)
class Event:
    """One generated event: the record, its key, and its ground-truth label."""

    record: dict[str, Any]
    key: str
    label: dict[str, Any]

    @property
    def label_time(self) -> int:
        return int(self.label["label_time"])


@dataclass
class _Card:
    id: str
    country: str
    scale: float
    favourites: list[int]


@dataclass
class _Merchant:
    id: str
    category: str
    country: str
    lat: float
    lon: float


def _world(rng: random.Random, n_cards: int, n_merchants: int) -> tuple[list[_Card], list[_Merchant],
                                                                       dict[tuple[str, str], list[int]]]:
    merchants = []
    cats = list(_CAT_WEIGHTS)
    weights = [_CAT_WEIGHTS[c] for c in cats]
    countries = list(COUNTRIES)
    for i in range(n_merchants):
        country = _HOME[i % len(_HOME)] if i < n_merchants * 0.85 else countries[i % len(countries)]
        lat, lon = COUNTRIES[country][:2]
        merchants.append(_Merchant(f"m{i:04d}", rng.choices(cats, weights)[0], country,
                                   round(lat + rng.uniform(-2, 2), 4), round(lon + rng.uniform(-2, 2), 4)))
    by: dict[tuple[str, str], list[int]] = {}
    for i, m in enumerate(merchants):
        by.setdefault((m.country, m.category), []).append(i)
    needed = [(c, cat) for c in _HOME for cat in cats] + [(c, cat) for c in _FAR.values()
                                                         for cat in ("jewelry", "electronics", "online_retail",
                                                                     "travel", "restaurant")]
    for country, cat in needed:                # every pattern finds a merchant where it needs one
        if (country, cat) not in by:
            lat, lon = COUNTRIES[country][:2]
            by[(country, cat)] = [len(merchants)]
            merchants.append(_Merchant(f"m{len(merchants):04d}", cat, country, round(lat + rng.uniform(-2, 2), 4),
                                       round(lon + rng.uniform(-2, 2), 4)))
    home_weights = [COUNTRIES[c][4] for c in _HOME]
    cards = []
    for i in range(n_cards):
        country = rng.choices(_HOME, home_weights)[0]
        local = [j for j, m in enumerate(merchants) if m.country == country]
        cards.append(_Card(f"c{i:06d}", country, math.exp(rng.gauss(0, 0.45)),
                           rng.sample(local, k=min(len(local), rng.randint(4, 12)))))
    return cards, merchants, by


def transactions(seed: int = 0, *, count: int | None = None, start_ms: int = DEFAULT_START_MS,
                 events_per_second: float = 50.0, n_cards: int = 2000, n_merchants: int = 300,
                 fraud_rate: float = 0.004, patterns: Sequence[str] = PATTERNS,
                 new_pattern_at: int | None = None, new_pattern_share: float = 0.5,
                 label_delay_ms: int = 5_000) -> Iterator[Event]:
    """Yield card payments in event-time order (endless when ``count`` is None).

    Parameters
    ----------
    seed
        Same seed, same arguments: the same events.
    events_per_second
        Mean arrival rate of the base payments in event time; fraud episodes add their own
        events on top (a live runner sends each event at its event time, so event time
        follows the wall clock whatever the episodes add).
    fraud_rate
        Probability that a fraud episode starts at a given event (an episode has 1 to 12 events).
    patterns
        The fraud patterns injected from the start (any of :data:`PATTERNS` and ``"gift_card_cashout"``).
    new_pattern_at
        From this event index on, also inject ``gift_card_cashout`` (``new_pattern_share`` of episodes).
    label_delay_ms
        Labels become known after this delay (plus up to half of it again, at random).
    """
    unknown = set(patterns) - set(PATTERNS) - {NEW_PATTERN}
    if unknown:
        raise ConfigError(f"unknown fraud pattern(s) {', '.join(sorted(unknown))}",
                          hint="use " + ", ".join(PATTERNS + (NEW_PATTERN,)))
    if events_per_second <= 0 or n_cards < 1 or n_merchants < 20:
        raise ConfigError("events_per_second must be > 0, n_cards >= 1 and n_merchants >= 20")
    rng = random.Random(seed)
    cards, merchants, by = _world(rng, n_cards, n_merchants)
    card_weights = [1.0 / (1 + i % 97) ** 0.5 for i in range(n_cards)]
    cum = list(_accumulate(card_weights))
    mean_gap = 1000.0 / events_per_second
    t = float(start_ms)
    pending: list[tuple[float, int, dict[str, Any], str | None]] = []
    seq = 0
    n = 0

    def make(card: _Card, m: _Merchant, ts: float, amount_eur: float, channel: str | None,
             pattern: str | None) -> tuple[float, int, dict[str, Any], str | None]:
        nonlocal seq
        seq += 1
        med, sigma, online_share = CATEGORIES[m.category]
        if channel is None:
            channel = "online" if rng.random() < online_share else "pos"
        lat, lon = (m.lat, m.lon)
        _, _, currency, eur, _ = COUNTRIES[m.country]
        rec = {"card_id": card.id, "merchant_id": m.id, "merchant_category": m.category,
               "amount": round(max(0.01, amount_eur / eur), 2), "currency": currency, "country": m.country,
               "card_country": card.country, "lat": lat, "lon": lon, "channel": channel}
        return (ts, seq, rec, pattern)

    def pick(country: str, categories: Sequence[str]) -> _Merchant:
        return merchants[rng.choice([i for c in categories for i in by[(country, c)]])]

    def episode(ts: float, pattern: str) -> None:
        card = cards[rng.randrange(n_cards)]
        if pattern == "card_testing":
            at = ts
            for _ in range(rng.randint(5, 12)):
                at += rng.uniform(1_000, 10_000)
                heapq.heappush(pending, make(card, pick(card.country, ["online_retail", "gift_cards"]), at,
                                             rng.uniform(0.5, 3.0), "online", pattern))
        elif pattern == "high_amount":
            far = _FAR[card.country]
            m = pick(far, ["jewelry", "electronics"])
            heapq.heappush(pending, make(card, m, ts + rng.uniform(0, 5_000),
                                         CATEGORIES[m.category][0] * card.scale * rng.uniform(8, 30), "pos", pattern))
        elif pattern == "geo_jump":
            home = merchants[rng.choice(card.favourites)]
            heapq.heappush(pending, make(card, home, ts, CATEGORIES[home.category][0] * card.scale, None, None))
            away = pick(_FAR[card.country], ["electronics", "online_retail", "travel", "restaurant"])
            heapq.heappush(pending, make(card, away, ts + rng.uniform(2 * 60_000, 10 * 60_000),
                                         CATEGORIES[away.category][0] * card.scale * rng.uniform(1, 4), "pos",
                                         pattern))
        else:                                            # gift_card_cashout: the new pattern
            at = ts
            for _ in range(rng.randint(3, 6)):
                at += rng.uniform(10_000, 60_000)
                heapq.heappush(pending, make(card, pick(card.country, ["gift_cards"]), at,
                                             float(rng.choice((100, 150, 200, 250))), "pos", pattern))

    while count is None or n < count:
        t += rng.expovariate(1.0 / mean_gap)
        if rng.random() < fraud_rate:
            active = list(patterns)
            if new_pattern_at is not None and n >= new_pattern_at:
                active = ([NEW_PATTERN] if rng.random() < new_pattern_share else active) or [NEW_PATTERN]
            if active:
                episode(t, rng.choice(active))
        card = cards[_bisect(cum, rng.random() * cum[-1])]
        if rng.random() < 0.8:
            m = merchants[rng.choice(card.favourites)]
        else:
            m = merchants[rng.randrange(len(merchants))]
        med, sigma, _ = CATEGORIES[m.category]
        heapq.heappush(pending, make(card, m, t, med * card.scale * math.exp(rng.gauss(0, sigma)), None, None))
        while pending and pending[0][0] <= t and (count is None or n < count):
            ts, _, rec, pattern = heapq.heappop(pending)
            ms = int(ts)
            event_id = f"tx{seed}-{n:09d}"
            record = {"event_id": event_id, "event_time": ms, **rec, "hour": (ms // 3_600_000) % 24}
            label_time = ms + label_delay_ms + int(rng.uniform(0, label_delay_ms / 2))
            label = {"event_id": event_id, "is_fraud": int(pattern is not None), "pattern": pattern,
                     "event_time": ms, "label_time": label_time}
            n += 1
            yield Event(record, rec["card_id"], label)


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


def _bisect(cum: list[float], x: float) -> int:
    import bisect

    return min(bisect.bisect_left(cum, x), len(cum) - 1)
