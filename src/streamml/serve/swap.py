"""Hot model swap: follow a :class:`ModelSource`, verify new versions off the hot path, swap between batches.

A :class:`ModelSlot` holds the version a role serves (``current``) and at most one verified
successor (``pending``). The :class:`ModelWatcher` thread follows the source; when a
version of a watched ``(name, stage)`` appears that is newer than anything the slot has,
it is loaded and checked by :func:`verify` — artifact hash, input schema against the
feature columns the stream carries, one test inference — and, if good, offered to the
slot. The scorer calls :meth:`ModelSlot.swap` between batches, so one batch is always
scored by one version and versions never go backwards. A refused version is reported
to the ``on_event`` callback with the reason and the current version keeps serving.

>>> slot = ModelSlot(Role("fraud"))
>>> from streamml.serve.base import Constant
>>> slot.offer(Constant("fraud", version=1)), slot.current.version   # the first one serves at once
(True, 1)
>>> slot.offer(Constant("fraud", version=3)), slot.offer(Constant("fraud", version=2))
(True, False)
>>> slot.current.version, slot.swap().version, slot.current.version, slot.swap()
(1, 3, 3, None)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from streamml.errors import BrokerUnavailableError, IntegrityError, ModelError, RetriableError, StreamMLError
from streamml.serve.base import Candidate, LoadedModel, ModelRef, ModelSource

__all__ = ["Role", "ModelSlot", "ModelWatcher", "ModelHost", "verify", "SwapEvent"]

_log = logging.getLogger("streamml.serve")


@dataclass(frozen=True)
class Role:
    """Which model a slot serves: ``name`` at ``stage``."""

    name: str
    stage: str = "production"

    def __str__(self) -> str:
        return self.name if self.stage == "production" else f"{self.name}@{self.stage}"


@dataclass
class SwapEvent:
    """Something that happened to a version: ``loaded``, ``swapped``, ``refused`` (with ``reason``),
    or ``ignored`` (an older version put back in the stage while versions only move forward)."""

    kind: str
    role: Role
    version: int
    reason: str = ""
    previous: int | None = None
    at_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"event": f"model_{self.kind}", "model": self.role.name, "stage": self.role.stage,
                "version": self.version, "previous": self.previous, "reason": self.reason, "at_ms": self.at_ms}


class ModelSlot:
    """The current model of one role and its verified successor; swapped only between batches."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.current: LoadedModel | None = None
        self._pending: LoadedModel | None = None
        self._lock = threading.Lock()
        self.ready = threading.Event()

    @property
    def newest(self) -> int:
        """The highest version this slot serves or will serve (-1 when none)."""
        with self._lock:
            versions = [m.version for m in (self.current, self._pending) if m is not None]
        return max(versions, default=-1)

    def offer(self, model: LoadedModel, *, rollback: bool = False) -> bool:
        """Queue a verified model; refused (False) unless newer than current and pending
        (``rollback=True`` queues an older one: the stage was rolled back to it)."""
        with self._lock:
            newest = max((m.version for m in (self.current, self._pending) if m), default=-1)
            if model.version == newest or (model.version < newest and not rollback):
                return False
            if self.current is None:
                self.current = model
                self.ready.set()
            else:
                self._pending = model
            return True

    def swap(self) -> LoadedModel | None:
        """Make the pending model current (call between batches); returns it, or None if none waited."""
        if self._pending is None:
            return None
        with self._lock:
            model, self._pending = self._pending, None
            if model is None:
                return None
            self.current = model
            return model


