"""Streaming torch / Keras datasets over a pinned Dataset, against a real broker:
sharding across DataLoader workers and ranks (every row exactly once), seeded order, Keras."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import orjson
import pytest

from streamml.config import Settings
from streamml.kafka import clients
from streamml.train import Dataset

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

N = 3000


def produce(settings: Settings, topic: str, n: int, partitions: int) -> list[int]:
    """``n`` records with a numeric ``id`` feature, spread round-robin over the partitions."""
    p = clients.producer(settings, linger_ms=5)
    for i in range(n):
        rec = {"event_id": f"e{i}", "id": i, "x": float(i % 17) / 17.0, "label": int(i % 3 == 0)}
        p.produce(topic, orjson.dumps(rec), f"e{i}".encode(), partition=i % partitions)
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(30) == 0
    return list(range(n))


def ids_of(batches: list) -> list[int]:
    return [int(v) for b in batches for v in b[0][:, 0].tolist()]


def assert_exactly_once(got: list[int], expected: list[int]) -> None:
    dups = [k for k, c in Counter(got).items() if c > 1]
    assert not dups, f"{len(dups)} ids read twice, e.g. {dups[:5]}"
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} ids never read, e.g. {sorted(missing)[:5]}"
    assert len(got) == len(expected)


@pytest.fixture
def dataset(settings: Settings, new_topic: Callable[..., str], request: pytest.FixtureRequest) -> Dataset:
    parts = getattr(request, "param", 3)
    topic = new_topic("deep", partitions=parts)
    produce(settings, topic, N, parts)
    return Dataset.from_topics(settings, topic, features=["id", "x"], seed=11, batch_rows=700)


@pytest.mark.parametrize("dataset", [3, 1], indirect=True, ids=["3-partitions", "1-partition-offset-split"])
def test_two_workers_read_every_row_once_per_epoch(dataset: Dataset) -> None:
    loader = dataset.torch_loader(batch_size=128, num_workers=2, persistent_workers=True, shuffle_buffer=500)
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        batches = list(loader)
        assert all(len(b) == 2 for b in batches)
        X, y = batches[0]
        assert X.dtype == torch.float32 and X.shape[1] == 2 and y.dtype == torch.int64
        got = ids_of(batches)
        assert_exactly_once(got, list(range(N)))
        # labels travel with their rows
        for Xb, yb in batches:
            ids = Xb[:, 0].to(torch.int64)
            assert torch.equal(yb, (ids % 3 == 0).to(torch.int64))
        # each of the two workers read only its own shard: batch sizes are full but for the last of each shard
        assert sum(len(b[0]) < 128 for b in batches) <= 2
    # one partition: the two workers split its offsets into two contiguous slices
    if len(dataset.ranges) == 1:
        shard_ids = [ids_of(list(dataset.to_torch(batch_size=128, rank=r, world_size=2))) for r in range(2)]
        assert max(shard_ids[0]) < min(shard_ids[1])


def test_simulated_ranks_are_disjoint_and_cover_all(dataset: Dataset) -> None:
    shards = [dataset.to_torch(batch_size=100, shuffle_buffer=300, rank=r, world_size=2) for r in range(2)]
    got = [ids_of(list(s)) for s in shards]
    assert got[0] and got[1]
    assert not set(got[0]) & set(got[1])
    assert_exactly_once(got[0] + got[1], list(range(N)))
    # ranks x workers: 2 ranks with 2 workers each -> 4 shards over 3 partitions (offset slices), still once
    both = [ids_of(list(dataset.to_torch(batch_size=100, rank=r, world_size=2).loader(num_workers=2)))
            for r in range(2)]
    assert not set(both[0]) & set(both[1])
    assert_exactly_once(both[0] + both[1], list(range(N)))


def test_same_seed_same_batches_other_seed_or_epoch_differs(dataset: Dataset) -> None:
    def run(ds: Dataset, epoch: int = 0, workers: int = 0) -> list[list[int]]:
        it = ds.to_torch(batch_size=64, shuffle_buffer=800, epoch=epoch)
        return [b[0][:, 0].to(torch.int64).tolist() for b in it.loader(num_workers=workers)]

    a, b = run(dataset), run(Dataset.from_manifest(dataset.settings, dataset.manifest(), batch_rows=300))
    assert a == b  # same seed, different Kafka chunking: the same batches
    assert run(dataset, workers=2) == run(dataset, workers=2)
    assert sorted(sum(a, [])) == list(range(N))
    assert a != run(dataset, epoch=1)
    assert a != run(dataset.with_seed(12))
    plain = [b[0][:, 0].to(torch.int64).tolist() for b in dataset.to_torch(batch_size=64)]  # no shuffle
    assert a != plain
    assert sum(plain, []) == sorted(range(N), key=lambda i: (i % 3, i))  # (partition, offset) order
    # set_epoch on one dataset gives what epoch= gives
    it = dataset.to_torch(batch_size=64, shuffle_buffer=800)
    it.set_epoch(1)
    assert [x[0][:, 0].to(torch.int64).tolist() for x in it] == run(dataset, epoch=1)


def test_unsupervised_yields_features_only(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("deep", partitions=2)
    p = clients.producer(settings, linger_ms=5)
    for i in range(500):
        p.produce(topic, orjson.dumps({"event_id": f"e{i}", "id": i, "x": 0.5}), partition=i % 2)
    assert p.flush(30) == 0
    ds = Dataset.from_topics(settings, topic, features=["id", "x"])
    batches = list(ds.to_torch(batch_size=200, dtype="float64", drop_last=True))
    assert [len(b) for b in batches] == [1, 1]  # (X,) only; 500 rows -> 200 + 200, the last 100 dropped
    assert all(b[0].dtype == torch.float64 and b[0].shape == (200, 2) for b in batches)


@pytest.mark.parametrize("dataset", [3], indirect=True)
def test_keras_py_dataset_same_rows_once_per_epoch(dataset: Dataset) -> None:
    kds = dataset.to_keras(batch_size=128, shuffle_buffer=500)
    assert len(kds) == -(-N // 128)
    first = [kds[i] for i in range(len(kds))]
    assert all(len(b) == 2 and isinstance(b[0], np.ndarray) and b[0].dtype == np.float32 for b in first)
    assert_exactly_once(ids_of(first), list(range(N)))
    # the same batches as the torch dataset with the same seed, epoch and shard
    tb = list(dataset.to_torch(batch_size=128, shuffle_buffer=500))
    assert len(tb) == len(kds)
    for (kx, ky), (tx, ty) in zip(first, tb):
        np.testing.assert_array_equal(kx, tx.numpy())
        np.testing.assert_array_equal(ky, ty.numpy())
    # the next epoch: reshuffled, still every row once
    kds.on_epoch_end()
    second = [kds[i] for i in range(len(kds))]
    assert ids_of(second) != ids_of(first)
    assert_exactly_once(ids_of(second), list(range(N)))
    # two ranks of Keras: disjoint, complete
    ranks = [dataset.to_keras(batch_size=128, rank=r, world_size=2) for r in range(2)]
    got = [ids_of([k[i] for i in range(len(k))]) for k in ranks]
    assert not set(got[0]) & set(got[1])
    assert_exactly_once(got[0] + got[1], list(range(N)))
    # keras fit consumes it (torch backend)
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    hist = model.fit(dataset.to_keras(batch_size=256, shuffle_buffer=500), epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2
