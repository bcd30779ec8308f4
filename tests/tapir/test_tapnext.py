"""TAPNext: equal to the official torch model (stored reference), online equal to offline, the two scans, a
trainable initialisation, and the official checkpoint formats (JAX .npz, TAPNext++ torch)."""

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tapforge.base.errors import TapforgeError
from tapforge.tapir import TAPNext
from tapforge.tapir.checkpoint import load_model
from tapforge.tapir.tapnext import NUM_BINS, track_both_ways, tracker_certainty
from tapforge.tapir.tapnext_blocks import parallel_scan, rnn_scan, sequential_scan
from tapforge.tapir.tapnext_checkpoint import jax_arrays, jax_layout
from tests.tapir.tapnext_layout import TINY, layout_text, random_parameters, reference_inputs

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "tapnext_reference.npz")
SCALE = TINY["image_size"][0] / NUM_BINS  # pixels per position bin at the tiny model's 64x64


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return dict(data)


def seeded_model(seed: int = 0) -> TAPNext:
    model = TAPNext(**TINY)
    shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}
    values = {k: torch.from_numpy(v) for k, v in random_parameters(shapes, seed).items()}
    model.load_state_dict({**values, "query_pos_embed": model.query_pos_embed}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def model(reference):
    assert json.loads(str(reference["config"])) == json.loads(json.dumps(TINY))
    return seeded_model(int(reference["seed"]))


@pytest.fixture(scope="module")
def inputs(reference):
    video, queries = reference_inputs(int(reference["seed"]))
    assert video.astype(np.float64).sum() == pytest.approx(float(reference["video_sum"]), rel=1e-12)
    np.testing.assert_array_equal(queries, reference["query_points"])
    return torch.from_numpy(video), torch.from_numpy(queries)


def official(reference, prefix: str) -> dict[str, np.ndarray]:
    """The official outputs in tapforge's layout: tracks (x, y) pixels [B,Q,T,2], occlusion logits [B,Q,T]."""
    out = {
        "tracks": reference[f"{prefix}_tracks"][..., ::-1].transpose(0, 2, 1, 3) * SCALE,
        "occlusion": -reference[f"{prefix}_visible_logits"][..., 0].transpose(0, 2, 1),
    }
    if f"{prefix}_certainty" in reference:
        out["certainty"] = reference[f"{prefix}_certainty"][..., 0].transpose(0, 2, 1)
    return out


def certainty(out) -> np.ndarray:
    return torch.sigmoid(-out["expected_dist"].double()).numpy()


def online(model, video, queries, chunks) -> dict[str, torch.Tensor]:
    """Outputs of ``model.online_step`` over the video in chunks of the given lengths, queries on the first."""
    outs, state, start = [], None, 0
    for length in chunks:
        out, state = model.online_step(video[:, start : start + length], state, queries if state is None else None)
        outs.append(out)
        start += length
    assert state.step == video.shape[1]
    return {k: torch.cat([o[k] for o in outs], dim=2) for k in outs[0]}


# -- equal to the official torch TAPNext ------------------------------------------------------------------


def test_parameters_are_those_of_the_reference(model, reference):
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    assert total == pytest.approx(float(reference["params_sum"]), rel=1e-12)


def test_offline_equals_the_official_model(model, inputs, reference):
    with torch.no_grad():
        out = model(*inputs)
    expected = official(reference, "offline")
    assert out["tracks"].shape == (2, 4, 6, 2)
    # measured: 0.0 px and 0.0 in every logit (same ops in the same order)
    np.testing.assert_allclose(out["tracks"].numpy(), expected["tracks"], atol=1e-4)
    np.testing.assert_allclose(out["occlusion"].numpy(), expected["occlusion"], atol=1e-5)
    logits = reference["offline_track_logits"].reshape(2, 6, 4, 2, NUM_BINS)[..., ::-1, :].transpose(0, 2, 1, 3, 4)
    np.testing.assert_allclose(out["coordinate_logits"].numpy(), logits, atol=1e-5)


def test_online_frame_by_frame_equals_the_official_online_model(model, inputs, reference):
    with torch.no_grad():
        out = online(model, *inputs, [1] * 6)
    expected = official(reference, "online")
    np.testing.assert_allclose(out["tracks"].numpy(), expected["tracks"], atol=1e-4)
    np.testing.assert_allclose(out["occlusion"].numpy(), expected["occlusion"], atol=1e-5)


def test_training_mode_parallel_scan_equals_the_official_pscan(model, inputs, reference):
    model.train()
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        model.eval()
    expected = official(reference, "train")
    np.testing.assert_allclose(out["tracks"].numpy(), expected["tracks"], atol=1e-4)
    np.testing.assert_allclose(out["occlusion"].numpy(), expected["occlusion"], atol=1e-5)


def test_certainty_is_the_mass_within_8_bins(model, inputs, reference):
    """The disk sum over the whole 256 x 256 grid; the official tracker_certainty transposes its disk mask
    against its probability window, which changes it slightly inside the frame and a lot where a window is
    clamped at a border (measured: 1.4e-3 inside, 0.25 at a point 5 bins from the top)."""
    with torch.no_grad():
        out = model(*inputs)
    logits = out["coordinate_logits"].double()
    bins = out["tracks"].double() / SCALE  # (x, y)
    centres = torch.arange(NUM_BINS, dtype=torch.float64) + 0.5
    dx = centres - bins[..., 0, None]
    dy = centres - bins[..., 1, None]
    inside = dy[..., :, None] ** 2 + dx[..., None, :] ** 2 <= 64 + 1e-8
    px, py = torch.softmax(logits, dim=-1).unbind(-2)
    brute = (py[..., :, None] * px[..., None, :] * inside).sum(dim=(-2, -1))
    np.testing.assert_allclose(certainty(out), brute.numpy(), atol=1e-6)
    interior = ((bins > 9) & (bins < NUM_BINS - 9)).all(-1).numpy()
    assert interior.sum() > 30
    expected = official(reference, "offline")["certainty"]
    assert np.abs(certainty(out) - expected)[interior].max() < 5e-3
    yx = torch.tensor([[4.8, 111.3], [250.0, 3.0]])
    window = tracker_certainty(yx, torch.randn(2, 2 * NUM_BINS))
    assert window.shape == (2,) and bool(((window > 0) & (window <= 1)).all())


# -- online and offline, added queries ----------------------------------------------------------------------


def test_online_in_any_chunks_equals_offline(model, inputs):
    with torch.no_grad():
        offline = model(*inputs)
        for chunks in ([1] * 6, [2, 1, 3], [6]):
            out = online(model, *inputs, chunks)
            np.testing.assert_allclose(out["tracks"].numpy(), offline["tracks"].numpy(), atol=1e-4)
            np.testing.assert_allclose(out["occlusion"].numpy(), offline["occlusion"].numpy(), atol=1e-4)
            np.testing.assert_allclose(out["expected_dist"].numpy(), offline["expected_dist"].numpy(), atol=1e-3)


def test_float64_online_and_parallel_scan_equal_offline(model, inputs):
    video, queries = (x.double() for x in inputs)
    exact = TAPNext(**TINY).double().eval()
    exact.load_state_dict(model.state_dict())
    with torch.no_grad():
        offline = exact(video, queries)
        streamed = online(exact, video, queries, [1, 3, 2])
        exact.train()
        parallel = exact(video, queries)
    for out in (streamed, parallel):
        for key in ("tracks", "occlusion", "coordinate_logits"):
            np.testing.assert_allclose(out[key].numpy(), offline[key].numpy(), atol=1e-10, err_msg=key)


def test_heads_read_out_at_full_precision_under_autocast(model, inputs):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*inputs)
    assert all(out[k].dtype == torch.float32 for k in ("tracks", "occlusion", "expected_dist", "coordinate_logits"))


