"""Writes small valid packed models (digits recipes x ticket types, untrained) as the fuzzers' seed corpus."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from conftest import DIGITS_RECIPES, make_checkpoint

from slt_deploy.backends.packed.format import encode
from slt_deploy.backends.packed.lower import from_graph
from slt_deploy.export import lower


def main(out):
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "..", ".ckpts")
    for rc in DIGITS_RECIPES:
        for binary, density in ((True, 0.1), (False, 0.1), (True, 1.0)):
            data = encode(from_graph(lower(make_checkpoint(tmp, rc, binary, density, epochs=0))[2]))
            with open(os.path.join(out, f"{rc}-{int(binary)}-{density}.slt"), "wb") as f:
                f.write(data)
            print(f"{rc} binary={binary} density={density}: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
