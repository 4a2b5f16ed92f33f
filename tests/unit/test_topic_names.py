"""The one topic-name resolver: the rules every caller shares."""

from __future__ import annotations

import pytest

from streamml.errors import ConfigError, QueryError
from streamml.kafka.names import resolve_topic
from streamml.stream import stream
from streamml.stream.table import Table


def test_default_kind_rules() -> None:
    assert resolve_topic("pay", "ns", kind="raw") == "ns.raw.pay"
    assert resolve_topic("labels.pay", "ns", kind="raw") == "ns.labels.pay"        # kind.name
    assert resolve_topic("a.b", "ns", kind="raw") == "a.b"                           # full name
    assert resolve_topic("t1.raw.pay", "ns", kind="features") == "t1.raw.pay"
    assert resolve_topic("pay", None, kind="features") == "features.pay"             # display, no namespace
    assert resolve_topic("legacy", "ns", kind="features", existing=["legacy"]) == "legacy"  # existing wins
    assert resolve_topic("pay", "ns", kind="features", existing=["ns.raw.pay"]) == "ns.features.pay"


def test_search_rules_and_errors() -> None:
    existing = ["ns.features.pay", "ns.raw.pay", "ns.labels.fraud"]
    assert resolve_topic("pay", "ns", existing=existing) == "ns.raw.pay"
    assert resolve_topic("fraud", "ns", existing=existing) == "ns.labels.fraud"
    assert resolve_topic("features.pay", "ns", existing=existing) == "ns.features.pay"
    with pytest.raises(ConfigError, match="no topic named"):
        resolve_topic("zzz", "ns", existing=existing)
    with pytest.raises(QueryError, match="ambiguous"):
        resolve_topic("x", "ns", existing=["ns.labels.x", "ns.metrics.x"], error=QueryError)
    with pytest.raises(ValueError):
        resolve_topic("x", "ns")


def test_pipelines_and_tables_resolve_alike() -> None:
    from streamml.config import Settings

    s = Settings(namespace="shop")
    p = stream("payments").to("card_stats")
    assert (p.source_topic(s), p.sink_topic(s)) == ("shop.raw.payments", "shop.features.card_stats")
    assert stream("labels.payments").source_topic(s) == "shop.labels.payments"
    assert Table("cards").topic(s) == Table("raw.cards").topic(s) == "shop.raw.cards"
    assert Table("legacy.cards").topic(s) == "legacy.cards"
