"""``ntkplast import`` on hostile sources (issue 35): FIFOs, links to /dev/zero and oversized
files where checkpoints are read, edited Orbax metadata, checkpoints of different networks in
one source, and the temporary a killed import leaves behind.

Every import that could hang or read without end runs in a subprocess bounded in time and in
address space (:func:`bounded_cli`), so a regression fails the test instead of stalling the
suite or filling the machine's memory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error

from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.runs import checkpoints, interop, jax_import

safetensors_numpy = pytest.importorskip("safetensors.numpy")

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
_ADDRESS_SPACE = 8 << 30
SIZES = (6, 8, 3)


_LIMITED = ("import runpy, sys\n"
            "limit = int(sys.argv.pop(1))\n"
            "try:\n"
            "    import resource\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
            "except (ImportError, ValueError, OSError):\n"
            "    pass\n"
            "sys.argv[0] = 'ntkplast'\n"
            "runpy.run_module('ntkplast', run_name='__main__', alter_sys=True)\n")


def bounded_cli(*args, cwd, timeout=180):
    """``python -m ntkplast ARGS`` on the CPU, killed after ``timeout`` seconds, with at most
    8 GiB of address space (a read without end fails there instead of filling memory)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", _LIMITED, str(_ADDRESS_SPACE), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def special(path, kind):
    """Put a FIFO (``"fifo"``) or a link to /dev/zero (``"zero"``) at ``path``."""
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)


def flax_params(d_in=SIZES[0], seed=0):
    """Linen-style parameters of a d_in → 8 → 3 MLP (numpy, no flax needed)."""
    rng = np.random.default_rng(seed)
    sizes = (d_in, *SIZES[1:])
    return {f"Dense_{i}": {"kernel": rng.normal(size=(a, b)).astype(np.float32),
                           "bias": rng.normal(size=(b,)).astype(np.float32)}
            for i, (a, b) in enumerate(zip(sizes, sizes[1:]))}


def torch_state_dict(d_in=SIZES[0], seed=0):
    rng = np.random.default_rng(seed)
    sizes = (d_in, *SIZES[1:])
    sd = {}
    for j, (a, b) in enumerate(zip(sizes, sizes[1:])):
        sd[f"{2 * j}.weight"] = rng.normal(size=(b, a)).astype(np.float32)
        sd[f"{2 * j}.bias"] = rng.normal(size=(b,)).astype(np.float32)
    return sd


def save_flax_safetensors(path, params):
    safetensors_numpy.save_file({f"params/{m}/{k}": v for m, layer in params.items()
                                 for k, v in layer.items()}, str(path))


# ---- 5, 6: .msgpack, .safetensors, .pt, .npz through the bounded reader ------------------------

@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_msgpack_is_refused_not_read(tmp_path, kind):
    pytest.importorskip("flax")
    src = tmp_path / "src"
    src.mkdir()
    special(src / "step_1.msgpack", kind)
    proc = bounded_cli("import", "src", "run", "--framework", "flax", "--activation", "tanh",
                       cwd=tmp_path)
    assert_one_line_error(proc, "step_1.msgpack",
                          "FIFO" if kind == "fifo" else "character device", "not a regular")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("suffix", [".msgpack", ".safetensors", ".pt"])
