"""The .nir file of target `nir`: NIR's own HDF5 format (nir.read / nir.write), written atomically."""
from __future__ import annotations

import os

import nir

from ...errors import SltError
from ...fsio import CONTENT_KEY, MODEL_KEY, atomic_file, check_h5, h5_attr, read_nir_graph, stamp_h5
from ...ir.graph import gmeta
from ...ir.portable import from_file, to_file
from ..sniff import nir_file as sniff  # noqa: F401 - one definition, the registry's (imports no target)


def read_nir(path: str, check: bool = True) -> nir.NIRGraph:
    """The graph of a .nir file. `check`: a file slt-deploy wrote (slt.* metadata) must match the content digest
    recorded at export (fsio.check_h5); graphs from other NIR tools carry none and are read as they are."""
    if not os.path.isfile(path):
        raise SltError(f"{path} does not exist or is not a file",
                       "pass a .nir file written by 'slt-deploy export --target nir'")
    g = read_nir_graph(path, "re-export it, or check it was written by an NIR-compatible tool")
    if check and (h5_attr(path, CONTENT_KEY) or any(str(k).startswith("slt.") for k in (g.metadata or {}))):
        check_h5(path, "NIR graph")
    return from_file(g)  # our file form (docs/ir.md "The .nir file") back to the IR; other graphs unchanged


def write(graph, path, **_):
    with atomic_file(path) as tmp:
        nir.write(tmp, to_file(graph))  # the form every NIR importer reads alike (docs/interop.md)
        stamp_h5(tmp, str(gmeta(graph, MODEL_KEY, "") or ""))


