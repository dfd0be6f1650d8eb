"""atheris fuzz target for the Python reader (checksums off, so mutations reach the structural checks).
Every input must decode or raise SltError; anything else is a bug. Differential: the C reader must accept exactly
the inputs the Python reader accepts. Small valid models are also run through the numpy interpreter. Usage: python fuzz/fuzz_packed_py.py fuzz/corpus -max_total_time=60"""
import sys

import atheris
import numpy as np

with atheris.instrument_imports():
    from slt_deploy.backends.packed.format import decode
    from slt_deploy.backends.packed.numpy_runner import PackedInterpreter
    from slt_deploy.errors import SltError
from slt_deploy.backends.packed.c_runner import c_validate


def one(data: bytes):
    try:
        m = decode(data, check_crc=False)
    except SltError:
        if c_validate(data, check_crc=False)[0] == 0:
            raise AssertionError("the C reader accepts a file the Python reader rejects") from None
        return
    code, msg, _ = c_validate(data, check_crc=False)
    if code:
        raise AssertionError(f"the C reader rejects a file the Python reader accepts: {msg}")
    sizes = sum(int(np.prod(n.shape)) for n in m.nodes)
    if m.T <= 8 and sizes <= 50_000:
        seq = np.ones((m.T, 1, *m.nodes[0].shape), np.float32)
        with np.errstate(all="ignore"):
            PackedInterpreter(m).run(seq, record=True)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
