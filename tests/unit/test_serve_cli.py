"""``streamml serve`` option handling: strategies built from flags, clear errors."""

from __future__ import annotations

import pytest

from streamml.cli.cmd_serve import build_strategy
from streamml.errors import EXIT_USAGE, ConfigError
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
    with pytest.raises(ConfigError, match="the consensus strategy needs at least 2 models, got 1"):
        build_strategy("consensus", "a", [])
    with pytest.raises(ConfigError, match="unknown strategy 'roulette'") as err:
        build_strategy("roulette", "a", ["b"])
    assert "single, shadow, canary, speculative, consensus, quality" in str(err.value)
    with pytest.raises(ConfigError, match="the shadow strategy needs exactly 2 models, got 3"):
        build_strategy("shadow", "a", ["b", "c"])
    with pytest.raises(ConfigError, match="the single strategy needs exactly 1 model, got 2"):
        build_strategy("single", "a", ["b"])
    with pytest.raises(ConfigError, match="needs live quality"):
        build_strategy("quality", "a", ["b"])
    with pytest.raises(ConfigError, match="weights"):
        build_strategy("consensus", "a", ["b"], weights=[1.0])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_strategy("canary", "a", [], canary_share=2.0)


def test_serve_names_the_valid_strategies_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    from streamml.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["serve", "--model", "fraud", "--input", "payments", "--strategy", "bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == EXIT_USAGE and "unknown strategy 'bogus'" in err and "needs more than one" not in err
    assert "single, shadow, canary, speculative, consensus, quality" in err
    with pytest.raises(SystemExit):
        main(["serve", "--model", "fraud", "--input", "payments", "--strategy", "consensus"])
    assert "the consensus strategy needs at least 2 models, got 1" in capsys.readouterr().err
