"""Camera frames -> model input, without ROS: decode a raw frame buffer (sensor_msgs/Image layout), validate it,
convert it to the model's channels, crop/resize it to the model's input_shape and scale it to RAW units.

    img = decode_frame(data, width, height, encoding, step)      # uint8 [H, W, C] (C = 1, 3 in RGB order, 4 RGBA)
    x = to_model_input(img, meta, crop="center", interpolation="area")   # float32 [C, H', W'] in 0..input_max

and the reverse, used by the camera source to place a dataset image into a camera-sized frame:

    frame = embed_image(x_raw, input_max, (480, 640), channels=3)  # uint8 [480, 640, 3]

Every problem with a frame is an SltError naming the field that is wrong (the ROS node logs it and goes on).
OpenCV is used for resizing when it imports; otherwise a numpy resize that gives the same result for the cases the
tests pin (integer-factor area, nearest with pixel-centre sampling)."""
from __future__ import annotations

import numpy as np

from ..errors import SltError

try:  # optional: faster and better resizing
    import cv2 as _cv2
except Exception:  # noqa: BLE001  # pragma: no cover - depends on the environment
    _cv2 = None

# encoding -> (channels, channel order). 16-bit mono is scaled to 8 bits (>> 8).
ENCODINGS = {
    "mono8": (1, "L"), "8UC1": (1, "L"),
    "rgb8": (3, "RGB"), "bgr8": (3, "BGR"), "8UC3": (3, "BGR"),
    "rgba8": (4, "RGBA"), "bgra8": (4, "BGRA"), "8UC4": (4, "BGRA"),
    "mono16": (1, "L16"), "16UC1": (1, "L16"),
}
CROPS = ("none", "center")
INTERPOLATIONS = ("area", "nearest", "linear")
MAX_PIXELS = 8192 * 8192


