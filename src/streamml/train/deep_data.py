"""Streaming PyTorch and Keras datasets over a pinned :class:`~streamml.train.Dataset`.

Import this module only when deep learning is wanted (``pip install 'streamml[deep]'``);
:meth:`Dataset.to_torch`, :meth:`Dataset.torch_loader` and :meth:`Dataset.to_keras` do so.

**Batches.** Each item is a batch: ``(X, y)`` for a supervised dataset (the label column
present), ``(X,)`` for an unsupervised one, so ``batch[0]`` is always the features (Keras
reads ``(x,)`` as inputs without targets). ``X`` has the dataset's feature columns in order
(nulls as 0); ``y`` is int64 for integer or boolean labels, ``dtype`` for float labels
(``label_dtype`` overrides).

**Sharding.** Rows are read once per epoch across all consumers of the data: the shards are
``world_size * num_workers`` (distributed ranks, from ``torch.distributed`` or given as
``rank=``/``world_size=``, times DataLoader workers), shard ``rank * num_workers + worker``.
With at least as many partition ranges as shards, whole ranges are dealt out (largest first,
to the least loaded shard); with fewer, the ranges laid end to end are cut into contiguous
offset slices, so every offset belongs to exactly one shard (:func:`shard_ranges`). Each
shard reads through the shared read layer (:meth:`Dataset.iter_batches` over
:meth:`Dataset.with_ranges`), creating its own consumer inside the worker process.

**Order.** A shard's rows arrive in (topic, partition, offset) order; ``shuffle_buffer=N``
mixes them through a window of ``N`` rows (permute the window, emit its last half, keep the
rest and refill), seeded by ``(dataset seed, epoch, shard)``: equal seeds give equal batches,
and the result does not depend on how Kafka chunked the data. Call ``set_epoch(n)`` before
each epoch, as with ``DistributedSampler`` (the epoch is shared with persistent workers).

>>> from streamml.train.reader import TopicRange
>>> [r.as_dict() for r in shard_ranges([TopicRange("t", 0, 0, 10)], 1, 2)]
[{'topic': 't', 'partition': 0, 'start': 5, 'end': 10}]
>>> [b[0].tolist() for b in rebatch([(np.arange(5),), (np.arange(5, 11),)], 4)]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.context
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from streamml.errors import ConfigError
from streamml.train.reader import TopicRange

if TYPE_CHECKING:
    from streamml.train.dataset import Dataset

__all__ = ["TorchTopicDataset", "current_shard", "shard_ranges", "rebatch", "make_keras_dataset"]

Arrays = tuple[np.ndarray, ...]


# -- sharding ----------------------------------------------------------------------------------
def shard_ranges(ranges: Sequence[TopicRange], index: int, count: int) -> tuple[TopicRange, ...]:
    """The ranges shard ``index`` of ``count`` reads; the shards partition every offset.

    >>> rs = [TopicRange("t", p, 0, n) for p, n in enumerate((30, 10, 20))]
    >>> [[(r.partition, len(r)) for r in shard_ranges(rs, i, 2)] for i in range(2)]
    [[(0, 30)], [(2, 20), (1, 10)]]
    >>> [[(r.partition, r.start, r.end) for r in shard_ranges(rs[1:], i, 3)] for i in range(3)]
    [[(1, 0, 10)], [(2, 0, 10)], [(2, 10, 20)]]
    """
    if not 0 <= index < count:
        raise ConfigError(f"shard {index} of {count} does not exist")
    todo = [r for r in sorted(ranges) if len(r) > 0]
    if len(todo) >= count:
        loads = [0] * count
        owned: list[list[TopicRange]] = [[] for _ in range(count)]
        for r in sorted(todo, key=lambda r: (-len(r), r)):  # largest first, to the least loaded shard
            k = loads.index(min(loads))
            owned[k].append(r)
            loads[k] += len(r)
        return tuple(owned[index])
    total = sum(len(r) for r in todo)
    lo, hi = total * index // count, total * (index + 1) // count
    out, pos = [], 0
    for r in todo:  # the ranges laid end to end: [pos, pos + len(r))
        a, b = max(lo, pos), min(hi, pos + len(r))
        if a < b:
            out.append(TopicRange(r.topic, r.partition, r.start + a - pos, r.start + b - pos))
        pos += len(r)
    return tuple(out)


def current_shard(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(index, count)`` of this process/worker: distributed rank x DataLoader worker."""
    if (rank is None) != (world_size is None):
        raise ConfigError("give both rank= and world_size=, or neither")
    if rank is None or world_size is None:
        rank, world_size = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in [0, {world_size})")
    info = get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * nw + wid, world_size * nw


