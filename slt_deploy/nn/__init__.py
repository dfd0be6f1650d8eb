"""Spiking building blocks: LIF neurons, masked/binarized synaptic layers, residual/transformer blocks."""
from .blocks import MLP, SSA, ConvPEP, PatchSelect, ResBlock, Tokens, TokenSum, TransformerBlock
from .layers import SConv2d, SLinear, Synapse, synapses
from .lif import LIF

__all__ = ["LIF", "Synapse", "SConv2d", "SLinear", "synapses", "ResBlock", "ConvPEP", "Tokens", "PatchSelect",
           "SSA", "MLP", "TransformerBlock", "TokenSum"]
