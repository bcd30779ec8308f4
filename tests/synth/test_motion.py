import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tapforge.synth.motion import gaps, motion_statistics, moving_frames
from tapforge.synth.poses import about_z, pose_matrices


def test_gaps_by_hand():
    present = np.array(
        [
            [1, 1, 0, 0, 0, 1, 0, 1],  # gaps of 3 and 1 -> 3
            [0, 0, 1, 1, 1, 1, 0, 0],  # hidden at both ends only: no gap
            [0, 0, 0, 0, 0, 0, 0, 0],  # never seen
            [1, 0, 0, 0, 0, 0, 0, 1],  # first and last frame: 6
        ],
        bool,
    )
    assert gaps(present).tolist() == [3, 0, 0, 6]


@given(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 12))))
def test_gaps_match_a_plain_loop(present):
    for row, longest in zip(present, gaps(present)):
        seen = np.flatnonzero(row)
        assert longest == (np.diff(seen).max() - 1 if len(seen) > 1 else 0)


def test_moving_frames_see_translation_rotation_and_deformation():
    frames = 5
    upright = np.tile([0.0, 0, 0, 1], (frames, 1))
    still = pose_matrices(np.zeros((frames, 3)), upright)
    slide = pose_matrices(np.array([[0, 0, 0], [0, 0, 0], [0.01, 0, 0], [0.01, 0, 0], [0.01, 0, 0]]), upright)
    spin = pose_matrices(np.zeros((frames, 3)), about_z([0, 0, 0, 0.1, 0.1]))
    assert moving_frames(still[None], np.ones(1)).tolist() == [False] * 4
    assert moving_frames(slide[None], np.ones(1)).tolist() == [False, True, False, False]
    assert moving_frames(spin[None], np.ones(1)).tolist() == [False, False, True, False]
    assert moving_frames(spin[None], np.array([0.005])).tolist() == [False] * 4  # 0.1 rad at 5 mm: 0.5 mm
    vertices = np.zeros((frames, 3, 3))
    vertices[4:, 0, 2] = 0.002
    assert moving_frames(still[None], np.ones(1), [vertices]).tolist() == [False, False, False, True]


def test_motion_statistics_by_hand():
    # 2 tracks, 6 frames, a 10x10 image; track 0 leaves the frame (x = 12) for frames 2-3 and comes back
    tracks = np.full((2, 6, 2), 5.0)
    tracks[0, 2:4, 0] = 12.0
    tracks_3d = np.ones((2, 6, 3))
    occluded = np.zeros((2, 6), bool)
    occluded[0, 2:4] = True  # outside: hidden
    occluded[1, 5] = True  # hidden at the end only: does not reappear
    poses = pose_matrices(np.zeros((1, 6, 3)), np.tile([0.0, 0, 0, 1], (1, 6, 1)))
    stats = motion_statistics(tracks, occluded, tracks_3d, (10, 10), poses, np.ones(1))
    assert stats == {
        "moving_frame_share": 0.0,
        "reappearing_share": 0.5,
        "longest_gap": 2,
        "median_longest_gap": 2.0,
        "reentering_share": 0.5,
    }
