"""Issue 14 point 7, packed node names: a .slt file names every node by its layer path (body.0), so `inspect` shows
the same node names for packed as for nir/onnx/loihi. The names ride in the model-name section as a tag
(backends/packed/fileio.py name_field/split_name): the C runtime reads files with and without them, unchanged."""
import numpy as np
import pytest

from slt_deploy.backends.packed.c_runner import CPackedRunner, compiler_available
from slt_deploy.backends.packed.fileio import NODES_TAG, read_file, split_name, write_file
from slt_deploy.backends.packed.format import decode
from slt_deploy.backends.packed.numpy_runner import NumpyPackedRunner
from slt_deploy.export import export
from slt_deploy.inspect_graph import describe_path


@pytest.mark.parametrize("recipe", ["digits-tiny", "digits-resnet-tiny", "digits-spikformer-tiny"])
def test_packed_nodes_are_named_as_in_the_nir_graph(checkpoint, tmp_path, recipe):
    ck = checkpoint(recipe, "sparse+binary", epochs=0)
    export(ck, "nir", str(tmp_path / "m.nir"))
    export(ck, "packed", str(tmp_path / "m.slt"))
    nir_rows = describe_path(str(tmp_path / "m.nir"))["layers"]
    slt_rows = describe_path(str(tmp_path / "m.slt"))["layers"]
    assert [r["node"] for r in slt_rows] == [r["node"] for r in nir_rows]
    assert all(":" not in r["node"] for r in slt_rows)  # no index:op placeholder left


def _old_file(new_path, old_path):
    """The same model as a writer before node names wrote it: identity tag only, no node names."""
    m = read_file(new_path)
    mid = m.model_sha256
    for n in m.nodes:
        if n.op != "lif":
            n.name = ""
    m.name = f"{m.name} model_sha256={mid}"
    write_file(m, old_path)


def test_old_and_new_files_run_alike_on_both_runtimes(checkpoint, tmp_path):
    ck = checkpoint("digits-tiny", "sparse+binary", epochs=0)
    new, old = str(tmp_path / "new.slt"), str(tmp_path / "old.slt")
    export(ck, "packed", new)
    _old_file(new, old)
    assert NODES_TAG.encode() in open(new, "rb").read() and NODES_TAG.encode() not in open(old, "rb").read()
    m_new, m_old = read_file(new), read_file(old)
    assert m_new.model_sha256 == m_old.model_sha256 != ""  # the identity (verify's wrong-pairing check) survives
    assert m_new.name == m_old.name == "digits-tiny"
    assert describe_path(old)["layers"][1]["node"] == "1:conv"  # an old file: index and op, as before
    x = np.random.default_rng(0).uniform(0, 16, (6, 1, 8, 8)).astype(np.float32)
    runners = [NumpyPackedRunner]
    if compiler_available():
        runners.append(CPackedRunner)
    outs = []
    for R in runners:
        for p in (new, old):
            r = R(p)
            assert r.meta["name"] == "digits-tiny"
            outs.append(r.predict(x))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_a_name_that_looks_like_a_tag_is_kept(checkpoint, tmp_path):
    ck = checkpoint("digits-tiny", "sparse+binary", epochs=0)
    p = str(tmp_path / "m.slt")
    export(ck, "packed", p)
    m = read_file(p)
    m.name = "my nodes=model"
    for n in m.nodes:
        if n.op != "lif":
            n.name = ""
    write_file(m, p)
    got = split_name(decode(open(p, "rb").read()))
    assert got.name == "my nodes=model" and got.model_sha256 == ""
