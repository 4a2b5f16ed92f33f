"""The one consume -> process -> produce loop that every streamml stage runs on.

A stage supplies a :class:`Processor` (what to do with a batch); the :class:`Loop` owns
everything else, the same way for every stage:

- **polling that follows the load**: wait up to ``idle_wait_s`` for the first record, then
  take what else has arrived (up to ``max_batch``) without waiting for a full batch;
- **exactly-once**: one Kafka transaction per batch holding the outputs, the state changelog
  and the input offsets (``send_offsets_to_transaction`` with the consumer's group metadata,
  so a member that lost its partitions cannot commit for them); the transactional id and the
  static member id are ``<group>.<instance>``, so a restarted instance fences its predecessor
  and distinct instances never collide;
- **at-least-once**: outputs are produced, and input offsets are committed once everything
  produced before them is acknowledged (at the latest every ``commit_interval_s``);
- **one error policy**: a retriable or abortable error (or any other non-fatal Kafka error)
  aborts the batch and rewinds to the committed offsets, and the batch is processed again;
  a fatal error (fenced producer or member, a client stuck on a lost coordinator) replaces
  both clients within a recovery budget (``max_recoveries`` per ``recovery_window_s``); an
  authorization or unsupported-version error, or an exhausted budget, stops the loop with
  that error; an error raised by the processor itself aborts the batch and stops the loop;
- **rebalances**: batches commit before the next poll, so no transaction is open when
  partitions are revoked; the processor restores state for new partitions in
  :meth:`Processor.assigned` before any of their records are processed;
- **a watchdog over the whole loop** (poll, callbacks, process, commit): after
  ``stuck_after_s`` without progress ``on_stuck`` is called; by default the clients are
  replaced as soon as the stuck call returns (librdkafka itself has left the group after
  ``max_poll_interval_ms`` by then). A command-line worker exits instead, to be restarted;
- **backpressured produce** through :mod:`streamml.kafka.produce`;
- **hooks**: ``on_event(kind, info)`` for assigned / revoked / batch / aborted / recovered /
  stuck / started / stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Generic, TypeVar

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, Message, TopicPartition

from streamml.config import Settings
from streamml.errors import AuthorizationError, FatalError, KafkaError
from streamml.kafka.errors import classify
from streamml.kafka.transactions import TransactionalSession, next_offsets, rewind
from streamml.runtime.options import LoopOptions
from streamml.runtime.seam import Clients, KafkaClients
from streamml.runtime.watchdog import Watchdog

__all__ = ["Loop", "LoopStats", "Processor"]

_log = logging.getLogger("streamml.runtime")
R = TypeVar("R")
RESTORE_LIMIT_FACTOR = 10  # restoring state on assignment may take this many times stuck_after_s
_NOT_RECOVERABLE = ("UNSUPPORTED_VERSION", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED")


class Processor(Generic[R]):
    """What a stage does with its input; the :class:`Loop` calls it.

    Subclasses implement :meth:`process`; the other hooks are optional.
    """

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned: restore their state before their records arrive."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions were revoked or lost: drop their state (nothing is open)."""

    def tick(self) -> None:
        """Called once per loop turn before polling (model swaps, periodic reports)."""

    def process(self, messages: list[Message], producer: Any) -> R:
        """Process one batch; produce its outputs with ``producer``; return what
        :meth:`committed` needs. Must not commit or change durable state itself."""
        raise NotImplementedError

    def committed(self, result: R) -> None:
        """The batch is durable (exactly-once: its transaction committed; at-least-once: its
        outputs were handed to the producer): move in-memory state forward."""

    def aborted(self, error: Exception) -> None:
        """The batch was aborted and will be read again from the committed offsets."""


