"""Alerts and retrain triggers, one per episode.

A condition (``drift``, ``quality``, ``prediction_drift``...) is checked again and again;
the :class:`Alerter` turns that stream of yes/no answers into *episodes*: an episode
starts when the condition first fires and ends when it clears. Each episode start is an
alert; an alert asks for retraining (a ``{"command": "retrain", ...}`` message on
``<ns>.control``, keyed by the model name) unless one is already under way:

* while a retrain that was asked for has not yet produced a new model version (up to
  ``retrain_timeout``), no other retrain is asked for: drift and the quality drop it
  causes are one episode, one retraining;
* after a retrain, no other is asked for during ``cooldown`` seconds.

Alerts that do not ask for retraining (suppressed, or ``retrain=False``) are still kept
in :attr:`Alerter.history` and counted.

>>> sent = []
>>> a = Alerter("fraud", send=sent.append, cooldown=300)
>>> a.check("drift", True, "psi(amount)=0.41>0.2")["command"]
'retrain'
>>> a.check("drift", True, "psi(amount)=0.52>0.2") is None       # same episode
True
>>> a.check("quality", True, "recall=0.31<0.6")["suppressed"]     # retrain under way
'retrain pending'
>>> len(sent), sent[0]["reason"]
(1, 'drift: psi(amount)=0.41>0.2')
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from typing import Any, Callable

import orjson

from streamml.config import Settings

__all__ = ["Alerter", "control_sender"]


class Alerter:
    """Episode de-duplication and retrain cool-down for one model (see the module doc).

    Parameters
    ----------
    model:
        The model the alerts are about.
    send:
        Called with each retrain command (a dict); :func:`control_sender` writes to
        ``<ns>.control``.
    cooldown:
        Seconds after a retrain during which no other retrain is asked for.
    retrain_timeout:
        Seconds a retrain may take before a new episode may ask again.
    clear_after:
        Consecutive negative checks needed to end an episode (hysteresis).
    confirm:
        Seconds a condition must keep firing before the episode starts (like a Prometheus
        rule's ``for:``): a blip does not retrain, and a retraining asked for after a
        confirmed change finds labelled examples of it.
    """

    def __init__(self, model: str, *, send: Callable[[dict[str, Any]], None] | None = None,
                 cooldown: float = 300.0, retrain_timeout: float = 600.0, clear_after: int = 2,
                 confirm: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.model = model
        self.send = send
        self.cooldown = float(cooldown)
        self.retrain_timeout = float(retrain_timeout)
        self.clear_after = max(1, int(clear_after))
        self.confirm = float(confirm)
        self._firing_since: dict[str, float] = {}
        self.clock = clock
        self.active: dict[str, dict[str, Any]] = {}
        self._clear_streak: dict[str, int] = {}
        self.last_retrain: dict[str, Any] | None = None
        self.awaiting_version = False
        self.history: deque[dict[str, Any]] = deque(maxlen=200)
        self.retrains_sent = 0
        self._lock = threading.Lock()

    def check(self, kind: str, firing: bool, reason: str = "", details: dict[str, Any] | None = None,
              *, retrain: bool = True) -> dict[str, Any] | None:
        """Feed one check; returns the alert when an episode starts, else ``None``."""
        with self._lock:
            now = self.clock()
            if not firing:
                self._firing_since.pop(kind, None)
                if kind in self.active:
                    streak = self._clear_streak.get(kind, 0) + 1
                    self._clear_streak[kind] = streak
                    if streak >= self.clear_after:
                        episode = self.active.pop(kind)
                        self.history.append({"kind": kind, "event": "cleared", "at": int(now * 1000),
                                             "model": self.model, "started": episode["at"]})
                return None
            self._clear_streak[kind] = 0
            if kind in self.active:
                return None
            since = self._firing_since.setdefault(kind, now)
            if now - since < self.confirm:
                return None
            alert: dict[str, Any] = {
                "command": "alert", "model": self.model, "alert": kind, "reason": f"{kind}: {reason}",
                "details": details or {}, "at": int(now * 1000), "id": uuid.uuid4().hex, "source": "monitor",
            }
            self.active[kind] = alert
            suppressed = self._suppressed(now) if retrain else "retrain not requested"
            if suppressed:
                alert["suppressed"] = suppressed
            else:
                alert["command"] = "retrain"
                self.last_retrain = alert
                self.awaiting_version = True
                self.retrains_sent += 1
                if self.send is not None:
                    self.send(alert)
            self.history.append({**alert, "event": "alert"})
            return alert

    def _suppressed(self, now: float) -> str | None:
        if self.last_retrain is None:
            return None
        age = now - self.last_retrain["at"] / 1000.0
        if self.awaiting_version and age < self.retrain_timeout:
            return "retrain pending"
        if age < self.cooldown:
            return "cool-down"
        return None

    def model_changed(self, version: int | str) -> None:
        """A new version of the model is serving: the pending retrain is done; episodes restart."""
        with self._lock:
            self.awaiting_version = False
            self.active.clear()
            self._clear_streak.clear()
            self._firing_since.clear()
            self.history.append({"kind": "model", "event": "swap", "version": str(version),
                                 "at": int(self.clock() * 1000), "model": self.model})

    def state(self) -> dict[str, Any]:
        """JSON-able state for snapshots and the dashboard."""
        with self._lock:
            return {"model": self.model, "active": sorted(self.active), "retrains_sent": self.retrains_sent,
                    "awaiting_version": self.awaiting_version,
                    "last_retrain": self.last_retrain, "history": list(self.history)[-50:]}


def control_sender(settings: Settings, producer: Any | None = None) -> Callable[[dict[str, Any]], None]:
    """A ``send`` for :class:`Alerter` that writes each command to ``<ns>.control`` (key = model)."""
    from streamml.kafka import clients
    from streamml.kafka.admin import ensure_topic

    topic = settings.topic("control")
    ensure_topic(settings, topic, 1)
    prod = producer or clients.producer(settings, linger_ms=0)

    def send(command: dict[str, Any]) -> None:
        prod.produce(topic, orjson.dumps(command), str(command.get("model", "")).encode(),
                     headers=[("sm.component", b"monitor")])
        prod.flush(30)

    return send
