"""Camera-frame preprocessing for the ROS 2 node (slt_deploy/runtime/image.py): no ROS needed."""
import array

import numpy as np
import pytest

from slt_deploy.errors import SltError
from slt_deploy.runtime import image as im

META = {"input_shape": [1, 28, 28], "input_max": 255.0}
RNG = np.random.default_rng(0)


def _img(h=28, w=28):
    return RNG.integers(0, 256, (1, h, w)).astype(np.float32)


@pytest.mark.parametrize("enc", ["mono8", "rgb8", "bgr8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_decode_roundtrip_with_row_padding(enc, pad):
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data, step = im.encode_frame(rgb, enc, pad)
    assert step == 7 * (1 if enc == "mono8" else 3) + pad
    out = im.decode_frame(array.array("B", data), 7, 5, enc, step)
    want = im.to_gray(rgb) if enc == "mono8" else rgb
    assert np.array_equal(out, want)


def test_gray_of_gray_is_exact_and_matches_opencv():
    v = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    assert np.array_equal(im.to_gray(np.repeat(v, 3, axis=2)), v)
    cv2 = pytest.importorskip("cv2")
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert np.array_equal(im.to_gray(rgb)[:, :, 0], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def test_mono16_and_rgba():
    a = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    out = im.decode_frame(a.astype("<u2").tobytes(), 4, 3, "mono16", 8)
    assert np.array_equal(out[:, :, 0], (a >> 8).astype(np.uint8))
    big = im.decode_frame(a.astype(">u2").tobytes(), 4, 3, "mono16", 8, is_bigendian=1)
    assert np.array_equal(big, out)
    bgra = RNG.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    out = im.decode_frame(bgra.tobytes(), 3, 2, "bgra8", 12)
    assert np.array_equal(out, bgra[:, :, [2, 1, 0, 3]])


@pytest.mark.parametrize("args, words", [
    ((b"\0" * 12, 2, 2, "yuv422_weird", 6), "unknown image encoding"),
    ((b"", 0, 0, "rgb8", 0), "zero-size"),
    ((b"\0" * 12, 4, 2, "rgb8", 6), "step 6 is smaller"),
    ((b"\0" * 10, 2, 2, "rgb8", 6), "truncated"),
    ((b"\0" * 20, 2, 2, "rgb8", 6), "oversized"),
])
def test_malformed_frames_are_clear_errors(args, words):
    with pytest.raises(SltError, match=words):
        im.decode_frame(*args)


def test_max_pixels():
    with pytest.raises(SltError, match="more than"):
        im.decode_frame(b"\0" * 300, 10, 10, "rgb8", 30, max_pixels=99)


@pytest.mark.parametrize("frame_hw", [(480, 640), (600, 800), (333, 777), (28, 28), (1080, 1920)])
@pytest.mark.parametrize("channels", [1, 3])
def test_embedded_dataset_image_comes_back_exactly_with_nearest(frame_hw, channels):
    x = _img()
    frame = im.embed_image(x, 255.0, frame_hw, channels)
    assert frame.shape == (*frame_hw, channels)
    back = im.to_model_input(frame, META, crop="center", interpolation="nearest")
    assert back.dtype == np.float32 and np.array_equal(back, x)


def test_area_is_exact_for_integer_factor_and_numpy_fallback_agrees():
    x = _img()
    frame = im.embed_image(x, 255.0, (420, 560), 3)  # centred 420x420 = 15 x 28
    assert np.array_equal(im.to_model_input(frame, META, "center", "area"), x)
    crop = im.center_crop(frame, 28, 28)
    assert np.array_equal(im._resize_numpy(crop, 28, 28, "area"), np.repeat(x[0].astype(np.uint8)[:, :, None], 3, 2))
    # a non-integer factor: numpy area stays within rounding of OpenCV's
    cv2 = pytest.importorskip("cv2")
    f = RNG.integers(0, 256, (97, 61, 1), dtype=np.uint8)
    ref = cv2.resize(f, (13, 29), interpolation=cv2.INTER_AREA)
    assert np.abs(im._resize_numpy(f, 29, 13, "area")[:, :, 0].astype(int) - ref.astype(int)).max() <= 1


def test_scaling_channels_and_crop_modes():
    meta = {"input_shape": [3, 8, 8], "input_max": 16.0}
    frame = np.full((40, 80, 1), 255, np.uint8)
    out = im.to_model_input(frame, meta, crop="none", interpolation="linear")
    assert out.shape == (3, 8, 8) and np.allclose(out, 16.0)
    assert im.center_crop(frame, 8, 8).shape[:2] == (40, 40)
    assert im.center_crop(np.zeros((80, 40, 1), np.uint8), 8, 8).shape[:2] == (40, 40)
    with pytest.raises(SltError, match="unknown crop"):
        im.to_model_input(frame, meta, crop="zoom")
    with pytest.raises(SltError, match="unknown interpolation"):
        im.to_model_input(frame, meta, interpolation="cubic")


def test_bgr_and_rgb_frames_give_the_same_model_input():
    rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    meta = {"input_shape": [3, 12, 12], "input_max": 255.0}
    a = im.to_model_input(im.decode_frame(*im.encode_frame(rgb, "rgb8")[:1], 64, 48, "rgb8", 192), meta)
    b = im.to_model_input(im.decode_frame(*im.encode_frame(rgb, "bgr8")[:1], 64, 48, "bgr8", 192), meta)
    assert np.array_equal(a, b)
