"""Sim2real augmentation keeps the ground truth exact (geometry, occluders, queries)."""

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tapforge.base.errors import TapforgeError
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import (
    AugmentConfig,
    BlurConfig,
    ColorConfig,
    CropConfig,
    FlipConfig,
    HomographyConfig,
    JpegConfig,
    NoiseConfig,
    OccluderConfig,
    RollConfig,
)
from tapforge.train.batches import ClipBatch
from tapforge.train.draws import waves
from tapforge.train.jpeg import jpeg_compress
from tapforge.train.photometric import hsv_to_rgb, motion_kernels, rgb_to_hsv
from tapforge.train.queries import repair_queries
from tapforge.train.warp import (
    corner_homography,
    homography_motion,
    homography_points,
    resampling_weights,
    roll_frames,
    roll_motion,
    roll_padding,
    roll_points,
    warp_frames,
)

torch.set_num_threads(1)


def geometry_only(crop: CropConfig, flip: FlipConfig) -> AugmentConfig:
    return AugmentConfig(
        crop=crop,
        flip=flip,
        occluder=OccluderConfig(p=0.0),
        color=ColorConfig(p=0.0, grayscale_p=0.0),
        blur=BlurConfig(gaussian_p=0.0, motion_p=0.0),
        noise=NoiseConfig(p=0.0),
        jpeg=JpegConfig(p=0.0),
    )


def ramp_batch(batch=4, frames=6, size=64, points=200, seed=0):
    """Red rises 4 per pixel to the right, green 4 per pixel down: the colour encodes the position."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(size)
    video = torch.zeros(batch, frames, size, size, 3, dtype=torch.uint8)
    video[..., 0] = (4 * idx)[None, :].expand(size, size).to(torch.uint8)
    video[..., 1] = (4 * idx)[:, None].expand(size, size).to(torch.uint8)
    tracks = 0.5 + torch.rand(batch, points, frames, 2, generator=g) * (size - 1)
    occluded = torch.rand(batch, points, frames, generator=g) < 0.1
    occluded[..., 0] = False
    query_frame = torch.zeros(batch, points, dtype=torch.long)
    return clip_batch(video, tracks, occluded, query_frame)


def clip_batch(video, tracks, occluded, query_frame):
    """A loader batch of these clips (object ids and keys do not matter to the augmentation)."""
    batch_n, points = query_frame.shape
    return ClipBatch(
        video=video,
        tracks=tracks,
        occluded=occluded,
        query_frame=query_frame,
        object_ids=torch.zeros(batch_n, points, dtype=torch.int64),
        keys=[str(i) for i in range(batch_n)],
    )


def ramp_value(pos: torch.Tensor) -> torch.Tensor:
    """Red/green of the ramp at raster position (x, y): pixel centres sit at i + 0.5."""
    return (4.0 * (pos - 0.5)) / 255.0


def bilinear(frames: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample [H,W,C] at raster positions (pixel centres at i + 0.5), written out independently of torch."""
    u, v = x - 0.5, y - 0.5
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    h, w = frames.shape[:2]
    u1, v1 = np.clip(u0 + 1, 0, w - 1), np.clip(v0 + 1, 0, h - 1)
    u0, v0 = np.clip(u0, 0, w - 1), np.clip(v0, 0, h - 1)
    top = frames[v0, u0] * (1 - fu) + frames[v0, u1] * fu
    bottom = frames[v1, u0] * (1 - fu) + frames[v1, u1] * fu
    return top * (1 - fv) + bottom * fv


