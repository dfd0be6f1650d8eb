"""ctypes binding of the C99 packed runtime (slt_deploy/backends/packed/c). The shared library is built by the
project itself on first use (cc -std=c99 -O2 -Wall -Wextra -Werror -ffp-contract=off) into a cache folder keyed by the
sources' hash; `scripts/setup_env.sh` calls build() too."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

import numpy as np

from ...errors import SltError
from ..base import Runner

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c")
# the runtime: one C file per concern (slt_internal.h says which does what), the API in slt_packed.h
C_SOURCES = ("slt_reader.c", "slt_conv.c", "slt_affine.c", "slt_lif.c", "slt_run.c")
HEADERS = ("slt_packed.h", "slt_internal.h")
SOURCES = C_SOURCES + HEADERS
CFLAGS = ["-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off", "-fno-trapping-math", "-fPIC",
          "-shared"]
NO_CRC = 1
SCALAR = ("-DSLT_SIMD=0",)  # the Cortex-M kernels built for the host (tests compare the two kernel sets)
_LIBS: dict = {}


def c_sources() -> list:
    """Paths of the runtime's C files (every one is compiled; the headers are included)."""
    return [os.path.join(C_DIR, f) for f in C_SOURCES]


def _cc():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compiler_available() -> bool:
    return _cc() is not None or os.path.exists(_lib_path())


