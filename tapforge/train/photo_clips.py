"""Real-photo clips with exact tracks: natural photographs moved by known homographies.

    tapforge photo-clips --out real.pkl [--photos DIR] [--num-clips 30] [--frames 24] [--size 256]
                         [--points 128] [--seed 0]

Each clip shows one photo as the background, seen by a camera that drifts by a smooth random
homography (translation, zoom, rotation and mild perspective: random-walk keyframes about one per
8 frames, joined by Catmull-Rom splines; a median of 1-5 px per frame at 256x256, proportionally
less at smaller sizes), and a patch of another photo (a rectangle or an ellipse, a quarter to half
the frame a side) sliding over it with its own, faster smooth homography (1.5-7 px per frame). Frames are rendered by inverse warping with bilinear sampling at
pixel centres, so the tracks are exact: a point keeps its photo coordinate and moves with its
surface's homography (H_t o H_q^-1 from its query frame q). A background point is occluded where
the patch covers it, any point where it leaves the frame. Queries are pixel centres of a random
frame where the point is visible, half of the points on the patch and half on the background.
Pixels as everywhere in tapforge: (0, 0) is the top-left corner of the top-left pixel, pixel
centres at +0.5.

Photos: by default the natural photographs shipped with scikit-learn (``china.jpg``,
``flower.jpg``) and matplotlib (``grace_hopper.jpg``, ``Minduka_Present_Blue_Pack.png``), which
need ``pip install "tapforge[photos]"``; or every image (``tapforge.base.video.IMAGE_SUFFIXES``: png, jpg, bmp,
tif, webp) in ``--photos DIR`` (transparency is composited over white). ``tapforge photo-clips`` writes them as a
TAP-Vid DAVIS-format pickle (``tapforge.tapir.tapvid.write_tapvid_pickle``), which ``tapforge eval --tapvid-davis``
and training's ``data.tapvid.davis`` read. The same photos,
settings and seed give the same bytes; clip ``i`` depends only on the seed and ``i``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tapforge.base.errors import TapforgeError
from tapforge.base.video import IMAGE_SUFFIXES, decode_image
from tapforge.train.sampling import outside_frame


def bundled_photo_paths() -> list[str]:
    """The natural photographs that scikit-learn and matplotlib ship (imported only here)."""
    try:
        import matplotlib
        import sklearn.datasets
    except ImportError as err:
        raise TapforgeError(
            f"the bundled photos come with scikit-learn and matplotlib, but {err.name} is not installed; "
            'fix: pip install "tapforge[photos]", or pass a folder of your own photos (--photos DIR)'
        ) from None
    sklearn_images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    mpl_samples = os.path.join(matplotlib.get_data_path(), "sample_data")
    return [
        os.path.join(sklearn_images, "china.jpg"),
        os.path.join(sklearn_images, "flower.jpg"),
        os.path.join(mpl_samples, "grace_hopper.jpg"),
        os.path.join(mpl_samples, "Minduka_Present_Blue_Pack.png"),
    ]


def load_photos(folder: str | os.PathLike | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 [H,W,3]) of every image (``IMAGE_SUFFIXES``) in ``folder`` in name order, or of the bundled
    photos."""
    if folder is None:
        paths = bundled_photo_paths()
    else:
        folder = os.fspath(folder)
        try:
            names = sorted(os.listdir(folder))
        except OSError as err:
            raise TapforgeError(
                f"cannot list the photo folder {folder!r} ({err.strerror}); fix: pass a readable folder of photos"
            ) from None
        paths = [os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
        if not paths:
            raise TapforgeError(
                f"the photo folder {folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); fix: put photos there, "
                "or leave out --photos to use the bundled ones"
            )
    photos = []
    for path in paths:
        try:
            pixels = _photo_pixels(path)
        except (OSError, ValueError) as err:
            raise TapforgeError(f"cannot read the photo {path!r} ({err}); fix: replace or remove that file") from None
        if min(pixels.shape[:2]) < 16:
            raise TapforgeError(
                f"the photo {path!r} is only {pixels.shape[1]}x{pixels.shape[0]} pixels; "
                "fix: use photos of at least 16 pixels a side"
            )
        photos.append((os.path.splitext(os.path.basename(path))[0], pixels))
    return photos


def _photo_pixels(path: str) -> np.ndarray:
    """uint8 [H,W,3]: a photo with transparency laid over white, any other through the project's frame decoder
    (which scales 16-bit and converts every mode)."""
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return decode_image(path)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography that maps the 4 points ``src`` [4,2] onto ``dst`` [4,2]."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.append(np.linalg.solve(np.array(rows, float), np.array(rhs, float)), 1.0).reshape(3, 3)


def apply_homography(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points [..., 2] (x, y) mapped by homographies [..., 3, 3] (leading dimensions broadcast)."""
    mapped = np.einsum("...ij,...j->...i", h, np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1))
    return mapped[..., :2] / mapped[..., 2:]


def bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Colours [..., C] of ``image`` [H,W,C] at positions [..., 2] (x, y), pixel centres at +0.5, edges clamped."""
    height, width = image.shape[:2]
    x = np.clip(xy[..., 0] - 0.5, 0, width - 1)
    y = np.clip(xy[..., 1] - 0.5, 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    image = np.asarray(image, np.float64)
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _spline(keys: np.ndarray, num_frames: int) -> np.ndarray:
    """Catmull-Rom interpolation [T, ...] through keyframes [K, ...] spread evenly over the frames."""
    count = len(keys)
    s = np.linspace(0, count - 1, num_frames)
    i = np.minimum(np.floor(s).astype(np.int64), count - 2)
    f = (s - i).reshape((-1,) + (1,) * (keys.ndim - 1))
    p0, p1, p2, p3 = (keys[np.clip(i + d, 0, count - 1)] for d in (-1, 0, 1, 2))
    return 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2 + (3 * p1 - p0 - 3 * p2 + p3) * f**3)


def smooth_motion(
    rng: np.random.Generator, num_frames: int, corners: np.ndarray, speed: float, turn: float, zoom: float, skew: float
) -> np.ndarray:
    """[T,4,2]: ``corners`` [4,2] moved smoothly by a random similarity plus perspective jitter.

    Per frame, the translation moves about ``speed`` px, the rotation ``turn`` rad and the log
    scale ``zoom`` (a drift common to the clip plus a random walk over keyframes, about one per 8
    frames); each corner also wanders by about ``skew`` px (perspective). Frame 0 is unmoved but
    for the jitter.
    """
    num_keys = max(2, num_frames // 8 + 1)
    span = max(1, num_frames - 1) / (num_keys - 1)
    scale = np.array([speed, speed, turn, zoom]) * span
    steps = (rng.normal(size=4) + 0.5 * rng.normal(size=(num_keys, 4))) * scale
    steps[0] = 0.0
    params = _spline(np.cumsum(steps, axis=0), num_frames)
    jitter = _spline(rng.normal(size=(num_keys, 4, 2)) * skew, num_frames)
    centre = corners.mean(axis=0)
    rel = corners - centre
    cos, sin = np.cos(params[:, 2:3]), np.sin(params[:, 2:3])
    rotated = np.stack([cos * rel[:, 0] - sin * rel[:, 1], sin * rel[:, 0] + cos * rel[:, 1]], axis=-1)
    return centre + params[:, None, :2] + np.exp(params[:, 3])[:, None, None] * rotated + jitter


def _resized(photo: np.ndarray, factor: float) -> np.ndarray:
    """``photo`` scaled by ``factor`` (at least) with a Lanczos filter, as float64."""
    height, width = photo.shape[:2]
    size = (int(np.ceil(width * factor)), int(np.ceil(height * factor)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS), np.float64)


@dataclass
class PhotoClip:
    """One clip with its exact tracks and the geometry they come from (pixels (x, y))."""

    name: str
    video: np.ndarray  # uint8 [T,H,W,3]
    tracks: np.ndarray  # float64 [N,T,2]
    occluded: np.ndarray  # bool [N,T]
    on_patch: np.ndarray  # bool [N]: the track lies on the occluding patch (else on the background)
    query_frames: np.ndarray  # int64 [N]: the frame each track was sampled at (visible there)
    patch_mask: np.ndarray  # bool [T,H,W]: pixel centres the patch covers


def make_clip(
    rng: np.random.Generator,
    photos: list[tuple[str, np.ndarray]],
    num_frames: int = 24,
    size: int = 256,
    num_points: int = 128,
    name: str = "clip",
) -> PhotoClip:
    """Render one clip: a photo under a moving camera and a patch of another photo moving over it."""
    grid = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), axis=-1)  # [H,W,2] pixel centres
    back = int(rng.integers(len(photos)))
    front = (back + int(rng.integers(1, len(photos)))) % len(photos) if len(photos) > 1 else back

    # background: frame pixels at t -> reference-frame pixels (camera motion) -> resized photo pixels
    frame = np.array([[0.0, 0.0], [size, 0.0], [size, size], [0.0, size]])
    corners = smooth_motion(
        rng, num_frames, frame, speed=rng.uniform(0.002, 0.012) * size, turn=0.004, zoom=0.006, skew=0.01 * size
    )
    low, high = corners.min(axis=(0, 1)) - 1, corners.max(axis=(0, 1)) + 1
    photo = photos[back][1]
    height, width = photo.shape[:2]
    fill = rng.uniform(0.5, 0.9)  # share of the photo's shorter side that the frame spans
    background = _resized(photo, max(size / (fill * min(height, width)), *((high - low) / [width, height])))
    offset = rng.uniform(-low, np.array(background.shape[1::-1]) - high)
    camera = np.stack([homography(frame, c) for c in corners])
    camera[:, :2] += offset[:, None] * camera[:, 2:]  # then shift into the photo

    # patch: patch pixels -> frame pixels, its texture a crop of the resized front photo
    w, h = rng.uniform(0.25, 0.5, 2) * size
    local = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    start = local - [w / 2, h / 2] + rng.uniform(0.3, 0.7, 2) * size
    corners = smooth_motion(
        rng, num_frames, start, speed=rng.uniform(0.005, 0.02) * size, turn=0.015, zoom=0.01, skew=0.03 * min(w, h)
    )
    patch = np.stack([homography(local, c) for c in corners])
    to_patch = np.linalg.inv(patch)
    photo = photos[front][1]
    texture = _resized(photo, max(w / photo.shape[1], h / photo.shape[0]) * rng.uniform(1.2, 2.0))
    crop = rng.uniform(0, np.array(texture.shape[1::-1]) - [w, h])
    ellipse = bool(rng.random() < 0.5)

    def covered(uv: np.ndarray) -> np.ndarray:
        """Whether patch coordinates [..., 2] lie on the patch."""
        u, v = uv[..., 0] / w, uv[..., 1] / h
        if ellipse:
            return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 < 1
        return (u >= 0) & (u < 1) & (v >= 0) & (v < 1)

    video = np.empty((num_frames, size, size, 3), np.uint8)
    patch_mask = np.empty((num_frames, size, size), bool)
    for t in range(num_frames):
        colour = bilinear(background, apply_homography(camera[t], grid))
        uv = apply_homography(to_patch[t], grid)
        patch_mask[t] = covered(uv)
        colour[patch_mask[t]] = bilinear(texture, uv[patch_mask[t]] + crop)
        video[t] = np.clip(np.round(colour), 0, 255).astype(np.uint8)

    # queries: pixel centres where the surface shows, at random frames; half of them on the patch
    num_patch = num_points // 2 if patch_mask.any() else 0
    on_patch = np.arange(num_points) < num_patch
    query_frames = np.empty(num_points, np.int64)
    query_xy = np.empty((num_points, 2))
    for rows, shows in ((np.flatnonzero(on_patch), patch_mask), (np.flatnonzero(~on_patch), ~patch_mask)):
        frames = np.flatnonzero(shows.any(axis=(1, 2)))
        query_frames[rows] = rng.choice(frames, size=len(rows))
        for t in np.unique(query_frames[rows]):
            at = rows[query_frames[rows] == t]
            pixels = np.flatnonzero(shows[t])
            query_xy[at] = grid.reshape(-1, 2)[rng.choice(pixels, size=len(at), replace=len(at) > len(pixels))]

    # tracks: photo (or patch) coordinate at the query frame, mapped into every frame
    on_background = np.linalg.inv(camera)[None]
    tracks = np.where(
        on_patch[:, None, None],
        apply_homography(patch[None], apply_homography(to_patch[query_frames], query_xy)[:, None]),
        apply_homography(on_background, apply_homography(camera[query_frames], query_xy)[:, None]),
    )
    hidden = ~on_patch[:, None] & covered(apply_homography(to_patch[None], tracks))  # background under the patch
    occluded = outside_frame(tracks, size, size) | hidden
    occluded[np.arange(num_points), query_frames] = False  # visible at its query pixel (guards rounding)
    name = f"{name}-{photos[back][0]}-{photos[front][0]}"
    return PhotoClip(name, video, tracks, occluded, on_patch, query_frames, patch_mask)


def make_clips(
    num_clips: int = 30,
    num_frames: int = 24,
    size: int = 256,
    num_points: int = 128,
    seed: int = 0,
    photos_dir: str | os.PathLike | None = None,
) -> list[PhotoClip]:
    """``num_clips`` clips; clip ``i`` is drawn from ``np.random.default_rng([seed, i])``."""
    if num_clips < 1 or num_frames < 2 or size < 16 or num_points < 2:
        raise TapforgeError(
            f"num_clips={num_clips}, frames={num_frames}, size={size}, points={num_points}: "
            "fix: ask for at least 1 clip of 2 frames of 16x16 pixels with 2 points"
        )
    photos = load_photos(photos_dir)
    return [
        make_clip(np.random.default_rng([seed, i]), photos, num_frames, size, num_points, f"clip{i:04d}")
        for i in range(num_clips)
    ]