def test_queries_added_on_later_frames(model, inputs):
    video, queries = inputs
    with torch.no_grad():
        first, state = model.online_step(video[:, :2], None, queries[:, :2])
        assert first["tracks"].shape == (2, 2, 2, 2)
        added = torch.tensor([[[2.0, 30.0, 30.0]], [[4.0, 10.0, 50.0]]])  # this frame and a later one
        out, state = model.online_step(video[:, 2:3], state, added)
        assert out["tracks"].shape == (2, 3, 1, 2) and state.query_points.shape == (2, 3, 3)
        assert all(cache.rg_lru_state.shape[0] == 2 * (64 + 3) for cache in state.hidden)
        rest, state = model.online_step(video[:, 3:], state)
        assert rest["tracks"].shape == (2, 3, 3, 2) and bool(torch.isfinite(rest["tracks"]).all())
        # a stream may start without queries; a query on a frame already passed is refused
        out, state = model.online_step(video[:, :1], None, None)
        assert out["tracks"].shape == (2, 0, 1, 2)
        with pytest.raises(TapforgeError, match="1 of the added queries lie on frames before frame 1"):
            model.online_step(video[:, 1:2], state, queries[:, :1])
        with pytest.raises(TapforgeError, match="do not continue the stream"):
            model.online_step(video[:1, 1:2], state)


