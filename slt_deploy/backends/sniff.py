"""What kind of artifact a path is, WITHOUT importing any target package: the registry (backends/__init__.py) asks
these in order and imports only the target that says yes, so `slt-deploy inspect model.slt` loads neither onnx nor
torch (issue 14; bench/startup.py). Each target's Backend.sniff is its function here (one definition).

Standard library only. The magic/format constants are the targets' own; tests/test_cli_conventions.py pins them to
the definitions in backends/packed/format.py and backends/loihi/runner.py."""
from __future__ import annotations

import json
import os

PACKED_MAGIC = b"SLTPACK\x00"      # backends/packed/format.py MAGIC
LOIHI_FORMAT = "slt-loihi"          # backends/loihi/runner.py FORMAT
LOIHI_MANIFEST = "manifest.json"    # backends/loihi/runner.py MANIFEST
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ONNX_PRODUCER = "slt-deploy"        # the producer_name backends/onnx/lower.py writes


def _head(path: str, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _hdf5_nir(path: str) -> bool:
    if _head(path, len(HDF5_MAGIC)) != HDF5_MAGIC:  # cheap test first: h5py is only imported for HDF5 files
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "node" in f and "version" in f
    except Exception:  # noqa: BLE001 - a file h5py cannot open is simply not ours
        return False


def _our_onnx(path: str) -> bool:
    """An ONNX ModelProto serialises its fields in order, so ours begin with ir_version (field 1, a one-byte varint)
    and then producer_name (field 2) = ONNX_PRODUCER."""
    name = ONNX_PRODUCER.encode()
    head = _head(path, 4 + len(name))
    return len(head) == 4 + len(name) and head[0] == 0x08 and head[1] < 0x80 and head[2:] == bytes([0x12, len(name)]) + name


def _content(path: str) -> str | None:
    """The target a file's first bytes say it belongs to, or None. A file's content outranks its name: a packed
    model saved as x.onnx is a packed model."""
    if _head(path, len(PACKED_MAGIC)) == PACKED_MAGIC:
        return "packed"
    if _our_onnx(path):
        return "onnx"
    if _hdf5_nir(path):
        return "nir"
    return None


def _named(path: str, kind: str, suffix: str) -> bool:
    """A file whose content says `kind`, or whose name ends in `suffix` while its content says nothing else."""
    if not os.path.isfile(path):
        return False
    found = _content(path)
    return found == kind or (found is None and path.endswith(suffix))


def nir_file(path: str) -> bool:
    """An HDF5 file holding an NIR graph (its root has `node` and `version`), or a *.nir file."""
    return _named(path, "nir", ".nir")


def onnx_file(path: str) -> bool:
    """One of our ONNX files under any name, or a *.onnx file."""
    return _named(path, "onnx", ".onnx")


def packed_file(path: str) -> bool:
    return os.path.isfile(path) and _head(path, len(PACKED_MAGIC)) == PACKED_MAGIC


def loihi_folder(path: str) -> bool:
    from ..fsio import recover

    recover(path)  # a swap interrupted by a crash (two-rename fallback) puts the old folder back
    mp = os.path.join(path, LOIHI_MANIFEST)
    if not (os.path.isdir(path) and os.path.exists(mp)):
        return False
    try:
        with open(mp) as f:
            m = json.load(f)
        return isinstance(m, dict) and m.get("format") == LOIHI_FORMAT
    except (OSError, ValueError):
        return False
