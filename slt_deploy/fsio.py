"""Every file and folder slt-deploy writes goes through here (docs/outputs.md states the rules):

- `check_out(out, kind, inputs)`: an output is refused (SltError, exit 2) when it is empty, one of the command's own
  inputs (or inside/around one), not a regular file or folder (device node, FIFO, socket), a folder where a file is
  written (or the reverse), a non-empty folder that is not an artifact of the same kind, or an existing file of
  another kind. A missing parent folder is CREATED (the one rule for every command); a parent that cannot be
  created or written (read-only file system, a file in the way) is a clear error.
- `atomic_write(path, data)`: temp file in the same folder, fsync, rename: the old file or the new one, never a
  partial one. `atomic_file(path)` is the same for libraries that write a path themselves.
- `atomic_dir(path, fill)`: a folder artifact (checkpoint, Loihi export) is filled in a temp folder and swapped in
  with ONE atomic rename (renameat2 RENAME_EXCHANGE when `path` exists), so a crash at any moment leaves the old
  folder or the new one.
- Files get the mode the umask gives (0666 & ~umask, folders 0777 & ~umask), not mkstemp's 0600/0700.
- Temp names are `.NAME.slt-tmp-PID-RANDOM`; leftovers of dead processes are removed by the next write beside them.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile

from .errors import SltError, brief

TMP_TAG = ".slt-tmp-"
CKPT_FILES = ("model.json", "model.safetensors")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

# test hook (tests/test_fsio.py): called with a step name just before each rename; raising there simulates a crash
_crash_hook = None


def _hook(step: str):
    if _crash_hook is not None:
        _crash_hook(step)


def umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


# ------------------------------------------------------------------------------------------- kinds
def is_checkpoint(path: str) -> bool:
    """A checkpoint folder written by slt-deploy (model.json of format slt-deploy-checkpoint)."""
    mp = os.path.join(path, "model.json")
    if not (os.path.isdir(path) and os.path.isfile(mp)):
        return False
    try:
        with open(mp, "rb") as f:
            return json.loads(f.read(1 << 24)).get("format") == "slt-deploy-checkpoint"
    except (OSError, ValueError, AttributeError):
        return False


def kind_of(path: str) -> str | None:
    """'checkpoint', a target name (its Backend.sniff), or None."""
    if is_checkpoint(path):
        return "checkpoint"
    if not (os.path.isfile(path) or os.path.isdir(path)):
        return None
    try:
        from .backends import sniff_path  # imports no target package

        return sniff_path(path)
    except Exception:  # noqa: BLE001 - a sniffer failing on a strange file means "not that kind"
        return None


def _what(st) -> str:
    m = st.st_mode
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")):
        if test(m):
            return name
    return "not a regular file"


def _inside(a: str, b: str) -> bool:
    """a == b or a lies inside folder b (real paths)."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def check_out(out, kind: str, inputs=(), folder: bool = False, flag: str = "--out") -> str:
    """Validates an output path before any work is done (see the module docstring); creates its parent.
    kind: 'checkpoint', a target name, or 'report' (any regular file or existing folder may be written: reports,
    plots, the demo's run folder). Returns the absolute path."""
    if out is None or str(out).strip() == "":
        raise SltError(f"{flag} is empty", f"pass a {'folder' if folder else 'file'} path, e.g. {flag} out/model")
    out = str(out)
    real = os.path.realpath(out)
    for i in inputs:
        if i is None or str(i) == "":
            continue
        ri = os.path.realpath(str(i))
        if _inside(real, ri) or (folder and _inside(ri, real)):
            raise SltError(f"{flag} {out} would overwrite this command's input {i}",
                           f"choose a {flag} outside {i}")
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SltError(f"{flag} {out}: {e.strerror}", "choose another path") from None
    if st is not None:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise SltError(f"{flag} {out} is {_what(st)}, not a file or folder slt-deploy can replace",
                           f"choose a regular path for {flag}")
        if folder and not stat.S_ISDIR(st.st_mode):
            raise SltError(f"{flag} {out} exists and is a file, this command writes a folder",
                           f"remove it or choose another {flag}")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise SltError(f"{flag} {out} is a folder, this command writes a file", f"pass a file path for {flag}")
        if stat.S_ISDIR(st.st_mode) and kind != "report" and os.listdir(out):
            have = kind_of(out)
            if have != kind:
                what = {"loihi": "Loihi export folder", "checkpoint": "checkpoint folder"}.get(kind, f"{kind} artifact")
                raise SltError(f"{flag} {out} is a non-empty folder, not a {what}"
                               + (f" (it is a {have})" if have else ""),
                               f"remove it or choose another {flag} (slt-deploy replaces only its own {kind} output)")
        if stat.S_ISREG(st.st_mode) and kind != "report" and st.st_size > 0:
            have = kind_of(out)
            if have != kind:
                raise SltError(f"{flag} {out} exists and is not a {kind} artifact"
                               + (f" (it is a {have} artifact)" if have else ""),
                               f"remove it or choose another {flag} (slt-deploy replaces only its own {kind} output)")
    parent = os.path.dirname(os.path.abspath(out))
    make_parent(parent, flag)
    try:  # a real probe: os.access says yes to root on read-only or virtual file systems (/proc)
        fd, probe = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(out) + TMP_TAG + f"{os.getpid()}-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = "read-only file system" if e.errno == errno.EROFS else (e.strerror or str(e))
        raise SltError(f"{flag} {out}: cannot write in {parent} ({why})",
                       f"choose a writable location for {flag}") from None
    return os.path.abspath(out)