def test_frames_before_a_query_are_tracked_on_the_reversed_video(model, inputs):
    video, queries = inputs
    with torch.no_grad():
        both = track_both_ways(model, video, queries)
        forward = model(video, queries)
        reversed_queries = torch.cat([5 - queries[..., :1], queries[..., 1:]], dim=-1)
        backward = model(video.flip(1), reversed_queries)
    before = torch.arange(6) < queries[..., :1]  # [B,Q,T]: frames before each query's frame
    assert bool(before.any()) and not bool(before.all())
    for key, value in both.items():
        mask = before.reshape(before.shape + (1,) * (value.dim() - 3))
        torch.testing.assert_close(value, torch.where(mask, backward[key].flip(2), forward[key]), msg=key)
    first = queries.clone()
    first[..., 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(track_both_ways(model, video, first), model(video, first))


def test_tensor_step_carries_the_state_as_tensors(model, inputs):
    """The export's step: the state in two tensors, whatever it holds at step 0, gives the offline outputs."""
    video, queries = inputs
    rg_lru_state, conv1d_state = model.initial_state(2, 4, (64, 64))
    assert rg_lru_state.shape == (2, 2 * (64 + 4), 32) and conv1d_state.shape == (2, 2 * (64 + 4), 3, 32)
    rg_lru_state, conv1d_state = rg_lru_state + 7, conv1d_state - 3  # not read on the first frame
    outs = []
    with torch.no_grad():
        offline = model(video, queries)
        for t in range(6):
            out, rg_lru_state, conv1d_state = model.tensor_step(
                video[:, t : t + 1], queries, torch.tensor(float(t)), rg_lru_state, conv1d_state
            )
            outs.append(out)
    for key in ("tracks", "occlusion"):
        np.testing.assert_allclose(torch.cat([o[key] for o in outs], 2).numpy(), offline[key].numpy(), atol=1e-4)


def test_bad_inputs_are_named(model, inputs):
    video, queries = inputs
    with pytest.raises(TapforgeError, match=r"video \[B,T,H,W,3\] and query_points \[B,Q,3\]"):
        model(video[0], queries)
    with pytest.raises(TapforgeError, match="not multiples of its patch size"):
        model(video[:, :, :60], queries)
    with pytest.raises(TapforgeError, match="image_size .* multiples of patch_size"):
        TAPNext(image_size=(60, 64), width=32, num_heads=2, lru_width=32, depth=1)


def test_other_frame_sizes_track_in_their_own_pixels(model, inputs):
    video, queries = inputs
    big = torch.nn.functional.interpolate(video.flatten(0, 1).permute(0, 3, 1, 2), scale_factor=2)
    big = big.permute(0, 2, 3, 1).unflatten(0, video.shape[:2])
    with torch.no_grad():
        out = model(big, queries * torch.tensor([1.0, 2.0, 2.0]))
    assert out["tracks"].shape == (2, 4, 6, 2)
    assert float(out["tracks"].min()) >= 0 and float(out["tracks"].max()) <= 128


# -- the scans ------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 40), with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_parallel_scan_equals_the_sequential_scan(length, with_state, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(3, length, 5, generator=gen, dtype=torch.float64)
    x = torch.randn(3, length, 5, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 5, generator=gen, dtype=torch.float64) if with_state else None
    np.testing.assert_allclose(parallel_scan(a, x, h0).numpy(), sequential_scan(a, x, h0).numpy(), atol=1e-12)
    a32, x32 = a.float(), x.float()
    h32 = None if h0 is None else h0.float()
    np.testing.assert_allclose(
        parallel_scan(a32, x32, h32).numpy(), sequential_scan(a, x, h0).numpy(), rtol=1e-5, atol=1e-5
    )


def test_scan_gradients_agree_and_rnn_scan_keeps_float32_state():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 13, 4, generator=gen, dtype=torch.float64).requires_grad_()
    x = torch.randn(2, 13, 4, generator=gen, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(2, 4, generator=gen, dtype=torch.float64).requires_grad_()
    weights = torch.randn(2, 13, 4, generator=gen, dtype=torch.float64)
    grads = [
        torch.autograd.grad((scan(a, x, h0) * weights).sum(), (a, x, h0)) for scan in (sequential_scan, parallel_scan)
    ]
    for sequential, parallel in zip(*grads):
        np.testing.assert_allclose(parallel.numpy(), sequential.numpy(), atol=1e-12)
    a16, x16 = a.detach().bfloat16(), x.detach().bfloat16()
    y, last = rnn_scan(x16, a16, None, parallel=True)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    exact = sequential_scan(a16.float(), x16.float())[:, -1]
    np.testing.assert_allclose(last.numpy(), exact.numpy(), atol=1e-5)
    np.testing.assert_allclose(y[:, -1].float().numpy(), exact.numpy(), rtol=1e-2, atol=1e-2)


# -- a trainable model ---------------------------------------------------------------------------------------


def test_every_parameter_is_initialised_and_trains():
    torch.manual_seed(3)
    first = TAPNext(**TINY)
    torch.manual_seed(3)
    second = TAPNext(**TINY)
    for (name, p), q in zip(first.named_parameters(), second.parameters()):
        assert bool(torch.isfinite(p).all()), name
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)  # no uninitialised memory
    model = TAPNext(**TINY, use_checkpointing=True).train()
    video, queries = reference_inputs(1)
    out = model(torch.from_numpy(video), torch.from_numpy(queries))
    loss = sum(out[k].float().square().mean() for k in ("tracks", "occlusion", "coordinate_logits"))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not bool(torch.isfinite(p.grad).all())]
    assert not no_grad
    zero = [n for n, p in model.named_parameters() if float(p.grad.abs().max()) == 0]
    assert not zero


