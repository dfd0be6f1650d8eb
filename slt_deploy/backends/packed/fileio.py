"""Reading/writing packed model files (atomic writes, one clear SltError for any unreadable file)."""
from __future__ import annotations

import os

from ...errors import SltError
from .format import MAGIC, PackedModel, decode, encode


def read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise SltError(f"{path} does not exist", "pass a .slt file written by 'slt-deploy export --target packed'")
    with open(path, "rb") as f:
        return f.read()


# The model-name string section carries two optional tags after the name (docs/packed-format.md, "name tags"):
#   NAME[ model_sha256=HEX][ nodes={"INDEX":"NAME",...}]
# model_sha256: the identity of the source model (verify refuses a wrong pairing); nodes: the layer paths of the
# nodes whose records have no name slot (conv, affine, flatten, add, ...), so `inspect` names every node as the
# other targets do (body.0). Runtimes treat the name as free text: the C runtime reads files with and without them.
MODEL_TAG = " model_sha256="
NODES_TAG = " nodes="


def name_field(model: PackedModel, model_id: str = "") -> str:
    """The name section written for `model` (backends/packed/__init__.write): its name and both tags."""
    import json

    names = {str(i): n.name for i, n in enumerate(model.nodes) if n.op != "lif" and n.name and n.name != n.op}
    return (model.name + (f"{MODEL_TAG}{model_id}" if model_id else "")
            + (NODES_TAG + json.dumps(names, separators=(",", ":")) if names else ""))


def split_name(m: PackedModel) -> PackedModel:
    """A decoded model with its name field's tags taken off: `m.model_sha256`, and the names of the nodes whose
    records hold none. Files without tags (older writers) read as before."""
    import json

    head, sep, tail = m.name.partition(NODES_TAG)
    if sep:
        try:
            names = json.loads(tail)
            assert isinstance(names, dict)
        except (ValueError, AssertionError):
            head, names = m.name, {}  # " nodes=" was part of a name a user chose: not a tag
        for k, v in names.items():
            if str(k).isdigit() and int(k) < len(m.nodes) and not m.nodes[int(k)].name:
                m.nodes[int(k)].name = str(v)
    name, _, mid = head.partition(MODEL_TAG)
    m.name, m.model_sha256 = name, mid
    return m


def read_file(path: str, check_crc: bool = True) -> PackedModel:
    """The model, its name field's tags split off (split_name)."""
    try:
        m = decode(read_bytes(path), check_crc=check_crc)
    except SltError as e:
        raise SltError(f"{path}: {e.what}", e.fix) from None
    return split_name(m)


def write_file(model: PackedModel, path: str) -> int:
    data = encode(model)
    from ...checkpoint import atomic_write  # lazy: checkpoint imports torch, inspect must not (issue 14)

    atomic_write(path, data)
    return len(data)


def is_packed(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
