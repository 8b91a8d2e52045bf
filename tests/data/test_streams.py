"""Task streams: determinism, and what each kind of task must contain."""

import numpy as np
import pytest

from ntkplast import data
from ntkplast.data import streams
from ntkplast.data.streams import StreamSpec, make_stream
from ntkplast.errors import NtkplastError


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def toy_dataset(num_classes=6, n_per_class=5, shape=(3, 4, 2), name="toy"):
    """Every image is the same ramp of distinct values, so a pixel permutation can be read off."""
    d = int(np.prod(shape))
    ytr = np.repeat(np.arange(num_classes), n_per_class).astype(np.int32)
    yte = np.arange(num_classes, dtype=np.int32)
    ramp = (np.arange(d, dtype=np.float32) / d).reshape(shape)
    xtr = np.broadcast_to(ramp, (len(ytr), *shape)).copy()
    xte = np.broadcast_to(ramp, (len(yte), *shape)).copy()
    return data.Dataset(name, xtr, ytr, xte, yte, num_classes)


def same_task(a, b):
    for f in ("x_train", "y_train", "x_test", "y_test"):
        if not np.array_equal(getattr(a, f), getattr(b, f)):
            return False
    return a.classes == b.classes


@pytest.mark.parametrize("kind", streams.IMAGE_KINDS)  # the regression: test_plasticity_streams
def test_determinism_and_seed(digits, kind):
    spec = StreamSpec(kind=kind, num_tasks=6, train_size=200)
    s1, s2 = make_stream(spec, digits), make_stream(spec, digits)
    s3 = make_stream(StreamSpec(kind=kind, num_tasks=6, train_size=200, seed=1), digits)
    for t in (4, 0, 4, 1):  # any order, repeated access
        assert same_task(s1[t], s2[t])
        assert s1[t].index == t
    assert not all(same_task(s1[t], s3[t]) for t in range(3))
    assert not same_task(s1[0], s1[1])
    for task in s1:
        assert task.x_train.dtype == np.float32 and task.x_test.dtype == np.float32
        assert task.y_train.dtype == np.int32 and task.y_test.dtype == np.int32
        assert task.x_train.shape[1:] == s1.input_shape == (8, 8, 1)
        assert len(task.y_train) <= 200
        assert set(task.classes) == set(np.concatenate([task.y_train, task.y_test]).tolist())


def test_sequence_protocol(digits):
    s = make_stream({"kind": "shuffled_labels", "num_tasks": 4}, digits)
    assert len(s) == 4 and s.num_classes == 10 and s.input_shape == (8, 8, 1)
    assert [t.index for t in s] == [0, 1, 2, 3]
    assert s[-1].index == 3 and [t.index for t in s[1:3]] == [1, 2]
    with pytest.raises(IndexError):
        s[4]
    with pytest.raises(NtkplastError, match="integer"):
        s["1"]
    assert "shuffled_labels" in repr(s)


def test_permuted_is_true_permutation(digits):
    s = make_stream(StreamSpec(kind="permuted", num_tasks=3), digits)
    for task in s:
        for x, ref in ((task.x_train, digits.x_train), (task.x_test, digits.x_test)):
            assert x.shape == ref.shape
            np.testing.assert_array_equal(np.sort(x.reshape(len(x), -1), 1),
                                          np.sort(ref.reshape(len(ref), -1), 1))
        np.testing.assert_array_equal(task.y_train, digits.y_train)
        np.testing.assert_array_equal(task.y_test, digits.y_test)
        assert not np.array_equal(task.x_train, digits.x_train)  # task 0 is permuted too


def test_permuted_same_permutation_train_and_test():
    ds = toy_dataset()
    d = int(np.prod(ds.input_shape))
    s = make_stream(StreamSpec(kind="permuted", num_tasks=3), ds)
    perms = []
    for task in s:
        flat = np.concatenate([task.x_train, task.x_test]).reshape(-1, d)
        perm = np.rint(flat * d).astype(int)  # position each pixel came from
        assert (perm == perm[0]).all()  # one permutation for every train and test image
        np.testing.assert_array_equal(np.sort(perm[0]), np.arange(d))
        perms.append(perm[0])
    assert not np.array_equal(perms[0], perms[1])


def test_split_classes_and_cycles(digits):
    s = make_stream(StreamSpec(kind="split", num_tasks=50, classes_per_task=2), digits)
    assert len(s) == 50
    for cycle in range(10):
        seen = []
        for t in range(5 * cycle, 5 * cycle + 5):
            task = s[t]
            assert len(task.classes) == 2 and task.classes == s.split_classes(t)
            assert set(task.y_train.tolist()) == set(task.classes)
            assert set(task.y_test.tolist()) == set(task.classes)
            # exactly the dataset's examples of these classes, original labels kept
            mask = np.isin(digits.y_train, task.classes)
            np.testing.assert_array_equal(task.x_train, digits.x_train[mask])
            np.testing.assert_array_equal(task.y_train, digits.y_train[mask])
            assert len(task.y_test) == np.isin(digits.y_test, task.classes).sum()
            seen += task.classes
        assert sorted(seen) == list(range(10))  # each cycle covers every class once
    orders = {tuple(s.split_classes(t) for t in range(5 * c, 5 * c + 5)) for c in range(10)}
    assert len(orders) > 1  # cycles are re-drawn


def test_split_cifar100_shape():
    ds = toy_dataset(num_classes=100, n_per_class=1, shape=(2, 2, 1))
    s = make_stream(StreamSpec(kind="split", dataset="cifar100", num_tasks=20,
                               classes_per_task=5), ds)
    assert sorted(c for t in s for c in t.classes) == list(range(100))


