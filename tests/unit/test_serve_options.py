"""A scorer's settings map onto the shared runtime's LoopOptions, one spelling per idea."""

from __future__ import annotations

import os

import pytest

from streamml.errors import ConfigError
from streamml.runtime import instance_id
from streamml.serve import ServeOptions


def test_mode_is_the_runtime_guarantee_in_either_spelling() -> None:
    assert ServeOptions("t", mode="exactly_once").loop_options().guarantee == "exactly-once"
    assert ServeOptions("t", mode="At-Least-Once").mode == "at-least-once"
    with pytest.raises(ConfigError, match="unknown guarantee 'twice'"):
        ServeOptions("t", mode="twice")


def test_batch_size_and_poll_wait_become_the_adaptive_batch_bounds() -> None:
    lo = ServeOptions("t", batch_size=700, poll_timeout_s=0.01, transaction_timeout_ms=9000).loop_options()
    assert (lo.max_batch, lo.idle_wait_s, lo.transaction_timeout_ms) == (700, 0.01, 9000)


def test_a_named_instance_is_a_static_member_that_fences_its_predecessor() -> None:
    lo = ServeOptions("t", instance="a").loop_options()
    assert lo.member == "a" and lo.static_membership


def test_without_an_instance_each_process_is_a_distinct_dynamic_member() -> None:
    lo = ServeOptions("t").loop_options()
    assert lo.member == instance_id(os.getpid()) and not lo.static_membership


def test_a_bad_instance_id_is_refused_when_the_options_are_made() -> None:
    with pytest.raises(ConfigError, match="instance id"):
        ServeOptions("t", instance="a b")