def make_parent(parent: str, flag: str = "--out"):
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError:
        raise SltError(f"{flag}: {parent} exists and is not a folder", f"choose another {flag}") from None
    except NotADirectoryError:
        raise SltError(f"{flag}: a file is in the way of folder {parent}", f"choose another {flag}") from None
    except OSError as e:
        raise SltError(f"{flag}: cannot create folder {parent} ({e.strerror})",
                       f"choose a writable location for {flag}") from None


# ------------------------------------------------------------------------------------------- temp names
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: str):
    """Removes temp files/folders beside `path` left by dead processes (`.NAME.slt-tmp-PID-*`)."""
    d, base = os.path.split(os.path.abspath(path))
    prefix = "." + base + TMP_TAG
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if not n.startswith(prefix):
            continue
        try:
            pid = int(n[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            p = os.path.join(d, n)
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)


def _tmp_prefix(path: str) -> tuple[str, str]:
    d, base = os.path.split(os.path.abspath(path))
    return d, "." + base + TMP_TAG + f"{os.getpid()}-"


def _fsync_dir(d: str):
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _oserror(path: str, e: OSError) -> SltError:
    if e.errno == errno.ENOSPC:
        return SltError(f"cannot write {path}: no space left on device", "free some space or choose another --out")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return SltError(f"cannot write {path} ({e.strerror})", "choose a writable location")
    return SltError(f"cannot write {path} ({e.strerror or e})", "check the path and free space")


# ------------------------------------------------------------------------------------------- files
@contextlib.contextmanager
def atomic_file(path: str):
    """with atomic_file(path) as tmp: <write tmp> -> renamed onto `path` (mode from the umask) when the block ends
    without an exception; the temp file is removed otherwise."""
    d, prefix = _tmp_prefix(path)
    make_parent(d)
    clean_stale(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix, suffix=".tmp")
    except OSError as e:
        raise _oserror(path, e) from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        _hook("file-rename")
        os.replace(tmp, path)
        _fsync_dir(d)
    except OSError as e:
        raise _oserror(path, e) from None
    finally:
        if os.path.lexists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write(path: str, data: bytes | str):
    """Write `data` to `path` atomically (temp file in the same folder + fsync + rename)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def atomic_path(path: str) -> str:
    """Compatibility: a temp path beside `path` (caller renames it). Prefer `atomic_file`."""
    d, prefix = _tmp_prefix(path)
    make_parent(d)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix, suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, file_mode())
    return tmp


# ------------------------------------------------------------------------------------------- folders
def _exchange(a: str, b: str) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE). False when unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    r = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if r == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _chmod_tree(d: str):
    fm, dm = file_mode(), dir_mode()
    for root, _dirs, files in os.walk(d):
        os.chmod(root, dm)
        for n in files:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                os.chmod(p, fm)
                with open(p, "rb") as f:
                    os.fsync(f.fileno())


def atomic_dir(path: str, fill, keep=None):
    """Build the folder `path` by `fill(tmpdir)` in a temp folder beside it, then swap it in with one atomic rename.
    `keep(name) -> bool`: entries of the OLD folder moved into the new one before the swap when fill did not write
    them (e.g. a ticket's rounds/ written into --out before its final checkpoint)."""
    path = os.path.abspath(path.rstrip("/") or "/")
    d, prefix = _tmp_prefix(path)
    make_parent(d)
    recover(path)
    clean_stale(path)
    try:
        tmp = tempfile.mkdtemp(dir=d, prefix=prefix)
    except OSError as e:
        raise _oserror(path, e) from None
    try:
        fill(tmp)
        if os.path.isdir(path) and keep:
            for n in os.listdir(path):
                if keep(n) and not os.path.lexists(os.path.join(tmp, n)):
                    os.rename(os.path.join(path, n), os.path.join(tmp, n))
        _chmod_tree(tmp)
        if os.path.isdir(path):
            _hook("dir-exchange")
            if _exchange(tmp, path):
                _fsync_dir(d)
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the OLD folder
                return path
            # no RENAME_EXCHANGE on this file system: old folder aside, new one in, old one removed; a crash between
            # the two renames is repaired by recover() (called by every reader and writer of `path`)
            old = tmp + ".old"
            _hook("dir-aside")
            os.rename(path, old)
            _hook("dir-rename")
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _hook("dir-rename")
            os.rename(tmp, path)
        _fsync_dir(d)
        return path
    except OSError as e:
        raise _oserror(path, e) from None
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def recover(path: str):
    """After a crash between the two renames of the fallback path of atomic_dir: puts the old folder back."""
    path = os.path.abspath(path.rstrip("/"))
    if os.path.lexists(path):
        return
    d, base = os.path.split(path)
    prefix = "." + base + TMP_TAG
    with contextlib.suppress(OSError):
        for n in sorted(os.listdir(d)):
            if n.startswith(prefix) and n.endswith(".old"):
                os.rename(os.path.join(d, n), path)
                return


# ------------------------------------------------------------------------------------------- digests
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_arrays(items) -> str:
    """Digest of named arrays [(name, np.ndarray)] in the given order: name, dtype, shape and bytes of each."""
    import numpy as np

    h = hashlib.sha256()
    for name, a in items:
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- artifact digests
# Every artifact carries the digest of its own contents (checked by every reader: run, verify, inspect) and the
# identity of the model it was exported from (checked by verify). docs/outputs.md.
CONTENT_KEY = "slt.content_sha256"   # digest of the artifact's contents (everything but this key)
MODEL_KEY = "slt.model_sha256"       # identity of the source model: checkpoint.model_id(meta)


def _damaged(path: str, what: str) -> SltError:
    return SltError(f"{path} is damaged: {what}",
                    "re-export it from its checkpoint (the file was changed after export, or truncated)")


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def json_digest(obj: dict, skip=(CONTENT_KEY, "content_sha256")) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in obj.items() if k not in skip})).hexdigest()


