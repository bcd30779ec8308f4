"""Decoding real videos: a seek gives exactly the frames that decoding from frame 0 gives (constant frame rate, the
containers of SEEK_SUFFIXES), everything else is read from frame 0, and a run of clips is cut from one decoder."""

import os

import numpy as np
import pytest

from tapforge.base.video import read_video, write_video
from tapforge.train import video_sources
from tapforge.train.video_sources import ShortVideo, count_frames, frame_grid, iter_clips, read_frames
from tests.video_files import FPS, counted_decoders, decoded_from_frame_0, write_test_video

CLIPS = [np.arange(s, s + 5) for s in (1, 7, 8, 9, 16, 23, 24, 35)] + [np.arange(10, 25, 3)]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm"])
def test_a_seek_gives_exactly_the_frames_decoding_from_frame_0_gives(tmp_path, monkeypatch, suffix):
    path = write_test_video(tmp_path / f"cfr{suffix}")
    reference = decoded_from_frame_0(path)
    assert len(reference) == count_frames(path) == 40 and not np.array_equal(reference[7], reference[8])
    grid = frame_grid(path, len(reference))
    assert grid == pytest.approx((0.0, 1 / FPS))
    decoder_starts = counted_decoders(monkeypatch)
    for indices in CLIPS:  # around keyframes (every 8th frame), between them, up to the last frame
        np.testing.assert_array_equal(read_frames(path, indices, grid), reference[indices], err_msg=str(indices))
    assert len(decoder_starts) == len(CLIPS) and all("-ss" in options for _, options in decoder_starts)


def test_variable_frame_rate_avi_and_gif_are_read_from_frame_0_exactly(tmp_path, monkeypatch):
    # frame t shown at (t + t*t/40) / 30 s: the gaps grow, no regular grid to seek on
    vfr = write_test_video(tmp_path / "vfr.mp4", params=["-vf", "setpts=(N+N*N/40)/30/TB", "-fps_mode", "passthrough"])
    avi = os.path.join(tmp_path, "cfr.avi")
    write_video(avi, decoded_from_frame_0(write_test_video(tmp_path / "cfr.mp4")), fps=FPS)
    gif = write_video(tmp_path / "clip.gif", decoded_from_frame_0(vfr)[:, :16, :16], fps=10)
    decoder_starts = counted_decoders(monkeypatch)
    for path in (vfr, avi, gif):
        reference = read_video(path)[0] if path.endswith(".gif") else decoded_from_frame_0(path)
        assert len(reference) == count_frames(path) == 40
        grid = frame_grid(path, len(reference))
        assert grid is None, path
        for indices in CLIPS[::3]:
            np.testing.assert_array_equal(read_frames(path, indices, grid), reference[indices], err_msg=path)
    assert decoder_starts and not any("-ss" in options for _, options in decoder_starts)


def test_a_run_of_clips_is_cut_from_one_decoder_and_an_earlier_clip_starts_another(tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "long.mp4", frames=60)
    reference = decoded_from_frame_0(path)
    starts, decode = [], video_sources._decode

    def counted(path, first=0, grid=None):
        starts.append(first)
        return decode(path, first, grid)

    monkeypatch.setattr(video_sources, "_decode", counted)
    in_order = [np.arange(0, 5), np.arange(5, 15, 2), np.arange(20, 29, 4), np.arange(52, 60)]
    for indices, frames in zip(in_order, iter_clips(path, in_order), strict=True):
        np.testing.assert_array_equal(frames, reference[indices])
    assert starts == [0]
    again = [np.arange(30, 34), np.arange(31, 35), np.arange(2, 4)]  # overlapping, then earlier
    for indices, frames in zip(again, iter_clips(path, again), strict=True):
        np.testing.assert_array_equal(frames, reference[indices])
    assert starts == [0, 30, 31, 2]
    with pytest.raises(ShortVideo, match="ended after 60 frames"):
        list(iter_clips(path, [np.arange(50, 55), np.arange(58, 62)]))
