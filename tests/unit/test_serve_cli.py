"""``streamml serve`` option handling: strategies built from flags, clear errors."""

from __future__ import annotations

import pytest

from streamml.cli.cmd_serve import build_strategy
from streamml.errors import ConfigError
from streamml.serve import Canary, Consensus, LiveQuality, QualityBased, Role, Shadow, Single, Speculative


def test_strategies_from_flags() -> None:
    assert isinstance(build_strategy("single", "fraud", []), Single)
    sh = build_strategy("shadow", "fraud", [])
    assert isinstance(sh, Shadow) and sh.roles == [Role("fraud"), Role("fraud", "shadow")]
    can = build_strategy("canary", "fraud", ["fraud2"], candidate_stage="production", canary_share=0.3)
    assert isinstance(can, Canary) and can.roles[1] == Role("fraud2") and can.share == 0.3
    spec = build_strategy("speculative", "a", ["b", "c"], deadline_ms=20, fallback_score=0.7)
    assert isinstance(spec, Speculative) and spec.deadline_s == 0.02 and spec.fallback.value == 0.7
    assert spec.fallback.label_value == 1 and [r.name for r in spec.roles] == ["a", "b", "c"]
    spec.close()
    assert isinstance(build_strategy("consensus", "a", ["b"], weights=[2.0, 1.0]), Consensus)
    assert isinstance(build_strategy("quality", "a", ["b"], quality=LiveQuality()), QualityBased)


def test_bad_flags_are_clear() -> None:
    with pytest.raises(ConfigError, match="needs more than one model"):
        build_strategy("consensus", "a", [])
    with pytest.raises(ConfigError, match="unknown strategy"):
        build_strategy("roulette", "a", ["b"])
    with pytest.raises(ConfigError, match="weights"):
        build_strategy("consensus", "a", ["b"], weights=[1.0])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_strategy("canary", "a", [], canary_share=2.0)
