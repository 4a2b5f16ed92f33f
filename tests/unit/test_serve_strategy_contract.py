"""One contract test applied to every registered serving strategy (a new one is picked up by name)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamml.errors import ConfigError, ServingError
from streamml.registry.base import LoadedModel
from streamml.serve import Constant, LiveQuality, Role
from streamml.serve.strategies import (
    STRATEGIES,
    Batch,
    Decision,
    Strategy,
    StrategyOptions,
    build_strategy,
    roles_for,
    strategy_class,
)

NAMES = sorted(STRATEGIES)


def _options() -> StrategyOptions:
    return StrategyOptions(deadline_s=5.0, grace_s=1.0, quality=LiveQuality(), min_labels=1)


def _roles(cls: type[Strategy], n: int) -> list[Role]:
    stage = cls.candidate_stage or "production"
    return [Role("m0"), *(Role(f"m{i}", stage) for i in range(1, n))][:n]


def _batch(n: int) -> Batch:
    df = pl.DataFrame({"event_id": [f"e{i}" for i in range(n)], "x": np.arange(n, dtype=np.float64)})
    return Batch(df, [f"k{i}".encode() for i in range(n)])


def _models(roles: list[Role]) -> dict[Role, LoadedModel | None]:
    return {r: Constant(r.name, score=0.1 + 0.2 * i, label=i % 2, version=i + 1, input_columns=("x",))
            for i, r in enumerate(roles)}


def test_the_builtin_strategies_are_registered() -> None:
    assert set(NAMES) >= {"single", "shadow", "canary", "speculative", "consensus", "quality"}


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'bogus'") as err:
        strategy_class("bogus")
    assert all(name in (err.value.hint or "") for name in NAMES)
    with pytest.raises(ConfigError, match="unknown strategy"):
        build_strategy("bogus", [Role("a"), Role("b")])
    with pytest.raises(TypeError):
        STRATEGIES["bogus"] = Strategy  # type: ignore[index]  # the registry is read-only


@pytest.mark.parametrize("name", NAMES)
def test_registration(name: str) -> None:
    cls = STRATEGIES[name]
    assert issubclass(cls, Strategy) and cls.name == name and strategy_class(name) is cls
    assert cls.min_models >= 1 and (cls.max_models is None or cls.max_models >= cls.min_models)
    assert cls.__doc__, f"{cls.__qualname__} has no docstring"


@pytest.mark.parametrize("name", NAMES)
def test_the_number_of_models_is_checked(name: str) -> None:
    cls = STRATEGIES[name]
    too_few = cls.min_models - 1
    with pytest.raises(ConfigError, match=f"the {name} strategy needs .* got {too_few}"):
        build_strategy(name, _roles(cls, too_few), _options())
    if cls.max_models is not None:
        too_many = cls.max_models + 1
        with pytest.raises(ConfigError, match=f"the {name} strategy needs .* got {too_many}"):
            build_strategy(name, _roles(cls, too_many), _options())


@pytest.mark.parametrize("name", NAMES)
def test_roles_for_gives_a_servable_set_of_roles(name: str) -> None:
    cls = STRATEGIES[name]
    roles = roles_for(name, "m0", [f"m{i}" for i in range(1, cls.min_models)])
    assert roles[0] == Role("m0") and len(roles) == cls.min_models
    build_strategy(name, roles, _options()).close()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", [0, 1, 37])
def test_every_row_gets_one_answer(name: str, rows: int) -> None:
    cls = STRATEGIES[name]
    counts = {cls.min_models, cls.max_models or cls.min_models + 1}
    for n in sorted(counts):
        roles = _roles(cls, n)
        strat = build_strategy(name, roles, _options())
        try:
            assert strat.roles == roles and strat.primary == roles[0]
            models = _models(roles)
            d = strat.decide(models, _batch(rows))
            assert isinstance(d, Decision) and len(d.scores) == rows
            assert d.scores.score.dtype == np.float64 and np.all(np.isfinite(d.scores.score))
            assert d.scores.label is None or (d.scores.label.shape == (rows,) and d.scores.label.dtype.kind in "iu")
            assert d.by and all(m in models.values() for m in d.by)
            assert d.which is None or d.which.shape == (rows,)
            for col, values in d.extra.items():
                assert len(values) == rows, f"extra column {col} has {len(values)} values for {rows} rows"
        finally:
            strat.close()
            strat.close()  # closing twice is harmless


@pytest.mark.parametrize("name", NAMES)
def test_no_loaded_model_is_a_serving_error_or_a_fallback(name: str) -> None:
    cls = STRATEGIES[name]
    roles = _roles(cls, cls.min_models)
    strat = build_strategy(name, roles, _options())
    try:
        try:
            d = strat.decide({r: None for r in roles}, _batch(3))
        except ServingError:
            return
        assert len(d.scores) == 3 and all(m not in roles for m in d.by)  # answered by a fallback
    finally:
        strat.close()
