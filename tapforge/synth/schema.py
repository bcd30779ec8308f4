"""The shard schema: one WebDataset sample per scene, numpy + stdlib only; the format's writer and reader.

Both the writer (``synth``) and the reader (``train``) use this module, so it must never import bpy, torch or
webdataset. A shard is a plain tar (`write_tar_samples`, `iter_tar_samples`): sample ``key`` is the members
``key.ENTRY``, one per entry, in entry order. Entries are plain ``.npy`` (no pickle), JSON and per-frame images,
so plain ``webdataset`` reads a shard without tapforge: ``wds.WebDataset(url).decode("rgb8")`` yields the frames
as ``video.000.png`` ... (three digits; from frame 1000 on four: order them by number) and the arrays as
``tracks.npy`` etc.

==========================  ===================  =============================================================
entry                       dtype, shape         meaning
==========================  ===================  =============================================================
video.NNN.png|jpg           uint8 [H,W,3]        sRGB frame NNN (PNG lossless or JPEG, ``outputs.video_codec``)
tracks.npy                  float32 [N,T,2]      (x, y) raster pixels of each point in each frame
occluded.npy                bool [N,T]           True where the point is hidden, behind the camera or outside
tracks_3d.npy               float32 [N,T,3]      the point in OpenCV camera coordinates per frame (TAPVid-3D)
object_ids.npy              int32 [N]            the object each track lies on (0 = static background)
query.npy (optional)        float32 [N,3]        (t, y, x) of a frame where the point is visible (NaN: never, in a
                                                 view of a multi-view scene that does not see the point)
tracks_world.npy (views)    float32 [N,T,3]      the point in world coordinates (Z up, metres) per frame; the same
                                                 array and rows in every view of a multi-view scene
depth.npy (optional)        float32 [T,H,W]      Euclidean distance to the camera centre (inf: sky)
segmentation.npy (opt.)     uint16 [T,H,W]       instance ids, in the id space of ``object_ids``
camera.json                                      intrinsics ``K`` and per-frame extrinsics, conventions stated
meta.json                                        seed, config hash, scene (objects, materials ...), fps,
                                                 ``schema_version``, ``video_codec``; ``view`` in multi-view
==========================  ===================  =============================================================

The optional per-pixel passes (`OPTIONAL_PASSES`) are written when ``outputs.passes`` names them.

Multi-view scenes (one simulation seen by several cameras): a view is a clip. Each view is a sample of its own,
with every entry above for its camera (its video, 2D tracks, occlusion by its own passes, camera-frame 3D tracks,
``camera.json``), so any single-view reader reads a multi-view dataset as single-view clips. Its key is the
scene's key and the view, ``scene-0000003_view-01`` (no dot: webdataset's sample key is a member's name up to its
first dot); its ``meta.json`` has ``view``: ``{"scene": "scene-0000003", "index": 1, "count": 4}``; its
``camera.json`` adds ``look_at_world`` [T,3]; ``tracks_world.npy`` holds the world tracks, row n the same surface
point in every view of the scene. The views of a scene are consecutive samples of one shard, in view order.

Conventions (TAP-Vid): tracks are (x, y) raster pixels with (0, 0) the top-left corner of the
top-left pixel; queries are (t, y, x); ``occluded`` is True where the point is not visible.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence

import numpy as np

SCHEMA_VERSION = 1
VIDEO_CODECS = ("png", "jpg")
OPTIONAL_PASSES = ("depth", "segmentation")  # per-pixel entries [T,H,W], written when ``outputs.passes`` names them

# entry name -> (dtype, number of dimensions)
ARRAY_ENTRIES = {
    "tracks": (np.float32, 3),
    "occluded": (np.bool_, 2),
    "tracks_3d": (np.float32, 3),
    "object_ids": (np.int32, 1),
    "query": (np.float32, 2),
    "tracks_world": (np.float32, 3),
    "depth": (np.float32, 3),
    "segmentation": (np.uint16, 3),
}
REQUIRED_ARRAYS = ("tracks", "occluded", "tracks_3d", "object_ids")


class SchemaError(ValueError):
    """A sample does not follow the shard schema; the message names the entry and the problem."""


@dataclass
class Clip:
    """One rendered scene with its ground truth, as stored in a shard sample."""

    key: str
    video: np.ndarray  # uint8 [T,H,W,3] sRGB
    tracks: np.ndarray  # float32 [N,T,2] (x, y)
    occluded: np.ndarray  # bool [N,T]
    tracks_3d: np.ndarray  # float32 [N,T,3] camera coordinates
    object_ids: np.ndarray  # int32 [N], 0 = static background
    camera: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    query: np.ndarray | None = None  # float32 [N,3] (t, y, x)
    depth: np.ndarray | None = None  # float32 [T,H,W] Euclidean distance to the camera centre
    segmentation: np.ndarray | None = None  # uint16 [T,H,W] instance ids, same space as object_ids
    tracks_world: np.ndarray | None = None  # float32 [N,T,3] world points: multi-view scenes, the same in every view

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.tracks.shape[0])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # numpy raises several types for damaged data
        raise SchemaError(f"entry {name}.npy is not a readable plain .npy array ({err})") from err


def encode_frame(frame: np.ndarray, codec: str, jpeg_quality: int) -> bytes:
    """One uint8 frame [H,W,3] -> the bytes of a frame entry (``codec`` png or jpg at ``jpeg_quality``)."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(frame, mode="RGB") if frame.ndim == 3 else Image.fromarray(frame)
    if codec == "png":
        image.save(buf, format="PNG", compress_level=1)
    else:
        image.save(buf, format="JPEG", quality=int(jpeg_quality))
    return buf.getvalue()