def onnx_digest(model) -> str:
    """The graph (nodes, initializers, inputs/outputs) plus every metadata entry but the digest itself."""
    h = hashlib.sha256(model.graph.SerializeToString(deterministic=True))
    for p in sorted(model.metadata_props, key=lambda p: p.key):
        if p.key != CONTENT_KEY:
            h.update(f"\0{p.key}\0{p.value}".encode())
    return h.hexdigest()


def stamp_onnx(model, model_id: str = ""):
    def put(k, v):
        for p in model.metadata_props:
            if p.key == k:
                p.value = v
                return
        e = model.metadata_props.add()
        e.key, e.value = k, v
    if model_id:
        put(MODEL_KEY, model_id)
    put(CONTENT_KEY, onnx_digest(model))


def check_onnx(model, path: str):
    props = {p.key: p.value for p in model.metadata_props}
    want = props.get(CONTENT_KEY)
    if not want:
        raise SltError(f"{path} carries no content digest ({CONTENT_KEY}): exported by an older slt-deploy or "
                       "edited", "re-export it with 'slt-deploy export --target onnx'")
    if onnx_digest(model) != want:
        raise _damaged(path, "its weights or metadata do not match the digest recorded at export")


def h5_digest(path: str) -> str:
    """Every dataset and attribute of an HDF5 file (names, dtypes, shapes, bytes) except the root digest attribute."""
    import h5py
    import numpy as np

    h = hashlib.sha256()

    def add(name, value):
        h.update(name.encode() + b"\0")
        if isinstance(value, (bytes, str)):
            h.update(value.encode() if isinstance(value, str) else value)
        else:
            a = np.asarray(value)
            if a.dtype.kind in "OSU":
                h.update(repr(a.tolist()).encode())
            else:
                h.update(f"{a.dtype.str}{list(a.shape)}".encode() + np.ascontiguousarray(a).tobytes())

    with h5py.File(path, "r") as f:
        names = []
        f.visit(names.append)
        why = _declared_excess(f, names, os.path.getsize(path))
        if why:   # before reading what a crafted file declares (h5_oversize)
            raise ValueError(why)
        for k in sorted(f.attrs):
            if k != CONTENT_KEY:
                add("@" + k, f.attrs[k])
        for n in sorted(names):
            obj = f[n]
            for k in sorted(obj.attrs):
                add(f"{n}@{k}", obj.attrs[k])
            if isinstance(obj, h5py.Dataset):
                add(n, obj[()])
            else:
                h.update(f"group {n}\0".encode())
    return h.hexdigest()


H5_DATA_SLACK = 64 << 20   # bytes of array data an HDF5 file may declare beyond H5_DATA_RATIO x its own size
H5_DATA_RATIO = 64