@pytest.mark.parametrize(
    "crop,flip,out_size",
    [
        (CropConfig(p=1.0, drift_p=0.0), FlipConfig(0.0, 0.0), (64, 64)),
        (CropConfig(p=1.0, drift_p=1.0, drift=0.3, zoom=(0.6, 1.6)), FlipConfig(0.5, 0.5), (48, 40)),
        (CropConfig(p=0.0), FlipConfig(1.0, 1.0), (64, 64)),
        (CropConfig(p=0.0), FlipConfig(0.0, 0.0), (96, 80)),  # zoom in (upsample)
    ],
)
def test_pixel_under_each_visible_track_is_unchanged(crop, flip, out_size):
    batch = ramp_batch()
    aug = Sim2RealAugment(geometry_only(crop, flip), out_size)
    out = aug(batch, torch.Generator().manual_seed(1))
    out_h, out_w = out_size
    assert out.video.shape == (4, 6, out_h, out_w, 3)
    before = torch.stack([ramp_value(batch.tracks[..., 0]), ramp_value(batch.tracks[..., 1])], dim=-1)
    frames = (out.video.numpy() + 1.0) / 2.0
    tracks = out.tracks.numpy()
    visible = ~out.occluded.numpy()
    # away from the borders, where the ramp stops being linear (border padding) and the
    # bilinear reads (or, when shrinking, the antialiasing filter, as wide as the scale) would need
    # pixels outside the frame
    source_xy = np.take_along_axis(batch.tracks.numpy(), out.source_index.numpy()[..., None, None], axis=1)
    margin = np.all((source_xy > 3.0) & (source_xy < 61.0), axis=-1)
    margin &= (
        (tracks[..., 0] > 0.5)
        & (tracks[..., 0] < out_w - 0.5)
        & (tracks[..., 1] > 0.5)
        & (tracks[..., 1] < out_h - 0.5)
    )
    checked = 0
    for b in range(4):
        for t in range(6):
            sel = visible[b, :, t] & margin[b, :, t]
            after = bilinear(frames[b, t], tracks[b, sel, t, 0], tracks[b, sel, t, 1])[:, :2]
            expected = before[b, out.source_index[b][sel], t].numpy()
            np.testing.assert_allclose(after, expected, atol=2e-5)
            checked += int(sel.sum())
    assert checked > 1000
    # a point is occluded after the crop exactly when it was before or it left the frame
    left = ~((tracks[..., 0] >= 0) & (tracks[..., 0] < out_w) & (tracks[..., 1] >= 0) & (tracks[..., 1] < out_h))
    rows = out.source_index.numpy()
    was_occluded = np.take_along_axis(batch.occluded.numpy(), rows[..., None], axis=1)
    np.testing.assert_array_equal(out.occluded.numpy(), was_occluded | left)


def test_flip_matches_pixel_exactly_on_texture():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (2, 3, 32, 40, 3), generator=g, dtype=torch.uint8)
    tracks = torch.rand(2, 50, 3, 2, generator=g) * torch.tensor([40.0, 32.0])
    batch = clip_batch(video, tracks, torch.zeros(2, 50, 3, dtype=torch.bool), torch.zeros(2, 50, dtype=torch.long))
    out = Sim2RealAugment(geometry_only(CropConfig(p=0.0), FlipConfig(1.0, 0.0)), (32, 40))(batch, g)
    frames = torch.round((out.video + 1) * 127.5).to(torch.uint8)
    for b in range(2):
        for t in range(3):
            xi, yi = tracks[b, :, t, 0].long(), tracks[b, :, t, 1].long()
            xo, yo = out.tracks[b, :, t, 0].floor().long(), out.tracks[b, :, t, 1].floor().long()
            assert torch.equal(frames[b, t, yo, xo], video[b, t, yi, xi])
    assert torch.allclose(out.tracks[..., 0], 40.0 - tracks[..., 0])


