import dataclasses
import types
import typing

import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import CONFIG_DIR, load_config

PRESETS = ["movi_a", "movi_b", "movi_e", "panning_movi_e", "movi_f", "long_clip", "tiny"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_validates(preset):
    config = load_config(preset)
    assert config.render.samples >= 1
    assert len(config.render.resolution) == 2


def test_presets_differ_where_the_movi_recipes_differ():
    assert load_config("movi_a").script_values["camera"] == "fixed"
    assert load_config("panning_movi_e").script_values["camera"] == "linear_movement_linear_lookat"
    assert load_config("movi_f").script_values["motion_blur"] == [0.0, 1.0]
    assert load_config("long_clip").scene.num_frames == 120


def test_rendering_uses_a_gpu_when_there_is_one_unless_told_otherwise():
    assert all(load_config(preset).render.device == "auto" for preset in PRESETS)
    assert load_config("tiny", ["render.device=cpu"]).render.device == "cpu"


def test_overrides_are_parsed_as_yaml_and_applied():
    config = load_config(
        "movi_e", ["render.samples=64", "outputs.passes=[depth,segmentation]", "render.resolution=128"]
    )
    assert config.render.samples == 64
    assert config.outputs.passes == ("depth", "segmentation")
    assert config.render.resolution == (128, 128)
    assert config.tree["render"]["resolution"] == [128, 128]  # what the manifest stores


def test_the_config_is_typed_frozen_and_keeps_the_plain_tree_for_the_manifest():
    import pickle

    from tapforge.synth.config import SynthConfig, config_hash
    from tapforge.synth.render_job import manifest_header

    config = load_config("tiny", ["render.samples=3", "tracks.depth_tolerance=0.02"])
    assert (config.render.samples, config.tracks.depth_tolerance, config.scene.script) == (3, 0.02, "movi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.render.samples = 4
    tree = config.tree
    tree["render"]["samples"] = 99  # a copy: the config does not change
    assert config.render.samples == 3 and config.tree["render"]["samples"] == 3
    assert config.hash == config_hash(config.tree) and SynthConfig.of(config.tree) == config
    assert pickle.loads(pickle.dumps(config)) == config  # as the render workers receive it
    assert manifest_header(config, 1, "5.0")["config"] == config.tree


def test_every_problem_is_listed_with_its_fix_before_rendering():
    with pytest.raises(TapforgeError) as err:
        load_config("movi_e", ["render.samples=0", "render.device=tpu", "scene.num_frame=3", "seed=abc"])
    message = str(err.value)
    assert "4 problem(s)" in message
    assert "render.samples: bad value 0; use an integer >= 1" in message
    assert "render.device: bad value 'tpu'; use auto, cpu, cuda or optix" in message
    assert "scene.num_frame: unknown key" in message
    assert "seed: bad value 'abc'" in message


def test_unknown_preset_names_the_choices():
    with pytest.raises(TapforgeError, match="movi_e"):
        load_config("movi_z")


def test_bad_yaml_and_unknown_file_keys_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scene: [unclosed\n")
    with pytest.raises(TapforgeError, match="not valid YAML"):
        load_config(bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"inherit: {CONFIG_DIR / 'movi_e.yaml'}\nrender:\n  sample: 3\n")
    with pytest.raises(TapforgeError, match="render.sample: unknown key"):
        load_config(extra)


def test_empty_asset_folders_and_broken_textures_are_errors_before_rendering(tmp_path):
    from PIL import Image

    empty, textures = tmp_path / "empty", tmp_path / "textures"
    empty.mkdir()
    textures.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(TapforgeError) as err:
        load_config("movi_e", [f"assets.textures_dir={empty}", f"assets.hdri_dir={empty}"])
    assert "assets.textures_dir: bad value" in str(err.value) and "holding .png/.jpg images" in str(err.value)
    assert "assets.hdri_dir: bad value" in str(err.value) and "holding .hdr/.exr files" in str(err.value)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(textures / "good.png")
    whole = (textures / "good.png").read_bytes()
    (textures / "cut.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (textures / "text.jpg").write_text("not an image")  # another format under an image suffix
    with pytest.raises(TapforgeError, match=r"assets.textures_dir: 2 image\(s\) do not decode \(cut.png, text.jpg\)"):
        load_config("movi_e", [f"assets.textures_dir={textures}"])
    (textures / "cut.png").unlink()
    (textures / "text.jpg").unlink()
    assert load_config("movi_e", [f"assets.textures_dir={textures}"]).assets.textures_dir == str(textures)


def _fits(value, annotation) -> bool:
    """The value is of the annotated type (a bool is no number; an int is a float)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return value in args
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if annotation in (int, float):
        return isinstance(value, (int, float) if annotation is float else int) and not isinstance(value, bool)
    return isinstance(value, annotation)


@pytest.mark.parametrize("preset", PRESETS + ["movi_deform", "legacy_movi_e"])
def test_the_movi_keys_are_what_their_annotations_say(preset):
    from tapforge.synth.scripts.movi import Config

    hints = typing.get_type_hints(Config)
    for values in (dataclasses.asdict(Config()), load_config(preset).script_values):
        wrong = {name: values[name] for name, annotation in hints.items() if not _fits(values[name], annotation)}
        assert not wrong, (preset, wrong)
    assert _fits([1, 3], hints["num_static_objects"]) and not _fits(1.5, hints["num_static_objects"])


def test_a_movi_key_used_as_one_number_refuses_a_range():
    with pytest.raises(TapforgeError) as err:
        load_config(
            "movi_e", ["scene.max_camera_movement=[1,2]", "scene.soft_share=[0,1]", "scene.focal_length=[20,40]"]
        )
    message = str(err.value)
    assert (
        "2 problem(s)" in message and "scene.max_camera_movement: bad value [1, 2]; use a number in [0, 100]" in message
    )
    assert "scene.soft_share: bad value [0, 1]; use a fraction in [0, 1]" in message


def test_a_config_written_before_the_sampling_keys_keeps_its_meaning_and_its_hash():
    """A resolved config from before render.adaptive_min_samples and the light-path keys (a manifest's): the keys it
    lacks mean what Blender then did (Cycles' own adaptive minimum, 12/4/4 bounces, the light tree on), and its hash is
    that of the tree as it was; the defaults now set them (a new hash)."""
    from tapforge.synth.config import RENDER_KEY_DEFAULTS, SynthConfig, config_hash

    now = load_config("movi_e")
    tree = now.tree
    for key in RENDER_KEY_DEFAULTS:
        del tree["render"][key.split(".")[1]]
    tree["render"].update(samples=64, noise_threshold=0.02)
    before = SynthConfig.of(tree)
    assert before.hash == config_hash(tree) and "max_bounces" not in before.tree["render"]
    render = before.render
    assert (render.adaptive_min_samples, render.max_bounces, render.diffuse_bounces, render.glossy_bounces) == (
        0,
        12,
        4,
        4,
    )
    assert render.light_tree is True and before.hash != now.hash
    assert (now.render.adaptive_min_samples, now.render.max_bounces, now.render.light_tree) == (16, 4, False)


@pytest.mark.parametrize(
    "setting, expected",
    [
        ("render.adaptive_min_samples=1.5", "render.adaptive_min_samples: bad value 1.5; use an integer >= 0"),
        ("render.max_bounces=-1", "render.max_bounces: bad value -1; use an integer in [0, 1024]"),
        ("render.light_tree=2", "render.light_tree: bad value 2; use true or false"),
    ],
)
def test_bad_sampling_keys_are_one_line_with_the_fix(setting, expected):
    with pytest.raises(TapforgeError) as err:
        load_config("movi_e", [setting])
    assert expected in str(err.value)