def _declared_excess(f, names, size: int) -> str | None:
    """h5_oversize's test on an open h5py file `f` (of `size` bytes) whose object names are `names`."""
    import h5py
    import numpy as np

    limit = H5_DATA_RATIO * size + H5_DATA_SLACK
    total = 0
    for n in names:
        obj = f[n]
        if isinstance(obj, h5py.Dataset):
            total += int(np.prod(obj.shape, dtype=np.float64)) * max(obj.dtype.itemsize, 1)
            if total > limit:
                return f"its datasets declare more than {total >> 20} MB of data in {size} bytes"
    return None


def h5_oversize(path: str) -> str | None:
    """Why HDF5 file `path` is refused before its data is read, or None: its datasets declare far more array data
    than the file could hold (more than H5_DATA_RATIO x its size + H5_DATA_SLACK). h5py allocates a dataset's
    declared shape before it reads, so a crafted 120 KB .nir file made nir.read allocate 2.8 GB (make fuzz). Reads
    metadata only (an unreadable file raises what h5py raises); our files and nir.write's are uncompressed, so their
    data never exceeds the file's size."""
    import h5py

    with h5py.File(path, "r") as f:
        names = []
        f.visit(names.append)
        return _declared_excess(f, names, os.path.getsize(path))


def read_nir_graph(path: str, fix: str):
    """nir.read(path) (no type check) after h5_oversize, every failure one SltError with `fix` (read_nir, the
    foreign-graph importer)."""
    import nir

    try:
        why = h5_oversize(path)   # before nir.read allocates what a crafted file declares
        g = None if why else nir.read(path, type_check=False)
    except Exception as e:  # noqa: BLE001 - h5py/nir raise many types for corrupt files, all mean the same
        raise SltError(f"{path} is not a readable NIR file ({brief(e, 120)})", fix) from None
    if why:
        raise SltError(f"{path} is not a readable NIR file ({why})", fix)
    return g


def check_h5_sizes(path: str, what: str = "file"):
    """h5_oversize as a SltError (damaged file)."""
    try:
        why = h5_oversize(path)
    except Exception as e:  # noqa: BLE001 - h5py raises many types for damaged files
        raise _damaged(path, f"not a readable HDF5 {what} ({brief(e, 100)})") from None
    if why:
        raise _damaged(path, why)


def stamp_h5(path: str, model_id: str = ""):
    import h5py

    if model_id:
        with h5py.File(path, "r+") as f:
            f.attrs[MODEL_KEY] = model_id
    d = h5_digest(path)
    with h5py.File(path, "r+") as f:
        f.attrs[CONTENT_KEY] = d


def h5_attr(path: str, key: str) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            v = f.attrs.get(key)
    except Exception:  # noqa: BLE001 - unreadable file: the reader reports it
        return None
    return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)


def nir_identity(path: str, fallback: bool = True) -> str:
    """The model identity a .nir file records (MODEL_KEY), else (fallback) the sha256 of the file itself: a graph
    imported from another tool is its own source model."""
    return h5_attr(path, MODEL_KEY) or (sha256_file(path) if fallback else "")


def check_h5(path: str, what: str = "file"):
    """Raises SltError unless `path` is a readable HDF5 file whose contents match its recorded digest."""
    want = h5_attr(path, CONTENT_KEY)
    try:
        got = h5_digest(path)
    except Exception as e:  # noqa: BLE001 - h5py raises many types for damaged files
        raise _damaged(path, f"not a readable HDF5 {what} ({brief(e, 100)})") \
            from None
    if not want:
        raise SltError(f"{path} carries no content digest: exported by an older slt-deploy or edited",
                       "re-export it from its checkpoint")
    if got != want:
        raise _damaged(path, f"its {what} contents do not match the digest recorded at export")


def stamp_folder(folder: str, manifest: dict, names) -> dict:
    """Records the sha256 of each file `names` of an artifact folder in the manifest, and the manifest's own digest."""
    manifest["files"] = {n: sha256_file(os.path.join(folder, n)) for n in sorted(names)}
    manifest["content_sha256"] = json_digest(manifest)
    return manifest


def check_folder(folder: str, manifest: dict, manifest_name: str = "manifest.json"):
    mp = os.path.join(folder, manifest_name)
    if not isinstance(manifest.get("files"), dict) or not manifest.get("content_sha256"):
        raise SltError(f"{mp} carries no content digests: exported by an older slt-deploy or edited",
                       "re-export it from its checkpoint")
    if json_digest(manifest) != manifest["content_sha256"]:
        raise _damaged(mp, "the manifest does not match its recorded digest")
    for n, want in manifest["files"].items():
        p = os.path.join(folder, n)
        if os.path.basename(n) != n or not os.path.isfile(p):
            raise _damaged(folder, f"{n} is missing")
        if sha256_file(p) != want:
            raise _damaged(p, "its contents do not match the digest in the manifest")