def test_checkpoint_files_larger_than_the_bound_are_refused(tmp_path, monkeypatch, suffix):
    """The bound is :func:`ntkplast.io.safe_read.array_file_bytes` (physical memory); made
    small here, an ordinary file over it is refused before it is parsed."""
    path = tmp_path / f"step_1{suffix}"
    if suffix == ".msgpack":
        serialization = pytest.importorskip("flax.serialization")
        path.write_bytes(serialization.to_bytes({"params": flax_params()}))
        read = jax_import.load_pytree
    elif suffix == ".safetensors":
        save_flax_safetensors(path, flax_params())
        read = interop.load_safetensors
    else:
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(v) for k, v in torch_state_dict().items()}, path)
        read = interop.load_torch
    assert read(path)  # readable under the real bound
    monkeypatch.setattr(safe_read, "array_file_bytes", lambda: 64)
    with pytest.raises(NtkplastError, match=rf"step_1\{suffix} holds \d+ bytes, more than "
                                            r"the 64"):
        read(path)


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".npz"])
def test_special_state_dict_files_are_named_not_skipped_or_read(tmp_path, kind, suffix):
    """PyTorch import: a FIFO or a link to /dev/zero whose name matches is refused, naming it
    (it was skipped without a word, the run silently missing that checkpoint)."""
    src = tmp_path / "src"
    src.mkdir()
    safetensors_numpy.save_file(torch_state_dict(), str(src / "model_step1.safetensors"))
    special(src / f"model_step2{suffix}", kind)
    proc = bounded_cli("import", "src", "run", "--activation", "relu", cwd=tmp_path)
    assert_one_line_error(proc, f"model_step2{suffix}", "not a regular file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_safetensors_in_a_jax_source_is_refused(tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    special(src / "step_1.safetensors", kind)
    proc = bounded_cli("import", "src", "run", "--framework", "flax", "--activation", "tanh",
                       cwd=tmp_path)
    assert_one_line_error(proc, "step_1.safetensors")


# ---- 7: Orbax item folders are checked before orbax and tensorstore read them -----------------

def save_orbax(folder, layout):
    """A small Orbax checkpoint of flax_params: ``"ocdbt"`` (this orbax's default, through
    CheckpointManager at step 0: ``folder/0/default``), ``"zarr"`` (zarr v2 files) or
    ``"zarr3"`` (both with use_ocdbt=False, saved in ``folder/0``). Returns the item folder."""
    ocp = pytest.importorskip("orbax.checkpoint")
    tree = {"params": flax_params()}
    if layout == "ocdbt":
        mgr = ocp.CheckpointManager(folder)
        mgr.save(0, args=ocp.args.StandardSave(tree))
        mgr.wait_until_finished()
        item = folder / "0" / "default"
        assert (item / "manifest.ocdbt").is_file()
        return item
    try:
        handler = ocp.PyTreeCheckpointHandler(use_ocdbt=False, use_zarr3=layout == "zarr3")
    except TypeError:
        pytest.skip(f"this orbax cannot write {layout} without OCDBT")
    folder.mkdir(parents=True, exist_ok=True)
    ocp.Checkpointer(handler).save(folder / "0", tree)
    return folder / "0"


def zarr_metadata_keys(item):
    """``{key: JSON}`` of the arrays' zarr metadata in an item (files, or OCDBT keys)."""
    if (item / "manifest.ocdbt").is_file():
        ts = pytest.importorskip("tensorstore")
        kv = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file",
                                                          "path": f"{item}/"}}).result()
        return {k.decode(): json.loads(kv.read(k).result().value) for k in kv.list().result()
                if k.endswith((b".zarray", b"zarr.json"))}
    return {str(p.relative_to(item)): json.loads(p.read_text())
            for p in sorted(item.rglob("*")) if p.name in (".zarray", "zarr.json")}


def edit_zarr_metadata(item, array, edit):
    """Apply ``edit(meta)`` to ``array``'s zarr metadata, where the restore will read it."""
    if (item / "manifest.ocdbt").is_file():
        ts = pytest.importorskip("tensorstore")
        kv = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file",
                                                          "path": f"{item}/"}}).result()
        key = next(k for k in kv.list().result()
                   if k.startswith(array.encode()) and k.endswith((b".zarray", b"zarr.json")))
        meta = json.loads(kv.read(key).result().value)
        edit(meta)
        kv.write(key, json.dumps(meta).encode()).result()
        return
    path = next(p for p in (item / array).iterdir() if p.name in (".zarray", "zarr.json"))
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def data_file(item):
    """A file holding array data: the top-level OCDBT data file, or a kernel's chunk."""
    if (item / "manifest.ocdbt").is_file():
        return max((item / "d").iterdir(), key=lambda p: p.stat().st_size)
    return max((p for p in (item / "params.Dense_0.kernel").rglob("*") if p.is_file()
                and p.name not in (".zarray", "zarr.json")), key=lambda p: p.stat().st_size)


