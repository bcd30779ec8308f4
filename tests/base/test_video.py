"""Track overlays and video read/write (numpy-only modules)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tapforge.base.drawing import draw_tracks, enlarge, track_colors
from tapforge.base.errors import TapforgeError
from tapforge.base.video import read_video, write_video
from tests.image_modes import frames_of_every_mode


def test_numpy_only_modules_do_not_import_torch():
    code = "import sys, tapforge.base.drawing, tapforge.base.video, tapforge.tapir.tapvid; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _moving_square(num_frames=9, height=48, width=64):
    frames = np.full((num_frames, height, width, 3), 40, np.uint8)
    for t in range(num_frames):
        frames[t, 10:26, 4 + 4 * t : 20 + 4 * t] = (230, 200, 60)
    return frames


def test_draw_tracks_marks_visible_and_hidden_points_differently():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    tracks = np.array([[[15.5, 20.5], [15.5, 20.5]], [[45.5, 20.5], [45.5, 20.5]]])
    occluded = np.array([[False, False], [True, True]])
    colors = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    out = draw_tracks(frames, tracks, occluded, colors=colors, radius=6)
    assert out.shape == frames.shape and out.dtype == np.uint8 and not frames.any()
    # visible: a filled disc, so a pixel half a radius from the centre has the track colour
    assert tuple(out[1, 20, 18]) == (255, 0, 0)
    # hidden: hollow circle with a diagonal cross, so the same offset stays background ...
    assert tuple(out[1, 20, 48]) == (0, 0, 0)
    # ... while the ring and the cross centre are drawn
    assert out[1, 20, 39:41, 1].max() == 255 and out[1, 20, 45, 1] == 255


def test_draw_tracks_trails_follow_visible_paths():
    frames = np.zeros((5, 30, 80, 3), np.uint8)
    xs = 10.0 + 12.0 * np.arange(5)
    tracks = np.stack([xs, np.full(5, 15.0)], -1)[None]
    occluded = np.zeros((1, 5), bool)
    colors = np.array([[0, 0, 255]], np.uint8)
    with_trail = draw_tracks(frames, tracks, occluded, colors=colors, trail=4, radius=2)
    no_trail = draw_tracks(frames, tracks, occluded, colors=colors, trail=0, radius=2)
    midpoint = (15, 16)  # between frame 0 and frame 1 positions, far from the frame-4 marker
    assert with_trail[4][midpoint][2] > 0 and no_trail[4][midpoint][2] == 0
    occluded[0, 1] = True  # a hidden frame breaks the path on both sides
    broken = draw_tracks(frames, tracks, occluded, colors=colors, trail=4, radius=2)
    assert broken[4][midpoint][2] == 0
    nan_tracks = tracks.copy()
    nan_tracks[0, 4] = np.nan
    assert np.array_equal(draw_tracks(frames[4:], nan_tracks[:, 4:], occluded[:, 4:]), frames[4:])


def test_track_colors_are_distinct():
    colors = track_colors(16)
    assert colors.shape == (16, 3) and len({tuple(c) for c in colors}) == 16


@pytest.mark.parametrize(
    "suffix,size", [(".mp4", (48, 64)), (".mp4", (47, 63)), (".gif", (48, 64)), (".webm", (48, 64))]
)
def test_write_read_round_trip(tmp_path, suffix, size):
    frames = _moving_square(height=size[0], width=size[1])
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=12)
    assert os.listdir(tmp_path) == [f"clip{suffix}"]  # no temporary file left behind
    back, fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(12, rel=0.05)
    assert np.abs(back.astype(int) - frames).mean() < 4.0


def test_read_image_folder_in_natural_order(tmp_path):
    for i in (1, 2, 10):
        Image.fromarray(np.full((8, 10, 3), i * 20, np.uint8)).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames, fps = read_video(tmp_path)
    assert frames.shape == (3, 8, 10, 3) and fps > 0
    np.testing.assert_array_equal(frames[:, 0, 0, 0], [20, 40, 200])


def test_video_errors_are_clear(tmp_path):
    with pytest.raises(TapforgeError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(TapforgeError, match="cannot decode video"):
        read_video(broken)
    empty_dir = tmp_path / "frames"
    empty_dir.mkdir()
    with pytest.raises(TapforgeError, match="holds no images"):
        read_video(empty_dir)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(empty_dir / "a.png")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(empty_dir / "b.png")
    with pytest.raises(TapforgeError, match="resize all frames"):
        read_video(empty_dir)
    with pytest.raises(TapforgeError, match="single image"):
        read_video(empty_dir / "a.png")
    with pytest.raises(TapforgeError, match="unknown suffix"):
        write_video(tmp_path / "out.xyz", _moving_square(), fps=10)
    with pytest.raises(TapforgeError, match="even width and height"):
        write_video(tmp_path / "odd.webm", _moving_square(height=47), fps=10)
    assert not (tmp_path / "odd.webm").exists() and not [n for n in os.listdir(tmp_path) if "tmp" in n]


def test_small_frames_are_enlarged_by_a_whole_factor_for_drawing():
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 128, 3), np.uint8)
    big, factor = enlarge(frames)
    assert factor == 4 and big.shape == (2, 384, 512, 3)
    assert np.array_equal(big[:, 4 * 10 + 3, 4 * 20 + 1], frames[:, 10, 20])  # each pixel as it was
    same, factor = enlarge(frames, min_side=64)
    assert factor == 1 and same is frames


MODES = frames_of_every_mode()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_frames_of_every_bit_depth_and_mode_become_8_bit_rgb_or_one_line(tmp_path, mode):
    data, expected = MODES[mode]
    suffix = ".tif" if data[:2] in (b"II", b"MM") else ".png"
    for i in range(3):
        (tmp_path / f"frame{i}{suffix}").write_bytes(data)
    if expected is None:
        with pytest.raises(TapforgeError, match=r"cannot decode frame 'frame0\.tif'.*8-bit") as err:
            read_video(tmp_path)
        assert "\n" not in str(err.value)
        return
    frames, _ = read_video(tmp_path)
    assert frames.dtype == np.uint8 and frames.shape == (3, *expected.shape)
    assert np.abs(frames.astype(int) - expected).max() <= 1  # 16-bit: scaled, never clipped to white


@pytest.mark.parametrize("odd", [1, 2, 4])
@pytest.mark.parametrize("size", [(8, 9), (9, 8), (16, 16)])
def test_a_frame_folder_of_mixed_sizes_names_the_first_odd_frame(tmp_path, odd, size):
    for i in range(5):
        shape = size if i >= odd else (8, 8)
        Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(tmp_path / f"f{i}.png")
    with pytest.raises(TapforgeError) as err:
        read_video(tmp_path)
    message = str(err.value)
    assert f"frame 'f{odd}.png'" in message and f"is {size[1]}x{size[0]} but 'f0.png' is 8x8" in message
    assert "\n" not in message


def test_a_damaged_frame_is_one_line_naming_it(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    with pytest.raises(TapforgeError, match="cannot decode frame 'b.png'") as err:
        read_video(tmp_path)
    assert "\n" not in str(err.value)
