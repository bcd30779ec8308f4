"""`synth preview` and the other dataset tools (verify, to-tapvid, export, render resume) on long clips: a dataset
folder holding one procedural clip of hundreds to 1024 frames, committed the way a render commits it (no Blender)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tapforge.base.drawing import draw_tracks, enlarge
from tapforge.base.video import read_video
from tapforge.synth.cli import main as synth_main
from tapforge.synth.preview import MAX_PREVIEW_FRAMES, _label, draw_preview, preview_indices, write_preview
from tapforge.synth.schema import encode_clip
from tapforge.train.procedural import make_clip


def write_long_dataset(folder: Path, num_frames: int, size: int = 32):
    """A one-scene dataset of the ``tiny`` preset at ``num_frames`` frames holding a procedural clip, with the
    manifest, record and meta.json a render writes; returns (folder, config, clip)."""
    from tapforge.synth.config import load_config
    from tapforge.synth.pipeline import scene_key
    from tapforge.synth.render_job import assets_digest, dataset_identity, manifest_header
    from tapforge.synth.shards import write_shard

    config = load_config(
        "tiny", [f"scene.num_frames={num_frames}", f"render.resolution={size}", "outputs.scenes_per_shard=1"]
    )
    key = scene_key(0)
    clip = make_clip(
        np.random.default_rng(3), key, num_frames, (size, size), num_objects=2, points_per_object=8, background_points=8
    )
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    clip.camera = {
        "K": [[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]],
        "cam_to_world_blender": c2w.tolist(),
        "world_to_cam_opencv": c2w.tolist(),
    }
    clip.meta = {"config_hash": config.hash, "fps": 24, "seed": 0}
    identity = dataset_identity(config, 1, assets_digest(config))
    header = manifest_header(config, 1, "5.0.1", identity["assets_sha256"])
    record = {**identity, "num_samples": 1, "keys": [key], "seeds": [0]}
    folder.mkdir(parents=True, exist_ok=True)
    write_shard(folder, 0, [encode_clip(clip)], record, header)
    return folder, config, clip


@given(st.integers(1, 5000))
def test_preview_shows_every_kth_frame_at_most_240(num_frames):
    shown = preview_indices(num_frames)
    step = -(-num_frames // MAX_PREVIEW_FRAMES)
    assert len(shown) <= MAX_PREVIEW_FRAMES and shown[0] == 0 and shown[-1] < num_frames
    assert np.array_equal(shown, np.arange(0, num_frames, step))
    assert step == 1 or len(np.arange(0, num_frames, step - 1)) > MAX_PREVIEW_FRAMES  # the smallest step that fits
    if num_frames <= MAX_PREVIEW_FRAMES:
        assert np.array_equal(shown, np.arange(num_frames))


def test_a_short_clip_previews_as_one_drawing_of_all_its_frames():
    clip = make_clip(np.random.default_rng(0), "k", num_frames=40, size=(24, 32))
    frames = np.arange(40)
    drawn = draw_preview(clip.video, clip.tracks, clip.occluded, frames, 40)  # in chunks of 16, with trails
    enlarged, scale = enlarge(clip.video)
    assert np.array_equal(drawn, draw_tracks(enlarged, clip.tracks * scale, clip.occluded))


def test_a_long_clip_previews_every_kth_frame_numbered(tmp_path, capsys):
    dataset, _, clip = write_long_dataset(tmp_path / "data", 300)
    out = write_preview(dataset, tmp_path / "p.mp4", progress=True)
    assert "150/150" in capsys.readouterr().err  # the progress bar went over the 150 frames drawn
    video, fps = read_video(out)
    enlarged, scale = enlarge(clip.video)
    assert video.shape == (150, 384, 384, 3) and fps == 24
    for i in (1, 40, 75, 149):  # preview frame i is clip frame 2i, not a neighbour (the label's corner left out)
        errors = [np.abs(video[i, 48:].astype(int) - enlarged[t, 48:]).mean() for t in (2 * i - 1, 2 * i, 2 * i + 1)]
        assert np.argmin(errors) == 1, errors

    shown = preview_indices(300)
    drawn = draw_preview(clip.video[shown], clip.tracks[:, shown], clip.occluded[:, shown], shown, 300)
    plain = draw_tracks(enlarged[shown], clip.tracks[:, shown] * scale, clip.occluded[:, shown])
    assert np.array_equal(drawn, np.stack([_label(f, t, 300, 2) for f, t in zip(plain, shown)]))  # numbered
    assert not np.array_equal(drawn[:, :20], plain[:, :20]) and np.array_equal(drawn[:, 60:], plain[:, 60:])


def test_verify_to_tapvid_export_and_resume_work_on_a_1024_frame_clip(tmp_path, capsys):
    from tapforge.synth.exports import export_dataset
    from tapforge.synth.render_job import render_dataset
    from tapforge.synth.shards import verify_dataset
    from tests.synth.test_exports import read_cotracker

    dataset, config, clip = write_long_dataset(tmp_path / "data", 1024)
    assert verify_dataset(dataset) == []
    assert synth_main(["verify", str(dataset)]) == 0 and "ok: 1 shards, 1 scenes" in capsys.readouterr().out

    assert synth_main(["to-tapvid", str(dataset), "--out", str(tmp_path / "t.pkl")]) == 0
    with open(tmp_path / "t.pkl", "rb") as f:
        (entry,) = pickle.load(f).values()
    assert np.array_equal(entry["video"], clip.video)  # every frame in order, frames 1000-1023 last
    np.testing.assert_allclose(entry["points"] * 32, clip.tracks, atol=1e-4)
    assert np.array_equal(entry["occluded"], clip.occluded)

    parts = tmp_path / "parts"
    (parts).mkdir()
    (parts / "part-00007.pkl").write_bytes(b"left by an earlier run")
    assert synth_main(["to-tapvid", str(dataset), "--out", str(parts), "--clips-per-file", "1"]) == 0
    assert sorted(p.name for p in parts.iterdir()) == ["part-00000.pkl"]  # one clip per file, the stale part gone
    with open(parts / "part-00000.pkl", "rb") as f:
        assert np.array_equal(pickle.load(f)[clip.key]["video"], clip.video)

    export_dataset(dataset, "cotracker", tmp_path / "cotracker")
    read = read_cotracker(tmp_path / "cotracker", clip.key)  # frames ordered by name, as CoTracker's loader does
    assert np.array_equal(read["rgbs"], clip.video) and read["traj_2d"].shape == (1024, clip.num_tracks, 2)

    shard = dataset / "shard-000000.tar"
    stamp = shard.stat().st_mtime_ns
    summary = render_dataset(config, dataset, 1, progress=False, workers=1)  # a rerun renders nothing
    assert summary["shards_skipped"] == 1 and summary["shards_rendered"] == 0 and shard.stat().st_mtime_ns == stamp
    assert verify_dataset(dataset) == [] and json.loads((dataset / "manifest.json").read_text())["num_complete_scenes"]


def test_preview_command_line_of_a_long_clip(tmp_path):
    import subprocess

    dataset, _, _ = write_long_dataset(tmp_path / "data", 260)
    gif = tmp_path / "p.gif"
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "preview", str(dataset), "--out", str(gif), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == str(gif) and result.stderr == "", result.stderr
    assert read_video(gif)[0].shape[0] == 130