def set_shape(shape):
    def edit(meta):
        meta["shape"] = list(shape)
    return edit


@pytest.mark.parametrize("layout", ["ocdbt", "zarr", "zarr3"])
def test_check_orbax_item_accepts_real_checkpoints_and_restores_them(tmp_path, layout):
    item = save_orbax(tmp_path / "ckpts", layout)
    assert len(zarr_metadata_keys(item)) == 4
    jax_import.check_orbax_item(item)
    tree = jax_import.load_pytree(item.parent if layout == "ocdbt" else item)
    np.testing.assert_array_equal(tree["params"]["Dense_1"]["bias"],
                                  flax_params()["Dense_1"]["bias"])


@needs_fifo
@pytest.mark.parametrize("layout", ["ocdbt", "zarr"])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_file_in_an_orbax_checkpoint_is_refused_before_restore(tmp_path, layout, kind):
    item = save_orbax(tmp_path / "src", layout)
    victim = data_file(item)
    special(victim, kind)
    with pytest.raises(NtkplastError, match=f"{victim.name} is "):
        jax_import.check_orbax_item(item)
    proc = bounded_cli("import", "src", "run", "--framework", "flax", "--activation", "tanh",
                       cwd=tmp_path)
    assert_one_line_error(proc, victim.name, "FIFO" if kind == "fifo" else "/dev/zero")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_links_in_an_orbax_item_must_stay_inside_it(tmp_path):
    item = save_orbax(tmp_path / "src", "zarr")
    victim = data_file(item)
    outside = tmp_path / "outside_chunk"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside)
    with pytest.raises(NtkplastError, match=f"{victim.name} is a link to .*outside"):
        jax_import.check_orbax_item(item)
    inside = item / "kept_copy"  # a link inside the item is followed and read
    outside.rename(inside)
    victim.unlink()
    victim.symlink_to(inside)
    jax_import.check_orbax_item(item)
    assert jax_import.load_pytree(item)["params"]["Dense_0"]["kernel"].shape == (6, 8)


@pytest.mark.parametrize("layout", ["ocdbt", "zarr", "zarr3"])
def test_edited_array_shape_is_refused_before_anything_is_allocated(tmp_path, layout):
    """A 6 × 8 kernel's metadata edited to 64 × 20,000,000 (5 GB): refused from the metadata,
    by the size budget (the item stores a few kB)."""
    item = save_orbax(tmp_path / "src", layout)
    edit_zarr_metadata(item, "params.Dense_0.kernel", set_shape([64, 20_000_000]))
    with pytest.raises(NtkplastError, match=r"params\.Dense_0\.kernel.*\[64, 20000000\]"):
        jax_import.check_orbax_item(item)
    proc = bounded_cli("import", "src", "run", "--framework", "flax", "--activation", "tanh",
                       cwd=tmp_path)
    assert_one_line_error(proc, "params.Dense_0.kernel", "[64, 20000000]", "bytes")


