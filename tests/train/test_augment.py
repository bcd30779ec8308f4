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
    JpegConfig,
    NoiseConfig,
    OccluderConfig,
)
from tapforge.train.batches import ClipBatch
from tapforge.train.jpeg import jpeg_compress
from tapforge.train.photometric import hsv_to_rgb, motion_kernels, rgb_to_hsv
from tapforge.train.queries import repair_queries
from tapforge.train.warp import resampling_weights, warp_frames

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