def decode_frame(data: bytes, name: str) -> np.ndarray:
    """One frame entry (PNG or JPEG bytes) -> uint8 [H,W,3]; SchemaError naming the entry if it does not decode."""
    from tapforge.base.video import decode_image

    try:
        return decode_image(data)
    except ValueError as err:
        raise SchemaError(f"entry {name} is not a decodable image ({err})") from err


def _frame_order(name: str) -> tuple[int, str]:
    number = name.split(".")[1]
    return len(number), number  # numeric order of the names `frame_entry` writes: video.999 < video.1000


def frame_names(sample: Mapping[str, Any]) -> list[str]:
    """The frame entries of a raw sample (``video.000.png`` ...), in frame order: by frame number, so that
    ``video.1000.png`` (frame 1000 on, the names have four digits) comes after ``video.999.png``."""
    return sorted((k for k in sample if k.startswith("video.")), key=_frame_order)


def decode_frames(sample: Mapping[str, Any], indices: Sequence[int]) -> np.ndarray:
    """Decode only the frames ``indices`` of a raw sample -> uint8 [len(indices),H,W,3].

    Raises SchemaError for an undecodable frame or frames of different sizes.
    """
    names = frame_names(sample)
    out = None
    for i, index in enumerate(indices):
        frame = decode_frame(sample[names[index]], names[index])
        if out is None:
            out = np.empty((len(indices),) + frame.shape, np.uint8)
        if frame.shape != out.shape[1:]:
            raise SchemaError(
                f"entry {names[index]} is {frame.shape[1]}x{frame.shape[0]}, not the clip's "
                f"{out.shape[2]}x{out.shape[1]}"
            )
        out[i] = frame
    return out


def frame_entry(index: int, codec: str) -> str:
    """Name of the entry holding frame ``index`` (e.g. ``video.007.png``)."""
    return f"video.{index:03d}.{codec}"


def encode_clip(clip: Clip, codec: str = "png", jpeg_quality: int = 95) -> dict[str, Any]:
    """Turn a clip into a WebDataset sample dict (``__key__`` plus entry name -> bytes)."""
    if codec not in VIDEO_CODECS:
        raise SchemaError(f"unknown video codec {codec!r}; use one of {VIDEO_CODECS}")
    validate_clip(clip)
    sample: dict[str, Any] = {"__key__": clip.key}
    for t, frame in enumerate(clip.video):
        sample[frame_entry(t, codec)] = encode_frame(frame, codec, jpeg_quality)
    for name in ARRAY_ENTRIES:
        value = getattr(clip, name)
        if value is not None:
            sample[f"{name}.npy"] = _npy_bytes(value.astype(ARRAY_ENTRIES[name][0], copy=False))
    sample["camera.json"] = json.dumps(clip.camera, sort_keys=True).encode()
    meta = dict(clip.meta, schema_version=SCHEMA_VERSION, video_codec=codec)
    sample["meta.json"] = json.dumps(meta, sort_keys=True).encode()
    return sample


