"""``load_arrays`` bounds a whole ``.npz``, not only each member: a zip bomb of many members, each
just under the per-member bound, is refused before anything is inflated; so is an archive of
more members than :data:`files._MAX_MEMBERS`, before its members are listed. Genuine files pass:
all-zero arrays of a few MB (a fresh optimizer state), compressed or not."""

import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from ntkplast.errors import NtkplastError
from ntkplast.io import files


def _deflated_npy(nbytes):
    """A ``uint8`` ``.npy`` of ``nbytes`` zeros, raw-deflated chunk by chunk (memory: 1 MiB):
    (compressed bytes, CRC-32 and size of the uncompressed stream)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                              "shape": (nbytes,)})
    header = buf.getvalue()
    comp, crc = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.crc32(header)
    parts, zeros, left = [comp.compress(header)], memoryview(bytes(1 << 20)), nbytes
    while left:
        chunk = zeros[:min(left, len(zeros))]
        parts.append(comp.compress(chunk))
        crc, left = zlib.crc32(chunk, crc), left - len(chunk)
    parts.append(comp.flush())
    return b"".join(parts), crc, len(header) + nbytes


def _write_zip(path, members, method=zipfile.ZIP_DEFLATED, declared=None, zip64=False):
    """A zip of ``members`` = [(name, data as stored, crc, uncompressed size)], written by hand
    so that one compressed stream can be shared by many members; its end record declares
    ``declared`` members (default: their number), in a zip64 end record with ``zip64``."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size in members:
        n, offset = name.encode(), len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data),
                           size, len(n), 0) + n + data
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                               len(data), size, len(n), 0, 0, 0, 0, 0, offset) + n
    declared = len(members) if declared is None else declared
    end = b""
    if zip64:
        at = len(out) + len(central)
        end = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared,
                          len(central), len(out)) + struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
        declared = 0xFFFF
    path.write_bytes(bytes(out + central) + end + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, len(central), len(out), 0))


@pytest.fixture
def no_inflating(monkeypatch):
    """Reading any array's data fails the test (the headers may still be read)."""
    def read_array(*args, **kwargs):
        raise AssertionError("an array was inflated before the archive was refused")
    monkeypatch.setattr(np.lib.format, "read_array", read_array)


def test_many_members_each_under_the_member_bound_are_refused_before_inflating(
        tmp_path, no_inflating):
    """12 members of 256 MiB of zeros (each exactly at the member bound): 3 GiB from 3 MB."""
    data, crc, size = _deflated_npy(files._BOMB_BYTES - 128)
    assert size == files._BOMB_BYTES  # not above the member bound: passes member by member
    path = tmp_path / "bomb.npz"
    _write_zip(path, [(f"a{i}.npy", data, crc, size) for i in range(12)])
    assert path.stat().st_size < 4 << 20
    tracemalloc.start()
    try:
        with pytest.raises(NtkplastError, match=r"bomb.npz.*would inflate from \d+ to "
                                                r"3221225472 bytes in all"):
            files.load_arrays(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_total_beyond_memory_is_refused(tmp_path, monkeypatch, no_inflating):
    path = tmp_path / "opt.npz"
    np.savez_compressed(path, **{f"m{i}": np.zeros(1 << 20, np.float32) for i in range(3)})
    monkeypatch.setattr(files, "array_file_bytes", lambda: 8 << 20)
    with pytest.raises(NtkplastError, match=r"opt.npz declares 12583\d+ bytes of arrays, more "
                                            r"than this machine's memory \(8388608\)"):
        files.load_arrays(path)


def _empty_members(path, n, **end_record):
    """A stored (uncompressed) archive of ``n`` empty arrays, its end record as ``_write_zip``
    is told (``declared`` members, ``zip64``)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(0))
    npy = buf.getvalue()
    _write_zip(path, [(f"m{i}.npy", npy, zlib.crc32(npy), len(npy)) for i in range(n)],
               method=zipfile.ZIP_STORED, **end_record)


def test_too_many_members_are_refused_before_they_are_listed(tmp_path, monkeypatch):
    path = tmp_path / "many.npz"
    _empty_members(path, 6)
    assert len(files.load_arrays(path)) == 6
    monkeypatch.setattr(files, "_MAX_MEMBERS", 5)

    def no_listing(*args, **kwargs):
        raise AssertionError("the archive's members were listed")
    monkeypatch.setattr(zipfile, "ZipFile", no_listing)
    with pytest.raises(NtkplastError, match=r"many.npz declares 6 members.*at most 5 in"):
        files.load_arrays(path)
    _empty_members(path, 2, declared=2**40, zip64=True)
    with pytest.raises(NtkplastError, match=r"many.npz declares 1099511627776 members"):
        files.load_arrays(path)
    monkeypatch.undo()
    with zipfile.ZipFile(path) as zf:  # a well-formed zip64 end: zipfile reads it
        assert len(zf.infolist()) == 2


def test_an_end_record_that_understates_the_members_does_not_hide_them(tmp_path, monkeypatch):
    path = tmp_path / "many.npz"
    _empty_members(path, 6, declared=1)
    monkeypatch.setattr(files, "_MAX_MEMBERS", 5)
    with pytest.raises(NtkplastError, match=r"many.npz holds 6 members.*at most 5"):
        files.load_arrays(path)


def test_zero_arrays_of_legitimate_size_still_load(tmp_path):
    """A fresh optimizer state: 24 MB of zeros, compressed ~1000 times, under the floor."""
    state = {f"opt/{i}/mu": np.zeros((1000, 2000), np.float32) for i in range(3)}
    for save in (np.savez_compressed, np.savez):
        save(tmp_path / "opt.npz", **state)
        got = files.load_arrays(tmp_path / "opt.npz")
        assert got.keys() == state.keys() and all(not v.any() for v in got.values())
    with zipfile.ZipFile(tmp_path / "opt.npz") as zf:  # the last one: stored, ratio ~1
        assert sum(i.file_size for i in zf.infolist()) > 24_000_000
