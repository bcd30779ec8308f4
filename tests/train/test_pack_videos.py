"""pack-videos cuts every clip of a source from one pass of one decoder, and packs exactly the frames at the
planned indices; a source that ends before its planned clips is one error line."""

import json
import os
from pathlib import Path

import numpy as np

from tapforge.base.video import read_video, write_video
from tapforge.synth.schema import decode_frames, frame_names
from tapforge.synth.shards import iter_checked_samples
from tapforge.train import pack_videos, video_sources
from tests.video_files import decoded_from_frame_0, write_test_video


def _packed(out: Path) -> dict:
    """key -> (meta, frames) of every packed clip."""
    manifest = json.loads((out / "manifest.json").read_text())
    clips = {}
    for entry in manifest["shards"]:
        for sample in iter_checked_samples(out, entry, decode=lambda sample: sample):
            frames = decode_frames(sample, range(len(frame_names(sample))))
            clips[sample["__key__"]] = json.loads(sample["meta.json"]), frames
    return clips


def test_each_video_is_decoded_once_for_all_its_clips_which_hold_exactly_the_frames_at_their_indices(
    tmp_path, monkeypatch
):
    long = write_test_video(tmp_path / "src" / "a_long.mp4", frames=60)
    short = write_test_video(tmp_path / "src" / "b_short.mkv", frames=45)
    gif = write_video(tmp_path / "src" / "c.gif", decoded_from_frame_0(short)[:20, :16, :16], fps=10)
    reference = {os.path.basename(p): read_video(p)[0] for p in (gif,)}
    reference |= {os.path.basename(p): decoded_from_frame_0(p) for p in (long, short)}
    starts, decode = [], video_sources._decode

    def counted(path, first=0, grid=None):
        starts.append(os.path.basename(path))
        return decode(path, first, grid)

    monkeypatch.setattr(video_sources, "_decode", counted)
    out = tmp_path / "packed"
    settings = dict(num_frames=5, stride=2, clips_per_shard=3, codec="png")  # lossless: frames compare exactly
    manifest = pack_videos.pack_videos([long, short, gif], str(out), **settings)
    assert manifest["num_samples"] == 6 + 5 + 2 and manifest["num_shards"] == 5  # a source's clips span shards
    assert sorted(starts) == ["a_long.mp4", "b_short.mkv", "c.gif"]  # one decoder start per source
    clips = _packed(out)
    assert len(clips) == 13
    for key, (meta, frames) in clips.items():
        indices = meta["start"] + meta["stride"] * np.arange(5)
        np.testing.assert_array_equal(frames, reference[meta["source"]][indices], err_msg=f"{key} {meta}")
    # a resumed run decodes only the sources of the missing shards, into the same clips
    (out / "shard-000001.tar").unlink()  # clips 3..5: the long video's last three
    starts.clear()
    pack_videos.pack_videos([long, short, gif], str(out), **settings)
    assert starts == ["a_long.mp4"] and _packed(out).keys() == clips.keys()
    assert all(np.array_equal(frames, clips[key][1]) for key, (_, frames) in _packed(out).items())


def test_a_video_that_ends_before_its_planned_clips_is_one_error_line(tmp_path, monkeypatch, capsys):
    from tapforge.cli import main as tapforge_main

    path = write_test_video(tmp_path / "src" / "short.mp4", frames=20)
    monkeypatch.setattr(pack_videos, "count_frames", lambda path: 40)  # the count says more than it decodes to
    out = tmp_path / "packed"
    assert tapforge_main(["pack-videos", path, "--out", str(out), "--num-frames", "8", "--clips-per-shard", "1"]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()[-1:]
    assert line.startswith("tapforge pack-videos: error: ") and "Traceback" not in captured.err
    assert f"{path} failed while packing frames 16.. (ended after 20 frames)" in line and "fix:" in line
    assert json.loads((out / "manifest.json").read_text())["num_complete_shards"] == 2  # the clips before are kept
