"""Graph passes: one pass per file. A pass is a function (graph) -> (graph, modified: bool) whose docstring states
what it REQUIRES and ENSURES. A target's pipeline is the explicit list in its Backend.passes.

Batch-norm folding is not a graph pass: NIR has no BatchNorm node, so BN is folded when a layer is lowered, by
`Synapse.folded()` -- the same function the PyTorch model's eval forward uses, which is what makes the exported
numbers bit-identical to the reference (docs/ir.md)."""
from __future__ import annotations


def run_pipeline(graph, passes):
    """Run passes in order; returns (graph, [names of passes that modified it])."""
    changed = []
    for p in passes:
        graph, modified = p(graph)
        if modified:
            changed.append(p.__name__)
    return graph, changed
