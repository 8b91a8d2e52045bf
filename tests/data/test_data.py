"""Dataset loaders: tiny files in every supported format, written here and read back."""

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from ntkplast import data
from ntkplast.errors import NtkplastError

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------- writers

def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    """An IDX file of unsigned bytes, written from the format's definition."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def mnist_arrays(ntrain=6, ntest=4, hw=(28, 28)):
    return {
        "x_train": RNG.integers(0, 256, (ntrain, *hw), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, ntrain).astype(np.uint8),
        "x_test": RNG.integers(0, 256, (ntest, *hw), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, ntest).astype(np.uint8),
    }


def write_mnist_idx(folder: Path, arrs, gz=False) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "xtr": write_idx(folder / "train-images-idx3-ubyte", arrs["x_train"], gz),
        "ytr": write_idx(folder / "train-labels-idx1-ubyte", arrs["y_train"], gz),
        "xte": write_idx(folder / "t10k-images-idx3-ubyte", arrs["x_test"], gz),
        "yte": write_idx(folder / "t10k-labels-idx1-ubyte", arrs["y_test"], gz),
    }


def cifar_reference(raw: np.ndarray) -> np.ndarray:
    """N×3072 channel-major rows → N×32×32×3 in [0, 1], one channel at a time."""
    out = np.empty((len(raw), 32, 32, 3), np.float32)
    for c in range(3):
        out[..., c] = raw[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32) / np.float32(255)
    return out


def cifar_batches(counts, k):
    return [(RNG.integers(0, 256, (n, 3072), dtype=np.uint8), RNG.integers(0, k, n))
            for n in counts]


def write_cifar10_bin(root: Path, batches) -> list[Path]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    paths = []
    for name, (x, y) in zip(names, batches, strict=True):
        recs = np.concatenate([y.astype(np.uint8)[:, None], x], axis=1)
        (folder / name).write_bytes(recs.tobytes())
        paths.append(folder / name)
    return paths


def write_cifar100_bin(root: Path, batches, coarse=None) -> list[Path]:
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    paths = []
    for name, (x, y) in zip(["train.bin", "test.bin"], batches, strict=True):
        c = (y // 5) if coarse is None else coarse
        recs = np.concatenate([c.astype(np.uint8)[:, None], y.astype(np.uint8)[:, None], x], 1)
        (folder / name).write_bytes(recs.tobytes())
        paths.append(folder / name)
    return paths


def write_cifar_py(root: Path, name: str, batches, bytes_keys=True, protocol=2) -> list[Path]:
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key = "labels"
    else:
        folder = root / "cifar-100-python"
        files, label_key = ["train", "test"], "fine_labels"
    folder.mkdir(parents=True)
    paths = []
    for fname, (x, y) in zip(files, batches, strict=True):
        d = {"data": x, label_key: [int(v) for v in y], "batch_label": "test batch"}
        if name == "cifar100":
            d["coarse_labels"] = [int(v) // 5 for v in y]
        if bytes_keys:
            d = {k.encode(): v for k, v in d.items()}
        with open(folder / fname, "wb") as f:
            pickle.dump(d, f, protocol=protocol)
        paths.append(folder / fname)
    return paths


def _py2_str(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _py2_int(v: int) -> bytes:
    return (b"K" + bytes([v])) if 0 <= v < 256 else (b"J" + struct.pack("<i", v))


def _py2_array(a: np.ndarray) -> bytes:
    """A uint8 array as Python 2's cPickle (protocol 2) with numpy 1.x wrote it."""
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
             + _py2_int(0) + b"tb")
    shape = b"(" + b"".join(_py2_int(s) for s in a.shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0)
            + b"\x85" + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + shape + dtype
            + b"\x89" + _py2_str(a.tobytes()) + b"tb")


