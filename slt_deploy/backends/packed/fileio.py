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


MODEL_TAG = " model_sha256="  # written by backends/packed/__init__.write


def read_file(path: str, check_crc: bool = True) -> PackedModel:
    """The model; its name field's identity tag (if any) is split off into `model.model_sha256`."""
    try:
        m = decode(read_bytes(path), check_crc=check_crc)
    except SltError as e:
        raise SltError(f"{path}: {e.what}", e.fix) from None
    name, _, mid = m.name.partition(MODEL_TAG)
    m.name, m.model_sha256 = name, mid
    return m


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
