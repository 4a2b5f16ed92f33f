"""How a loop runs: one options object shared by every stage, one spelling per idea.

>>> LoopOptions(guarantee="exactly_once").guarantee
'exactly-once'
>>> LoopOptions(guarantee="twice")
Traceback (most recent call last):
...
streamml.errors.ConfigError: unknown guarantee 'twice' (hint: use exactly-once or at-least-once)
>>> instance_id(3, host="node-a.example.com")
'node-a-3'
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from streamml.errors import ConfigError

__all__ = ["Guarantee", "GUARANTEES", "LoopOptions", "normalise_guarantee", "instance_id"]

Guarantee = Literal["exactly-once", "at-least-once"]
GUARANTEES: tuple[Guarantee, ...] = ("exactly-once", "at-least-once")


def normalise_guarantee(value: str) -> Guarantee:
    """``exactly-once`` / ``at-least-once`` (``_`` is accepted for ``-``, case is ignored)."""
    v = str(value).strip().lower().replace("_", "-")
    if v == "exactly-once":
        return "exactly-once"
    if v == "at-least-once":
        return "at-least-once"
    raise ConfigError(f"unknown guarantee {value!r}", hint="use exactly-once or at-least-once")


def instance_id(index: int = 0, *, host: str | None = None) -> str:
    """The default instance id of worker ``index`` on this host: ``<short host name>-<index>``.

    Stable across restarts on one host (so a restarted worker fences its predecessor) and
    distinct between hosts (so a second host does not fence the first). Containers and pods
    get their host name from the orchestrator: a StatefulSet's pod names are stable.
    """
    name = (host or socket.gethostname()).split(".")[0] or "host"
    name = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    return f"{name}-{index}"


_INSTANCE_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class LoopOptions:
    """Settings of one consume -> process -> produce loop.

    ``instance`` names this member of the group: it is part of the transactional id and the
    static member id, so it must be unique among the running members and stable across a
    member's restarts (``None``: :func:`instance_id` of worker 0 on this host).

    Batches follow the load: the loop waits up to ``idle_wait_s`` for the first record, then
    takes whatever else has already arrived, up to ``max_batch`` records, and commits. At low
    load a batch is one record, committed at once; under load batches grow to ``max_batch``.
    ``commit_interval_s`` is the longest time at-least-once offsets wait for their commit.

    ``max_poll_interval_ms`` and ``stuck_after_s`` bound how long a stuck member holds its
    partitions: librdkafka leaves the group when the loop has not polled for
    ``max_poll_interval_ms``; the watchdog reports (and by default recovers) a loop that made
    no progress for ``stuck_after_s`` in any of its calls (poll, rebalance, process, commit).
    """

    guarantee: str = "exactly-once"
    instance: str | None = None
    max_batch: int = 10_000
    idle_wait_s: float = 0.2
    commit_interval_s: float = 1.0
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 45_000
    transaction_timeout_ms: int = 30_000
    stuck_after_s: float = 50.0
    static_membership: bool = True
    linger_ms: int = 5
    max_recoveries: int = 5
    recovery_window_s: float = 600.0
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "guarantee", normalise_guarantee(self.guarantee))
        if self.instance is not None and not _INSTANCE_RE.match(self.instance):
            raise ConfigError(f"instance id {self.instance!r} is not valid",
                              hint="use letters, digits, '.', '_' and '-' (at most 200)")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.idle_wait_s < 0 or self.commit_interval_s < 0:
            raise ConfigError("idle_wait_s and commit_interval_s must not be negative")

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly-once"

    @property
    def member(self) -> str:
        """This member's instance id (the given one, or the host's default)."""
        return self.instance or instance_id(0)

    def with_(self, **changes: Any) -> "LoopOptions":
        return replace(self, **changes)
