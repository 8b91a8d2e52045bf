"""Every file reader of ntkplast as a fuzz target: bytes in, outcome out.

Readers: run manifest, checkpoint .npz, probe file (``analyze/import --probe``), IDX (plain,
gzip), CIFAR binary and python batches, TOML configs, sweep grids (with their points' configs),
metrics tables (CSV), the PyTorch importers (safetensors; .pt through torch.load(weights_only=True)
where torch is installed) and the JAX importers where flax and orbax are installed (Flax msgpack;
an Orbax checkpoint with one array's ``.zarray`` or its ``_METADATA`` replaced), each followed by
what consumes its output (params, a model spec).
A target writes the bytes where the reader expects a file and calls the reader. The outcome is
``"accepted"`` (read without error), ``"refused"`` (:class:`NtkplastError`, the only allowed
failure) or ``"crash:<ExceptionType>"`` (a bug). ``tests/system/test_fuzz.py`` drives these with
hypothesis; ``benchmarks/stress.py`` runs thousands of seeded mutations per reader.

Each reader has a valid seed file (:func:`seeds`) that mutations start from, so the fuzzing
reaches past the first magic-number check. :func:`hostile_structure` builds documents that parse
but attack the parser and the checks behind it (nesting thousands deep, integers of hundreds of
digits or just past int64, floats that overflow, a container where a scalar belongs, a CSV field
of 200,000 characters); :func:`special_outcome` puts a FIFO or a link to ``/dev/zero`` where the
reader expects its file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import json
import pickle
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ntkplast.convert.pytrees import pytree_to_params
from ntkplast.data import datasets as data
from ntkplast.errors import NtkplastError
from ntkplast.experiments import sweep
from ntkplast.runs import checkpoints, interop, jax_import, output_check
from ntkplast.table import Table
from ntkplast.training import config

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_FLAX = importlib.util.find_spec("flax") is not None
HAVE_ORBAX = HAVE_FLAX and importlib.util.find_spec("orbax") is not None
READERS = (("manifest", "npz", "probe", "idx", "idx_gz", "cifar_bin", "cifar_py", "toml", "grid",
            "csv", "safetensors") + (("torch",) if HAVE_TORCH else ())
           + (("msgpack",) if HAVE_FLAX else ())
           + (("orbax_zarray", "orbax_metadata") if HAVE_ORBAX else ()))
_ORBAX_FILES = {"orbax_zarray": "params.Dense_0.kernel/.zarray", "orbax_metadata": "_METADATA"}
JSON_READERS = ("manifest", "orbax_zarray", "orbax_metadata")
STRUCTURED = JSON_READERS + ("toml", "grid", "csv")  # text formats with a structure to attack

_TINY_MODEL = {"kind": "mlp", "widths": [3], "num_outputs": 2}
_TINY_SHAPE = [2]


def _tiny_params_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"params/0/W": rng.normal(size=(2, 3)).astype(np.float32),
            "params/0/b": np.zeros(3, np.float32),
            "params/1/W": rng.normal(size=(3, 2)).astype(np.float32),
            "params/1/b": np.zeros(2, np.float32)}


def _flax_tree() -> dict:
    rng = np.random.default_rng(0)
    return {"params": {"Dense_0": {"kernel": rng.normal(size=(2, 3)).astype(np.float32),
                                   "bias": np.zeros(3, np.float32)},
                       "Dense_1": {"kernel": rng.normal(size=(3, 2)).astype(np.float32),
                                   "bias": np.zeros(2, np.float32)}}}


@functools.lru_cache(maxsize=1)
def _orbax_seed() -> Path:
    """A valid Orbax checkpoint of :func:`_flax_tree` (zarr files, no OCDBT, so that each array's
    metadata is a file to fuzz), saved once per process."""
    import orbax.checkpoint as ocp

    folder = Path(tempfile.mkdtemp(prefix="ntkplast-fuzz-orbax-")) / "item"
    handler = ocp.PyTreeCheckpointHandler(use_ocdbt=False)
    ocp.Checkpointer(handler).save(folder, _flax_tree())
    return folder


def _orbax_item(folder: Path) -> Path:
    """The seed Orbax item copied into ``folder`` (once; a target rewrites one file of it)."""
    item = folder / "item"
    if not item.exists():
        shutil.copytree(_orbax_seed(), item)
    return item


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    """One valid file per reader."""
    manifest = {"format": checkpoints.FORMAT, "format_version": checkpoints.FORMAT_VERSION,
                "model": _TINY_MODEL, "input_shape": _TINY_SHAPE,
                "checkpoints": [{"file": "ckpt_00000000.npz", "step": 0, "task": 0,
                                 "kind": "init", "metrics": {"loss": 1.0}}]}
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    idx = b"\x00\x00\x08\x03" + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    idx += images.tobytes()
    rec = np.zeros((2, 1 + 3072), np.uint8)
    rec[:, 0] = [3, 7]
    rec[:, 1:] = np.arange(3072) % 251
    py = pickle.dumps({b"batch_label": b"x", b"labels": [1, 2],
                       b"data": rec[:, 1:].copy()}, protocol=2)
    toml = (b'seed = 1\n[model]\nkind = "mlp"\nwidths = [4, 4]\nactivation = "relu"\n'
            b'[stream]\nkind = "permuted"\ndataset = "digits"\nnum_tasks = 2\n'
            b'[train]\noptimizer = "adam"\nlearning_rate = 1e-3\nbatch_size = 8\n'
            b'steps_per_task = 4\ncheckpoint_every = 2\n[method]\nname = "l2"\nlam = 0.01\n')
    state_dict = {"0.weight": np.ones((3, 2), np.float32), "0.bias": np.zeros(3, np.float32),
                  "2.weight": np.ones((2, 3), np.float32), "2.bias": np.zeros(2, np.float32)}
    from safetensors.numpy import save as safetensors_bytes

    blobs = {"safetensors": safetensors_bytes(state_dict)}
    if HAVE_TORCH:
        import torch

        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, buf)
        blobs["torch"] = buf.getvalue()
    grid = (b'seeds = 2\nbase = "run.toml"\n[config.train]\nsteps_per_task = 3\n'
            b'[methods.adam]\n[methods.l2]\nname = "l2"\nlam = 0.1\n'
            b'[axes]\n"train.learning_rate" = [1e-3, 3e-4]\n[analysis]\nprobe_size = 16\n')
    table = (b"checkpoint,step,task,layer,metric,value\n0,0,0,all,loss,2.5\n"
             b"0,0,0,layer0,ntk_trace,1.25\n1,10,0,all,loss,0.5\n")
    if HAVE_FLAX:
        from flax import serialization

        blobs["msgpack"] = serialization.msgpack_serialize(_flax_tree())
    if HAVE_ORBAX:
        blobs.update({r: (_orbax_seed() / f).read_bytes() for r, f in _ORBAX_FILES.items()})
    return {**blobs, "manifest": json.dumps(manifest, indent=1).encode(), "grid": grid,
            "csv": table,
            "npz": _npz_bytes(_tiny_params_arrays()),
            "probe": _npz_bytes({"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2),
                                 "y": np.array([0, 1, -1, 1]),
                                 "outputs": np.ones((4, 2)), "step": np.array(0)}),
            "idx": idx, "idx_gz": gzip.compress(idx, mtime=0),
            "cifar_bin": rec.tobytes(), "cifar_py": py, "toml": toml}


def _write(path: Path, blob: bytes | None) -> None:
    """Put the fuzz input where the reader looks (None: a special file is already there)."""
    if blob is not None:
        path.write_bytes(blob)


def _read_manifest(blob: bytes | None, folder: Path) -> None:
    run_dir = folder / "run"
    run_dir.mkdir(exist_ok=True)
    ckpt = run_dir / "ckpt_00000000.npz"
    if not ckpt.exists():
        ckpt.write_bytes(_npz_bytes(_tiny_params_arrays()))
    _write(run_dir / checkpoints.MANIFEST, blob)
    run = checkpoints.open_run(run_dir)
    for i in range(min(len(run), 3)):
        run.params(i)


def _read_npz(blob: bytes, folder: Path) -> None:
    path = folder / "ckpt.npz"
    _write(path, blob)
    checkpoints.arrays_to_params(checkpoints.load_arrays(path), source=str(path))


def _read_probe(blob: bytes, folder: Path) -> None:
    path = folder / "probe.npz"
    _write(path, blob)
    output_check.read_probe_file(path, _TINY_SHAPE, num_classes=2)


def _read_idx(blob: bytes, folder: Path, gz: bool = False) -> None:
    path = folder / ("images.gz" if gz else "images")
    _write(path, blob)
    data.read_idx(path, 3)


def _read_cifar_bin(blob: bytes, folder: Path) -> None:
    path = folder / "data_batch_1.bin"
    _write(path, blob)
    data._read_cifar_bin(path, "cifar10")


def _read_cifar_py(blob: bytes, folder: Path) -> None:
    path = folder / "data_batch_1"
    _write(path, blob)
    data._read_cifar_py(path, "cifar10")


def _read_toml(blob: bytes, folder: Path) -> None:
    path = folder / "run.toml"
    _write(path, blob)
    config.load_config(path)


def _read_grid(blob: bytes, folder: Path) -> None:
    base = folder / "run.toml"
    if not base.exists():
        base.write_bytes(seeds()["toml"])
    path = folder / "grid.toml"
    _write(path, blob)
    grid = sweep.load_grid(path)
    for point in sweep.expand(grid)[:4]:
        sweep.point_config(grid, point, str(path))


def _read_csv(blob: bytes, folder: Path) -> None:
    path = folder / "metrics.csv"
    _write(path, blob)
    Table.read_csv(path)


def _read_state_dict(blob: bytes, folder: Path, suffix: str) -> None:
    path = folder / f"model{suffix}"
    _write(path, blob)
    interop.state_dict_to_params(interop.load_state_dict(path), input_shape=(2,),
                                 source=str(path))


def _read_msgpack(blob: bytes, folder: Path) -> None:
    path = folder / "ckpt.msgpack"
    _write(path, blob)
    pytree_to_params(jax_import.load_pytree(path), activation="relu", source=str(path))


def _read_orbax(blob: bytes, folder: Path, reader: str) -> None:
    item = _orbax_item(folder)
    _write(item / _ORBAX_FILES[reader], blob)
    pytree_to_params(jax_import.load_pytree(item), activation="relu", source=str(item))


TARGETS: dict[str, Callable[[bytes, Path], None]] = {
    "msgpack": _read_msgpack,
    "orbax_zarray": lambda b, f: _read_orbax(b, f, "orbax_zarray"),
    "orbax_metadata": lambda b, f: _read_orbax(b, f, "orbax_metadata"),
    "safetensors": lambda b, f: _read_state_dict(b, f, ".safetensors"),
    "torch": lambda b, f: _read_state_dict(b, f, ".pt"),
    "manifest": _read_manifest, "npz": _read_npz, "probe": _read_probe, "idx": _read_idx,
    "idx_gz": lambda b, f: _read_idx(b, f, gz=True), "cifar_bin": _read_cifar_bin,
    "cifar_py": _read_cifar_py, "toml": _read_toml, "grid": _read_grid, "csv": _read_csv,
}
# where each reader expects its file (for special_outcome)
FILE_NAMES = {"safetensors": "model.safetensors", "torch": "model.pt", "msgpack": "ckpt.msgpack",
              **{r: f"item/{f}" for r, f in _ORBAX_FILES.items()},
              "manifest": "run/manifest.json", "npz": "ckpt.npz", "probe": "probe.npz",
              "idx": "images",
              "idx_gz": "images.gz", "cifar_bin": "data_batch_1.bin", "cifar_py": "data_batch_1",
              "toml": "run.toml", "grid": "grid.toml", "csv": "metrics.csv"}


def outcome(reader: str, blob: bytes | None, folder: Path) -> str:
    """Feed ``blob`` to ``reader``; return "accepted", "refused" or "crash:<type>: <message>"."""
    try:
        TARGETS[reader](blob, folder)
    except NtkplastError:
        return "refused"
    except Exception as e:  # anything else is a bug in the reader
        return f"crash:{type(e).__name__}: {str(e)[:200]}"
    return "accepted"


def special_outcome(reader: str, kind: str, folder: Path) -> str:
    """:func:`outcome` with a FIFO (``kind="fifo"``) or a link to ``/dev/zero`` (``"zero"``)
    where ``reader`` expects its file: every reader must refuse both without blocking."""
    path = folder / FILE_NAMES[reader]
    if reader in _ORBAX_FILES:  # the rest of a valid checkpoint around it
        _orbax_item(folder)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if reader == "manifest":  # a valid checkpoint beside it, as in _read_manifest
        (path.parent / "ckpt_00000000.npz").write_bytes(_npz_bytes(_tiny_params_arrays()))
    if reader == "grid":
        (folder / "run.toml").write_bytes(seeds()["toml"])
    if kind == "fifo":
        import os
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return outcome(reader, None, folder)


# ----------------------------------------------------------------------------------- mutations

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                b"-1", b"0", b"1e999", b"NaN", b"null", b"[]", b"{}", b'"', b"..", b"/",
                b"../x.npz", b"/etc/passwd", b"\n", b"=", b"[", b"99999999999999999999"]


def mutate(blob: bytes, rng: random.Random) -> bytes:
    """A random byte-level mutation of ``blob`` (flip, delete, insert, splice, truncate)."""
    b = bytearray(blob)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 2:
            del b[pos:pos + rng.randrange(1, 16)]
        elif op == 3:
            b[pos:pos] = rng.choice(_INTERESTING)
        elif op == 4:
            b = b[:pos]
        elif op == 5 and b:
            start = rng.randrange(len(b))
            b[pos:pos] = b[start:start + rng.randrange(1, 64)]
        else:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def _json_value(rng: random.Random, depth: int = 0):
    choices = [None, True, False, -1, 0, 1, 2**40, -2**63, 1.5, float("1e308"), "", "x",
               "../x.npz", "/etc/passwd", "ckpt_00000000.npz", "mlp", "cnn", [], {}, [3], [0],
               [2, 2], ["a"], {"kind": "mlp"}, [64, 20000000], [2**40], [2**31, 2**31], [0, 3],
               "<f8", "|O", "<U8", "float32", "bfloat16", "zstd", {"id": "gzip", "level": 1}]
    if depth < 2 and rng.random() < 0.2:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return rng.choice(choices)


def mutate_structured(reader: str, blob: bytes, rng: random.Random) -> bytes:
    """A mutation that keeps the syntax valid (JSON for manifests, TOML for configs) and changes
    one value, key or list deep inside, so the semantic checks get exercised."""
    if reader in JSON_READERS:
        doc = json.loads(blob)
        paths = _paths(doc)
        path = rng.choice(paths)
        _set(doc, path, _json_value(rng), rng)
        return json.dumps(doc).encode()
    if reader == "toml":
        lines = blob.decode().splitlines()
        i = rng.randrange(len(lines))
        if "=" in lines[i]:
            key = lines[i].split("=")[0].strip()
            if rng.random() < 0.15:
                key = rng.choice(["widths", "bogus", "kind", "seed", "name"])
            lines[i] = f"{key} = {_toml_value(rng)}"
        else:
            lines[i] = rng.choice(["[model]", "[train]", "[method]", "[stream]", "[bogus]",
                                   "[[model]]", "seed = -3"])
        return ("\n".join(lines) + "\n").encode()
    return mutate(blob, rng)


def _toml_value(rng: random.Random) -> str:
    return rng.choice(['"mlp"', '"cnn"', '"relu"', '"tanh"', '"adam"', '"sgd"', '"l2"', '"redo"',
                       '"permuted"', '"mnist"', '"digits"', '"every:0"', '"every:-1"',
                       '"all"', "0", "1", "-1", "3", "2000000000", "9223372036854775807",
                       "1e-3", "0.0", "-0.5", "inf", "nan", "1e308", "true", "[]", "[0]", "[-1]",
                       "[1, 2]", "[1e9]", '["a"]', "{}", "{a = 1}", '""', "[[1]]",
                       "1979-05-27T07:32:00Z"])


def _paths(doc, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _set(doc, path, value, rng):
    for p in path[:-1]:
        doc = doc[p]
    last = path[-1]
    if isinstance(doc, dict) and rng.random() < 0.15:
        del doc[last]
    else:
        doc[last] = value


def _hostile_text(rng: random.Random, toml: bool) -> str:
    """A value that parses but attacks: deep nesting, huge or overflowing numbers, a
    container where a scalar belongs."""
    depth = rng.choice([65, 200, 1000, 5000, 100_000])
    digits = rng.choice([19, 20, 30, 400, 5000])
    choices = ["[" * depth + "]" * depth, "9" * digits, "-" + "9" * digits,
               str(2**63), str(-(2**63) - 1), str(2**64), "1e999", "-1e999",
               "[" + ", ".join(["1"] * 1000) + "]", "[[1, 2], [3]]", '["x", 1]']
    if toml:
        choices += ["{a = " * min(depth, 2000) + "1" + "}" * min(depth, 2000), "inf", "nan",
                    "{a = 1}", "1979-05-27"]
    else:
        choices += ['{"a": ' * min(depth, 5000) + "1" + "}" * min(depth, 5000), "{}", '"x"',
                    "true", "NaN", "Infinity"]
    return rng.choice(choices)


def _hostile_csv(blob: bytes, rng: random.Random) -> bytes:
    lines = blob.decode().splitlines()
    i = rng.randrange(1, len(lines))
    cells = lines[i].split(",")
    j = rng.randrange(len(cells))
    cells[j] = rng.choice(["x" * 200_000, "9" * 30, str(2**63), str(-(2**63) - 1), "1e999",
                           "nan", '"', '"a,b"', "\x00", "", "[" * 1000])
    if rng.random() < 0.2:
        cells = cells[:rng.randrange(len(cells))] + cells * rng.randrange(2)
    lines[i] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def hostile_structure(reader: str, blob: bytes, rng: random.Random) -> bytes:
    """One value (or CSV cell) of the seed document replaced by an attack on the parser or on
    the checks behind it (:func:`_hostile_text`); the rest of the document stays valid."""
    if reader == "csv":
        return _hostile_csv(blob, rng)
    if reader in JSON_READERS:
        doc = json.loads(blob)
        path = rng.choice(_paths(doc))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = "@HOSTILE@"
        return json.dumps(doc).replace('"@HOSTILE@"', _hostile_text(rng, False)).encode()
    lines = blob.decode().splitlines()
    keyed = [i for i, line in enumerate(lines) if "=" in line]
    i = rng.choice(keyed)
    lines[i] = f"{lines[i].split('=')[0].strip()} = {_hostile_text(rng, True)}"
    return ("\n".join(lines) + "\n").encode()


def case(reader: str, blob: bytes, rng: random.Random) -> bytes:
    """One fuzz input: random bytes, a byte mutation, a structured mutation of the seed, or a
    hostile structure."""
    r = rng.random()
    if r < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if r < 0.4 and reader in JSON_READERS + ("toml",):
        return mutate_structured(reader, blob, rng)
    if r < 0.55 and reader in STRUCTURED:
        return hostile_structure(reader, blob, rng)
    return mutate(blob, rng)
