"""Writes a C header embedding a packed model (for bare-metal builds): python -m slt_deploy.backends.packed.embed
MODEL.slt OUT.h. Defines SLT_MODEL (bytes), SLT_MODEL_LEN, SLT_ARENA_BYTES (from the C reader: the arena of a scalar
(Cortex-M) build, which has no staged planes; counted on this host with 64-bit pointers, so an upper bound for a
32-bit core), SLT_T_IN, SLT_CLASSES."""
import math
import sys

from .c_runner import SCALAR, c_validate
from .fileio import read_bytes, read_file


def main(src, out):
    data = read_bytes(src)
    m = read_file(src)
    code, msg, arena = c_validate(data, extra=SCALAR)
    if code:
        raise SystemExit(f"{src}: {msg}")
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    with open(out, "w") as f:
        f.write(f"/* generated from {src} by slt_deploy.backends.packed.embed */\n#include <stdint.h>\n")
        f.write(f"#define SLT_MODEL_LEN {len(data)}u\n#define SLT_ARENA_BYTES {arena}u\n")
        f.write(f"#define SLT_T_IN {m.T * math.prod(m.input_shape)}u\n#define SLT_CLASSES {m.n_classes}u\n")
        f.write("static const uint8_t SLT_MODEL[] = {\n  " + ",\n  ".join(rows) + "\n};\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