@pytest.mark.parametrize("replace_p", [0.0, 1.0])
def test_points_under_occluder_patches_become_occluded(replace_p):
    g = torch.Generator().manual_seed(3)
    batch_n, frames_n, size, points = 3, 8, 48, 400
    video = torch.randint(0, 256, (batch_n, frames_n, size, size, 3), generator=g, dtype=torch.uint8)
    tracks = torch.rand(batch_n, points, frames_n, 2, generator=g) * size
    occluded = torch.zeros(batch_n, points, frames_n, dtype=torch.bool)
    query_frame = torch.zeros(batch_n, points, dtype=torch.long)
    config = dataclasses.replace(
        geometry_only(CropConfig(p=0.0), FlipConfig(0.0, 0.0)),
        occluder=OccluderConfig(p=1.0, max_patches=3, size=(0.2, 0.5), replace_p=replace_p, max_speed=0.05),
    )
    out = Sim2RealAugment(config, (size, size))(clip_batch(video, tracks, occluded, query_frame), g)
    after = torch.round((out.video + 1) * 127.5).to(torch.uint8)
    changed = (after != video).any(dim=-1)  # [B,T,H,W]: pixels a patch painted over
    assert changed.float().mean() > 0.02
    xi, yi = tracks[..., 0].long(), tracks[..., 1].long()  # [B,N,T]
    b_idx = torch.arange(batch_n)[:, None, None]
    t_idx = torch.arange(frames_n)[None, None, :]
    under_patch = changed[b_idx, t_idx, yi, xi]
    # rows may be swapped by the query repair; compare against the tracks that came out
    assert torch.equal(out.tracks, tracks[torch.arange(batch_n)[:, None], out.source_index])
    expected = under_patch[torch.arange(batch_n)[:, None], out.source_index]
    assert torch.equal(out.occluded, expected)
    # every query now sits on a visible frame at the track's position
    qf = out.query_frame
    assert not out.occluded.gather(-1, qf[..., None]).any()
    at_query = out.tracks.gather(2, qf[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    assert torch.equal(out.query_points[..., 2], at_query[..., 0])
    assert torch.equal(out.query_points[..., 1], at_query[..., 1])


def test_repair_queries_moves_to_nearest_visible_frame_and_replaces_dead_tracks():
    occluded = torch.tensor([[[True, True, False, False, True], [True] * 5, [False] * 5]])
    tracks = torch.arange(3 * 5 * 2, dtype=torch.float32).reshape(1, 3, 5, 2)
    query_frame = torch.tensor([[0, 1, 4]])
    tracks2, occluded2, qf, source, empty = repair_queries(tracks, occluded, query_frame, torch.Generator())
    assert qf[0, 0] == 2 and qf[0, 2] == 4 and not empty.any()
    assert source[0, 1] in (0, 2)  # the dead track is replaced by a visible one
    assert torch.equal(tracks2[0, 1], tracks[0, source[0, 1]])
    assert not occluded2.gather(-1, qf[..., None]).any()


def test_photometric_only_leaves_tracks_alone_and_stays_in_range():
    batch = ramp_batch(batch=3, frames=4, size=32, points=20)
    config = AugmentConfig(
        crop=CropConfig(p=0.0),
        flip=FlipConfig(0.0, 0.0),
        occluder=OccluderConfig(p=0.0),
        color=ColorConfig(p=1.0, grayscale_p=0.5),
        blur=BlurConfig(gaussian_p=1.0, motion_p=1.0),
        noise=NoiseConfig(p=1.0),
        jpeg=JpegConfig(p=1.0),
    )
    out = Sim2RealAugment(config, (32, 32))(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out.tracks, batch.tracks)
    assert torch.equal(out.occluded, batch.occluded)
    assert out.video.min() >= -1 and out.video.max() <= 1
    assert not torch.allclose(out.video, batch.video.float() / 127.5 - 1, atol=0.02)


def test_hsv_round_trip_and_motion_kernel_normalised():
    x = torch.rand(2, 3, 3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    kernels = motion_kernels(torch.tensor([1.0, 7.0]), torch.tensor([0.0, 1.0]), 9)
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(2))
    assert torch.allclose(kernels, kernels.flip(1, 2), atol=1e-6)  # centred: no shift of the image


def test_jpeg_matches_a_real_jpeg_codec():
    rng = np.random.default_rng(0)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    )
    image = np.clip(smooth.astype(int) + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)
    x = torch.tensor(image).permute(2, 0, 1)[None, None].float() / 255.0
    for quality in (20, 60):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        real = np.asarray(Image.open(buf)).astype(np.float64)
        ours = jpeg_compress(x, (quality, quality), torch.Generator())[0, 0].permute(1, 2, 0).numpy() * 255
        loss = np.abs(real - image).mean()
        assert loss > 3.0  # the codec really loses something at this quality
        assert np.abs(ours - real).mean() < 0.35 * loss


def test_bad_probability_names_the_key():
    config = AugmentConfig(color=ColorConfig(p=1.5))
    with pytest.raises(TapforgeError, match=r"data\.augment\.color\.p"):
        Sim2RealAugment(config, (32, 32))
    with pytest.raises(TapforgeError, match=r"data\.augment\.jpeg\.quality"):
        Sim2RealAugment(AugmentConfig(jpeg=JpegConfig(quality=(0.0, 50.0))), (32, 32))


def test_shrinking_averages_fine_texture_instead_of_aliasing():
    checker = (np.indices((96, 96)).sum(0) % 2).astype(np.float32)  # 1-pixel checkerboard
    frames = torch.from_numpy(checker)[None, None].expand(1, 3, 96, 96)
    one = torch.ones(1, 1)
    small = warp_frames(frames, one * 3, one * 0, one * 3, one * 0, (32, 32))  # samples fall on pixel centres
    assert abs(float(small.mean()) - 0.5) < 0.02 and float(small.std()) < 0.1
    same = warp_frames(frames, one, one * 0, one, one * 0, (96, 96))  # scale 1: every pixel as it was
    torch.testing.assert_close(same, frames)
    # enlarging: the separable weights are the bilinear grid_sample takes when no frame shrinks
    scale, shift = torch.tensor([[0.7], [-0.9]]), torch.tensor([[3.3], [90.0]])
    image = torch.rand(2, 3, 40, 40)
    rows, cols = resampling_weights(scale, shift, 48, 40), resampling_weights(scale * 0.8, shift, 44, 40)
    torch.testing.assert_close(
        rows[:, None] @ image @ cols.transpose(1, 2)[:, None],
        warp_frames(image, scale * 0.8, shift, scale, shift, (48, 44)),
    )


# --- TAPNext++'s camera roll and homography sequence ---


def official_sum(t: np.ndarray, amp, omega, phase) -> np.ndarray:
    """tapnet/tapnextpp's sinusoid sum, written as its loop: sum of a * (sin(t * w + p) - sin(p))."""
    total = np.zeros_like(t)
    for a, w, p in zip(amp, omega, phase):
        total += a * (np.sin(t * w + p) - np.sin(p))
    return total


def official_reflect(val: float, low: float, high: float) -> float:
    """tapnet/tapnextpp's corner reflection (homography.py ``_reflect``)."""
    while val < low or val > high:
        if val < low:
            val = low + (low - val)
        if val > high:
            val = high - (val - high)
    return val


def pixel_check(batch, out, margin: float, one_stage: bool) -> tuple[int, int]:
    """The ramp's colour under every visible output track, away from the borders, is the colour under its source track
    (positions agree to 0.02 input pixels); after ``one_stage`` of camera motion a point is occluded exactly when it
    was or it left the frame. Returns
    (points checked, points that were visible and left the frame)."""
    _, frames_n, out_h, out_w, _ = out.video.shape
    frames = (out.video.numpy() + 1.0) / 2.0
    tracks, visible, rows = out.tracks.numpy(), ~out.occluded.numpy(), out.source_index.numpy()
    source_xy = np.take_along_axis(batch.tracks.numpy(), rows[..., None, None], axis=1)
    size = batch.video.shape[2]
    inside = np.all((source_xy > margin) & (source_xy < size - margin), axis=-1)
    inside &= (tracks[..., 0] > 1) & (tracks[..., 0] < out_w - 1) & (tracks[..., 1] > 1) & (tracks[..., 1] < out_h - 1)
    checked = 0
    for b in range(frames.shape[0]):
        for t in range(frames_n):
            sel = visible[b, :, t] & inside[b, :, t]
            on_fill = bilinear(frames[b, t], tracks[b, visible[b, :, t], t, 0], tracks[b, visible[b, :, t], t, 1])[:, 2]
            assert np.all(on_fill > 0)  # no visible point lies in the black fill
            after = bilinear(frames[b, t], tracks[b, sel, t, 0], tracks[b, sel, t, 1])
            # blue is 1 on the clip and 0 in the black fill: read only where no fill blends in
            sel[sel] = after[:, 2] > 1 - 1e-5
            after = after[after[:, 2] > 1 - 1e-5, :2]
            np.testing.assert_allclose(after, ramp_value(torch.from_numpy(source_xy[b, sel, t])).numpy(), atol=3e-4)
            checked += int(sel.sum())
    left = ~((tracks[..., 0] >= 0) & (tracks[..., 0] < out_w) & (tracks[..., 1] >= 0) & (tracks[..., 1] < out_h))
    was_occluded = np.take_along_axis(batch.occluded.numpy(), rows[..., None], axis=1)
    if one_stage:
        np.testing.assert_array_equal(out.occluded.numpy(), was_occluded | left)
    else:  # a point the roll took out stays occluded where the homography brings it back in over the black border
        assert np.all(out.occluded.numpy() >= (was_occluded | left))
    return checked, int((left & ~was_occluded).sum())


@pytest.mark.parametrize(
    "roll,homography,out_size",
    [
        (RollConfig(p=1.0), HomographyConfig(), (64, 64)),
        (RollConfig(p=1.0, strength=2.0), HomographyConfig(), (48, 40)),
        (RollConfig(), HomographyConfig(p=1.0, strength=2.0), (64, 64)),
        (RollConfig(), HomographyConfig(p=1.0, strength=2.0, fill="edge"), (40, 56)),
        (RollConfig(p=1.0), HomographyConfig(p=1.0), (64, 64)),
    ],
)
def test_roll_and_homography_move_tracks_with_the_pattern(roll, homography, out_size):
    batch = ramp_batch(batch=4, frames=12, points=300)
    batch.video[..., 2] = 255
    config = dataclasses.replace(
        geometry_only(CropConfig(p=0.0), FlipConfig(0.0, 0.0)), roll=roll, homography=homography
    )
    out = Sim2RealAugment(config, out_size)(batch, torch.Generator().manual_seed(2))
    assert not torch.allclose(out.video[:, 1:], out.video[:, :1].expand_as(out.video[:, 1:]))  # the frames moved
    checked, left = pixel_check(batch, out, margin=4.0, one_stage=roll.p == 0 or homography.p == 0)
    assert checked > 2000
    if roll.p > 0:
        assert left > 0  # the roll carries visible points out of the frame, and they become occluded
    else:
        assert left == 0  # the homography only pulls the corners inwards: nothing inside leaves the frame


def test_roll_wraps_pixels_and_tracks_around_the_padded_frame():
    """A shift by more than the padded width brings the right edge's content back in on the left, tracks with it."""
    size, frames_n = 64, 3
    pad = roll_padding(size, size)
    assert pad == 14  # ceil((64 * sqrt(2) - 64) / 2)
    batch = ramp_batch(batch=1, frames=frames_n, size=size, points=400)
    frames = batch.video.permute(0, 1, 4, 2, 3).float() / 255.0
    shift = torch.tensor([[[0.0, 0.0], [size + 2 * pad - 20.0, 3.0], [-30.0, 70.0]]])  # [1,T,2]
    angle = torch.tensor([[0.0, 7.5, -12.0]])
    rolled = roll_frames(frames, shift, angle)
    tracks = roll_points(batch.tracks, shift[:, None], angle[:, None], (size, size))
    torch.testing.assert_close(rolled[:, 0], frames[:, 0])  # no roll: the frame as it was
    torch.testing.assert_close(tracks[:, :, 0], batch.tracks[:, :, 0])
    image = rolled.permute(0, 1, 3, 4, 2).numpy()
    src, dst = batch.tracks.numpy(), tracks.numpy()
    wrapped = 0
    for t in (1, 2):
        ok = np.all((src[0, :, t] > 4) & (src[0, :, t] < size - 4) & (dst[0, :, t] > 1) & (dst[0, :, t] < size - 1), -1)
        after = bilinear(image[0, t], dst[0, ok, t, 0], dst[0, ok, t, 1])[:, :2]
        np.testing.assert_allclose(after, ramp_value(torch.from_numpy(src[0, ok, t])).numpy(), atol=3e-4)
        # without the wrap the point would have left the padded frame
        unwrapped = src[0, ok, t] + shift[0, t].numpy()
        wrapped += int(np.any((unwrapped < -pad) | (unwrapped >= size + pad), axis=-1).sum())
    assert wrapped > 20
    # black comes in where the padding and the outside of the frame show
    assert (image[0, 1:].max(-1) == 0).mean() > 0.05


def test_roll_angle_and_shifts_follow_the_tapnextpp_law():
    config = RollConfig(p=1.0, strength=1.5)
    batch_n, frames_n = 3, 40
    shift, angle = roll_motion(config, batch_n, frames_n, torch.Generator().manual_seed(7), "cpu")
    # the same draws, replayed from the same generator state
    amplitude = torch.tensor([config.shift_x, config.shift_y, config.angle]) * config.strength
    amp, omega, phase = (
        v.double().numpy()
        for v in waves((batch_n, 3), 5, amplitude, (1, 4), (8, 16), torch.Generator().manual_seed(7), "cpu")
    )
    # TAPNext++'s ranges: 5 slow then 5 fast sinusoids, amplitudes [0, 30|10] x, [0, 20|7] y, [0, 10|5] degrees
    limits = np.array([[30.0, 10.0], [20.0, 7.0], [10.0, 5.0]]) * config.strength
    assert np.all(amp >= 0) and np.all(amp <= np.repeat(limits, 5, axis=1)[None])
    assert np.all((omega[..., :5] >= np.pi) & (omega[..., :5] <= 4 * np.pi))
    assert np.all((omega[..., 5:] >= 8 * np.pi) & (omega[..., 5:] <= 16 * np.pi))
    assert np.all((phase >= 0) & (phase < 2 * np.pi))
    t = np.arange(frames_n) / frames_n  # TAPNext++: t = i / S, so the last frame sits one step short of 1
    for b in range(batch_n):
        expected = [official_sum(t, amp[b, k], omega[b, k], phase[b, k]) for k in range(3)]
        np.testing.assert_allclose(angle[b].numpy(), expected[2], atol=1e-4)
        np.testing.assert_array_equal(shift[b, :, 0].numpy(), np.round(expected[0]))
        np.testing.assert_array_equal(shift[b, :, 1].numpy(), np.round(expected[1]))
    assert torch.all(angle[:, 0] == 0) and torch.all(shift[:, 0] == 0)
    assert angle.abs().max() > 5  # it really rolls
    # the tracks turn by exactly that angle, counter-clockwise on screen as OpenCV's rotation matrix
    centre = torch.tensor([20.0, 20.0])
    probe = centre + torch.tensor([[[10.0, 0.0]]])  # [1,1,2]: 10 px right of the centre of a 40x40 frame
    turned = roll_points(probe.expand(batch_n, frames_n, 2), torch.zeros(2), angle, (40, 40)) - centre
    measured = torch.rad2deg(torch.atan2(-turned[..., 1], turned[..., 0]))
    torch.testing.assert_close(measured, angle, atol=1e-3, rtol=0)
    up = roll_points(probe, torch.zeros(2), torch.tensor(90.0), (40, 40))
    torch.testing.assert_close(up, torch.tensor([[[20.0, 10.0]]]), atol=1e-5, rtol=0)


def test_homography_corners_follow_the_tapnextpp_law():
    config = HomographyConfig(p=1.0, strength=4.0)  # strong enough that corners reach the margin and reflect
    batch_n, frames_n, height, width = 2, 30, 48, 64
    warps = homography_motion(config, batch_n, frames_n, (height, width), torch.Generator().manual_seed(4), "cpu")
    amplitude = torch.tensor(config.corner) * config.strength
    amp, omega, phase = (
        v.double().numpy()
        for v in waves((batch_n, 8), 3, amplitude, (1, 4), (8, 16), torch.Generator().manual_seed(4), "cpu")
    )
    corners = np.array([[0.5, 0.5], [width - 0.5, 0.5], [width - 0.5, height - 0.5], [0.5, height - 0.5]])
    signs = np.array([1, 1, -1, 1, -1, -1, 1, -1])  # TAPNext++: every corner moves inwards
    t = np.arange(frames_n) / frames_n
    reflected = 0
    for b in range(batch_n):
        for i in range(frames_n):
            expected = []
            for j in range(8):
                side = width if j % 2 == 0 else height
                moved = abs(official_sum(t[i : i + 1], amp[b, j], omega[b, j], phase[b, j])[0]) * side
                reflected += moved > 0.3 * side
                expected.append(signs[j] * official_reflect(moved, 0.0, 0.3 * side))
            target = corners + np.array(expected).reshape(4, 2)
            got = homography_points(torch.tensor(corners, dtype=torch.float32), warps[b, i])
            np.testing.assert_allclose(got.numpy(), target, atol=2e-3)
    assert reflected > 0
    torch.testing.assert_close(warps[:, 0], torch.eye(3).expand(batch_n, 3, 3), atol=1e-5, rtol=0)
    # a projective map indeed: straight lines stay straight, midpoints do not stay midpoints
    quad = torch.tensor([[3.0, 5.0], [60.0, 1.0], [50.0, 40.0], [9.0, 44.0]])
    m = corner_homography(quad, (height, width))
    line = homography_points(torch.tensor([[0.5, 0.5], [32.0, 24.0], [63.5, 47.5]]), m)
    cross = (line[1] - line[0])[0] * (line[2] - line[0])[1] - (line[1] - line[0])[1] * (line[2] - line[0])[0]
    assert abs(float(cross)) < 1e-2
    assert float((line[1] - (line[0] + line[2]) / 2).norm()) > 0.5


def test_roll_and_homography_are_off_by_default_and_then_draw_nothing(monkeypatch):
    assert AugmentConfig().roll.p == 0 and AugmentConfig().homography.p == 0
    batch = ramp_batch(batch=2, frames=4, size=32, points=30)
    plain = Sim2RealAugment(AugmentConfig(), (32, 32))(batch, torch.Generator().manual_seed(5))

    def refuse(*args, **kwargs):
        raise AssertionError("camera motion ran while off")

    monkeypatch.setattr("tapforge.train.augment._camera_motion", refuse)
    other = AugmentConfig(roll=RollConfig(p=0.0, strength=3.0), homography=HomographyConfig(p=0.0, fill="edge"))
    gen = torch.Generator().manual_seed(5)
    again = Sim2RealAugment(other, (32, 32))(batch, gen)
    for name in ("video", "tracks", "occluded", "query_frame", "query_points", "source_index"):
        assert torch.equal(getattr(again, name), getattr(plain, name)), name
    # and with them on, the same seed gives the same batch (all draws from the generator passed in)
    on = AugmentConfig(roll=RollConfig(p=0.8), homography=HomographyConfig(p=0.8))
    monkeypatch.undo()
    first = Sim2RealAugment(on, (32, 32))(batch, torch.Generator().manual_seed(5))
    second = Sim2RealAugment(on, (32, 32))(batch, torch.Generator().manual_seed(5))
    assert torch.equal(first.video, second.video) and torch.equal(first.tracks, second.tracks)
    assert not torch.equal(first.video, plain.video)


@pytest.mark.parametrize(
    "config,key",
    [
        (AugmentConfig(roll=RollConfig(p=1.2)), r"data\.augment\.roll\.p is 1\.2; fix"),
        (
            AugmentConfig(roll=RollConfig(angle=(10.0, -5.0))),
            r"data\.augment\.roll\.angle .*fix: set it to \[slow, fast\]",
        ),
        (AugmentConfig(roll=RollConfig(waves=2.5)), r"data\.augment\.roll\.waves is 2\.5; fix: .*whole number"),
        (AugmentConfig(roll=RollConfig(slow_freq=(4.0, 1.0))), r"data\.augment\.roll\.slow_freq .*low <= high"),
        (AugmentConfig(homography=HomographyConfig(margin=0.6)), r"data\.augment\.homography\.margin is 0\.6; fix"),
        (
            AugmentConfig(homography=HomographyConfig(fill="mirror")),
            r"data\.augment\.homography\.fill is 'mirror'; fix: .*black, edge",
        ),
        (AugmentConfig(homography=HomographyConfig(corner=(0.05,))), r"data\.augment\.homography\.corner"),
    ],
)
def test_bad_roll_and_homography_settings_name_the_key(config, key):
    with pytest.raises(TapforgeError, match=key):
        Sim2RealAugment(config, (32, 32))
