"""atheris fuzz target for the Python reader (checksums off, so mutations reach the structural checks).
Every input must decode or raise SltError; anything else is a bug. Small valid models are also run through the
numpy interpreter. Usage: python fuzz/fuzz_packed_py.py fuzz/corpus -max_total_time=60"""
import sys

import atheris
import numpy as np

with atheris.instrument_imports():
    from slt_deploy.errors import SltError
    from slt_deploy.runtime.packed_format import decode
    from slt_deploy.runtime.packed_numpy import PackedInterpreter


def one(data: bytes):
    try:
        m = decode(data, check_crc=False)
    except SltError:
        return
    sizes = sum(int(np.prod(n.shape)) for n in m.nodes)
    if m.T <= 8 and sizes <= 50_000:
        seq = np.ones((m.T, 1, *m.nodes[0].shape), np.float32)
        with np.errstate(all="ignore"):
            PackedInterpreter(m).run(seq, record=True)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
