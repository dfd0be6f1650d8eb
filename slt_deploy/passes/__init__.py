"""Graph passes: one pass per file. A pass is a function (graph) -> (graph, modified: bool) whose docstring states
what it REQUIRES and ENSURES; keyword parameters are its options (export --opt NAME=VALUE). A target's pipeline
is the explicit list in its Backend.passes:

    every target     check_shapes (run by export.lower for all targets, before the target's own list)
    loihi            fold_identity_residuals (syn(S) + S -> one synapse W + I, netx has no two-input neurons)
    nir, onnx, packed  none: they execute the graph as the frontend wrote it

Batch-norm folding is not a graph pass: NIR has no BatchNorm node, so BN is folded when a layer is lowered, by
`Synapse.folded()` -- the same function the PyTorch model's eval forward uses, which is what makes the exported
numbers bit-identical to the reference (docs/ir.md)."""
from __future__ import annotations

import inspect


def run_pipeline(graph, passes, options: dict | None = None):
    """Run passes in order; returns (graph, [names of passes that modified it]). A pass that takes keyword
    parameters gets the export options of those names (`slt-deploy export --opt fold=off`), the rest use their
    defaults."""
    changed = []
    options = options or {}
    for p in passes:
        params = inspect.signature(p).parameters
        graph, modified = p(graph, **{k: v for k, v in options.items() if k in params and k != "graph"})
        if modified:
            changed.append(p.__name__)
    return graph, changed
