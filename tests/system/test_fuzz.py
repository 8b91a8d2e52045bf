"""Property-based fuzzing of every file reader: bad bytes give NtkplastError, nothing else.

Readers (tests/stress/fuzz_targets.py): manifest.json (open_run + params), checkpoint .npz
(load_arrays + arrays_to_params), IDX (plain and gzipped), CIFAR binary and python batches,
TOML configs (load_config), sweep grids (load_grid + point configs), metrics tables (CSV).
Inputs are random bytes, byte-level mutations of a valid file, for the text formats mutations
that keep the syntax valid and change a value, and hostile structures (nesting thousands deep,
integers past int64, overflowing floats, containers for scalars, 200,000-character CSV fields);
every reader also meets a FIFO and a link to /dev/zero in place of its file. A few hundred cases
per reader here; ``benchmarks/stress.py`` runs 10,000 per reader.
"""

import random
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "stress"))
import fuzz_targets  # noqa: E402

SEEDS = fuzz_targets.seeds()
FUZZ = settings(max_examples=150, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _check(reader: str, blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = fuzz_targets.outcome(reader, blob, Path(d))
    assert out in ("accepted", "refused"), f"{reader} reader: {out} on input {blob[:200]!r}"


@pytest.mark.parametrize("reader", fuzz_targets.READERS)
def test_valid_seed_is_accepted(reader):
    with tempfile.TemporaryDirectory() as d:
        assert fuzz_targets.outcome(reader, SEEDS[reader], Path(d)) == "accepted"


@pytest.mark.parametrize("reader", fuzz_targets.READERS)
@FUZZ
@given(blob=st.binary(max_size=512))
def test_random_bytes(reader, blob):
    _check(reader, blob)


@pytest.mark.parametrize("reader", fuzz_targets.READERS)
@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_mutations_of_a_valid_file(reader, seed):
    _check(reader, fuzz_targets.mutate(SEEDS[reader], random.Random(seed)))


@pytest.mark.parametrize("reader", ["manifest", "toml"])
@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_well_formed_documents_with_wrong_values(reader, seed):
    _check(reader, fuzz_targets.mutate_structured(reader, SEEDS[reader], random.Random(seed)))


@FUZZ
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c,
                                                                             max_size=4),
                        max_leaves=20))
def test_any_json_document_as_manifest(doc):
    import json

    _check("manifest", json.dumps(doc).encode())


@pytest.mark.parametrize("reader", fuzz_targets.STRUCTURED)
@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_hostile_structures(reader, seed):
    """Deep nesting, huge numbers, wrong types: refused (or accepted), never a crash."""
    _check(reader, fuzz_targets.hostile_structure(reader, SEEDS[reader], random.Random(seed)))


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("reader", fuzz_targets.READERS)
def test_special_file_is_refused_without_blocking(reader, kind):
    import signal

    def hang(*_):
        raise TimeoutError(f"{reader} reader blocks on a {kind}")

    old = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        with tempfile.TemporaryDirectory() as d:
            assert fuzz_targets.special_outcome(reader, kind, Path(d)) == "refused"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
