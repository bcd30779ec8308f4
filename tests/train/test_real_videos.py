"""The real-clip stream's video files: random clips are exactly the frames at their indices, read from a seek."""

import numpy as np

from tapforge.train.real_videos import RealClipStream
from tests.video_files import counted_decoders, decoded_from_frame_0, write_test_video


def test_random_clips_of_a_video_are_exact_and_read_from_a_seek_to_the_clip(tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "long.mp4", frames=60)
    reference = decoded_from_frame_0(path)
    decoders = counted_decoders(monkeypatch)
    batches = iter(RealClipStream([path], [], 1, 6, 5, [1], (32, 32), seed=3))
    starts = []
    for batch in (next(batches) for _ in range(6)):
        start = int(batch.keys[0].rsplit("@", 1)[1])
        np.testing.assert_array_equal(batch.video[0].numpy(), reference[start : start + 5], err_msg=f"clip at {start}")
        starts.append(start)
    assert len(set(starts)) > 3 and max(starts) > 20  # clips all over the video, not only its start
    seeks = [("-ss" in options) for _, options in decoders]
    assert seeks[: len(starts)] == [start > 0 for start in starts]  # (the stream may have drawn one more)