def test_split_classes_must_divide(digits):
    with pytest.raises(NtkplastError, match="classes_per_task: 3 does not divide the 10.*"
                                            r"\[1, 2, 5, 10\]"):
        StreamSpec(kind="split", classes_per_task=3)
    StreamSpec(kind="permuted", classes_per_task=3)  # ignored by other kinds
    with pytest.raises(NtkplastError, match="does not divide the 6 classes of dataset 'toy'"):
        make_stream(StreamSpec(kind="split", classes_per_task=5), toy_dataset())


def test_shuffled_labels_bijection(digits):
    s = make_stream(StreamSpec(kind="shuffled_labels", num_tasks=4), digits)
    mappings = []
    for task in s:
        np.testing.assert_array_equal(task.x_train, digits.x_train)
        mapping = {}
        for orig, new in zip(np.concatenate([digits.y_train, digits.y_test]),
                             np.concatenate([task.y_train, task.y_test]), strict=True):
            assert mapping.setdefault(int(orig), int(new)) == int(new)  # one label per class
        assert sorted(mapping) == sorted(mapping.values()) == list(range(10))  # bijection
        mappings.append(mapping)
    assert mappings[0] != mappings[1]


def test_random_labels(digits):
    s = make_stream(StreamSpec(kind="random_labels", num_tasks=2), digits)
    t0, t1 = s[0], s[1]
    np.testing.assert_array_equal(t0.x_train, digits.x_train)
    for y in (t0.y_train, t0.y_test):
        assert y.min() >= 0 and y.max() < 10
    assert np.mean(t0.y_train == digits.y_train) < 0.2  # about chance, 0.1
    assert np.mean(t0.y_train == t1.y_train) < 0.2
    assert len(np.unique(t0.y_train)) == 10


def test_train_size_subsample(digits):
    s = make_stream(StreamSpec(kind="shuffled_labels", num_tasks=2, train_size=100), digits)
    a, b = s[0], s[1]
    assert len(a.y_train) == 100 and len(a.y_test) == len(digits.y_test)
    rows = {r.tobytes() for r in digits.x_train.reshape(len(digits.x_train), -1)}
    assert all(r.tobytes() in rows for r in a.x_train.reshape(100, -1))
    assert not np.array_equal(a.x_train, b.x_train)  # a fresh subset per task
    big = make_stream(StreamSpec(kind="split", num_tasks=1, train_size=10**6), digits)[0]
    assert len(big.y_train) == np.isin(digits.y_train, big.classes).sum()


def test_spec_round_trip_and_errors():
    spec = StreamSpec(kind="split", dataset="cifar100", num_tasks=20, classes_per_task=5,
                      train_size=500, seed=3, data_dir="/data")
    d = spec.to_dict()
    assert d == {"kind": "split", "dataset": "cifar100", "num_tasks": 20,
                 "classes_per_task": 5, "train_size": 500, "seed": 3, "data_dir": "/data"}
    assert StreamSpec.from_dict(d) == spec
    assert StreamSpec.from_dict({}) == StreamSpec()
    with pytest.raises(NtkplastError, match=r"stream: unknown key\(s\) \['num_task'\].*"
                                            r"'classes_per_task'.*'num_tasks'"):
        StreamSpec.from_dict({"num_task": 3})
    with pytest.raises(NtkplastError, match="cfg.stream.num_tasks: expected int"):
        StreamSpec.from_dict({"num_tasks": "3"}, where="cfg.stream")
    with pytest.raises(NtkplastError, match="seed"):
        StreamSpec.from_dict({"seed": True})
    with pytest.raises(NtkplastError, match="unknown stream kind 'rotated'"):
        StreamSpec.from_dict({"kind": "rotated"})
    with pytest.raises(NtkplastError, match="unknown dataset 'svhn'"):
        StreamSpec(dataset="svhn")
    with pytest.raises(NtkplastError, match="num_tasks: expected an integer >= 1, got 0"):
        StreamSpec(num_tasks=0)
    with pytest.raises(NtkplastError, match="train_size"):
        StreamSpec(train_size=0)
    with pytest.raises(NtkplastError, match="seed"):
        StreamSpec(seed=-1)
    with pytest.raises(NtkplastError, match="expected a StreamSpec"):
        make_stream(["permuted"])


def test_make_stream_loads_files(tmp_path):
    with pytest.raises(NtkplastError, match="train-images-idx3-ubyte"):
        make_stream({"dataset": "mnist", "data_dir": str(tmp_path)})
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrs = {"x_train": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
            "y_train": np.arange(8) % 10, "x_test": rng.integers(0, 256, (3, 28, 28),
                                                                  dtype=np.uint8),
            "y_test": np.arange(3)}
    np.savez(folder / "mnist.npz", **arrs)
    s = make_stream({"kind": "permuted", "dataset": "mnist", "num_tasks": 2,
                     "data_dir": str(tmp_path)})
    assert s.input_shape == (28, 28, 1) and s[1].x_train.shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(np.sort(s[1].x_test.reshape(3, -1), 1),
                                  np.sort(arrs["x_test"].reshape(3, -1), 1) / np.float32(255))


@pytest.mark.parametrize("kind", ["permuted", "split", "shuffled_labels", "random_labels"])
def test_test_set_equals_full_task(kind):
    stream = make_stream(StreamSpec(kind=kind, num_tasks=4, train_size=100))
    for t in (3, 1):
        x, y = stream.test_set(t)
        s2 = make_stream(StreamSpec(kind=kind, num_tasks=4, train_size=100))
        full = s2[t]
        np.testing.assert_array_equal(x, full.x_test)
        np.testing.assert_array_equal(y, full.y_test)
