"""Ground truth checked against the renderer's own passes (segmentation, position, depth, vector, AOV)."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_query_points_project_to_the_pixel_centre_they_were_sampled_from(rendered_scene):
    clip = rendered_scene["clip"]
    t = clip.query[:, 0].astype(int)
    at_query = clip.tracks[np.arange(clip.num_tracks), t]
    assert np.abs(at_query - clip.query[:, [2, 1]]).max() < 0.01
    assert not clip.occluded[np.arange(clip.num_tracks), t].any()


@pytest.fixture(scope="module")
def agreement(rendered_scene):
    from tapforge.synth.gt_check import render_pass_agreement

    figures = render_pass_agreement(rendered_scene["clip"], rendered_scene["passes"])
    print(figures)
    return figures


def test_segmentation_shows_the_tracked_object_at_visible_points(agreement):
    assert agreement["visible_points"] > 500 and agreement["visible_segmentation_match"] > 0.9


def test_position_pass_shows_the_tracked_3d_point_at_visible_points(agreement):
    # the pixel centre lies within half a pixel of the point: its surface point is within ~1 pixel footprint
    assert agreement["visible_position_error_px"] < 1.0


def test_hidden_points_in_frame_really_are_behind_something(agreement):
    assert agreement["hidden_in_frame_points"] > 20
    assert agreement["hidden_plainly_visible"] < 0.05  # hardly any hidden point is plainly in view
    assert agreement["hidden_covered"] > 0.6  # the rest face away at silhouettes


def test_forward_flow_of_the_vector_pass_agrees_with_track_motion(agreement):
    assert agreement["median_motion_px"] > 0.05  # the camera or objects move
    assert agreement["flow_error_px"] < 0.1


def test_object_coordinates_aov_is_written_and_matches_the_poses(rendered_scene):
    """Blender 5 trap: naming a view-layer AOV through the wrong property leaves the pass all zero."""
    passes, poses = rendered_scene["passes"], rendered_scene["poses"]
    coords = passes["object_coordinates"]
    ids = passes["object_index"]
    on_objects = ids > 0
    assert np.abs(coords[on_objects]).max() > 0.05
    t, y, x = np.nonzero(on_objects)
    world = passes["position"][t, y, x]
    obj = ids[t, y, x] - 1
    inv = np.linalg.inv(poses[obj, t])
    local = np.einsum("nij,nj->ni", inv[:, :3, :3], world) + inv[:, :3, 3]
    assert np.median(np.abs(local - coords[t, y, x])) < 1e-3


def test_multilayer_exr_is_multipart_and_every_part_is_read(tmp_path, rendered_scene):
    """Blender 5 trap: the legacy single-part reader sees only part 0 of a multilayer EXR."""
    import OpenEXR

    from tapforge.synth.exr import read_multilayer_exr

    renderer_scene = rendered_scene  # a Blender session is alive in this process: write one EXR
    import bpy

    scene = bpy.context.scene
    scene.frame_set(0)
    scene.render.filepath = str(tmp_path / "frame")
    scene.view_layers["rgb"].use = False
    scene.view_layers["aux"].use = True
    bpy.ops.render.render(write_still=True)
    path = next(tmp_path.glob("frame*.exr"))
    channels = read_multilayer_exr(path)
    for name in ("aux.Depth.Z", "aux.Position.X", "aux.Vector.W", "aux.Object Index.X", "aux.object_coordinates.R"):
        assert name in channels
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        assert len(exr.parts) > 1
        assert set(exr.parts[0].channels) < set(channels)
    assert renderer_scene["clip"].num_frames == 5


def test_frames_are_srgb_uint8_and_optional_passes_are_stored(rendered_scene):
    clip = rendered_scene["clip"]
    assert clip.video.dtype == np.uint8 and np.asarray(clip.video).std() > 5
    assert clip.depth.shape == clip.video.shape[:3] and clip.segmentation.dtype == np.uint16
    finite = np.isfinite(clip.depth)
    assert finite.mean() > 0.3 and (clip.depth[finite] > 0).all()
    assert set(np.unique(clip.object_ids)) <= set(np.unique(clip.segmentation))


def test_the_clip_is_a_pure_function_of_the_rendered_scene(rendered_scene):
    from tapforge.synth.pipeline import make_clip

    clip, again = rendered_scene["clip"], make_clip(rendered_scene["rendered"], rendered_scene["config"])
    for name in ("video", "tracks", "occluded", "tracks_3d", "object_ids", "query", "depth", "segmentation"):
        assert np.array_equal(getattr(clip, name), getattr(again, name)), name
    assert clip.camera == again.camera and clip.meta == again.meta and clip.key == again.key == "scene-0000003"


def test_the_aux_passes_do_not_depend_on_the_rgb_layers_sampling_and_light_paths(rendered_scene):
    """Ground truth reads only the aux passes: render settings that make the rgb layer cheaper must leave them
    bit-identical (here the settings before the cheaper default: Cycles' own adaptive minimum, 12/4/4 bounces, the light
    tree)."""
    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import SceneRenderer

    config = rendered_scene["config"]
    before = [
        "render.resolution=64",
        "render.samples=8",
        "render.noise_threshold=0.02",
        "render.adaptive_min_samples=0",
        "render.max_bounces=12",
        "render.diffuse_bounces=4",
        "render.glossy_bounces=4",
        "render.light_tree=true",
        f"scene.num_frames={config.scene.num_frames}",
        f"tracks.num_tracks={config.tracks.num_tracks}",
        "scene.num_static_objects=[4,6]",
        "scene.num_dynamic_objects=[2,3]",
        "outputs.passes=[depth,segmentation]",
    ]
    again = SceneRenderer(load_config("movi_e", before)).render(3)
    try:
        passes, expected = again.passes, rendered_scene["passes"]
        assert not np.array_equal(passes["rgb"], expected["rgb"])  # the rgb layer did change
        aux = sorted(set(expected) - {"rgb"})
        assert {"position", "object_index", "depth_z", "vector", "object_coordinates"} <= set(aux), aux
        for name in aux:
            np.testing.assert_array_equal(passes[name], expected[name], err_msg=name)
    finally:
        again.close()
