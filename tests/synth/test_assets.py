"""A user asset folder in Kubric's manifest format loads through the same path as procedural shapes."""

import json

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.assets import open_asset_directory, read_obj
from tapforge.synth.shapes import blob

pytestmark = pytest.mark.slow


def _write_obj(path, vertices, faces):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
        + "".join(f"f {a + 1}/1 {b + 1}/1 {c + 1}/1\n" for a, b, c in faces)
    )


def test_asset_directory_renders_with_cached_vhacd_collisions(tmp_path, monkeypatch):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    monkeypatch.setattr("tapforge.synth.assets.CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr("tapforge.synth.assets.VHACD_RESOLUTION", 10_000)  # coarse and quick for the test
    vertices, faces = blob(np.random.default_rng(0), subdivisions=6)  # an irregular pebble
    _write_obj(tmp_path / "assets" / "pebble" / "visual_geometry.obj", vertices * 0.2, faces)
    manifest = {
        "name": "test",
        "data_dir": ".",
        "assets": {
            "pebble": {
                "asset_type": "FileBasedObject",
                "license": "CC0",
                "kwargs": {"render_filename": "pebble/visual_geometry.obj"},
            }
        },
    }
    (tmp_path / "assets" / "manifest.json").write_text(json.dumps(manifest))
    assert open_asset_directory(tmp_path / "assets") == ["pebble"]
    v, f = read_obj(tmp_path / "assets" / "pebble" / "visual_geometry.obj")
    assert v.shape == vertices.shape and f.shape == faces.shape

    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config(
        "movi_e",
        [
            "render.resolution=32",
            "render.samples=1",
            "scene.num_frames=2",
            "tracks.num_tracks=32",
            "scene.num_static_objects=4",
            f"assets.directory={tmp_path / 'assets'}",
        ],
    )
    clip = make_clip(SceneRenderer(config).render(1), config)
    assert "Asset" in [o["kind"] for o in clip.meta["scene"]["objects"]]
    assert list((tmp_path / "cache" / "vhacd").glob("*.obj"))  # decomposition computed once and cached


def test_a_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(TapforgeError, match="manifest"):
        open_asset_directory(tmp_path)


def test_user_textures_and_hdri_backgrounds_are_used(tmp_path):
    pytest.importorskip("bpy", reason="bpy is needed to render")
    import OpenEXR
    from PIL import Image

    textures, hdris = tmp_path / "textures", tmp_path / "hdris"
    textures.mkdir()
    hdris.mkdir()
    pattern = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([pattern, 255 - pattern, pattern], -1)).save(textures / "checks.png")
    sky = np.ones((16, 32), np.float32)
    with OpenEXR.File(
        {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
        {"R": sky * 0.2, "G": sky * 0.4, "B": sky * 0.9},
    ) as exr:
        exr.write(str(hdris / "blue.exr"))

    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config(
        "movi_e",
        [
            "render.resolution=32",
            "render.samples=1",
            "scene.num_frames=2",
            "tracks.num_tracks=32",
            "scene.num_static_objects=6",
            "scene.background=hdri",
            "scene.materials=[textured]",
            f"assets.textures_dir={textures}",
            f"assets.hdri_dir={hdris}",
        ],
    )
    clip = make_clip(SceneRenderer(config).render(2), config)
    scene = clip.meta["scene"]
    assert scene["background"]["kind"] == "Environment" and scene["background"]["hdri"].endswith("blue.exr")
    used = [o["material"]["texture"] for o in scene["objects"]] + [scene["floor"]["material"]["texture"]]
    assert any(t and t["source"].endswith("checks.png") for t in used)


@pytest.mark.parametrize(
    "manifest,pattern",
    [
        ("{not json", "not a readable JSON manifest"),
        ('{"assets": [1, 2]}', "no 'assets' mapping"),
        ("[1, 2]", "no 'assets' mapping"),
        ('{"assets": {"a": [1]}}', "entry 'a' of .* is not an object"),
        ('{"assets": {"a": {"kwargs": {"render_filename": 3}}}}', "entry 'a' of .* is not an object"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_clear_error(tmp_path, manifest, pattern):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(TapforgeError, match=pattern) as info:
        open_asset_directory(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "line,pattern",
    [
        ("v 1 x 2", "line 4: 'v 1 x 2' is not a valid OBJ line"),
        ("v 1 2", "line 4: 'v 1 2' is not a valid OBJ line .*three finite"),
        ("f 1 2", "line 4: 'f 1 2' is not a valid OBJ line"),
        ("f 1 2 9", "faces refer to vertices it does not have"),
    ],
)
def test_a_broken_obj_line_is_named(tmp_path, line, pattern):
    path = tmp_path / "mesh.obj"
    path.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\n{line}\nf 1 2 3\n")
    with pytest.raises(TapforgeError, match=pattern):
        read_obj(path)


def test_broken_hdris_are_config_errors_and_blender_refuses_what_it_cannot_decode(tmp_path):
    from tapforge.synth.config import load_config

    hdris = tmp_path / "hdris"
    hdris.mkdir()
    (hdris / "notes.hdr").write_text("not an image")
    with pytest.raises(TapforgeError, match=r"assets.hdri_dir: 1 file\(s\) are not HDR/EXR images \(notes.hdr\)"):
        load_config("movi_e", ["scene.background=hdri", f"assets.hdri_dir={hdris}"])
    pytest.importorskip("bpy", reason="bpy is needed to load the image")
    from tapforge.synth.pipeline import SceneRenderer

    (hdris / "notes.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n")  # header, no pixels
    config = load_config(
        "movi_e",
        [
            "render.resolution=32",
            "render.samples=1",
            "scene.num_frames=2",
            "tracks.num_tracks=8",
            "scene.background=hdri",
            f"assets.hdri_dir={hdris}",
        ],
    )
    with pytest.raises(TapforgeError, match="notes.hdr: Blender cannot decode this image"):
        SceneRenderer(config).render(0)


def _manifest(folder, assets):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "t", "data_dir": ".", "assets": assets}))
    return folder


@pytest.mark.parametrize(
    "asset_id", ["../../escaped", "..", ".hidden", "a/b", "a\\b", "/abs", "", "~user", "ok\x00no", "C:evil"]
)
def test_an_asset_id_that_is_not_a_plain_file_name_is_refused(tmp_path, asset_id):
    folder = _manifest(tmp_path / "assets", {asset_id: {"asset_type": "FileBasedObject", "kwargs": {}}})
    with pytest.raises(TapforgeError, match="not a plain file name"):
        open_asset_directory(folder)


@pytest.mark.parametrize(
    "render_file", ["../../etc/passwd", "/etc/passwd", "a/../../b.obj", "\\\\host\\x.obj", "C:/x.obj"]
)
def test_a_render_filename_leaving_the_assets_folder_is_refused(tmp_path, render_file):
    folder = _manifest(
        tmp_path / "assets", {"pebble": {"asset_type": "FileBasedObject", "kwargs": {"render_filename": render_file}}}
    )
    with pytest.raises(TapforgeError, match="leaves the asset's folder"):
        open_asset_directory(folder)


def _archive(path, members):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:  # a symbolic link out of the folder
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("evil", ["../../outside.txt", "link"])
def test_an_archive_member_leaving_the_cache_is_refused_and_nothing_is_written(tmp_path, monkeypatch, evil):
    from tapforge.synth.assets import load_asset_mesh

    monkeypatch.setattr("tapforge.synth.assets.CACHE_DIR", tmp_path / "home" / "cache")
    folder = _manifest(tmp_path / "data", {"pebble": {"asset_type": "FileBasedObject", "kwargs": {}}})
    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    _archive(folder / "pebble.tar.gz", {"pebble/visual_geometry.obj": obj, evil: None if evil == "link" else b"x"})
    open_asset_directory(folder)
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(TapforgeError, match="cannot be unpacked safely"):
        load_asset_mesh.__wrapped__("pebble")
    cache = tmp_path / "home" / "cache"
    assert {p for p in tmp_path.rglob("*")} - before <= {cache.parent, cache, cache / "assets"}  # the folders only
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_an_absolute_archive_member_lands_inside_the_cache(tmp_path, monkeypatch):
    from tapforge.synth.assets import load_asset_mesh

    monkeypatch.setattr("tapforge.synth.assets.CACHE_DIR", tmp_path / "cache")
    folder = _manifest(tmp_path / "data", {"pebble": {"asset_type": "FileBasedObject", "kwargs": {}}})
    outside = tmp_path / "absolute_outside.txt"
    obj = b"v 0 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\n"
    _archive(folder / "pebble.tar.gz", {"pebble/visual_geometry.obj": obj, str(outside): b"x"})
    open_asset_directory(folder)
    load_asset_mesh.__wrapped__("pebble")
    assert not outside.exists()
    assert (tmp_path / "cache" / "assets" / "pebble" / str(outside).lstrip("/")).is_file()  # the leading / dropped


def test_a_safe_archive_unpacks_once_into_the_cache(tmp_path, monkeypatch):
    from tapforge.synth.assets import load_asset_mesh

    monkeypatch.setattr("tapforge.synth.assets.CACHE_DIR", tmp_path / "cache")
    folder = _manifest(tmp_path / "data", {"pebble": {"asset_type": "FileBasedObject", "kwargs": {}}})
    _archive(folder / "pebble.tar.gz", {"pebble/visual_geometry.obj": b"v 0 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\n"})
    open_asset_directory(folder)
    vertices, faces = load_asset_mesh.__wrapped__("pebble")
    assert faces.tolist() == [[0, 1, 2]] and np.ptp(vertices, axis=0).max() == 1.0
    assert [p.name for p in (tmp_path / "cache" / "assets").iterdir()] == ["pebble"]