@functools.lru_cache(maxsize=1)
def host_flags() -> tuple:
    """-mavx2 when this machine's CPU has AVX2 (x86-64 Linux; 8-lane instead of 4-lane loops, the same bits: no FMA,
    -ffp-contract=off). The flags are part of the cached library's name, so a machine without AVX2 builds its own."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return ()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ()
    return ("-mavx2",) if "avx2" in flags else ()


def cflags(extra: tuple = ()) -> list:
    return CFLAGS + list(host_flags()) + list(extra)


def _lib_path(extra: tuple = ()) -> str:
    h = hashlib.sha256()
    for s in SOURCES:
        with open(os.path.join(C_DIR, s), "rb") as f:
            h.update(f.read())
    h.update(" ".join(cflags(extra)).encode())
    cache = os.environ.get("SLT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                        or os.path.expanduser("~/.cache"), "slt-deploy")
    return os.path.join(cache, f"libslt_packed-{h.hexdigest()[:16]}.so")


def build(verbose: bool = False, extra: tuple = ()) -> str:
    """Compile the runtime once (warnings are errors; `extra`: more compiler flags, e.g. SCALAR); returns the
    library path."""
    out = _lib_path(extra)
    if os.path.exists(out):
        return out
    cc = _cc()
    if cc is None:
        raise SltError("no C compiler found for the packed C runtime", "install gcc (apt-get install gcc) or set CC")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix=".so")
    os.close(fd)
    cmd = [cc, *cflags(extra), *c_sources(), "-o", tmp]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SltError(f"building the packed C runtime failed:\n{r.stderr[-2000:]}", " ".join(cmd))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if verbose:
        print(f"built {out}")
    return out


def lib(extra: tuple = ()):
    if extra not in _LIBS:
        L = ctypes.CDLL(build(extra=extra))
        L.slt_arena_size.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t)]
        L.slt_open.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_void_p, ctypes.c_size_t,
                               ctypes.POINTER(ctypes.c_void_p)]
        # plain addresses (ints) for the per-call pointers: cheaper to convert than POINTER(c_float) objects
        L.slt_run_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                    ctypes.c_void_p]
        L.slt_error_string.restype = ctypes.c_char_p
        L.slt_error_string.argtypes = [ctypes.c_int]
        for fn in ("slt_T", "slt_input_size", "slt_n_classes", "slt_spike_count"):
            getattr(L, fn).restype = ctypes.c_uint32
            getattr(L, fn).argtypes = [ctypes.c_void_p]
        L.slt_events.restype = ctypes.c_uint64
        L.slt_events.argtypes = [ctypes.c_void_p]
        _LIBS[extra] = L
    return _LIBS[extra]


def c_validate(data: bytes, check_crc: bool = True, extra: tuple = ()) -> tuple[int, str, int]:
    """(code, message, arena_bytes) from the C reader; code 0 = accepted."""
    L = lib(extra)
    need = ctypes.c_size_t(0)
    code = L.slt_arena_size(data, len(data), 0 if check_crc else NO_CRC, ctypes.byref(need))
    return code, L.slt_error_string(code).decode(), int(need.value)


class CModel:
    """A packed model opened by the C runtime in a numpy-owned arena."""

    def __init__(self, data: bytes, check_crc: bool = True, extra: tuple = ()):
        L = self.L = lib(extra)
        self.data = ctypes.create_string_buffer(bytes(data), len(data))  # must outlive the model
        flags = 0 if check_crc else NO_CRC
        code, msg, need = c_validate(bytes(data), check_crc, extra)
        if code:
            raise SltError(f"invalid packed model (C reader): {msg}", "re-export it with --target packed")
        self.arena_bytes = need
        self.arena = np.zeros(max(8, need) // 8 + 1, np.uint64)  # 8-byte aligned
        h = ctypes.c_void_p()
        code = L.slt_open(self.data, len(data), flags, self.arena.ctypes.data, self.arena.nbytes, ctypes.byref(h))
        if code:
            raise SltError(f"invalid packed model (C reader): {L.slt_error_string(code).decode()}")
        self.h = h
        self.T, self.n_in = L.slt_T(h), L.slt_input_size(h)
        self.n_classes, self.n_spikes = L.slt_n_classes(h), L.slt_spike_count(h)
        self._run_batch, self._h = L.slt_run_batch, h.value  # looked up once: run() is called per sample
        self._io: dict = {}   # per input shape: (input buffer, logits buffer, their addresses), for run() without record

    def events(self) -> int:
        return int(self.L.slt_events(self.h))

    def run(self, seq: np.ndarray, record: bool = False):
        """seq [T, B, ...] float32 -> (logits [B, C], spikes uint8 [T, B, n_spikes] or None)."""
        io = None if record else self._io.get(np.shape(seq))
        if io is not None:   # the streaming case (same shape every call): copy into buffers whose addresses are known
            np.copyto(io[0], seq, casting="unsafe")   # a numpy .ctypes.data costs about a microsecond per array
            code = self._run_batch(self._h, io[2], io[0].shape[1], io[3], None)
            if code:
                raise SltError(f"C runtime failed: {self.L.slt_error_string(code).decode()}")
            return io[1].copy(), None
        seq = np.ascontiguousarray(seq, np.float32)
        shape = seq.shape
        T, B = shape[0], shape[1]
        if T != self.T or seq.size != T * B * self.n_in:
            raise SltError(f"input sequence {list(shape)} does not fit the model (T={self.T}, "
                           f"{self.n_in} inputs per step)")
        if not record and B <= 64 and len(self._io) < 8:
            buf, lg = np.empty(shape, np.float32), np.empty((B, self.n_classes), np.float32)
            self._io[shape] = (buf, lg, buf.ctypes.data, lg.ctypes.data)
        logits = np.empty((B, self.n_classes), np.float32)  # slt_run_batch zeroes the logits itself
        spikes = np.empty((T, B, self.n_spikes), np.uint8) if record else None  # written in full
        code = self._run_batch(self._h, seq.ctypes.data, B, logits.ctypes.data,
                               spikes.ctypes.data if record else None)
        if code:
            raise SltError(f"C runtime failed: {self.L.slt_error_string(code).decode()}")
        return logits, spikes


class CPackedRunner(Runner):
    runtime = "c"

    def __init__(self, path: str | None = None, data: bytes | None = None):
        from .fileio import read_bytes, split_name
        from .format import decode
        from .numpy_runner import model_meta

        raw = data if data is not None else read_bytes(path)
        try:
            self.model = split_name(decode(raw))
        except SltError as e:
            raise SltError(f"{path or 'packed model'}: {e.what}", e.fix) from None
        self.c = CModel(raw)
        self.meta = model_meta(self.model)
        from .format import spike_keys

        keys = spike_keys(self.model)
        self.lifs = [(keys[i], tuple(n.shape)) for i, n in enumerate(self.model.nodes) if n.op == "lif"]

    @property
    def arena_bytes(self) -> int:
        return self.c.arena_bytes

    def run(self, seq, record=False):
        logits, sp = self.c.run(seq, record)
        res = {"logits": logits}
        if record:
            T, B = np.shape(seq)[:2]
            out, off = {}, 0
            for name, shape in self.lifs:
                n = int(np.prod(shape))
                out[name] = sp[:, :, off:off + n].reshape(T, B, *shape).astype(np.float32)
                off += n
            res["spikes"] = out
        return res