# -- checkpoints ----------------------------------------------------------------------------------------------


def test_state_dict_layout_is_the_official_full_size_one(reference):
    with torch.device("meta"):
        full = TAPNext(image_size=(256, 256))
    assert layout_text({k: v.shape for k, v in full.state_dict().items()}) == str(reference["full_torch_layout"])
    assert layout_text(jax_layout(full.config)) == str(reference["full_jax_layout"])


def test_jax_npz_round_trip_and_the_official_layouts(model, tmp_path):
    arrays = jax_arrays(model)
    w, heads = TINY["width"], TINY["num_heads"]
    block = "backbone/Transformer/encoderblock_1/"
    # the official layouts, read off restore_model_from_jax_checkpoint
    torch.testing.assert_close(
        torch.from_numpy(arrays["backbone/embedding/kernel"][0]).permute(3, 2, 0, 1), model.lin_proj.weight.detach()
    )
    query = arrays[block + "vit_block/MultiHeadDotProductAttention_0/query/kernel"]
    assert query.shape == (w, heads, w // heads)
    torch.testing.assert_close(
        torch.from_numpy(query.reshape(w, w).T), model.blocks[1].vit_block.self_attention.in_proj_weight[:w].detach()
    )
    out_kernel = arrays[block + "vit_block/MultiHeadDotProductAttention_0/out/kernel"]
    assert out_kernel.shape == (heads, w // heads, w)
    linear = arrays[block + "ssm_block/recurrent_block/linear_out/kernel"]
    torch.testing.assert_close(
        torch.from_numpy(linear.T), model.blocks[1].ssm_block.recurrent_block.linear_out.weight.detach()
    )
    np.testing.assert_array_equal(
        arrays[block + "ssm_block/mlp_block/ffw_up/w"], model.blocks[1].ssm_block.mlp_block.ffw_up.w.detach().numpy()
    )
    assert arrays["visible_head/layers_4/scale"].shape == (256,)
    assert set(arrays) == set(jax_layout(model.config)) and "query_pos_embed" not in str(list(arrays))
    path = tmp_path / "tapnext_ckpt.npz"
    np.savez(path, **arrays)
    loaded = load_model(path)
    assert isinstance(loaded, TAPNext) and loaded.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_jax_npz_errors_name_each_entry(model, tmp_path):
    arrays = jax_arrays(model)
    path = tmp_path / "broken.npz"
    missing = {k: v for k, v in arrays.items() if k != "coordinate_head/layers_6/bias"}
    np.savez(path, **missing)
    with pytest.raises(TapforgeError, match="1 missing: coordinate_head/layers_6/bias"):
        load_model(path)
    np.savez(path, **{**arrays, "visible_head/layers_0/bias": np.zeros(7, np.float32), "extra/w": np.zeros(1)})
    with pytest.raises(TapforgeError, match=r"1 unexpected: extra/w; 1 of the wrong shape: visible_head/layers_0/bias"):
        load_model(path)
    np.savez(path, something=np.zeros(3))
    with pytest.raises(TapforgeError, match="no 'backbone/embedding/kernel', so it is not a TAPNext checkpoint"):
        load_model(path)


def test_tapnextpp_torch_checkpoints_load_strictly(model, tmp_path):
    state_dict = model.state_dict()
    lightning = tmp_path / "tapnextpp_ckpt.pt"
    torch.save({"state_dict": {f"tapnext.{k}": v for k, v in state_dict.items()}, "epoch": 3}, lightning)
    bare = tmp_path / "bare.pt"
    torch.save(state_dict, bare)
    for path in (lightning, bare):
        loaded = load_model(path)
        assert isinstance(loaded, TAPNext) and loaded.config == model.config
        for key, value in state_dict.items():
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    broken = {k: v for k, v in state_dict.items() if k != "visible_head.6.bias"}
    broken["blocks.1.vit_block.ln_2.weight"] = torch.zeros(5)
    torch.save(broken, bare)
    with pytest.raises(TapforgeError, match=r"1 missing keys: visible_head.6.bias; 1 shape-mismatched keys: "):
        load_model(bare)
