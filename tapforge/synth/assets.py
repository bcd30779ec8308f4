"""A local asset folder in Kubric's manifest format (e.g. downloaded Google Scanned Objects).

Layout, as Kubric's ``AssetSource.from_manifest`` expects::

    DIR/manifest.json   {"name": ..., "data_dir": "." or a path, "assets": {ID: {"asset_type": "FileBasedObject",
                          "kwargs": {"render_filename": "ID/visual_geometry.obj", ...}, "license": ...}}}
    DATA_DIR/ID/...      the asset's files, or DATA_DIR/ID.tar.gz (unpacked into a cache on first use)

Only the geometry is used (our own materials are applied); the collision shape is a VHACD convex
decomposition, computed once per mesh and cached.

The manifest and the archives are untrusted data: an asset id must be one plain file name, a ``render_filename``
a relative path that stays inside the asset's folder, and archives are unpacked member by member with tarfile's
``data`` filter (no absolute paths, no ``..``, no links out, no devices) into a temporary folder renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from tapforge.base import cache_dir
from tapforge.base.atomic import atomic_write
from tapforge.base.errors import TapforgeError
from tapforge.synth.native import import_pybullet

CACHE_DIR = cache_dir()
VHACD_RESOLUTION = 100_000  # voxels; PyBullet's default
_ASSETS: dict[str, dict] = {}  # asset id -> {"data_dir": Path, "render_file": str, "license": str}
ASSET_ID = re.compile(r"[\w+-][\w.+-]*")  # one file name: letters, digits, _ . + -, not starting with a dot


def _check_entry(manifest_path: Path, asset_id: object, render_file: str) -> None:
    """Refuse an asset id or render_filename that could name a path outside the asset's folder."""
    if not isinstance(asset_id, str) or not ASSET_ID.fullmatch(asset_id):
        raise TapforgeError(
            f"assets.directory: {manifest_path} has the asset id {asset_id!r}, which is not a plain file name "
            "(letters, digits, _ . + -, not starting with a dot); fix the manifest"
        )
    parts = PurePosixPath(render_file.replace("\\", "/")).parts
    if not parts or render_file.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        raise TapforgeError(
            f"assets.directory: entry {asset_id!r} of {manifest_path} has render_filename {render_file!r}, which "
            "leaves the asset's folder; give a relative path inside it (no '..', not absolute)"
        )


def open_asset_directory(directory: str | os.PathLike) -> list[str]:
    """Read DIR/manifest.json, register its FileBasedObject assets, return their sorted ids."""
    root = Path(directory).expanduser()
    manifest_path = root / "manifest.json" if root.is_dir() else root
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TapforgeError(
            f"assets.directory: {manifest_path} is not a readable JSON manifest ({err}); "
            "point it at the folder holding a Kubric-format manifest.json"
        ) from None
    entries = manifest.get("assets") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict):
        raise TapforgeError(
            f"assets.directory: {manifest_path} has no 'assets' mapping of asset id to entry (Kubric's "
            f'format: {{"assets": {{"id": {{"asset_type": ..., "kwargs": ...}}}}}}); fix the manifest'
        )
    data_dir = Path(manifest.get("data_dir") or ".")
    data_dir = data_dir if data_dir.is_absolute() else manifest_path.parent / data_dir
    for asset_id, entry in entries.items():
        kwargs = entry.get("kwargs", {}) if isinstance(entry, dict) else None
        render_file = (kwargs or {}).get("render_filename", f"{asset_id}/visual_geometry.obj")
        if not isinstance(kwargs, dict) or not isinstance(render_file, str):
            raise TapforgeError(
                f"assets.directory: entry {asset_id!r} of {manifest_path} is not an object with a "
                "'kwargs' object (render_filename: a path); fix the manifest"
            )
        if entry.get("asset_type", "FileBasedObject") != "FileBasedObject":
            continue
        _check_entry(manifest_path, asset_id, render_file)
        _ASSETS[asset_id] = {
            "data_dir": data_dir,
            "render_file": render_file,
            "license": entry.get("license", "unknown"),
        }
    if not _ASSETS:
        raise TapforgeError(f"assets.directory: {manifest_path} lists no FileBasedObject assets")
    return sorted(k for k in entries if k in _ASSETS)