def decode_frame(data, width: int, height: int, encoding: str, step: int, is_bigendian: int = 0,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A raw row-major frame buffer (rows `step` bytes apart, padding allowed) -> uint8 [H, W, C] in RGB(A) order
    (C = 1 for mono). Raises SltError for unknown encodings, zero/oversized frames, bad step or wrong data size."""
    if encoding not in ENCODINGS:
        raise SltError(f"unknown image encoding {encoding!r}",
                       f"publish one of {', '.join(sorted(k for k in ENCODINGS if not k[0].isdigit()))}")
    width, height, step = int(width), int(height), int(step)
    if width <= 0 or height <= 0:
        raise SltError(f"zero-size image ({width}x{height})", "the camera must publish width and height > 0")
    if width * height > max_pixels:
        raise SltError(f"image {width}x{height} has more than {max_pixels} pixels",
                       "lower the camera resolution or raise max_pixels")
    ch, order = ENCODINGS[encoding]
    bpp = ch * (2 if order == "L16" else 1)
    row = width * bpp
    if step < row:
        raise SltError(f"step {step} is smaller than width*bytes_per_pixel = {width}*{bpp} = {row} ({encoding})",
                       "step must be the byte length of one row including padding")
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1),
                        dtype=np.uint8)
    need = step * height
    if buf.size != need:
        what = "truncated" if buf.size < need else "oversized"
        raise SltError(f"{what} image data: {buf.size} bytes, step*height = {step}*{height} = {need}",
                       "data must hold exactly step*height bytes")
    rows = buf.reshape(height, step)[:, :row]
    if order == "L16":
        dt = ">u2" if is_bigendian else "<u2"
        img = (np.ascontiguousarray(rows).view(dt).reshape(height, width) >> 8).astype(np.uint8)[:, :, None]
        return img
    img = rows.reshape(height, width, ch)
    if order in ("BGR", "BGRA"):
        img = img[:, :, ::-1] if ch == 3 else img[:, :, [2, 1, 0, 3]]
    return img


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] RGB(A)/mono -> uint8 [H, W, 1] luma (ITU-R BT.601, the same integer rounding as OpenCV:
    a gray pixel R=G=B=v stays exactly v)."""
    if img.shape[2] == 1:
        return img
    r, g, b = (img[:, :, i].astype(np.uint32) for i in range(3))
    y = (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14
    return y.astype(np.uint8)[:, :, None]


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return to_gray(img)
    if channels == 3:
        if img.shape[2] == 1:
            return np.repeat(img, 3, axis=2)
        return img[:, :, :3]
    raise SltError(f"the model wants {channels} input channels", "only 1 (gray) or 3 (RGB) channel models take images")


def center_crop(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """The largest centred region of `img` with the aspect ratio out_w:out_h."""
    h, w = img.shape[:2]
    if w * out_h > h * out_w:          # frame wider than the model: crop the sides
        cw, ch = max(1, (h * out_w) // out_h), h
    else:
        cw, ch = w, max(1, (w * out_h) // out_w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return img[y0:y0 + ch, x0:x0 + cw]


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    # pixel-centre sampling: output i reads input floor((i + 0.5) * n_in / n_out)
    return np.minimum(((2 * np.arange(n_out) + 1) * n_in) // (2 * n_out), n_in - 1)


def resize(img: np.ndarray, out_h: int, out_w: int, interpolation: str = "area") -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [out_h, out_w, C]."""
    if interpolation not in INTERPOLATIONS:
        raise SltError(f"unknown interpolation {interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}")
    h, w, c = img.shape
    if (h, w) == (out_h, out_w):
        return img
    if c > 1 and img.strides[2] < 0:  # a BGR frame seen as RGB: resize the stored order, flip the small result
        return resize(img[:, :, ::-1], out_h, out_w, interpolation)[:, :, ::-1]
    if interpolation == "nearest":
        return img[_nearest_index(out_h, h)][:, _nearest_index(out_w, w)]
    if _cv2 is not None:
        flag = _cv2.INTER_AREA if interpolation == "area" else _cv2.INTER_LINEAR
        if interpolation == "area" and (out_h > h or out_w > w):
            flag = _cv2.INTER_LINEAR  # area is only defined for shrinking
        if img.strides[2] != 1 or img.strides[1] != c:
            img = np.ascontiguousarray(img)
        out = _cv2.resize(img, (out_w, out_h), interpolation=flag)
        return out.reshape(out_h, out_w, c)
    return _resize_numpy(img, out_h, out_w, interpolation)


def _resize_numpy(img, out_h, out_w, interpolation):
    h, w, _ = img.shape
    if interpolation == "area" and h >= out_h and w >= out_w:
        # exact box average over the (fractional) source area of each output pixel
        def weights(n_out, n_in):
            edges = np.arange(n_out + 1) * (n_in / n_out)
            lo, hi = edges[:-1, None], edges[1:, None]
            px = np.arange(n_in)[None, :]
            return np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None) / (n_in / n_out)
        wy, wx = weights(out_h, h), weights(out_w, w)
        out = np.einsum("ih,hwc,jw->ijc", wy, img.astype(np.float64), wx, optimize=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    # bilinear with half-pixel centres
    def coords(n_out, n_in):
        s = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        s = np.clip(s, 0, n_in - 1)
        i0 = np.floor(s).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, s - i0
    y0, y1, fy = coords(out_h, h)
    x0, x1, fx = coords(out_w, w)
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - fx)[None, :, None] + f[y0][:, x1] * fx[None, :, None]
    bot = f[y1][:, x0] * (1 - fx)[None, :, None] + f[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_model_input(img: np.ndarray, meta: dict, crop: str = "center", interpolation: str = "area") -> np.ndarray:
    """uint8 [H, W, C] (from decode_frame) -> float32 [C, H', W'] in raw units 0..input_max, as the artifact's
    metadata (input_shape, input_max) says. crop='center' keeps the model's aspect ratio (no distortion),
    crop='none' stretches the whole frame."""
    if crop not in CROPS:
        raise SltError(f"unknown crop {crop!r}", f"use one of {', '.join(CROPS)}")
    shape = [int(v) for v in meta["input_shape"]]
    if len(shape) != 3:
        raise SltError(f"the model's input_shape {shape} is not [C, H, W]", "only image models run on camera frames")
    c, h, w = shape
    x = center_crop(img, h, w) if crop == "center" else img
    # resize first (cheap on a crop view), then convert channels on the small image
    x = to_channels(resize(x, h, w, interpolation), c)
    scale = float(meta["input_max"]) / 255.0
    out = x.transpose(2, 0, 1).astype(np.float32)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


def from_model_units(x: np.ndarray, input_max: float) -> np.ndarray:
    """float [C, H, W] raw units 0..input_max -> uint8 [H, W, C] pixels (inverse of the scaling in
    to_model_input; exact for 0..255 data and for the 0..16 digits, which to_model_input maps back exactly)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    px = np.clip(np.rint(a * (255.0 / float(input_max))), 0, 255).astype(np.uint8)
    return px.transpose(1, 2, 0)


def embed_image(x: np.ndarray, input_max: float, frame_hw: tuple, channels: int = 3) -> np.ndarray:
    """Place a dataset image (float [C, h, w] raw units) in the centre of a camera-sized frame: scaled by
    nearest-neighbour to fill the largest centred region with its aspect ratio, black around it.
    to_model_input(frame, crop='center', interpolation='nearest') gives back the image exactly, and so does
    interpolation='area' when that region is an integer multiple of the image size."""
    px = from_model_units(x, input_max)
    fh, fw = int(frame_hw[0]), int(frame_hw[1])
    ih, iw = px.shape[:2]
    if fh <= 0 or fw <= 0:
        raise SltError(f"frame size {fw}x{fh} is empty", "use a width and height > 0")
    region = center_crop(np.zeros((fh, fw, 1), np.uint8), ih, iw)
    rh, rw = region.shape[:2]
    # inverse of pixel-centre nearest sampling: frame pixel p shows image pixel floor(p * ih / rh)
    yi = (np.arange(rh) * ih) // rh
    xi = (np.arange(rw) * iw) // rw
    big = px[yi][:, xi]
    big = to_channels(big, channels) if channels in (1, 3) else big
    frame = np.zeros((fh, fw, big.shape[2]), np.uint8)
    y0, x0 = (fh - rh) // 2, (fw - rw) // 2
    frame[y0:y0 + rh, x0:x0 + rw] = big
    return frame


def encode_frame(img: np.ndarray, encoding: str, row_padding: int = 0) -> tuple:
    """uint8 [H, W, C] RGB/mono -> (bytes, step) in `encoding` (mono8, rgb8, bgr8), rows padded by
    `row_padding` bytes (for tests of step handling)."""
    if encoding == "mono8":
        a = to_gray(img)
    elif encoding == "rgb8":
        a = to_channels(img, 3)
    elif encoding == "bgr8":
        a = to_channels(img, 3)[:, :, ::-1]
    else:
        raise SltError(f"cannot encode frames as {encoding!r}", "use mono8, rgb8 or bgr8")
    h, w, c = a.shape
    step = w * c + int(row_padding)
    if row_padding:
        buf = np.zeros((h, step), np.uint8)
        buf[:, :w * c] = a.reshape(h, w * c)
        return buf.tobytes(), step
    return np.ascontiguousarray(a).tobytes(), step
