"""Spiking building blocks: LIF neurons, masked/binarized synaptic layers, residual/transformer blocks."""
from .lif import LIF
from .layers import Synapse, SConv2d, SLinear, synapses
from .blocks import ResBlock, ConvPEP, Tokens, PatchSelect, SSA, MLP, TransformerBlock, TokenSum

__all__ = ["LIF", "Synapse", "SConv2d", "SLinear", "synapses", "ResBlock", "ConvPEP", "Tokens", "PatchSelect",
           "SSA", "MLP", "TransformerBlock", "TokenSum"]
