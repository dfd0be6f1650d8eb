"""The .nir file of target `nir`: NIR's own HDF5 format (nir.read / nir.write), written atomically."""
from __future__ import annotations

import os

import h5py
import nir

from ...errors import SltError
from ...ir.portable import from_file, to_file


def read_nir(path: str) -> nir.NIRGraph:
    if not os.path.exists(path):
        raise SltError(f"{path} does not exist", "pass a .nir file written by 'slt-deploy export --target nir'")
    try:
        g = nir.read(path, type_check=False)
    except Exception as e:  # h5py/nir raise many types for corrupt files; all mean the same to a user
        raise SltError(f"{path} is not a readable NIR file ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                       "re-export it, or check it was written by an NIR-compatible tool") from e
    return from_file(g)  # our file form (docs/ir.md "The .nir file") back to the IR; other graphs unchanged


def write(graph, path, **_):
    from ...checkpoint import atomic_path  # lazy: checkpoint imports torch, inspect must not (issue 14)

    tmp = atomic_path(path)
    try:
        nir.write(tmp, to_file(graph))  # the form every NIR importer reads alike (docs/interop.md)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sniff(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    if path.endswith(".nir"):
        return True
    try:
        with h5py.File(path, "r") as f:
            return "node" in f and "version" in f
    except Exception:  # noqa: BLE001 - a file h5py cannot open is simply not ours
        return False
