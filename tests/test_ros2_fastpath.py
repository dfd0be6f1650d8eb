"""The node's fast per-frame path gives the model the same input as slt_deploy.runtime.image.to_model_input:
frames read from serialized CDR bytes, area resize through an integral image."""
import os
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples", "ros2"))
from slt_ros2.fastpath import AreaResampler, RawImage, fast_model_input  # noqa: E402

from slt_deploy.errors import SltError  # noqa: E402
from slt_deploy.runtime.image import decode_frame, embed_image, encode_frame, to_model_input  # noqa: E402


@pytest.fixture(scope="module")
def fmnist():
    from slt_deploy.data import FMNIST_DIR, FMNIST_FILES, read_idx
    if not os.path.exists(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("Fashion-MNIST is not installed")
    return read_idx(FMNIST_DIR, FMNIST_FILES["test"][0])[:40].astype(np.float32)[:, None]


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (240, 320), (600, 800)])
@pytest.mark.parametrize("encoding,channels", [("rgb8", 1), ("bgr8", 1), ("mono8", 1), ("rgb8", 3)])
def test_fast_input_equals_to_model_input_on_fmnist_frames(fmnist, size, encoding, channels):
    """Area: equal up to one grey level at rounding ties (OpenCV sums in float32, the integral image exactly);
    nearest and linear: the same function, identical."""
    meta = {"input_shape": [channels, 28, 28], "input_max": 255.0}
    rs = AreaResampler()
    differ = total = 0
    for x in fmnist[:10]:
        data, step = encode_frame(embed_image(x, 255.0, size, 3), encoding)
        img = decode_frame(data, size[1], size[0], encoding, step)
        for crop in ("center", "none"):
            want = to_model_input(img, meta, crop, "area")
            got = fast_model_input(img, meta, crop, "area", rs)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert np.abs(got - want).max() <= 1.0
            differ, total = differ + int((got != want).sum()), total + got.size
            for interp in ("nearest", "linear"):
                assert np.array_equal(fast_model_input(img, meta, crop, interp, rs),
                                      to_model_input(img, meta, crop, interp))
    assert differ / total < 0.005, f"{differ} of {total} values differ"


def test_area_resampler_matches_opencv_inter_area():
    rng = np.random.default_rng(1)
    rs = AreaResampler()
    exact = 0
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(29, 700, 2))
        oh, ow = (int(v) for v in rng.integers(2, 29, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
        got = rs(img, oh, ow)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (h, w, oh, ow)  # ties rounded the other way
        exact += int(diff.max() == 0)
    assert exact >= 50, f"only {exact}/60 bit-identical"


def test_raw_image_reads_serialized_frames():
    rclpy_ser = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import Image
    m = Image()
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = 12, 345, "camera_optical"
    m.height, m.width, m.encoding, m.step, m.is_bigendian = 3, 4, "rgb8", 14, 0
    m.data = bytes(range(42))
    r = RawImage(rclpy_ser.serialize_message(m))
    assert (r.header.stamp.sec, r.header.stamp.nanosec, r.header.frame_id) == (12, 345, "camera_optical")
    assert (r.height, r.width, r.encoding, r.step, r.is_bigendian) == (3, 4, "rgb8", 14, 0)
    assert r.data.tobytes() == bytes(range(42))
    with pytest.raises(SltError, match="cannot read the serialized image"):
        RawImage(rclpy_ser.serialize_message(m)[:30])