def py2_pickle(d: dict) -> bytes:
    """A dict of str keys → arrays or int lists, as the official (Python 2) CIFAR files are."""
    body = b""
    for k, v in d.items():
        body += _py2_str(k)
        if isinstance(v, np.ndarray):
            body += _py2_array(v)
        else:
            body += b"](" + b"".join(_py2_int(int(i)) for i in v) + b"e"
    return b"\x80\x02}(" + body + b"u."


# ------------------------------------------------------------------------------------ digits

def test_digits_shapes_values_and_split():
    from sklearn.datasets import load_digits

    ds = data.load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert 0.19 < len(ds.y_test) / 1797 < 0.21
    assert ds.x_train.min() >= 0 and ds.x_train.max() == 1.0
    # stratified: every class in both parts, in proportion
    for c in range(10):
        ntr, nte = np.sum(ds.y_train == c), np.sum(ds.y_test == c)
        assert abs(nte / (ntr + nte) - 0.2) < 0.01
    # train ∪ test is exactly the bundled set (as multisets of image+label rows)
    ref = load_digits()
    ref_rows = np.concatenate([ref.images.reshape(-1, 64) / 16, ref.target[:, None]], 1)
    ours = np.concatenate([np.concatenate([ds.x_train, ds.x_test]).reshape(-1, 64),
                           np.concatenate([ds.y_train, ds.y_test])[:, None]], 1)
    np.testing.assert_allclose(np.unique(ours, axis=0), np.unique(ref_rows, axis=0), atol=1e-7)
    again = data.load_dataset("digits")
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    np.testing.assert_array_equal(ds.y_train, again.y_train)
    assert not ds.x_train.flags.writeable


def test_unknown_dataset():
    with pytest.raises(NtkplastError, match="unknown dataset 'svhn'.*cifar100"):
        data.load_dataset("svhn")


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.resolve_data_dir() == Path("~/.cache/ntkplast/data").expanduser()
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir("~/x") == Path.home() / "x"


# ------------------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_idx_roundtrip(tmp_path, name, gz):
    arrs = mnist_arrays()
    write_mnist_idx(tmp_path / name, arrs, gz=gz)
    ds = data.load_dataset(name, tmp_path)
    assert ds.name == name and ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train[..., 0], arrs["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.x_test[..., 0], arrs["x_test"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrs["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrs["y_test"])


def test_mnist_data_dir_from_env(tmp_path, monkeypatch):
    arrs = mnist_arrays()
    write_mnist_idx(tmp_path / "mnist", arrs)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    np.testing.assert_array_equal(data.load_dataset("mnist").y_train, arrs["y_train"])