def verify(candidate: Candidate, *, feature_columns: Sequence[str] | None = None,
           sample: np.ndarray | None = None) -> LoadedModel:
    """Load ``candidate`` and check it can serve this stream; raises :class:`ModelError` saying why not.

    Checks, in order: the declared input schema is covered by ``feature_columns`` (when
    known); the artifact loads and its hash matches the descriptor (the loader checks the
    hash, and so does this function when the model reports one); the loaded model takes
    the declared inputs; a test inference on ``sample`` (or one zero row) returns one finite
    score per row.
    """
    ref = candidate.ref
    if feature_columns is not None and ref.input_columns:
        have = set(feature_columns)
        missing = [c for c in ref.input_columns if c not in have]
        if missing:
            raise ModelError(f"{ref}: input schema needs {', '.join(missing)} which the features do not carry",
                             hint="publish a model trained on this feature stream")
    try:
        model = candidate.load()
    except StreamMLError:
        raise
    except Exception as exc:  # a loader failing in any way is a refused model, never a dead scorer
        raise ModelError(f"{ref}: cannot load: {type(exc).__name__}: {exc}") from None
    actual = getattr(model, "sha256", "")
    if ref.sha256 and actual and actual != ref.sha256:
        raise IntegrityError(f"{ref}: artifact hash {actual[:12]}… does not match descriptor {ref.sha256[:12]}…")
    if ref.input_columns and tuple(model.input_columns) != tuple(ref.input_columns):
        raise ModelError(f"{ref}: model inputs {list(model.input_columns)} differ from its schema "
                         f"{list(ref.input_columns)}")
    if model.version != ref.version or model.name != ref.name:
        raise ModelError(f"{ref}: loaded model says it is {model.name} v{model.version}")
    x = sample if sample is not None and sample.shape[0] else np.zeros((1, len(model.input_columns)), np.float32)
    try:
        out = model.predict(np.ascontiguousarray(x[:, : len(model.input_columns)], dtype=np.float32))
    except Exception as exc:
        raise ModelError(f"{ref}: test inference failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if len(out) != x.shape[0] or not np.all(np.isfinite(out.score)):
        raise ModelError(f"{ref}: test inference returned {len(out)} scores for {x.shape[0]} rows "
                         "or non-finite values")
    return model


class ModelWatcher:
    """Background thread: follows ``source`` and keeps ``slots`` supplied with verified versions.

    ``columns()`` returns the feature columns the stream carries (None while unknown);
    ``sample()`` a few recent feature rows for the test inference, per input column order.
    """

    def __init__(self, source: ModelSource, slots: Sequence[ModelSlot], *,
                 columns: Callable[[], Sequence[str] | None] = lambda: None,
                 sample: Callable[[tuple[str, ...]], np.ndarray | None] = lambda cols: None,
                 on_event: Callable[[SwapEvent], None] | None = None, follow_rollback: bool = False) -> None:
        self.source, self.slots = source, list(slots)
        self.follow_rollback = follow_rollback
        self.columns, self.sample = columns, sample
        self.on_event = on_event
        self.events: list[SwapEvent] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[tuple[str, int]] = set()
        self.error: BaseException | None = None

    def _slot(self, ref: ModelRef) -> ModelSlot | None:
        return next((s for s in self.slots if s.role.name == ref.name and s.role.stage == ref.stage), None)

    def report(self, kind: str, role: Role, version: int, reason: str = "", previous: int | None = None) -> None:
        ev = SwapEvent(kind, role, version, reason, previous, int(time.time() * 1000))
        self.events.append(ev)
        if kind == "refused":
            _log.warning("refused %s v%d: %s", role, version, reason)
        else:
            _log.info("%s %s v%d", kind, role, version)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # reporting must never stop the follower
                _log.exception("reporting a model event failed")

    def consider(self, candidate: Candidate) -> bool:
        """Verify and offer one candidate if a slot wants it; returns True when it was queued."""
        slot = self._slot(candidate.ref)
        ref = candidate.ref
        if slot is None or (ref.name, ref.version) in self._refused or ref.version == slot.newest:
            return False
        rollback = ref.version < slot.newest
        if rollback and not self.follow_rollback:
            if slot.current is not None and ref.version < slot.current.version:
                self.report("ignored", slot.role, ref.version,
                            f"{ref} is older than v{slot.newest}; versions only move forward while running "
                            "(a restarted scorer, or follow_rollback=True, serves it)")
            return False
        try:
            model = verify(candidate, feature_columns=self.columns(), sample=self.sample(ref.input_columns))
        except ModelError as exc:
            self._refused.add((ref.name, ref.version))
            self.report("refused", slot.role, ref.version, str(exc))
            return False
        if slot.offer(model, rollback=rollback):
            self.report("loaded", slot.role, ref.version, "rollback" if rollback else "")
            return True
        return False

    def load_initial(self) -> None:
        """Serve the newest good version at each slot's stage (a restarted scorer starts here)."""
        for slot in self.slots:
            cand = self.source.latest(slot.role.name, slot.role.stage)
            if cand is not None:
                self.consider(cand)

    def start(self) -> "ModelWatcher":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._thread = threading.Thread(target=self._run, name="streamml-model-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        """Follow until stopped. Losing the brokers for a while (a restart, an election) only
        pauses following: it resumes, with backoff, where the source left off. Anything else
        is surfaced to the scorer as :attr:`error`, which decides whether to stop."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                for cand in self.source.follow(self._stop):
                    if self._stop.is_set():
                        return
                    self.consider(cand)
                    delay = 0.5
                return
            except (RetriableError, BrokerUnavailableError) as exc:
                _log.warning("following the models paused: %s; again in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(2 * delay, 10.0)
            except BaseException as exc:  # noqa: BLE001 - handed to the scorer
                self.error = exc
                _log.exception("model follower stopped")
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class ModelHost:
    """The models one process serves: a slot per role, a watcher keeping them fresh.

    The stream scorer and the HTTP endpoint share one host, so both answer with the same
    loaded versions. :meth:`snapshot` is what one batch (or one request) is scored with.
    """

    def __init__(self, source: ModelSource, roles: Sequence[Role], *,
                 columns: Callable[[], Sequence[str] | None] = lambda: None,
                 sample: Callable[[tuple[str, ...]], np.ndarray | None] = lambda cols: None,
                 on_event: Callable[[SwapEvent], None] | None = None, follow_rollback: bool = False) -> None:
        self.roles = list(dict.fromkeys(roles))
        self.slots = {r: ModelSlot(r) for r in self.roles}
        self.watcher = ModelWatcher(source, list(self.slots.values()), columns=columns, sample=sample,
                                    on_event=on_event, follow_rollback=follow_rollback)

    def start(self, *, wait_for: Role | None = None, timeout: float = 60.0) -> "ModelHost":
        """Follow the source, load the newest good versions, and wait until ``wait_for`` has one.

        While waiting, the source is asked again every couple of seconds: brokers that are
        restarting or electing leaders may make one answer come back empty or fail, and the
        follower only brings versions published after the source was created."""
        self.watcher.start()
        deadline = time.monotonic() + timeout
        unavailable: StreamMLError | None = None
        while True:
            try:
                self.watcher.load_initial()
                unavailable = None
            except (RetriableError, BrokerUnavailableError) as exc:
                unavailable = exc
                _log.warning("reading the models paused: %s", exc)
            left = deadline - time.monotonic()
            if wait_for is None or self.slots[wait_for].ready.wait(max(0.0, min(2.0, left))):
                return self
            if time.monotonic() >= deadline:
                break
        if unavailable is not None:
            raise BrokerUnavailableError(f"the models could not be read within {timeout:.0f} s: {unavailable.message}",
                                         hint=unavailable.hint)
        refused = [e.reason for e in self.watcher.events if e.kind == "refused" and e.role == wait_for]
        raise ModelError(f"no servable version of {wait_for} within {timeout:.0f} s"
                         + (f"; last refusal: {refused[-1]}" if refused else ""),
                         hint=f"publish {wait_for.name} and promote it to {wait_for.stage}")

    def catch_up(self) -> None:
        """Verify, now and in this thread, any version newer than what each slot has (called when
        partitions move here, so a partition never meets an older version than its last owner used)."""
        for slot in self.slots.values():
            cand = self.watcher.source.latest(slot.role.name, slot.role.stage)
            if cand is not None and cand.ref.version > slot.newest:
                self.watcher.consider(cand)

    def swap(self) -> list[tuple[Role, int | None, int]]:
        """Swap every slot that has a verified successor; returns ``(role, old, new)`` per swap."""
        out = []
        for role, slot in self.slots.items():
            old = slot.current.version if slot.current is not None else None
            new = slot.swap()
            if new is not None:
                out.append((role, old, new.version))
                self.watcher.report("swapped", role, new.version, previous=old)
        return out

    def snapshot(self) -> dict[Role, LoadedModel | None]:
        return {r: s.current for r, s in self.slots.items()}

    def get(self, name: str, stage: str = "production") -> LoadedModel | None:
        slot = self.slots.get(Role(name, stage))
        return slot.current if slot is not None else None

    def stop(self) -> None:
        self.watcher.stop()
