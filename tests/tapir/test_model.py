"""TAPIR model: checkpoint layout, numerics of the sampling helpers, gradients, online mode."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir import TAPIR, nets
from tapforge.tapir.losses import tapir_loss
from tapforge.tapir.online import OnlineTAPIR

# Derived from the official tapnet/torch TAPIR module tree: number of state_dict entries, number
# of parameters, sha256 of the sorted "key:[shape]" lines, and a few entries spelled out.
OFFICIAL_LAYOUTS = {
    "tapir": (
        dict(pyramid_level=0, extra_convs=False),
        188,
        31_072_327,
        "780125d8a6ad48c703281426f56c76b59258aee65d01c24cbb05cb5024458e8f",
        {
            "torch_pips_mixer.linear.weight": (512, 486),
            "resnet_torch.initial_conv.weight": (64, 3, 7, 7),
            "torch_cost_volume_track_mods.hid3.weight": (32, 16, 3, 3),
        },
    ),
    "bootstapir": (
        dict(pyramid_level=1, extra_convs=True, softmax_temperature=10.0),
        218,
        54_699_335,
        "42b9b28a7aa50f482f93975d84523f5f1f58ffee26cf56ad207835dcbe7eb01d",
        {
            "torch_pips_mixer.linear.weight": (512, 535),
            "extra_convs.blocks.4.conv_1.weight": (256, 1024, 3, 3),
            "torch_pips_mixer.blocks.11.mlp1_up.weight": (2048, 1, 3),
        },
    ),
    "causal_bootstapir": (
        dict(pyramid_level=1, extra_convs=True, use_casual_conv=True),
        218,
        54_699_335,
        "42b9b28a7aa50f482f93975d84523f5f1f58ffee26cf56ad207835dcbe7eb01d",
        {
            "torch_pips_mixer.blocks.0.layer_norm.weight": (512,),
            "extra_convs.blocks.0.layer_norm.bias": (256,),
        },
    ),
}

# Small enough for 2 CPU cores, but every code path of the full model.
SMALL = dict(initial_resolution=(64, 64), mixer_hidden_dim=32, num_mixer_blocks=2, blocks_per_group=(1, 1, 1, 1))


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter (zero-initialised ones included) so no path is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def _inputs(batch=1, frames=4, height=64, width=64, queries=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * frames, 3, max(1, height // 8), max(1, width // 8), generator=gen)
    video = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    video = video.permute(0, 2, 3, 1).reshape(batch, frames, height, width, 3) * 2 - 1
    video = (video + 0.05 * torch.randn(video.shape, generator=gen)).clamp(-1, 1)
    t = torch.randint(0, frames, (batch, queries, 1), generator=gen).float()
    yx = torch.rand(batch, queries, 2, generator=gen) * torch.tensor([height, width])
    return video, torch.cat([t, yx], dim=-1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a single intra-op thread is faster and immune to other jobs' load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return _randomise(TAPIR(pyramid_level=1, extra_convs=True, **SMALL), 1).eval()


@pytest.mark.parametrize("name", sorted(OFFICIAL_LAYOUTS))
def test_state_dict_matches_official_layout(name):
    kwargs, count, numel, digest, spot = OFFICIAL_LAYOUTS[name]
    state = TAPIR(**kwargs).state_dict()
    assert len(state) == count
    assert sum(v.numel() for v in state.values()) == numel
    for key, shape in spot.items():
        assert tuple(state[key].shape) == shape, key
    lines = "\n".join(f"{k}:{list(v.shape)}" for k, v in sorted(state.items()))
    assert hashlib.sha256(lines.encode()).hexdigest() == digest


def test_strict_round_trip_and_config_rebuild(small_model):
    buffer = io.BytesIO()
    torch.save(small_model.state_dict(), buffer)
    buffer.seek(0)
    config = json.loads(json.dumps(small_model.config))
    rebuilt = TAPIR(**config).eval()
    rebuilt.load_state_dict(torch.load(buffer), strict=True)
    assert rebuilt.config == small_model.config
    video, queries = _inputs()
    with torch.no_grad():
        a, b = small_model(video, queries), rebuilt(video, queries)
    for key in ("tracks", "occlusion", "expected_dist"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    with pytest.raises(RuntimeError):
        TAPIR(pyramid_level=0, **SMALL).load_state_dict(small_model.state_dict(), strict=True)


def test_forward_shapes_determinism_and_pinned_queries(small_model):
    video, queries = _inputs(batch=2, frames=5, queries=7)
    with torch.no_grad():
        out = small_model(video, queries)
        again = small_model(video, queries)
    assert out["tracks"].shape == (2, 7, 5, 2)
    for key in ("occlusion", "expected_dist"):
        assert out[key].shape == (2, 7, 5)
    # initial estimate + 3 of the 4 refinements of the single (64x64) resolution
    for key in ("unrefined_tracks", "unrefined_occlusion", "unrefined_expected_dist"):
        assert len(out[key]) == small_model.num_pips_iter
    assert all(torch.isfinite(v).all() for k, v in out.items() if not k.startswith("unrefined"))
    torch.testing.assert_close(out["tracks"], again["tracks"], rtol=0, atol=0)
    # the initial estimate on a query's own frame is the query point itself, (y, x) -> (x, y)
    initial = out["unrefined_tracks"][0]
    frames = queries[..., 0].long()
    pinned = torch.gather(initial, 2, frames[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    torch.testing.assert_close(pinned, queries[..., [2, 1]], rtol=0, atol=1e-5)


def test_query_and_frame_chunking_do_not_change_outputs(small_model):
    video, queries = _inputs(frames=5, queries=9)
    with torch.no_grad():
        whole = small_model(video, queries, query_chunk_size=64)
        chunked = small_model(video, queries, query_chunk_size=2, frame_chunk_size=2)
    for key in ("tracks", "occlusion", "expected_dist"):
        torch.testing.assert_close(whole[key], chunked[key], rtol=1e-4, atol=1e-4)


def test_non_square_video_and_resolution():
    torch.manual_seed(0)
    model = _randomise(TAPIR(**{**SMALL, "initial_resolution": (48, 80)}), 2).eval()
    video, queries = _inputs(frames=3, height=96, width=160, queries=4)
    with torch.no_grad():
        out = model(video, queries)
    assert out["tracks"].shape == (1, 4, 3, 2)
    assert torch.isfinite(out["tracks"]).all()
    # 96x160 is refined at 48x80 and 96x160: two resolutions of 4 iterations each
    assert len(out["unrefined_tracks"]) == 1 + 2 * 4 - 1


def _bilinear_zero_padded(grid: np.ndarray, y: float, x: float) -> np.ndarray:
    """Direct bilinear sample of grid [H, W, C] at raster (y, x); outside cells read zero."""
    h, w, _ = grid.shape
    u, v = y - 0.5, x - 0.5
    y0, x0 = int(np.floor(u)), int(np.floor(v))
    out = np.zeros(grid.shape[-1])
    for yy, wy in ((y0, 1 - (u - y0)), (y0 + 1, u - y0)):
        for xx, wx in ((x0, 1 - (v - x0)), (x0 + 1, v - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * grid[yy, xx]
    return out


@pytest.mark.parametrize("per_frame_query", [False, True])
def test_patch_correlation_on_non_square_grid_matches_direct_sampling(per_frame_query):
    gen = torch.Generator().manual_seed(3)
    b, t, h, w, c, n, radius = 2, 3, 5, 11, 4, 6, 2
    grid = torch.randn(b, t, h, w, c, generator=gen, dtype=torch.float64)
    # centres inside, near and beyond the borders, with x well past the height
    points = torch.rand(b, n, t, 2, generator=gen, dtype=torch.float64) * torch.tensor([w + 4.0, h + 4.0]) - 2
    qshape = (b, n, t, c) if per_frame_query else (b, n, c)
    query = torch.randn(qshape, generator=gen, dtype=torch.float64)
    got = nets.patch_correlation(grid, points, query, radius).numpy()
    side = 2 * radius + 1
    assert got.shape == (b, n, t, side * side)
    for bi in range(b):
        for ni in range(n):
            for ti in range(t):
                q = (query[bi, ni, ti] if per_frame_query else query[bi, ni]).numpy()
                x, y = points[bi, ni, ti].tolist()
                for k, (dy, dx) in enumerate(
                    (dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                ):
                    expected = _bilinear_zero_padded(grid[bi, ti].numpy(), y + dy, x + dx) @ q
                    assert got[bi, ni, ti, k] == pytest.approx(expected, abs=1e-10)


def test_query_features_are_trilinear_samples_on_non_square_grid():
    gen = torch.Generator().manual_seed(4)
    grid = torch.randn(1, 3, 4, 7, 2, generator=gen, dtype=torch.float64)
    positions = torch.tensor([[[1.0, 2.25, 5.5], [0.5, 0.5, 0.5], [2.0, 3.9, 6.2]]], dtype=torch.float64)
    got = nets.sample_query_features(grid, positions)[0].numpy()
    g = grid[0].numpy()
    for i, (t, y, x) in enumerate(positions[0].tolist()):
        t0 = int(np.floor(t))
        t1, wt = min(t0 + 1, 2), t - t0
        # border clamp in (y, x): interpolate the clamped raster position
        y_c = float(np.clip(y - 0.5, 0, 3)) + 0.5
        x_c = float(np.clip(x - 0.5, 0, 6)) + 0.5
        expected = (1 - wt) * _bilinear_zero_padded(g[t0], y_c, x_c) + wt * _bilinear_zero_padded(g[t1], y_c, x_c)
        np.testing.assert_allclose(got[i], expected, atol=1e-6)


def test_soft_argmax_is_local_average_and_differentiable():
    heat = torch.zeros(1, 6, 20)
    heat[0, 2, 3] = 0.5
    heat[0, 2, 4] = 0.3
    heat[0, 5, 19] = 0.2  # beyond the 5-cell radius of the peak: ignored
    logits = torch.log(heat + 1e-9).requires_grad_(True)
    point = nets.soft_argmax_heatmap(torch.softmax(logits.flatten(-2), -1).view(1, 6, 20))
    torch.testing.assert_close(point[0], torch.tensor([(3.5 * 0.5 + 4.5 * 0.3) / 0.8, 2.5]), atol=1e-4, rtol=0)
    point[0, 0].backward()
    assert logits.grad.abs().sum() > 0


def test_gradients_reach_cost_volume_head_and_backbone():
    torch.manual_seed(0)
    model = _randomise(TAPIR(**SMALL), 5).train()
    video, queries = _inputs(frames=3, queries=4)
    out = model(video, queries, is_training=True)
    # only the initial cost-volume estimate: its positions come from the soft argmax
    out["unrefined_tracks"][0].sum().backward()
    heads = model.torch_cost_volume_track_mods
    assert heads["hid2"].weight.grad.abs().sum() > 0
    assert heads["hid1"].weight.grad.abs().sum() > 0
    assert model.resnet_torch.initial_conv.weight.grad.abs().sum() > 0


def test_training_back_propagates_refinement_of_first_query_chunk_only():
    torch.manual_seed(0)
    model = _randomise(TAPIR(**SMALL), 6).train()
    video, queries = _inputs(frames=3, queries=6)
    out = model(video, queries, is_training=True, query_chunk_size=2)
    with_grad = []
    for i in range(6):
        model.zero_grad()
        out["tracks"][:, i].sum().backward(retain_graph=True)
        grad = model.torch_pips_mixer.linear.weight.grad
        with_grad.append(grad is not None and grad.abs().sum().item() > 0)
    assert sum(with_grad) == 2
    loss, parts = tapir_loss(out, out["tracks"].detach() + 1.0, torch.zeros(1, 6, 3, dtype=torch.bool), (64, 64))
    model.zero_grad()
    loss.backward()
    assert model.torch_pips_mixer.linear.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = _randomise(TAPIR(**SMALL, feature_extractor_chunk_size=2), 7)
    remat = TAPIR(**{**plain.config, "gradient_checkpointing": True})
    remat.load_state_dict(plain.state_dict())
    video, queries = _inputs(frames=3, queries=3)
    grads = []
    for model in (plain, remat):
        torch.manual_seed(1)  # same query permutation
        out = model(video, queries, is_training=True, query_chunk_size=8)
        out["tracks"].sum().backward()
        grads.append(model.resnet_torch.initial_conv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-4 * grads[0].abs().max().item())


def test_bad_inputs_raise_clear_errors(small_model):
    video, queries = _inputs()
    with pytest.raises(TapforgeError, match="fix"):
        small_model(video[0], queries)
    with pytest.raises(TapforgeError, match="fix"):
        small_model(video, queries[..., :2])
    with pytest.raises(TapforgeError, match="no queries"):
        small_model(video, queries[:, :0])
    with pytest.raises(TapforgeError, match="multiples of 8"):
        TAPIR(initial_resolution=(250, 256))


@pytest.fixture(scope="module")
def causal_model():
    torch.manual_seed(0)
    return _randomise(TAPIR(pyramid_level=1, extra_convs=True, use_casual_conv=True, **SMALL), 8).eval()


def test_online_tracking_matches_offline_causal_model(causal_model):
    video, queries = _inputs(frames=5, queries=6, seed=1)
    with torch.no_grad():
        offline = causal_model(video, queries)
    tracker = OnlineTAPIR(causal_model)
    tracker.add_queries(queries, video)
    steps = [tracker.step(video[:, i]) for i in range(video.shape[1])]
    for key in ("tracks", "occlusion", "expected_dist"):
        online = torch.stack([s[key] for s in steps], dim=2)
        torch.testing.assert_close(online, offline[key], rtol=1e-4, atol=1e-4)


def test_online_queries_started_mid_stream_match_offline_from_that_frame(causal_model):
    video, _ = _inputs(frames=5, queries=1, seed=2)
    early = torch.tensor([[[10.0, 20.0], [40.0, 33.0]]])
    late = torch.tensor([[[5.0, 50.0], [30.0, 30.0], [60.0, 2.0]]])
    tracker = OnlineTAPIR(causal_model)
    steps = []
    for i in range(5):
        new = early if i == 0 else late if i == 2 else None
        steps.append(tracker.step(video[:, i], new_queries=new))
    assert tracker.num_queries == 5
    with torch.no_grad():
        offline = causal_model(video[:, 2:], torch.cat([torch.zeros(1, 3, 1), late], dim=-1))
    online = torch.stack([s["tracks"][:, 2:] for s in steps[2:]], dim=2)
    torch.testing.assert_close(online, offline["tracks"], rtol=1e-4, atol=1e-4)
    with pytest.raises(TapforgeError, match="frame size"):
        tracker.step(video[:, 0, :32])
    with pytest.raises(TapforgeError, match="causal"):
        OnlineTAPIR(TAPIR(**SMALL))


def _import_official_tapir():
    path = os.environ.get("TAPNET_TORCH_PATH")
    if not path:
        pytest.skip("set TAPNET_TORCH_PATH to a tapnet checkout (with einshape and dm-tree installed) to compare")
    root = Path(path).resolve()
    if (root / "tapir_model.py").exists():  # pointed at tapnet/torch itself
        root = root.parent.parent
    if not (root / "tapnet" / "torch" / "tapir_model.py").exists():
        pytest.fail(f"TAPNET_TORCH_PATH={path} holds no tapnet/torch/tapir_model.py")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("tapnet.torch.tapir_model")
    finally:
        sys.path.remove(str(root))


@pytest.mark.parametrize("name", ["tapir", "bootstapir", "causal_bootstapir"])
def test_matches_official_reference(name):
    official_module = _import_official_tapir()
    kwargs = OFFICIAL_LAYOUTS[name][0]
    torch.manual_seed(0)
    official = _randomise(official_module.TAPIR(**kwargs), 9).eval()
    ours = TAPIR(**kwargs).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    official_again = official_module.TAPIR(**kwargs)
    official_again.load_state_dict(ours.state_dict(), strict=True)
    video, queries = _inputs(frames=3, height=256, width=256, queries=24, seed=3)
    with torch.no_grad():
        expected = official(video, queries, query_chunk_size=64)
        got = ours(video, queries)
    assert (got["tracks"] - expected["tracks"]).abs().max() < 1e-3
    for key in ("occlusion", "expected_dist"):
        assert (got[key] - expected[key]).abs().max() < 1e-3
    for key in ("unrefined_tracks", "unrefined_occlusion", "unrefined_expected_dist"):
        assert len(got[key]) == len(expected[key])
        for a, b in zip(got[key], expected[key]):
            assert (a - b).abs().max() < 1e-3
