"""Shared fixtures made once per test session: tiny real Blender renders, tiny procedural training shards."""

from __future__ import annotations

import sys

import numpy as np
import pytest

TINY = [
    "render.resolution=48",
    "render.samples=2",
    "scene.num_frames=4",
    "tracks.num_tracks=128",
    "outputs.scenes_per_shard=1",
]


def render_command(out, num_scenes: int, sets, *extra) -> list[str]:
    """``tapforge synth render --config tiny`` into ``out`` with ``--set`` of each of ``sets``, as a subprocess argv."""
    command = [sys.executable, "-m", "tapforge.cli", "synth", "render", "--config", "tiny", "--out", str(out)]
    command += ["--num-scenes", str(num_scenes), "--no-progress"]
    return command + [arg for item in sets for arg in ("--set", item)] + list(extra)


@pytest.fixture(scope="session")
def rendered_scene():
    """One movi_e scene at 64x64 with its passes, poses and camera, rendered by Blender for real."""
    pytest.importorskip("bpy", reason="bpy (Blender 5 as a Python module) is needed to render")
    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import SceneRenderer, make_clip

    config = load_config(
        "movi_e",
        [
            "render.resolution=64",
            "render.samples=4",
            "scene.num_frames=5",
            "tracks.num_tracks=512",
            "scene.num_static_objects=[4,6]",
            "scene.num_dynamic_objects=[2,3]",
            "outputs.passes=[depth,segmentation]",
        ],
    )
    rendered = SceneRenderer(config).render(3)
    return {
        "clip": make_clip(rendered, config),
        "rendered": rendered,
        "passes": rendered.passes,
        "poses": rendered.poses,
        "config": config,
    }


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """Four procedural 32x32 clips of 6 frames (two objects) in two shards: a folder for data.train_shards."""
    from tapforge.train.procedural import write_shards

    out = tmp_path_factory.mktemp("tiny_shards")
    write_shards(
        str(out),
        num_clips=4,
        clips_per_shard=2,
        num_frames=6,
        size=(32, 32),
        num_objects=2,
        points_per_object=8,
        background_points=8,
    )
    return str(out)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
