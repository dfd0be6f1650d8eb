"""Pass check_shapes (passes/check_shapes.py), on its own: the shapes it infers are the shapes the PyTorch reference
really produces, it reports that it wrote them (modified=True, then False), every inconsistency is listed, and
the one conv-size helper agrees with torch on odd geometries."""
import json

import nir
import numpy as np
import pytest
import torch
from conftest import DIGITS_RECIPES

from slt_deploy.checkpoint import load
from slt_deploy.errors import SltError
from slt_deploy.ir import meta as K
from slt_deploy.ir.frontend import to_nir
from slt_deploy.ir.graph import conv_out_hw, nmeta
from slt_deploy.passes.check_shapes import check_shapes, infer_shapes, shapes_of
from slt_deploy.verify import reference_run


@pytest.fixture(scope="module")
def graphs(checkpoint):
    out = {}
    for rc in DIGITS_RECIPES:
        model, meta = load(checkpoint(rc, "sparse", epochs=0))
        out[rc] = model, to_nir(model, meta)
    return out


@pytest.mark.parametrize("recipe", DIGITS_RECIPES)
def test_shapes_are_the_reference_tensors_shapes(graphs, recipe):
    model, g = graphs[recipe]
    shapes = infer_shapes(g)
    assert set(shapes) == set(g.nodes)
    seq = np.zeros((int(g.metadata[K.T]), 3, *shapes["input"]), np.float32)
    ref = reference_run(model, seq)
    lifs = {nmeta(node, K.LAYER): n for n, node in g.nodes.items() if isinstance(node, nir.LIF)}
    assert set(lifs) == set(ref["spikes"]) and len(lifs) >= 2
    for layer, n in lifs.items():
        assert list(ref["spikes"][layer].shape[2:]) == shapes[n], layer
    assert shapes["output"] == [ref["logits"].shape[1]]


def test_check_shapes_reports_that_it_wrote_the_shapes(graphs):
    _, g = graphs["digits-resnet-tiny"]
    g.metadata.pop(K.SHAPES, None)
    before = shapes_of(g)                      # inferred, graph left alone
    assert K.SHAPES not in g.metadata
    g2, modified = check_shapes(g)
    assert modified and json.loads(g2.metadata[K.SHAPES]) == before
    assert check_shapes(g2) == (g2, False)     # nothing left to change
    g2.metadata[K.SHAPES] = json.dumps({"input": [9]})  # stale shapes are rewritten, and said so
    assert check_shapes(g2)[1] is True and shapes_of(g2) == before


def test_every_inconsistency_is_listed_in_one_error(graphs):
    _, g = graphs["digits-tiny"]
    nodes = dict(g.nodes)
    aff = next(n for n, v in nodes.items() if isinstance(v, nir.Affine))
    w = np.asarray(nodes[aff].weight)
    nodes[aff] = nir.Affine(weight=w[:, :-1], bias=nodes[aff].bias, metadata=nodes[aff].metadata)
    md = {**g.metadata, K.INPUT_SHAPE: np.array([1, 9, 9])}
    bad = nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=md, type_check=False)
    with pytest.raises(SltError) as e:
        check_shapes(bad)
    msg = str(e.value)
    assert f"{aff} (Affine): input features {w.shape[1]} != weight in-features {w.shape[1] - 1}" in msg
    assert "slt.input_shape [1, 9, 9] != Input node [1, 8, 8]" in msg


def test_inputs_of_different_shapes_are_reported():
    a = nir.Input(input_type={"input": np.array([4])})
    g = nir.NIRGraph(nodes={"input": a, "f": nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3)),
                            "j": nir.Scale(scale=np.ones(4, np.float32), metadata={K.OP: "add"}),
                            "output": nir.Output(output_type={"output": np.array([4])})},
                     edges=[("input", "f"), ("input", "j"), ("f", "j"), ("j", "output")], metadata={},
                     type_check=False)
    with pytest.raises(SltError, match=r"j: inputs have different shapes \[\[4\], \[3\]\]"):
        check_shapes(g)


def test_conv_out_hw_is_torchs():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w, k, s = (int(v) for v in rng.integers([3, 3, 1, 1], [12, 12, 5, 4]))
        p = int(rng.integers(0, k))
        y = torch.nn.functional.conv2d(torch.zeros(1, 1, h, w), torch.zeros(1, 1, k, k), stride=s, padding=p)
        assert conv_out_hw([h, w], [k, k], [s, s], [p, p]) == list(y.shape[2:]), (h, w, k, s, p)
