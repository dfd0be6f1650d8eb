"""Namespaced metadata keys carried in NIR graphs (documented in docs/ir.md). Use these names, never literals.
(The ONNX target's metadata_props are its file format's own keys: docs/targets/onnx.md.)"""
# graph
FORMAT_VERSION = "slt.format_version"
T = "slt.T"
DT = "slt.dt"
ENCODING = "slt.encoding"
INPUT_MAX = "slt.input_max"
INPUT_SHAPE = "slt.input_shape"
LABELS = "slt.labels"
READOUT = "slt.readout"
ARCH = "slt.arch"
NAME = "slt.name"
SOURCE_SHA256 = "slt.source_sha256"
RECIPE = "slt.recipe"
TICKET = "slt.ticket"
N_PATCHES = "slt.n_patches"
PATCH_INDEX = "slt.patch_index"
SHAPES = "slt.shapes"          # JSON {node: per-sample output shape}, written by passes.check_shapes
LOIHI_HOST_OF = "slt.loihi.host_of"   # Loihi's host_in.nir: the chip node whose spikes are this graph's input
# nodes
LAYER = "slt.layer"
KIND = "slt.kind"
BINARY = "slt.binary"
IN_SCALE = "slt.in_scale"
DENSITY = "slt.density"
TOKENS = "slt.tokens"
BETA = "slt.beta"
THRESHOLD = "slt.threshold"
RESET = "slt.reset"
OP = "slt.op"
QKV = "slt.qkv"
HEADS = "slt.heads"
ATTN_SCALE = "slt.attn_scale"
# nodes, written by a target's pass
LOIHI_IDENTITY_FOLDED = "slt.loihi.identity_folded"   # passes.fold_identity_residuals: residual source absorbed