def _asset_file(asset_id: str) -> Path:
    info = _ASSETS[asset_id]
    for base in (info["data_dir"], info["data_dir"] / asset_id):
        if (base / info["render_file"]).is_file():
            return base / info["render_file"]
    archive = info["data_dir"] / f"{asset_id}.tar.gz"
    if archive.is_file():
        target = CACHE_DIR / "assets" / asset_id
        if not target.is_dir():
            _unpack(archive, target)
        for base in (target, target / asset_id):
            if (base / info["render_file"]).is_file():
                return base / info["render_file"]
    raise TapforgeError(
        f"asset {asset_id}: {info['render_file']} not found in {info['data_dir']} nor in "
        f"{asset_id}.tar.gz; check the manifest's data_dir and render_filename"
    )


def _unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` all at once: into a temporary sibling, member by member through tarfile's
    ``data`` filter, then renamed into place (an interrupted unpack leaves no half folder that looks complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                tar.extract(member, scratch, filter="data")
        try:
            os.replace(scratch, target)
        except OSError:
            if not target.is_dir():  # else another worker unpacked it first
                raise
    except (tarfile.TarError, OSError) as err:
        raise TapforgeError(
            f"asset archive {archive}: cannot be unpacked safely ({type(err).__name__}: {err}); "
            "fix: re-create the archive with relative member paths and no links outside it"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangulated faces of a Wavefront OBJ (polygons are fanned)."""
    vertices, faces = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            if line.startswith("v "):
                vertex = [float(x) for x in line.split()[1:4]]
                if len(vertex) != 3 or not np.isfinite(vertex).all():
                    raise ValueError("a vertex needs three finite coordinates")
                vertices.append(vertex)
            elif line.startswith("f "):
                corners = [int(token.split("/")[0]) for token in line.split()[1:]]
                corners = [c - 1 if c > 0 else len(vertices) + c for c in corners]
                if len(corners) < 3:
                    raise ValueError("a face needs three or more vertex indices")
                faces += [[corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1)]
        except ValueError as err:
            raise TapforgeError(
                f"{path} line {number}: {line.strip()[:60]!r} is not a valid OBJ line ({err}); fix: re-export the mesh"
            ) from None
    if not vertices or not faces:
        raise TapforgeError(f"{path}: no triangles found; is it an OBJ mesh?")
    faces = np.array(faces, np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise TapforgeError(
            f"{path}: faces refer to vertices it does not have ({len(vertices)} vertices); fix: re-export the mesh"
        )
    return np.array(vertices, float), faces.astype(np.int32)


@lru_cache(maxsize=64)
def load_asset_mesh(asset_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The asset's mesh, centred on its bounding box with its longest side 1 (like the procedural shapes)."""
    vertices, faces = read_obj(_asset_file(asset_id))
    lo, hi = vertices.min(0), vertices.max(0)
    return (vertices - (lo + hi) / 2) / (hi - lo).max(), faces


def asset_licence(asset_id: str) -> str:
    return _ASSETS[asset_id]["license"]


def convex_decomposition(vertices: np.ndarray, faces: np.ndarray) -> Path:
    """A cached VHACD decomposition (OBJ of convex parts) of a unit mesh; computed once per mesh."""
    pb = import_pybullet()

    key = hashlib.sha256(np.ascontiguousarray(vertices, np.float64).tobytes() + faces.tobytes()).hexdigest()[:20]
    out = CACHE_DIR / "vhacd" / f"{key}.obj"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.with_name(f"{key}.in-{os.getpid()}.obj")
    source.write_text(
        "".join(f"v {x:.7f} {y:.7f} {z:.7f}\n" for x, y, z in vertices)
        + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces)
    )
    # atomic: parallel workers never see a half-written decomposition
    atomic_write(
        out,
        lambda tmp: pb.vhacd(str(source), tmp, str(out.with_suffix(".log")), resolution=VHACD_RESOLUTION),
        suffix=".obj",
    )
    source.unlink()
    return out