def test_mnist_npz(tmp_path):
    arrs = mnist_arrays()
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", **arrs)
    ds = data.load_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(ds.x_test[..., 0], arrs["x_test"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrs["y_train"])


def test_mnist_missing_files_message(tmp_path):
    arrs = mnist_arrays()
    paths = write_mnist_idx(tmp_path / "mnist", arrs)
    paths["yte"].unlink()
    with pytest.raises(NtkplastError) as e:
        data.load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images" not in msg
    assert str(tmp_path / "mnist") in msg and "mnist.npz" in msg
    assert "ossci-datasets" in msg and "never downloads" in msg


def test_fashion_missing_names_source(tmp_path, monkeypatch):
    monkeypatch.setattr(data.datasets, "SYSTEM_DIRS", {})  # not the machine's installed copy
    with pytest.raises(NtkplastError, match="zalandoresearch"):
        data.load_dataset("fashion_mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    paths = write_mnist_idx(tmp_path / "mnist", mnist_arrays(), gz=gz)
    p = paths["xtr"]
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(NtkplastError, match=str(p).replace("\\", "\\\\")):
        data.load_dataset("mnist", tmp_path)


def test_idx_too_long(tmp_path):
    paths = write_mnist_idx(tmp_path / "mnist", mnist_arrays())
    p = paths["ytr"]
    p.write_bytes(p.read_bytes() + b"\x00")
    with pytest.raises(NtkplastError, match="train-labels-idx1-ubyte.*file has"):
        data.load_dataset("mnist", tmp_path)


def test_idx_wrong_magic(tmp_path):
    arrs = mnist_arrays()
    paths = write_mnist_idx(tmp_path / "mnist", arrs)
    write_idx(paths["ytr"], arrs["y_train"][:, None])  # a 2-d file: magic 0x00000802
    with pytest.raises(NtkplastError, match="magic number 0x00000801, got 0x00000802"):
        data.load_dataset("mnist", tmp_path)
    raw = bytearray(paths["xte"].read_bytes())
    raw[2] = 0x0D  # float type byte
    paths["xte"].write_bytes(bytes(raw))
    with pytest.raises(NtkplastError, match="magic"):
        data.read_idx(paths["xte"], 3)


def test_idx_header_truncated(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(NtkplastError, match="truncated IDX header"):
        data.read_idx(p, 3)
    p.write_bytes(b"\x00")
    with pytest.raises(NtkplastError, match="magic"):
        data.read_idx(p, 1)


def test_idx_label_out_of_range(tmp_path):
    arrs = mnist_arrays()
    arrs["y_test"][1] = 10
    write_mnist_idx(tmp_path / "mnist", arrs)
    with pytest.raises(NtkplastError, match="t10k-labels-idx1-ubyte: labels must lie in 0..9"):
        data.load_dataset("mnist", tmp_path)


def test_idx_count_mismatch(tmp_path):
    arrs = mnist_arrays()
    arrs["y_train"] = arrs["y_train"][:-1]
    write_mnist_idx(tmp_path / "mnist", arrs)
    with pytest.raises(NtkplastError, match="6 images but .* 5 labels"):
        data.load_dataset("mnist", tmp_path)


def test_idx_corrupt_gzip(tmp_path):
    paths = write_mnist_idx(tmp_path / "mnist", mnist_arrays(), gz=True)
    paths["xte"].write_bytes(b"this is not gzip data at all")
    with pytest.raises(NtkplastError, match="t10k-images-idx3-ubyte.gz"):
        data.load_dataset("mnist", tmp_path)


def test_npz_object_array_refused(tmp_path):
    arrs = mnist_arrays()
    arrs["y_train"] = np.array([1, "two", None], dtype=object)
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", **arrs)
    with pytest.raises(NtkplastError, match="mnist.npz.*object arrays are refused"):
        data.load_dataset("mnist", tmp_path)


def test_npz_missing_key_and_truncated(tmp_path):
    arrs = mnist_arrays()
    del arrs["y_test"]
    (tmp_path / "mnist").mkdir()
    p = tmp_path / "mnist" / "mnist.npz"
    np.savez(p, **arrs)
    with pytest.raises(NtkplastError, match="missing \\['y_test'\\]"):
        data.load_dataset("mnist", tmp_path)
    np.savez(p, **mnist_arrays())
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(NtkplastError, match="mnist.npz"):
        data.load_dataset("mnist", tmp_path)


def test_npz_float_images_refused(tmp_path):
    arrs = mnist_arrays()
    arrs["x_train"] = arrs["x_train"].astype(np.float64)
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", **arrs)
    with pytest.raises(NtkplastError, match=r"x_train\]: expected uint8"):
        data.load_dataset("mnist", tmp_path)


# ------------------------------------------------------------------------------------- CIFAR

def test_cifar10_bin(tmp_path):
    batches = cifar_batches([3, 2, 2, 1, 2, 4], 10)
    write_cifar10_bin(tmp_path, batches)
    ds = data.load_dataset("cifar10", tmp_path)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    xtr = np.concatenate([x for x, _ in batches[:5]])
    ytr = np.concatenate([y for _, y in batches[:5]])
    np.testing.assert_array_equal(ds.x_train, cifar_reference(xtr))
    np.testing.assert_array_equal(ds.y_train, ytr)
    np.testing.assert_array_equal(ds.x_test, cifar_reference(batches[5][0]))
    np.testing.assert_array_equal(ds.y_test, batches[5][1])
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32


def test_cifar10_bin_pixel_layout(tmp_path):
    """Pixel (h, w) of channel c sits at byte c·1024 + h·32 + w of the record's image."""
    batches = cifar_batches([1] * 6, 10)
    write_cifar10_bin(tmp_path, batches)
    ds = data.load_dataset("cifar10", tmp_path)
    raw = batches[0][0][0]
    for c, h, w in [(0, 0, 1), (1, 5, 7), (2, 31, 30)]:
        assert ds.x_train[0, h, w, c] == np.float32(raw[c * 1024 + h * 32 + w]) / np.float32(255)


def test_cifar100_bin_fine_labels(tmp_path):
    batches = cifar_batches([5, 3], 100)
    write_cifar100_bin(tmp_path, batches)
    ds = data.load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.y_train, batches[0][1])
    np.testing.assert_array_equal(ds.y_test, batches[1][1])
    np.testing.assert_array_equal(ds.x_test, cifar_reference(batches[1][0]))


def test_cifar_bin_truncated_and_bad_labels(tmp_path):
    batches = cifar_batches([2] * 6, 10)
    paths = write_cifar10_bin(tmp_path, batches)
    good = paths[2].read_bytes()
    paths[2].write_bytes(good[:-1])
    with pytest.raises(NtkplastError, match="data_batch_3.bin: size 6145 bytes"):
        data.load_dataset("cifar10", tmp_path)
    bad = bytearray(good)
    bad[3073] = 10  # second record's label
    paths[2].write_bytes(bytes(bad))
    with pytest.raises(NtkplastError, match="data_batch_3.bin: labels must lie in 0..9"):
        data.load_dataset("cifar10", tmp_path)


def test_cifar100_bin_bad_coarse(tmp_path):
    batches = cifar_batches([2, 2], 100)
    write_cifar100_bin(tmp_path, batches, coarse=np.array([3, 20]))
    with pytest.raises(NtkplastError, match="coarse labels must lie in 0..19"):
        data.load_dataset("cifar100", tmp_path)


def test_cifar_missing_message(tmp_path):
    batches = cifar_batches([1] * 6, 10)
    paths = write_cifar10_bin(tmp_path, batches)
    paths[4].unlink()
    with pytest.raises(NtkplastError) as e:
        data.load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "data_batch_5.bin" in msg and str(tmp_path / "cifar-10-batches-bin") in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "toronto.edu/~kriz" in msg
    with pytest.raises(NtkplastError, match="cifar-100-binary.*train.bin, test.bin"):
        data.load_dataset("cifar100", tmp_path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_python(tmp_path, protocol, bytes_keys):
    batches = cifar_batches([2, 1, 3, 1, 2, 2], 10)
    write_cifar_py(tmp_path, "cifar10", batches, bytes_keys, protocol)
    ds = data.load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.x_train, cifar_reference(
        np.concatenate([x for x, _ in batches[:5]])))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([y for _, y in batches[:5]]))
    np.testing.assert_array_equal(ds.y_test, batches[5][1])


def test_cifar100_python(tmp_path):
    batches = cifar_batches([4, 3], 100)
    write_cifar_py(tmp_path, "cifar100", batches)
    ds = data.load_dataset("cifar100", tmp_path)
    np.testing.assert_array_equal(ds.y_train, batches[0][1])
    np.testing.assert_array_equal(ds.x_test, cifar_reference(batches[1][0]))


def test_cifar_python2_pickle(tmp_path):
    """The official files are Python 2 pickles: byte-string keys, numpy.core globals."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batches = cifar_batches([3, 2], 100)
    for name, (x, y) in zip(["train", "test"], batches, strict=True):
        (folder / name).write_bytes(py2_pickle({
            b"filenames": [], b"batch_label": b"training batch 1 of 1", b"fine_labels": list(y),
            b"coarse_labels": list(y // 5), b"data": x}))
    ds = data.load_dataset("cifar100", tmp_path)
    np.testing.assert_array_equal(ds.y_train, batches[0][1])
    np.testing.assert_array_equal(ds.x_train, cifar_reference(batches[0][0]))
    np.testing.assert_array_equal(ds.x_test, cifar_reference(batches[1][0]))


def test_bin_preferred_over_python(tmp_path):
    b_bin, b_py = cifar_batches([1] * 6, 10), cifar_batches([1] * 6, 10)
    write_cifar10_bin(tmp_path, b_bin)
    write_cifar_py(tmp_path, "cifar10", b_py)
    ds = data.load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.x_test, cifar_reference(b_bin[5][0]))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilWrite:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("evil", [_Evil, _EvilWrite])
def test_cifar_python_malicious_pickle_refused(tmp_path, evil):
    marker = tmp_path / "MARKER"
    batches = cifar_batches([1] * 6, 10)
    paths = write_cifar_py(tmp_path, "cifar10", batches)
    with open(paths[3], "wb") as f:
        pickle.dump({b"data": batches[3][0], b"labels": evil(marker)}, f, protocol=2)
    refused = "data_batch_4: refused to unpickle (posix|nt|__builtin__|builtins)"
    with pytest.raises(NtkplastError, match=refused):
        data.load_dataset("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar_python_malicious_eval_refused(tmp_path):
    marker = tmp_path / "MARKER"
    batches = cifar_batches([1, 1], 100)
    paths = write_cifar_py(tmp_path, "cifar100", batches)
    payload = (b"\x80\x02cbuiltins\nexec\n" + _py2_str(
        f"open({str(marker)!r}, 'w').write('x')".encode()) + b"\x85R.")
    paths[0].write_bytes(payload)
    with pytest.raises(NtkplastError, match="refused to unpickle builtins.exec"):
        data.load_dataset("cifar100", tmp_path)
    assert not marker.exists()


def test_cifar_python_corrupt(tmp_path):
    batches = cifar_batches([2] * 6, 10)
    paths = write_cifar_py(tmp_path, "cifar10", batches)
    paths[0].write_bytes(paths[0].read_bytes()[:100])
    with pytest.raises(NtkplastError, match="data_batch_1: cannot read it as a pickled"):
        data.load_dataset("cifar10", tmp_path)
    paths[0].write_bytes(b"garbage" * 10)
    with pytest.raises(NtkplastError, match="data_batch_1"):
        data.load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("case", ["not_dict", "no_labels", "bad_shape", "label_range", "count"])
def test_cifar_python_bad_content(tmp_path, case):
    batches = cifar_batches([2] * 6, 10)
    paths = write_cifar_py(tmp_path, "cifar10", batches)
    x, y = batches[5]
    obj = {b"data": x, b"labels": [int(v) for v in y]}
    if case == "not_dict":
        obj = [x, y]
    elif case == "no_labels":
        del obj[b"labels"]
    elif case == "bad_shape":
        obj[b"data"] = x[:, :100]
    elif case == "label_range":
        obj[b"labels"][0] = 12
    elif case == "count":
        obj[b"labels"] = obj[b"labels"][:1]
    with open(paths[5], "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(NtkplastError, match="test_batch"):
        data.load_dataset("cifar10", tmp_path)


def test_dataset_checks():
    x = np.zeros((3, 2, 2, 1), np.float32)
    y = np.zeros(3, np.int32)
    ds = data.Dataset("toy", x, y, x, y, 2)
    assert ds.input_shape == (2, 2, 1)
    with pytest.raises(NtkplastError, match="x_train must be a float32"):
        data.Dataset("toy", x.astype(np.float64), y, x, y, 2)
    with pytest.raises(NtkplastError, match="y_test must be an int32"):
        data.Dataset("toy", x, y, x, y.astype(np.int64), 2)
    with pytest.raises(NtkplastError, match="labels in"):
        data.Dataset("toy", x, y + 2, x, y, 2)
    with pytest.raises(NtkplastError, match="3 examples but y_test has 2"):
        data.Dataset("toy", x, y, x, y[:2], 2)
