"""Pass fold_identity_residuals (passes/fold_identity_residuals.py), on its own (not only through Loihi): which
residuals it folds, that the folded graph computes the same numbers, its option, and what it must leave alone."""
import nir
import numpy as np
import pytest
from conftest import DIGITS_RECIPES

from slt_deploy.checkpoint import load
from slt_deploy.data import load_dataset
from slt_deploy.errors import SltError
from slt_deploy.ir import meta as K
from slt_deploy.ir.frontend import to_nir
from slt_deploy.ir.graph import preds
from slt_deploy.ir.interpreter import Interpreter
from slt_deploy.passes.check_shapes import check_shapes
from slt_deploy.passes.fold_identity_residuals import fold_identity_residuals


@pytest.fixture(scope="module")
def graphs(checkpoint):
    out = {}
    for rc in DIGITS_RECIPES:
        model, meta = load(checkpoint(rc, "dense", epochs=0))
        out[rc] = check_shapes(to_nir(model, meta))[0]
    return out


def _two_input_lifs(g):
    return sorted(n for n, v in g.nodes.items() if isinstance(v, nir.LIF) and len(preds(g, n)) == 2)


def test_convpep_residual_is_folded_and_computes_the_same(graphs):
    g = graphs["digits-spikformer-tiny"]
    new, modified = fold_identity_residuals(g)
    assert modified and new is not g
    folded = [n for n, v in new.nodes.items() if (v.metadata or {}).get(K.LOIHI_IDENTITY_FOLDED)]
    assert len(folded) == 1 and folded[0].endswith("rpe")
    src = new.nodes[folded[0]].metadata[K.LOIHI_IDENTITY_FOLDED]
    lif = next(d for s, d in new.edges if s == folded[0])
    assert preds(g, lif) == [folded[0], src] and preds(new, lif) == [folded[0]]
    assert new.nodes[folded[0]].metadata[K.BINARY] == 0
    assert len(new.edges) == len(g.edges) - 1 and K.SHAPES in new.metadata
    x = load_dataset("digits", seed=0).test.x[:32].numpy()
    seq = np.repeat(x[None], int(g.metadata[K.T]), 0)
    a, b = Interpreter(g).run(seq, record=True), Interpreter(new).run(seq, record=True)
    assert np.allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-4)   # W + I: the same sum, rounding may differ
    agree = np.mean([np.mean(a["spikes"][k] == b["spikes"][k]) for k in a["spikes"]])
    assert agree > 0.999 and np.mean(a["logits"].argmax(1) == b["logits"].argmax(1)) >= 0.97


@pytest.mark.parametrize("recipe", ["digits-tiny", "digits-resnet-tiny"])
def test_graphs_without_a_foldable_residual_are_left_alone(graphs, recipe):
    g = graphs[recipe]
    new, modified = fold_identity_residuals(g)
    assert not modified and new is g
    if recipe == "digits-resnet-tiny":   # syn(lif1(..)) + S: the synapse does not read S, nothing to fold
        assert _two_input_lifs(g)


def test_option_fold(graphs):
    g = graphs["digits-spikformer-tiny"]
    assert fold_identity_residuals(g, fold="off") == (g, False)
    with pytest.raises(SltError, match="option fold='maybe' unknown"):
        fold_identity_residuals(g, fold="maybe")


def test_strided_or_shared_synapse_is_not_folded():
    """A stride-2 conv changes the shape and a synapse with a second consumer cannot absorb the identity."""
    def graph(stride, extra_consumer):
        w = np.ones((2, 2, 3, 3), np.float32)
        conv = nir.Conv2d(input_shape=(4, 4), weight=w, stride=(stride, stride), padding=(1, 1), dilation=(1, 1),
                          groups=1, bias=np.zeros(2, np.float32), metadata={K.BINARY: 0})
        def full(v):
            return np.full((2, 4, 4), v, np.float32)
        lif = nir.LIF(tau=full(2e-4), r=full(2.0), v_leak=full(0), v_threshold=full(1), v_reset=full(0))
        nodes = {"input": nir.Input(input_type={"input": np.array([2, 4, 4])}), "c": conv, "l": lif,
                 "output": nir.Output(output_type={"output": np.array([2, 4, 4])})}
        edges = [("input", "c"), ("c", "l"), ("input", "l"), ("l", "output")] + ([("c", "output")] if extra_consumer
                                                                                 else [])
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)

    assert fold_identity_residuals(graph(1, False))[1] is True
    for g in (graph(2, False), graph(1, True)):
        assert fold_identity_residuals(g) == (g, False)