BAD_METADATA = {
    "negative": (set_shape([-1, 8]), "shape"),
    "not_a_list": (lambda m: m.update(shape="6x8"), "shape"),
    "rank_mismatch": (lambda m: m.update(chunks=[6]), "chunks"),
    "zero_chunk": (lambda m: m.update(chunks=[0, 8]), "chunks"),
    "huge_chunk": (lambda m: m.update(chunks=[2**31, 2**31]), "bytes"),
    "object_dtype": (lambda m: m.update(dtype="|O"), "dtype"),
    "rank_40": (lambda m: m.update(shape=[1] * 40, chunks=[1] * 40), "shape"),
    "past_memory": (set_shape([2**40, 2**20]), "bytes"),
    "not_json": (None, "JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD_METADATA))
def test_insane_zarr_metadata_is_refused(tmp_path, name):
    item = save_orbax(tmp_path / "src", "zarr")
    edit, fragment = BAD_METADATA[name]
    if edit is None:
        (item / "params.Dense_0.kernel" / ".zarray").write_text('{"shape": [6, 8')
    else:
        edit_zarr_metadata(item, "params.Dense_0.kernel", edit)
    with pytest.raises(NtkplastError, match=fragment) as err:
        jax_import.check_orbax_item(item)
    assert "params.Dense_0.kernel" in str(err.value) and "\n" not in str(err.value)


def test_orbax_walk_is_bounded_in_depth(tmp_path):
    item = save_orbax(tmp_path / "src", "zarr")
    deep = item.joinpath(*["d"] * 40)
    deep.mkdir(parents=True)
    with pytest.raises(NtkplastError, match="levels deep"):
        jax_import.check_orbax_item(item)


# ---- 11: every checkpoint of a source must be the same network --------------------------------

def test_state_dicts_of_different_input_dimensions_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    safetensors_numpy.save_file(torch_state_dict(6), str(src / "model_step1.safetensors"))
    np.savez(src / "model_step2.npz", **torch_state_dict(5))
    with pytest.raises(NtkplastError, match=r"model_step2\.npz.*\(5, 8\).*model_step1"
                                            r"\.safetensors.*\(6, 8\)"):
        interop.import_folder(src, tmp_path / "run", activation="relu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    proc = bounded_cli("import", "src", "run", "--activation", "relu", cwd=tmp_path)
    assert_one_line_error(proc, "model_step2.npz", "model_step1.safetensors", "(5, 8)",
                          "(6, 8)")


def test_jax_checkpoints_of_different_input_dimensions_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_flax_safetensors(src / "step_10.safetensors", flax_params(6))
    save_flax_safetensors(src / "step_20.safetensors", flax_params(7))
    with pytest.raises(NtkplastError, match=r"step_20\.safetensors.*\(7, 8\).*step_10"
                                            r"\.safetensors.*\(6, 8\)"):
        jax_import.import_jax_folder(src, tmp_path / "run", activation="tanh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    save_flax_safetensors(src / "step_20.safetensors", flax_params(6, seed=1))
    run = jax_import.import_jax_folder(src, tmp_path / "run", activation="tanh")
    assert [c.step for c in run] == [10, 20]


# ---- 14: the temporary a killed import leaves is removed by the next one ----------------------

def write_source(src):
    src.mkdir()
    for s in (1, 2):
        safetensors_numpy.save_file(torch_state_dict(seed=s), str(src / f"model_step{s}"
                                                                         f".safetensors"))


def test_stale_importing_folder_is_removed_by_the_next_import(tmp_path):
    write_source(tmp_path / "src")
    stale = tmp_path / ".run.importing-k3x_9q0a"
    stale.mkdir()
    (stale / "ckpt_00000001.npz").write_bytes(b"half a checkpoint")
    (stale / "sub").mkdir()
    kept = [tmp_path / ".other.importing-k3x_9q0a",  # another run's temporary
            tmp_path / ".run.importing-k3x_9q0a.mine",  # not a name ntkplast gives
            tmp_path / ".run.x.importing-k3x_9q0a"]  # the temporary of a run named run.x
    for k in kept:
        k.mkdir()
    run = interop.import_folder(tmp_path / "src", tmp_path / "run", activation="relu")
    assert [c.step for c in run] == [1, 2]
    assert not stale.exists()
    assert all(k.is_dir() for k in kept)


_KILLED_IMPORT = """
import sys, time
from pathlib import Path
from ntkplast.runs import interop

def convert(tmp):
    (tmp / "ckpt_00000001.npz").write_bytes(b"converted so far")
    Path(sys.argv[2]).write_text(str(tmp))
    time.sleep(120)

interop.write_imported_run(Path(sys.argv[1]), convert)
"""


def test_import_killed_midway_leaves_a_temporary_the_next_import_removes(tmp_path):
    write_source(tmp_path / "src")
    ready = tmp_path / "ready"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(tmp_path / "run"),
                             str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the import never reached its conversion"
        left = Path(ready.read_text())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert left.is_dir() and left.name.startswith(".run.importing-")
    run = interop.import_folder(tmp_path / "src", tmp_path / "run", activation="relu")
    assert [c.step for c in run] == [1, 2]
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "run", "src"]
    assert checkpoints.open_run(tmp_path / "run").manifest["complete"]