def decode_clip(sample: Mapping[str, Any], with_video: bool = True) -> Clip:
    """Rebuild a :class:`Clip` from a raw WebDataset sample (entry name -> bytes).

    Raises :class:`SchemaError` naming the entry if anything is missing or malformed.
    """
    key = sample.get("__key__")
    if not key:
        raise SchemaError("sample has no __key__")
    try:
        meta = json.loads(sample["meta.json"])
        camera = json.loads(sample["camera.json"])
    except KeyError as err:
        raise SchemaError(f"sample {key} lacks entry {err.args[0]}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SchemaError(f"sample {key} has unreadable JSON ({err})") from err
    arrays: dict[str, np.ndarray | None] = {}
    for name in ARRAY_ENTRIES:
        data = sample.get(f"{name}.npy")
        if data is None:
            if name in REQUIRED_ARRAYS:
                raise SchemaError(f"sample {key} lacks entry {name}.npy")
            arrays[name] = None
        else:
            arrays[name] = _npy_load(data, name)
    names = frame_names(sample)
    if not names:
        raise SchemaError(f"sample {key} has no video.NNN.png|jpg frames")
    if with_video:
        video = np.stack([decode_frame(sample[k], k) for k in names])
    else:
        video = np.zeros((len(names), 0, 0, 3), np.uint8)
    clip = Clip(key=str(key), video=video, camera=camera, meta=meta, **arrays)  # type: ignore[arg-type]
    validate_clip(clip, check_frame_size=with_video)
    return clip


def validate_clip(clip: Clip, check_frame_size: bool = True) -> None:
    """Check dtypes and shapes against the schema; raise :class:`SchemaError` naming the entry."""
    video = clip.video
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise SchemaError(f"{clip.key}: video must be uint8 [T,H,W,3], got {video.dtype} {video.shape}")
    num_frames = video.shape[0]
    num_tracks = clip.tracks.shape[0] if clip.tracks.ndim else -1
    expected = {
        "tracks": (num_tracks, num_frames, 2),
        "occluded": (num_tracks, num_frames),
        "tracks_3d": (num_tracks, num_frames, 3),
        "object_ids": (num_tracks,),
        "query": (num_tracks, 3),
        "tracks_world": (num_tracks, num_frames, 3),
    }
    if check_frame_size:
        expected.update({name: tuple(video.shape[:3]) for name in OPTIONAL_PASSES})
    for name, (dtype, ndim) in ARRAY_ENTRIES.items():
        value = getattr(clip, name)
        if value is None:
            continue
        if value.ndim != ndim or (name in expected and tuple(value.shape) != expected[name]):
            raise SchemaError(f"{clip.key}: {name} has shape {value.shape}, expected {expected.get(name)}")
        if value.dtype != dtype:
            raise SchemaError(f"{clip.key}: {name} has dtype {value.dtype}, expected {np.dtype(dtype)}")
    if not np.isfinite(clip.tracks).all():
        raise SchemaError(f"{clip.key}: tracks contain NaN or infinity")


TAR_OWNER = "tapforge"
# webdataset's rule: a member's sample key is its path up to the first dot of its file name, the rest its entry
MEMBER_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def write_tar_samples(fileobj: BinaryIO, samples: Iterable[Mapping[str, Any]]) -> None:
    """Write samples (``__key__`` plus entry name -> bytes) to ``fileobj`` as a shard tar: member ``key.entry``
    per entry in entry order, with a fixed owner, mode and time, so the same samples give the same bytes (the
    bytes webdataset's ``TarWriter(fileobj, user="tapforge", group="tapforge", mtime=0)`` writes)."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for entry in sorted(k for k in sample if not k.startswith("_")):
                data = sample[entry]
                info = tarfile.TarInfo(f"{sample['__key__']}.{entry}")
                info.size, info.mtime, info.mode = len(data), 0, 0o444
                info.uname = info.gname = TAR_OWNER
                tar.addfile(info, io.BytesIO(data))


def iter_tar_samples(path: Path | str) -> Iterator[dict[str, Any]]:
    """The samples of a shard tar (``__key__`` plus entry name -> bytes), grouped as webdataset groups them:
    consecutive members with the same key are one sample; entry names are lower-cased; members that are not
    files, have no entry name or are webdataset metadata (``__...__``) are skipped.

    Raises SchemaError for an entry that occurs twice in one sample, ``tarfile.TarError`` or EOFError for a
    damaged tar."""
    current: dict[str, Any] = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            match = MEMBER_NAME.match(member.name)
            if not member.isreg() or not match or re.match(r"__[^/]*__($|/)", member.name):
                continue
            key, entry = match[1], match[2].lower()
            if current and current["__key__"] != key:
                yield current
                current = {}
            if entry in current:
                raise SchemaError(f"sample {key} holds entry {entry} twice")
            current.setdefault("__key__", key)
            current[entry] = tar.extractfile(member).read()
            tar.members = []  # a streamed tar need not remember the members it has read
    if current:
        yield current