# -- shuffling and batching -------------------------------------------------------------------
def _cat(parts: list[Arrays]) -> Arrays:
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


def _shuffled(chunks: Iterable[Arrays], size: int, rng: np.random.Generator) -> Iterator[Arrays]:
    keep = size // 2
    out = size - keep
    held: Arrays | None = None
    for c in chunks:
        cat = _cat([c] if held is None else [held, c])  # a fresh, writable copy
        n, p = len(cat[0]), 0
        while n - p >= size:
            idx = p + rng.permutation(size)
            win = tuple(a[idx] for a in cat)
            yield tuple(w[keep:] for w in win)
            p += out
            for a, w in zip(cat, win):  # the kept rows lead the next window
                a[p:p + keep] = w[:keep]
        held = tuple(a[p:] for a in cat) if p < n else None
    if held is not None:
        idx = rng.permutation(len(held[0]))
        yield tuple(a[idx] for a in held)


def rebatch(chunks: Iterable[Arrays], batch_size: int, *, shuffle_buffer: int = 0,
            rng: np.random.Generator | None = None, drop_last: bool = False) -> Iterator[Arrays]:
    """Cut a stream of row chunks (tuples of equally long arrays) into ``batch_size`` batches,
    through a shuffle window of ``shuffle_buffer`` rows first; the output depends only on the
    rows, in order, not on how they were chunked.

    >>> rows = [(np.arange(0, 7),), (np.arange(7, 20),)]
    >>> a = [b[0].tolist() for b in rebatch(rows, 8, shuffle_buffer=6, rng=np.random.default_rng(1))]
    >>> b = [b[0].tolist() for b in rebatch([(np.arange(20),)], 8, shuffle_buffer=6, rng=np.random.default_rng(1))]
    >>> a == b, sorted(sum(a, [])) == list(range(20)), [len(x) for x in a]
    (True, True, [8, 8, 4])
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    stream = chunks if shuffle_buffer <= 1 else _shuffled(chunks, shuffle_buffer, rng or np.random.default_rng(0))
    pending: list[Arrays] = []
    n = 0
    for c in stream:
        if not len(c[0]):
            continue
        pending.append(c)
        n += len(c[0])
        if n < batch_size:
            continue
        cat = _cat(pending)
        k = n // batch_size * batch_size
        for i in range(0, k, batch_size):
            yield tuple(a[i:i + batch_size] for a in cat)
        pending = [tuple(a[k:] for a in cat)] if k < n else []
        n -= k
    if n and not drop_last:
        yield _cat(pending)


class _Source:
    """What a torch and a Keras dataset share: the dataset, the options, the shard's rows."""

    def __init__(self, ds: "Dataset", *, batch_size: int, shuffle_buffer: int, epoch: int, drop_last: bool,
                 rank: int | None, world_size: int | None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = ds
        self.features = ds.features  # resolved here, once, so that every shard agrees
        first = next(ds.iter_batches(batch_rows=1000, _limit_one=True), None)
        self.supervised = first is not None and ds.label in first.columns
        self.batch_size, self.shuffle_buffer, self.drop_last = int(batch_size), int(shuffle_buffer), drop_last
        self.rank, self.world_size = rank, world_size
        self._epoch: Any = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value) if hasattr(self._epoch, "value") else int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass reads (its shuffle order), like ``DistributedSampler.set_epoch``."""
        if hasattr(self._epoch, "value"):
            self._epoch.value = int(epoch)
        else:
            self._epoch = int(epoch)

    def rng(self, shard: int) -> np.random.Generator:
        return np.random.default_rng([self.dataset.seed, self.epoch, shard])

    def chunks(self, ranges: Sequence[TopicRange], np_dtype: Any) -> Iterator[Arrays]:
        sub = self.dataset.with_ranges(ranges)
        sub.progress = False
        for df in sub.iter_batches():
            X, y = sub.frame_to_numpy(df, np_dtype)
            if not self.supervised:
                yield (X,)
                continue
            if y is None:
                raise ConfigError(f"label column {self.dataset.label!r} missing from some records",
                                  hint="use unlabelled='drop' or 'fill' when building the dataset")
            yield X, y


def _label_array(y: np.ndarray, dtype: Any) -> np.ndarray:
    if y.dtype.kind in "biu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        return y.astype(dtype, copy=False)
    raise ConfigError(f"labels of type {y.dtype} (nulls or strings?) cannot become a tensor",
                      hint="encode labels as numbers; drop or fill unlabelled rows (unlabelled='drop'/'fill')")


# -- PyTorch --------------------------------------------------------------------------------
def _torch_dtype(dtype: Any) -> torch.dtype:
    out = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(out, torch.dtype):
        raise ConfigError(f"not a torch dtype: {dtype!r}", hint="e.g. 'float32' or torch.float32")
    return out


class TorchTopicDataset(_Source, IterableDataset):  # type: ignore[type-arg]
    """A ``torch.utils.data.IterableDataset`` of batches streamed from the dataset's pinned ranges
    (see the module docstring). Use ``.loader(num_workers=...)`` for a ready DataLoader."""

    def __init__(self, ds: "Dataset", *, batch_size: int = 256, shuffle_buffer: int = 0, epoch: int = 0,
                 dtype: Any = "float32", label_dtype: Any = None, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None) -> None:
        IterableDataset.__init__(self)
        _Source.__init__(self, ds, batch_size=batch_size, shuffle_buffer=shuffle_buffer, epoch=epoch,
                         drop_last=drop_last, rank=rank, world_size=world_size)
        self.dtype = _torch_dtype(dtype)
        self.label_dtype = None if label_dtype is None else _torch_dtype(label_dtype)
        # shared with (persistent) DataLoader workers forked or spawned from this process
        self._epoch = multiprocessing.get_context().Value("q", int(epoch), lock=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:  # a plain pickle: the value, not the share
            state["_epoch"] = self.epoch
        return state

    def shard(self) -> tuple[int, int]:
        """``(index, count)`` of the shard this process/worker reads."""
        return current_shard(self.rank, self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        index, count = self.shard()
        ranges = shard_ranges(self.dataset.ranges, index, count)
        if not ranges:
            return
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        for batch in rebatch(self.chunks(ranges, np_dtype), self.batch_size, shuffle_buffer=self.shuffle_buffer,
                             rng=self.rng(index), drop_last=self.drop_last):
            X = torch.from_numpy(batch[0]).to(self.dtype)
            if len(batch) == 1:
                yield (X,)
                continue
            y = torch.from_numpy(_label_array(batch[1], np_dtype))
            if self.label_dtype is not None:
                y = y.to(self.label_dtype)
            elif y.is_floating_point():
                y = y.to(self.dtype)
            yield X, y

    def loader(self, *, num_workers: int = 0, persistent_workers: bool = False, pin_memory: bool = False,
               prefetch_factor: int | None = None, **options: Any) -> DataLoader[Any]:
        """A DataLoader over these batches (``batch_size=None``: the dataset batches itself).

        Workers are spawned (``multiprocessing_context`` overrides; a forked worker can deadlock in
        librdkafka or Polars) and each opens its own consumer when it starts reading;
        ``persistent_workers`` keep them across epochs, and ``set_epoch`` still reaches them.
        """
        if num_workers:
            options.setdefault("prefetch_factor", prefetch_factor or 2)
            options["persistent_workers"] = persistent_workers
            # spawn, not fork: neither librdkafka nor Polars' thread pool survive a fork of a process using them
            options.setdefault("multiprocessing_context", "spawn")
        return DataLoader(self, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **options)


# -- Keras ----------------------------------------------------------------------------------
def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise ConfigError("Dataset.to_keras() needs Keras 3", hint="pip install 'streamml[deep]'") from exc
    return keras


class _KerasSource(_Source):
    """The Keras dataset's logic; :func:`make_keras_dataset` mixes it into ``keras.utils.PyDataset``.

    Keras' PyDataset is indexed (``len`` batches, ``ds[i]``), so the shard's rows are read
    into memory once (``X``, ``y`` arrays); each epoch then reorders them in memory with the
    same shuffle window and seed as :class:`TorchTopicDataset` (equal batches for the same
    shard). ``on_epoch_end`` advances the epoch, so ``fit`` reshuffles every epoch.
    """

    def _setup(self, dtype: Any) -> None:
        self.np_dtype = np.dtype(dtype)
        self._rows: Arrays | None = None
        self._batches: list[Arrays] | None = None
        self._batches_epoch = -1

    def rows(self) -> Arrays:
        if self._rows is None:
            index, count = current_shard(self.rank, self.world_size)
            ranges = shard_ranges(self.dataset.ranges, index, count)
            parts = list(self.chunks(ranges, self.np_dtype)) if ranges else []
            if parts:
                self._rows = _cat(parts)
            else:
                X = np.zeros((0, len(self.features)), dtype=self.np_dtype)
                self._rows = (X, np.zeros(0, dtype=np.int64)) if self.supervised else (X,)
            if len(self._rows) == 2:
                self._rows = (self._rows[0], _label_array(self._rows[1], self.np_dtype))
        return self._rows

    def batches(self) -> list[Arrays]:
        if self._batches is None or self._batches_epoch != self.epoch:
            index, _ = current_shard(self.rank, self.world_size)
            rows = self.rows()
            self._batches = list(rebatch([rows], self.batch_size, shuffle_buffer=self.shuffle_buffer,
                                         rng=self.rng(index), drop_last=self.drop_last))
            self._batches_epoch = self.epoch
        return self._batches

    def __len__(self) -> int:
        n = len(self.rows()[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __getitem__(self, i: int) -> Arrays:
        return self.batches()[i]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


_KERAS_CLASS: Any = None


def _keras_class() -> Any:
    global _KERAS_CLASS
    if _KERAS_CLASS is None:
        keras = _keras()

        class KerasTopicDataset(_KerasSource, keras.utils.PyDataset):  # type: ignore[misc, name-defined]
            __doc__ = _KerasSource.__doc__

            def __init__(self, ds: "Dataset", *, batch_size: int = 256, shuffle_buffer: int = 0, epoch: int = 0,
                         dtype: Any = "float32", drop_last: bool = False, rank: int | None = None,
                         world_size: int | None = None, **keras_options: Any) -> None:
                keras.utils.PyDataset.__init__(self, **keras_options)
                _Source.__init__(self, ds, batch_size=batch_size, shuffle_buffer=shuffle_buffer, epoch=epoch,
                                 drop_last=drop_last, rank=rank, world_size=world_size)
                self._setup(dtype)

        KerasTopicDataset.__module__, KerasTopicDataset.__qualname__ = __name__, "KerasTopicDataset"
        _KERAS_CLASS = KerasTopicDataset
    return _KERAS_CLASS


def make_keras_dataset(ds: "Dataset", **options: Any) -> Any:
    """A ``keras.utils.PyDataset`` over ``ds`` (see :class:`_KerasSource`); ``workers``,
    ``use_multiprocessing`` and ``max_queue_size`` go to Keras."""
    return _keras_class()(ds, **options)


def __getattr__(name: str) -> Any:  # KerasTopicDataset is made when first asked for (Keras imports slowly)
    if name == "KerasTopicDataset":
        return _keras_class()
    raise AttributeError(name)
