"""Frame images of every bit depth and mode, encoded, with the uint8 RGB each must decode to (or None: refused).

Pillow cannot write 16-bit RGB(A) or LA PNGs, so `png16` writes any 16-bit PNG by hand (one IDAT, filter 0).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of ``pixels`` uint16 [H,W] or [H,W,C] with C in 1..4."""
    pixels = np.asarray(pixels, np.uint16)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    height, width, channels = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def frames_of_every_mode(height: int = 6, width: int = 8) -> dict[str, tuple[bytes, np.ndarray | None]]:
    """name -> (encoded image, the uint8 [H,W,3] RGB it decodes to within 1, or None where it must be refused)."""
    ramp = np.linspace(0, 1, height * width).reshape(height, width)
    gray8 = np.round(ramp * 255).astype(np.uint8)
    gray16 = np.round(ramp * 65535).astype(np.uint16)
    rgb8 = np.stack([gray8, gray8[::-1], np.full_like(gray8, 77)], axis=-1)
    rgb16 = rgb8.astype(np.uint16) * 257 + np.where(rgb8 < 255, 100, 0).astype(np.uint16)  # high byte: rgb8
    alpha16 = np.full((height, width, 1), 1234, np.uint16)
    palette = Image.fromarray(rgb8).quantize(colors=16)
    bits = gray8 > 127
    cases = {
        "gray16": (png16(gray16), np.repeat(gray8[..., None], 3, axis=-1)),
        "gray16_alpha": (png16(np.concatenate([gray16[..., None], alpha16], -1)), np.repeat(gray8[..., None], 3, -1)),
        "rgb16": (png16(rgb16), rgb8),
        "rgba16": (png16(np.concatenate([rgb16, alpha16], -1)), rgb8),
        "gray16_tiff": (_encode(Image.fromarray(gray16), "TIFF"), np.repeat(gray8[..., None], 3, axis=-1)),
        "gray8": (_encode(Image.fromarray(gray8)), np.repeat(gray8[..., None], 3, axis=-1)),
        "gray_alpha8": (_encode(Image.fromarray(gray8).convert("LA")), np.repeat(gray8[..., None], 3, axis=-1)),
        "rgba8": (_encode(Image.fromarray(rgb8).convert("RGBA")), rgb8),
        "palette": (_encode(palette), np.asarray(palette.convert("RGB"))),
        "bilevel": (_encode(Image.fromarray(bits).convert("1")), np.repeat(bits[..., None] * np.uint8(255), 3, -1)),
        "cmyk": (_encode(Image.fromarray(rgb8).convert("CMYK"), "TIFF"), rgb8),
        "float_tiff": (_encode(Image.fromarray(ramp.astype(np.float32)), "TIFF"), None),
        "int32_tiff": (_encode(Image.fromarray((ramp * 1e6).astype(np.int32)), "TIFF"), None),
    }
    return cases