@dataclass
class LoopStats:
    """Counters of one loop since it started."""

    batches: int = 0
    records: int = 0
    aborts: int = 0
    recoveries: int = 0
    commits: int = 0
    stalls: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Loop(Generic[R]):
    """Runs ``processor`` over ``topics`` as a member ``options.member`` of ``group``."""

    def __init__(self, settings: Settings, processor: Processor[R], *, topics: list[str], group: str,
                 options: LoopOptions | None = None, clients: Clients | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 on_stuck: Callable[[float, str], None] | None = None, name: str | None = None,
                 stop_event: threading.Event | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.topics = list(topics)
        self.group = group
        self.options = options or LoopOptions()
        self.clients: Clients = clients or KafkaClients()
        self.on_event = on_event
        self.name = name or group
        self.stats = LoopStats()
        self.owned: set[tuple[str, int]] = set()
        self.consumer: Any = None
        self.producer: Any = None
        self._live: Any = None  # the consumer whose rebalance callbacks count (not one being replaced)
        self.tx: TransactionalSession | None = None
        self.stop_event = stop_event or threading.Event()  # set it (or call stop()) to end run()
        self._stuck = False
        self._recoveries: list[float] = []
        self._pending: list[list[TopicPartition]] = []
        self._last_commit = time.monotonic()
        self.last_input = time.monotonic()  # idle time counts from the last input or assignment
        self._fatal_delivery: Any = None
        self.watchdog = Watchdog(self.options.stuck_after_s, on_stuck or self._on_stuck, name=f"watchdog-{self.name}")

    # -- identity ------------------------------------------------------------------------
    @property
    def member_id(self) -> str:
        """``<group>.<instance>``: the transactional id and the static member id."""
        return f"{self.group}.{self.options.member}"

    # -- lifecycle -----------------------------------------------------------------------
    def _emit(self, kind: str, info: dict[str, Any]) -> None:
        _log.debug("%s %s %s", self.name, kind, info)
        if self.on_event is not None:
            self.on_event(kind, info)

    def _client_error(self, err: Any) -> None:
        if err is not None and err.fatal() and self._fatal_delivery is None:
            self._fatal_delivery = err
        else:
            _log.warning("%s: %s", self.name, err)

    def start(self) -> "Loop[R]":
        """Create the clients, fence older instances of this member, subscribe."""
        if self.consumer is None:
            self.watchdog.start()  # a start that hangs (fencing the predecessor, joining) is a stall too
            self._connect()
            self._emit("started", {"member": self.member_id, "guarantee": self.options.guarantee})
        return self

    def _connect(self) -> None:
        o, s = self.options, self.settings
        conf: dict[str, Any] = {"session_timeout_ms": o.session_timeout_ms}
        if "max.poll.interval.ms" not in s.kafka:  # the user's setting wins
            conf["max_poll_interval_ms"] = o.max_poll_interval_ms
        if o.static_membership:
            conf["group_instance_id"] = self.member_id
        conf.update(o.consumer)
        consumer = self.clients.consumer(s, self.group, **conf)
        pconf: dict[str, Any] = {"linger_ms": o.linger_ms, **o.producer}
        if o.exactly_once:
            pconf.setdefault("transaction_timeout_ms", o.transaction_timeout_ms)
            producer = self.clients.producer(s, transactional_id=self.member_id, **pconf)
            self.tx = TransactionalSession(producer, consumer)  # fences the predecessor, aborts its transaction
        else:
            # never give up on a record: it is lost only to a fatal client error, which error_cb
            # reports and which stops the loop before it commits past the record
            pconf.setdefault("message_timeout_ms", 0)
            producer = self.clients.producer(s, error_cb=self._client_error, **pconf)
            self.tx = None
        self.consumer, self.producer, self._live = consumer, producer, consumer
        self._pending.clear()
        self._fatal_delivery = None
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)

    def _on_assign(self, consumer: Any, parts: list[TopicPartition]) -> None:
        if consumer is not self._live:
            return  # a replaced consumer: its partitions are no longer this loop's business
        self.watchdog.beat()
        new = [tp for tp in parts if (tp.topic, tp.partition) not in self.owned]
        if new:
            with self.watchdog.allow(RESTORE_LIMIT_FACTOR * self.options.stuck_after_s):
                self.processor.assigned(new)
            self.owned |= {(tp.topic, tp.partition) for tp in new}
            self.last_input = time.monotonic()  # joining the group is not idleness
            self._emit("assigned", {"partitions": sorted(tp.partition for tp in new)})
        self.watchdog.beat()

    def _on_revoke(self, consumer: Any, parts: list[TopicPartition]) -> None:
        if consumer is not self._live:
            # a consumer replaced after a fatal error, closing late in the background: what it
            # revokes now belongs to its successor (dropping it here would stall those partitions)
            return
        self.watchdog.beat()
        gone = [tp for tp in parts if (tp.topic, tp.partition) in self.owned]
        if not self.options.exactly_once:
            self._commit_pending(force=True)  # hand over what is done, not more
        if gone:
            self.processor.revoked(gone)
            self.owned -= {(tp.topic, tp.partition) for tp in gone}
            self._emit("revoked", {"partitions": sorted(tp.partition for tp in gone)})

    def stop(self) -> None:
        """Ask the loop to finish its current batch and stop (safe from signal handlers)."""
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def close(self, *, after_error: bool = False) -> None:
        """Commit what is delivered (at-least-once), leave the group, release the clients."""
        self.watchdog.stop()
        if self.consumer is None and self.producer is None:
            return
        consumer, producer = self.consumer, self.producer
        self.consumer = self.producer = self.tx = None
        try:
            if producer is not None and not after_error and not self.options.exactly_once:
                producer.flush(30)
                self.consumer = consumer
                try:
                    self._commit_pending(force=True)
                finally:
                    self.consumer = None
            if consumer is not None:
                try:
                    consumer.close()  # revokes: the processor releases its state
                except Exception:  # noqa: BLE001 - a fenced consumer may refuse to leave cleanly
                    if not after_error:
                        raise
        finally:
            if producer is not None:
                try:
                    producer.flush(10 if not after_error else 1)
                except KafkaException as exc:
                    if not after_error:
                        raise classify(exc, "cannot flush the output on close: ") from None
            self._emit("stopped", self.stats.as_dict())

    # -- the loop ------------------------------------------------------------------------
    def run(self, *, idle_exit: float | None = None, max_batches: int | None = None,
            max_records: int | None = None) -> LoopStats:
        """Process until :meth:`stop`, ``idle_exit`` seconds without input (counted from the last
        record or the last assignment, so that joining the group does not count), ``max_batches``
        batches or ``max_records`` input records; then close. Returns the counters."""
        self.start()
        self.last_input = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if max_batches is not None and self.stats.batches >= max_batches:
                    break
                if max_records is not None and self.stats.records >= max_records:
                    break
                if self.turn():
                    self.last_input = time.monotonic()
                elif idle_exit is not None and time.monotonic() - self.last_input > idle_exit:
                    break
        except BaseException:
            self.close(after_error=True)
            raise
        self.close()
        return self.stats

    def turn(self) -> int:
        """One loop turn: tick, poll, process and commit one batch. Returns records processed."""
        self.watchdog.beat()
        if self._stuck:
            self._stuck = False
            self._recover(FatalError(f"{self.name}: the loop was stuck for over "
                                     f"{self.options.stuck_after_s:.0f}s", code="_STUCK"))
        self.processor.tick()
        try:
            msgs = self._poll()
        except FatalError as exc:
            self._recover(exc)
            return 0
        self.watchdog.beat()
        if not msgs:
            if not self.options.exactly_once:
                self._after_alo()
            return 0
        try:
            self._batch(msgs)
        except FatalError as exc:
            self._recover(exc)
            return 0
        return len(msgs)

    def _poll(self) -> list[Message]:
        c, most = self.consumer, self.options.max_batch
        msgs: list[Message] = c.consume(most, 0)  # what has already arrived
        if not msgs:
            msgs = c.consume(1, self.options.idle_wait_s)  # wait for the first record only
            if msgs and most > 1:
                msgs += c.consume(most - 1, 0)
        if msgs:
            msgs = self._valid(msgs)
        return msgs

    def _valid(self, msgs: list[Message]) -> list[Message]:
        if not any(m.error() for m in msgs):
            return msgs
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.code() != CKError._PARTITION_EOF:
                exc = classify(err, "consume: ")
                if isinstance(exc, FatalError):
                    raise exc
                _log.warning("%s: %s", self.name, exc)
        owned = self.owned
        return [m for m in out if (m.topic(), m.partition()) in owned]

    def _batch(self, msgs: list[Message]) -> None:
        offsets = next_offsets(msgs)
        if self.tx is not None:
            try:
                with self.tx.transaction(offsets):
                    result = self.processor.process(msgs, self.producer)
            except FatalError:
                raise
            except KafkaError as exc:  # retriable, abortable or unclassified: the batch is retried
                self._abort(exc, offsets)
                return
            except BaseException as exc:
                self.processor.aborted(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                raise
            self.stats.commits += 1
        else:
            result = self.processor.process(msgs, self.producer)
            self._pending.append(offsets)
        self.processor.committed(result)
        self.stats.batches += 1
        self.stats.records += len(msgs)
        if not self.options.exactly_once:
            self._after_alo()
        if self.on_event is not None:
            self._emit("batch", {"partitions": sorted({m.partition() for m in msgs}), "in": len(msgs)})

    def _abort(self, exc: KafkaError, offsets: list[TopicPartition]) -> None:
        self.stats.aborts += 1
        self.processor.aborted(exc)
        self._emit("aborted", {"error": str(exc)})
        _log.warning("%s: batch aborted, rewinding: %s", self.name, exc)
        try:
            rewind(self.consumer, offsets)
        except KafkaException as err:  # the committed offsets are unknown (lost coordinator)
            raise FatalError(f"cannot rewind after an abort: {classify(err)}", code="_REWIND") from None

    # -- at-least-once commits -------------------------------------------------------------
    def _after_alo(self) -> None:
        self.producer.poll(0)
        if self._fatal_delivery is not None:  # never commit past a record that was not written
            err, self._fatal_delivery = self._fatal_delivery, None
            self._pending.clear()
            raise classify(err, "a record could not be delivered; its batch will be processed again: ")
        self._commit_pending()

    def _commit_pending(self, force: bool = False) -> None:
        """Commit the offsets of batches whose outputs are all acknowledged."""
        if not self._pending or self.consumer is None:
            return
        producer = self.producer
        if producer is not None and len(producer):
            due = time.monotonic() - self._last_commit >= self.options.commit_interval_s
            if not (force or due):
                return
            producer.flush(30 if force else self.options.commit_interval_s + 5)
            if len(producer):
                return  # not acknowledged yet: commit later, never past an unwritten record
        merged: dict[tuple[str, int], int] = {}
        for offs in self._pending:
            for tp in offs:
                key = (tp.topic, tp.partition)
                merged[key] = max(merged.get(key, -1), tp.offset)
        self._pending.clear()
        self._last_commit = time.monotonic()
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(merged.items())],
                                 asynchronous=not force)
            self.stats.commits += 1
        except KafkaException as exc:  # a lost commit only means a replay (at-least-once)
            err = classify(exc, "commit: ")
            if isinstance(err, FatalError):
                raise err from None
            _log.warning("%s: offset commit failed (the records may repeat): %s", self.name, err)

    # -- recovery ------------------------------------------------------------------------
    def _on_stuck(self, seconds: float, stacks: str) -> None:
        self.stats.stalls += 1
        self._stuck = True
        _log.error("%s: no progress for %.0fs (limit %.0fs); the clients are replaced when the stuck call "
                   "returns. Stacks:\n%s", self.name, seconds, self.options.stuck_after_s, stacks)
        self._emit("stuck", {"seconds": round(seconds, 1)})

    def _recover(self, exc: FatalError) -> None:
        """Replace clients that a fatal error made unusable.

        The new transactional producer fences the old one and aborts its open transaction; the
        new consumer starts from the committed offsets: nothing the old clients had not
        committed is lost or written twice. The old clients are closed in the background,
        since a stuck one may never return.
        """
        now = time.monotonic()
        o = self.options
        self._recoveries = [t for t in self._recoveries if now - t < o.recovery_window_s] + [now]
        if isinstance(exc, AuthorizationError) or exc.code in _NOT_RECOVERABLE:
            raise exc
        if len(self._recoveries) > o.max_recoveries:
            raise FatalError(f"{exc.message}; {len(self._recoveries)} recoveries within "
                             f"{o.recovery_window_s:.0f}s, giving up", code=exc.code, hint=exc.hint) from None
        self.stats.recoveries += 1
        _log.warning("%s: %s; replacing the clients (recovery %d)", self.name, exc, self.stats.recoveries)
        lost = [TopicPartition(t, p) for t, p in sorted(self.owned)]
        if lost:
            self.processor.revoked(lost)
            self.owned.clear()
        old = self.consumer
        self._live = None  # from now on the old consumer's callbacks are ignored
        self.consumer = self.producer = self.tx = None  # the old producer goes with its last reference
        threading.Thread(target=_close_quietly, args=(old,), name="close-replaced", daemon=True).start()
        self._emit("recovered", {"error": str(exc), "recoveries": self.stats.recoveries})
        time.sleep(1.0)
        self.watchdog.beat()
        self._connect()


def _close_quietly(consumer: Any) -> None:
    try:
        if consumer is not None:
            consumer.close()
    except Exception:  # noqa: BLE001 - a fenced consumer may refuse to leave its group cleanly
        pass

