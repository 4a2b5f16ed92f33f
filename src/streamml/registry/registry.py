"""The model registry: the compacted ``<ns>.models`` topic, read and written as data.

Layout of the topic (2 partitions, ``cleanup.policy=compact``):

* partition 0, the **catalog** — small JSON records:

  - key ``<name>:<version>`` -> the version's :class:`Descriptor` (rewritten when its stage
    changes; compaction keeps the last one, so every version stays listed for rollback);
  - key ``<name>`` -> the model's **stage pointer**: which version holds ``production``,
    ``canary`` and ``shadow``, the stack of past production versions (what ``rollback``
    returns to) and the history of promotions.

* partition 1, the **chunks** — key ``<name>:<version>:chunk:<i>``, raw artifact bytes of at
  most 900 kB each, with their index, count and SHA-256 in headers. The descriptor lists
  their offsets, so loading reads just those records.

Keys are unique per version and chunk, so compaction never removes a live version; it only
drops superseded descriptor and pointer records. Every write (chunks, descriptor, pointer)
is one Kafka transaction with the transactional id ``streamml-registry.<ns>.<name>``:
readers (``read_committed``) see a version completely or not at all, and two writers of
the same model fence each other instead of both taking the same version number.

A scorer finds what to serve with ``latest(name)`` (the production version) and follows
changes without restarting with :meth:`Registry.watch_stage` or :meth:`Registry.follow`.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import orjson
from confluent_kafka import TopicPartition

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import ConfigError, IntegrityError, ModelError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.kafka.message import offset_of
from streamml.kafka.produce import send
from streamml.kafka.read import messages, watermarks
from streamml.kafka.transactions import TransactionalSession
from streamml.registry.base import LoadedModel
from streamml.registry.descriptor import (
    SINGLE_STAGES,
    Descriptor,
    check_name,
    check_stage,
    diff,
    parse_ref,
    signed_payload,
)
from streamml.registry.formats import Artifact, export_model, verify_bytes
from streamml.registry.models import load_model
from streamml.registry.signing import KEY_ENV, Signer, signers_from_env
from streamml.registry.store import CHUNK_BYTES, ArtifactStore, check_chunk, chunk_headers, chunk_key, split_chunks
from streamml.train.reader import TopicRange, read_ranges, resolve_ranges

_log = logging.getLogger("streamml.registry")

__all__ = ["Registry", "RegistryEvent", "Follower", "CATALOG", "CHUNKS"]

CATALOG, CHUNKS = 0, 1


@dataclass
class RegistryEvent:
    """One change on the models topic: a descriptor written, or a stage pointer moved."""

    kind: str                       # "descriptor" | "stages" | "deleted"
    name: str
    version: int | None = None
    descriptor: Descriptor | None = None
    stages: dict[str, Any] | None = None
    offset: int = -1


@dataclass
class _Catalog:
    descriptors: dict[tuple[str, int], Descriptor] = field(default_factory=dict)
    pointers: dict[str, dict[str, Any]] = field(default_factory=dict)
    end: int = 0

    def apply(self, ev: RegistryEvent) -> None:
        if ev.kind == "descriptor" and ev.descriptor is not None:
            self.descriptors[(ev.name, ev.descriptor.version)] = ev.descriptor
        elif ev.kind == "stages" and ev.stages is not None:
            self.pointers[ev.name] = ev.stages
        elif ev.kind == "deleted":
            if ev.version is None:
                self.pointers.pop(ev.name, None)
            else:
                self.descriptors.pop((ev.name, ev.version), None)

    def versions(self, name: str) -> list[int]:
        return sorted(v for n, v in self.descriptors if n == name)


def _event(key: bytes | None, value: bytes | None, offset: int) -> RegistryEvent | None:
    if not key:
        return None
    k = key.decode()
    name, _, ver = k.partition(":")
    if value is None:
        return RegistryEvent("deleted", name, int(ver) if ver.isdigit() else None, offset=offset)
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if obj.get("type") == "descriptor":
        d = Descriptor.from_dict(obj)
        return RegistryEvent("descriptor", d.name, d.version, descriptor=d, offset=offset)
    if obj.get("type") == "stages":
        return RegistryEvent("stages", name, obj.get("stages", {}).get("production"), stages=obj, offset=offset)
    return None


def _new_pointer(name: str) -> dict[str, Any]:
    return {"type": "stages", "name": name, "stages": {s: None for s in SINGLE_STAGES},
            "production_history": [], "history": []}


class Registry:
    """The models topic as a registry (see the module docstring).

    ``signing_key`` (default ``$STREAMML_MODEL_SIGNING_KEY``) signs what this registry
    publishes; ``trusted_keys`` (plus ``$STREAMML_MODEL_TRUSTED_KEYS``) are also accepted when
    verifying. Pickled models load only with a valid signature; with ``require_signature``
    every format does. ``artifact_store`` (a folder or fsspec URL) is used when publishing
    with ``store="uri"``; the default is inline chunks on the topic.
    """

    def __init__(self, settings: Settings, *, signing_key: str | bytes | None = None,
                 trusted_keys: Sequence[str | bytes] = (), artifact_store: str | None = None,
                 chunk_bytes: int = CHUNK_BYTES, require_signature: bool = False, timeout: float = 30.0,
                 create: bool = True) -> None:
        self.settings = settings
        self.topic = settings.topic("models")
        env_signer, env_trusted = signers_from_env()
        self.signer = Signer(signing_key) if signing_key else env_signer
        self.trusted = {s.key_id: s for s in [*env_trusted, *(Signer(k) for k in trusted_keys)]}
        if self.signer:
            self.trusted[self.signer.key_id] = self.signer
        self.store = ArtifactStore(artifact_store or settings.home / "artifacts")
        self.chunk_bytes = chunk_bytes
        self.require_signature = require_signature
        self.timeout = timeout
        self._written: list[int] = []  # catalog offsets of the open transaction's records
        if create:
            ensure_topic(settings, self.topic, 2, compacted=True,
                         config={"min.cleanable.dirty.ratio": "0.5", "max.message.bytes": str(1024 * 1024)})

    # -- reading the catalog ------------------------------------------------------------------
    def _catalog(self) -> _Catalog:
        (rng,) = resolve_ranges(self.settings, [self.topic], partitions=[CATALOG], timeout=self.timeout)
        cat = _Catalog(end=rng.end)
        for b in read_ranges(self.settings, [rng], headers="none", with_records=True):
            for k, v, off in zip(b.keys or [], b.values, b.offsets):
                ev = _event(k, v, off)
                if ev:
                    cat.apply(ev)
        return cat

    def list(self, name: str | None = None) -> list[Descriptor]:
        """Every version (of ``name``, or of all models), ordered by name and version."""
        cat = self._catalog()
        return [d for (n, _), d in sorted(cat.descriptors.items()) if name is None or n == name]

    def names(self) -> builtins.list[str]:  # `list` is the method above
        return sorted({n for n, _ in self._catalog().descriptors})

    def stages(self, name: str) -> dict[str, Any]:
        """The stage pointer of ``name``: ``{"stages": {...}, "production_history": [...], "history": [...]}``."""
        return self._catalog().pointers.get(check_name(name)) or _new_pointer(name)

    def get(self, name: str, version: int) -> Descriptor:
        d = self._catalog().descriptors.get((check_name(name), int(version)))
        if d is None:
            raise ModelError(f"model {name}@{version} is not in {self.topic}",
                             hint="streamml models list shows what is there")
        return d

    def resolve(self, ref: str | Descriptor) -> Descriptor:
        """A descriptor from ``name@version``, ``name:version``, ``name`` (production) or itself."""
        if isinstance(ref, Descriptor):
            return ref
        name, version = parse_ref(ref)
        if version is not None:
            return self.get(name, version)
        d = self.latest(ref)
        if d is None:
            raise ModelError(f"model {ref} has no production version", hint=f"give a version: {ref}@<n>")
        return d

    def latest(self, name: str, stage: str | None = "production") -> Descriptor | None:
        """The version of ``name`` in ``stage`` (``None``: the highest version), or None."""
        cat = self._catalog()
        return self._latest(cat, check_name(name), stage)

    @staticmethod
    def _latest(cat: _Catalog, name: str, stage: str | None) -> Descriptor | None:
        if stage is None:
            vs = cat.versions(name)
            return cat.descriptors[(name, vs[-1])] if vs else None
        check_stage(stage)
        if stage in SINGLE_STAGES:
            v = (cat.pointers.get(name) or {}).get("stages", {}).get(stage)
            return cat.descriptors.get((name, v)) if v is not None else None
        vs = [v for v in cat.versions(name) if cat.descriptors[(name, v)].stage == stage]
        return cat.descriptors[(name, vs[-1])] if vs else None

    def diff(self, a: str | Descriptor, b: str | Descriptor) -> dict[str, tuple[Any, Any]]:
        """Fields that differ between two versions (``"fraud@1"``, ``"fraud@2"``, or descriptors)."""
        return diff(self.resolve(a), self.resolve(b))

    # -- writing -----------------------------------------------------------------------------
    def _session(self, name: str) -> tuple[Any, TransactionalSession]:
        p = clients.producer(self.settings, transactional_id=f"streamml-registry.{self.settings.namespace}.{name}",
                             linger_ms=5, compression_type="none", transaction_timeout_ms=120_000)
        return p, TransactionalSession(p, timeout=self.timeout)

    @contextmanager
    def _writing(self, name: str) -> Iterator[Any]:
        """One transaction on the models topic, ended only once readers can see it.

        ``commit_transaction`` returns when the coordinator has logged the commit; the markers
        that make the records readable to read_committed consumers are written just after, so
        a read right after a publish could still miss it (seen under load). Waiting for the
        catalog's last stable offset to pass this transaction's records gives every reader,
        in any process, read-your-writes.
        """
        p, tx = self._session(name)
        self._written = written = list[int]()
        with tx.transaction():
            yield p
        if written:
            self._await_stable(max(written) + 1)

    def _await_stable(self, end: int) -> None:
        tp = TopicPartition(self.topic, CATALOG)
        admin = clients.admin(self.settings)
        deadline, wait = time.monotonic() + self.timeout, 0.005
        while watermarks(self.settings, [tp], admin=admin, timeout=self.timeout)[(self.topic, CATALOG)][1] < end:
            if time.monotonic() > deadline:
                _log.warning("%s: committed records below offset %d not readable after %.0f s",
                             self.topic, end, self.timeout)
                return
            time.sleep(wait)
            wait = min(wait * 2, 0.1)

    def _put(self, p: Any, key: str, value: dict[str, Any] | bytes) -> None:
        data = value if isinstance(value, bytes) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        written = self._written

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                written.append(msg.offset())

        p.produce(self.topic, data, key.encode(), partition=CATALOG,
                  headers=H.lineage(component="registry"), on_delivery=delivered)

    def publish(self, model: Any = None, *, name: str, features: Sequence[str] | None = None,
                artifact: Artifact | None = None, metrics: dict[str, Any] | None = None,
                manifest: dict[str, Any] | None = None, stage: str = "candidate",
                decision: dict[str, Any] | None = None, trainer: str | None = None,
                tags: dict[str, Any] | None = None, store: str = "inline", format: str | None = None,
                task: str | None = None) -> Descriptor:
        """Publish a new version of ``name`` and return its descriptor.

        Give a fitted ``model`` and its ``features`` (exported with
        :func:`~streamml.registry.formats.export_model`: ONNX when possible) or a ready
        ``artifact``. ``store="inline"`` writes chunks to the topic, ``store="uri"`` to the
        artifact store. ``stage`` other than candidate also moves the stage pointer.
        """
        check_name(name)
        check_stage(stage)
        if artifact is None:
            if model is None or features is None:
                raise ConfigError("publish needs a model and its features, or an artifact")
            artifact = export_model(model, features, format=format, task=task)
        if artifact.format == "pickle" and self.signer is None:
            raise IntegrityError("publishing a pickled model needs a signing key (pickles load only when signed)",
                                 hint=f"set {KEY_ENV}, or pass Registry(signing_key=...)")
        if store not in ("inline", "uri"):
            raise ConfigError(f"store must be 'inline' or 'uri', got {store!r}")
        with self._writing(name) as p:
            cat = self._catalog()
            ptr = cat.pointers.get(name) or _new_pointer(name)
            version = max((cat.versions(name) or [0])[-1], int(ptr.get("last_version") or 0)) + 1
            created = int(time.time() * 1000)
            if store == "inline":
                where = self._write_chunks(p, name, version, artifact.data)
            else:
                where = {"kind": "uri", "uri": self.store.put(name, version, artifact.data, artifact.format)}
            d = Descriptor(name=name, version=version, format=artifact.format, sha256=artifact.sha256,
                           size=artifact.size, input_schema=artifact.input_schema,
                           output_schema=artifact.output_schema, metrics=dict(metrics or {}), manifest=manifest,
                           stage="candidate", created_at=created, decision=decision, artifact=where,
                           task=artifact.task, trainer=trainer, tags=dict(tags or {}))
            if self.signer:
                d = d.with_(signer=self.signer.key_id, signature=self.signer.sign(signed_payload(d)))
            cat.descriptors[(name, version)] = d
            self._put(p, d.key, d.to_json())
            cat.pointers[name] = {**ptr, "last_version": version}
            self._put(p, name, cat.pointers[name])
            if stage != "candidate":
                d = self._move(p, cat, name, version, stage, action="publish")
        return d

    def _write_chunks(self, p: Any, name: str, version: int, data: bytes) -> dict[str, Any]:
        chunks = split_chunks(data, self.chunk_bytes)
        offsets: dict[int, int] = {}
        errors: list[Any] = []

        def delivered(i: int) -> Callable[[Any, Any], None]:
            def cb(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(err)
                else:
                    offsets[i] = msg.offset()
            return cb

        for i, c in enumerate(chunks):
            send(p, self.topic, c, chunk_key(name, version, i), partition=CHUNKS,
                 headers=chunk_headers(i, len(chunks), c), on_delivery=delivered(i))
            p.poll(0)
        p.flush(self.timeout * 4)
        if errors or len(offsets) != len(chunks):
            raise ModelError(f"writing {name}@{version} chunks failed: {errors[:1] or 'not all delivered'}")
        return {"kind": "inline", "topic": self.topic, "partition": CHUNKS, "chunks": len(chunks),
                "chunk_bytes": self.chunk_bytes, "offsets": [offsets[i] for i in range(len(chunks))]}

    def _move(self, p: Any, cat: _Catalog, name: str, version: int, stage: str, action: str) -> Descriptor:
        """Write the records that put ``version`` in ``stage`` (inside an open transaction)."""
        d = cat.descriptors.get((name, version))
        if d is None:
            raise ModelError(f"model {name}@{version} is not in {self.topic}")
        ptr = orjson.loads(orjson.dumps(cat.pointers.get(name) or _new_pointer(name)))
        now = int(time.time() * 1000)
        previous = ptr["stages"].get(stage) if stage in SINGLE_STAGES else None
        for s in SINGLE_STAGES:  # a version holds at most one single stage
            if ptr["stages"].get(s) == version and s != stage:
                ptr["stages"][s] = None
        changed: list[Descriptor] = []
        if previous is not None and previous != version and (name, previous) in cat.descriptors:
            demoted = "archived" if stage == "production" else "candidate"
            changed.append(cat.descriptors[(name, previous)].with_(stage=demoted))
        if stage in SINGLE_STAGES:
            ptr["stages"][stage] = version
        if stage == "production" and action != "rollback":
            hist = [v for v in ptr["production_history"] if v != version]
            ptr["production_history"] = [*hist, version]
        ptr["history"] = [*ptr["history"], {"at": now, "action": action, "stage": stage, "version": version,
                                            "previous": previous}][-200:]
        ptr["updated_at"] = now
        new = d.with_(stage=stage)
        changed.append(new)
        for c in changed:
            cat.descriptors[(name, c.version)] = c
            self._put(p, c.key, c.to_json())
        cat.pointers[name] = ptr
        self._put(p, name, ptr)
        return new

    def promote(self, name: str, version: int, stage: str = "production") -> Descriptor:
        """Move ``name@version`` to ``stage``; the version that held it is archived (production)
        or returned to candidate (shadow, canary)."""
        check_name(name)
        check_stage(stage)
        with self._writing(name) as p:
            d = self._move(p, self._catalog(), name, int(version), stage, action="promote")
        return d

    def rollback(self, name: str) -> Descriptor:
        """Return production to the version that held it before the current one."""
        check_name(name)
        with self._writing(name) as p:
            cat = self._catalog()
            ptr = cat.pointers.get(name) or _new_pointer(name)
            current = ptr["stages"].get("production")
            hist = [v for v in ptr.get("production_history", []) if v != current and (name, v) in cat.descriptors]
            if current is None or not hist:
                raise ModelError(f"model {name} has no earlier production version to roll back to",
                                 hint="streamml models show " + name)
            target = hist[-1]
            cat.pointers[name] = {**ptr, "production_history": hist}
            d = self._move(p, cat, name, target, "production", action="rollback")
        return d

    def delete(self, name: str, version: int) -> None:
        """Remove a version: tombstones for its descriptor and chunks (compaction then frees
        the space). A version that holds production, canary or shadow cannot be deleted;
        artifacts in a URI store are left where they are."""
        check_name(name)
        with self._writing(name) as p:
            cat = self._catalog()
            d = cat.descriptors.get((name, int(version)))
            if d is None:
                raise ModelError(f"model {name}@{version} is not in {self.topic}")
            ptr = cat.pointers.get(name)
            if ptr and int(version) in [v for v in ptr["stages"].values() if v is not None]:
                raise ModelError(f"{d.ref} is in use ({d.stage})", hint="promote another version first")
            if d.artifact.get("kind") == "inline":
                for i in range(int(d.artifact.get("chunks", 0))):
                    p.produce(self.topic, None, chunk_key(name, d.version, i), partition=CHUNKS)
            p.produce(self.topic, None, d.key.encode(), partition=CATALOG)
            if ptr:
                ptr = {**ptr, "production_history": [v for v in ptr.get("production_history", []) if v != d.version]}
                self._put(p, name, ptr)

    # -- loading -----------------------------------------------------------------------------
    def verify_signature(self, d: Descriptor) -> bool:
        """True for a valid signature by a trusted key; False when unsigned. Raises on a bad one."""
        if not d.signature:
            return False
        signer = self.trusted.get(d.signer or "")
        if signer is None:
            raise IntegrityError(f"{d.ref} is signed by an unknown key {d.signer}",
                                 hint="add the signer's key to STREAMML_MODEL_TRUSTED_KEYS")
        if not signer.verify(signed_payload(d), d.signature):
            raise IntegrityError(f"{d.ref}: the descriptor's signature does not verify (tampered descriptor)")
        return True

    def fetch(self, d: Descriptor) -> bytes:
        """The artifact bytes of ``d``, with size and SHA-256 checked."""
        kind = d.artifact.get("kind")
        if kind == "uri":
            data = ArtifactStore.get(d.artifact["uri"])
        elif kind == "inline":
            data = self._read_chunks(d)
        else:
            raise IntegrityError(f"{d.ref}: the descriptor says nothing about where the artifact is")
        verify_bytes(d, data)
        return data

    def _read_chunks(self, d: Descriptor) -> bytes:
        a = d.artifact
        offsets: list[int] = [int(o) for o in a.get("offsets", [])]
        n = int(a.get("chunks", len(offsets)))
        if len(offsets) != n or n == 0:
            raise IntegrityError(f"{d.ref}: the descriptor lists {len(offsets)} chunk offsets for {n} chunks")
        want = {o: i for i, o in enumerate(offsets)}
        got: dict[int, bytes] = {}
        rng = TopicRange(a.get("topic", self.topic), int(a.get("partition", CHUNKS)), min(offsets), max(offsets) + 1)
        for b in read_ranges(self.settings, [rng], headers="none", with_records=True, batch_rows=64):
            for k, v, off, hs in zip(b.keys or [], b.values, b.offsets, b.headers or []):
                i = want.get(off)
                if i is None:
                    continue
                got[i] = check_chunk(d.ref, i, n, k, chunk_key(d.name, d.version, i), v, H.as_dict(hs))
        missing = [i for i in range(n) if i not in got]
        if missing:
            raise IntegrityError(f"{d.ref}: chunk(s) {missing[:5]} of {n} are missing from {rng.topic}",
                                 hint="they were deleted or compacted away; republish the model")
        return b"".join(got[i] for i in range(n))

    def load(self, ref: str | Descriptor, *, allowed_modules: Sequence[str] | None = None) -> LoadedModel:
        """Fetch, verify and load a model: signature (required for pickles, and for every format
        with ``require_signature``), then size and SHA-256, then the format's loader."""
        d = self.resolve(ref)
        signed = self.verify_signature(d)
        if not signed and (d.format == "pickle" or self.require_signature):
            raise IntegrityError(f"refusing to load {d.ref}: its descriptor is not signed ({d.format})",
                                 hint=f"publish it with {KEY_ENV} set; unsigned pickles are never unpickled")
        data = self.fetch(d)
        return load_model(d, data, allowed_modules=allowed_modules, signature_verified=signed)

    # -- following changes ---------------------------------------------------------------------
    def watch(self, name: str | None = None, *, from_offset: int | None = None, from_beginning: bool = False,
              timeout: float | None = None, stop: threading.Event | None = None,
              poll: float = 0.2) -> Iterator[RegistryEvent]:
        """Yield each change on the catalog, as it is committed, until ``stop`` is set or
        ``timeout`` seconds pass (forever by default).

        Starts after the current end (``from_beginning`` replays everything first;
        ``from_offset`` starts exactly there). ``name`` filters to one model.
        """
        if from_offset is None:
            (rng,) = resolve_ranges(self.settings, [self.topic], partitions=[CATALOG], timeout=self.timeout)
            from_offset = rng.start if from_beginning else rng.end
        c = clients.consumer(self.settings, f"streamml-registry-watch-{uuid.uuid4().hex[:10]}",
                             fetch_wait_max_ms=100)
        c.assign([TopicPartition(self.topic, CATALOG, from_offset)])
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not (stop is not None and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
                for m in messages(c.consume(100, timeout=poll), "watching the models topic: "):
                    ev = _event(m.key(), m.value(), offset_of(m))
                    if ev is not None and (name is None or ev.name == name):
                        yield ev
        finally:
            c.close()

    def watch_stage(self, name: str, stage: str = "production", *, timeout: float | None = None,
                    stop: threading.Event | None = None) -> Iterator[Descriptor]:
        """Yield the descriptor in ``stage`` now (if any), then again each time it changes —
        the loop a scorer runs to hot-swap models::

            for d in registry.watch_stage("fraud"):
                model = registry.load(d)      # verified; swap it in
        """
        check_name(name)
        check_stage(stage)
        cat = self._catalog()
        current = self._latest(cat, name, stage)
        if current is not None:
            yield current
        for ev in self.watch(name, from_offset=cat.end, timeout=timeout, stop=stop):
            cat.apply(ev)
            now = self._latest(cat, name, stage)
            if now is not None and (current is None or now.version != current.version):
                current = now
                yield now

    def follow(self, name: str, on_change: Callable[[Descriptor], None], *, stage: str = "production",
               on_error: Callable[[BaseException], None] | None = None) -> "Follower":
        """Call ``on_change(descriptor)`` from a background thread whenever ``name``'s ``stage``
        version changes (and once for the current one). Stop it with ``.stop()``."""
        return Follower(self, name, stage, on_change, on_error)


class Follower:
    """A background thread running :meth:`Registry.watch_stage` and calling back on changes."""

    def __init__(self, registry: Registry, name: str, stage: str, on_change: Callable[[Descriptor], None],
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.current: Descriptor | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()

        def run() -> None:
            try:
                for d in registry.watch_stage(name, stage, stop=self._stop):
                    self.current = d
                    on_change(d)
            except BaseException as exc:  # surfaced through .error / on_error
                self.error = exc
                if on_error:
                    on_error(exc)

        self._thread = threading.Thread(target=run, name=f"streamml-follow-{name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
