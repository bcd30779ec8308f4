"""TAP-Net: equal to the official JAX model (stored reference), the official checkpoint format, training mode."""

import os

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.tapnet import TAPNet, load_tapnet_checkpoint, temporal_shift
from tests.tapir.tapnet_layout import PREFIX, random_haiku_checkpoint, reference_inputs

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "tapnet_reference.npz")


@pytest.fixture(scope="module")
def official_npy(tmp_path_factory):
    """A checkpoint.npy in the official format: a pickled dict of Haiku params and batch-norm state."""
    path = tmp_path_factory.mktemp("tapnet") / "checkpoint.npy"
    np.save(path, random_haiku_checkpoint(int(np.load(REFERENCE)["seed"])), allow_pickle=True)
    return path


def test_outputs_equal_the_official_jax_model(official_npy):
    reference = np.load(REFERENCE)
    model = load_tapnet_checkpoint(official_npy)
    video, queries = reference_inputs(int(reference["seed"]))
    np.testing.assert_array_equal(queries, reference["query_points"])
    with torch.no_grad():
        grid = model.feature_grid(torch.from_numpy(video))
        out = model(torch.from_numpy(video), torch.from_numpy(queries), query_chunk_size=5)  # chunks of another size
    np.testing.assert_allclose(grid[0, :, ::4, ::4, :8].numpy(), reference["feature_grid_slice"], atol=1e-5)
    assert np.abs(out["tracks"].numpy() - reference["tracks"]).max() < 1e-3  # pixels at 256x256
    np.testing.assert_allclose(out["occlusion"].numpy(), reference["occlusion"], atol=1e-4)
    # the query frame gives back the query point itself
    t, y, x = queries[0].T
    np.testing.assert_allclose(out["tracks"][0, np.arange(len(t)), t.astype(int)].numpy(), np.stack([x, y], -1))


def test_checkpoint_errors_name_the_official_modules(official_npy, tmp_path):
    checkpoint = random_haiku_checkpoint(0)
    del checkpoint["params"][PREFIX + "tsm_resnet_video/tsm_resnet_unit_2/block_1/conv_2"]
    with pytest.raises(
        TapforgeError, match=r"1 missing: tap_net/~/tsm_resnet_video/tsm_resnet_unit_2/block_1/conv_2 w"
    ):
        load_tapnet_checkpoint(checkpoint)
    checkpoint = random_haiku_checkpoint(0)
    checkpoint["params"][PREFIX + "occlusion_out"]["w"] = np.zeros((8, 1), np.float32)
    with pytest.raises(TapforgeError, match=r"wrong shape: tap_net/~/occlusion_out w \(1, 8\) vs \(1, 16\)"):
        load_tapnet_checkpoint(checkpoint)
    checkpoint = random_haiku_checkpoint(0)
    checkpoint["params"][PREFIX + "regression_head"] = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(TapforgeError, match="'tap_net/~/regression_head' that TAP-Net does not have"):
        load_tapnet_checkpoint(checkpoint)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(TapforgeError, match="junk.npy is not a TAP-Net checkpoint.npy"):
        load_tapnet_checkpoint(junk)


def test_temporal_shift_moves_channel_slices_between_neighbouring_frames():
    frames, channels = 3, 8
    x = torch.arange(2 * frames * channels, dtype=torch.float32).reshape(2 * frames, channels, 1, 1)
    out = temporal_shift(x, frames, 0.25).reshape(2, frames, channels)
    clips = x.reshape(2, frames, channels)
    assert torch.equal(out[:, :-1, :2], clips[:, 1:, -2:]) and (out[:, -1, :2] == 0).all()  # from the next frame
    assert torch.equal(out[:, 1:, -2:], clips[:, :-1, :2]) and (out[:, 0, -2:] == 0).all()  # from the previous one
    assert torch.equal(out[:, :, 2:-2], clips[:, :, 2:-2])
    assert torch.equal(temporal_shift(x, frames, 0.0), x)


def test_trains_with_batch_statistics_and_gradients_reach_the_backbone():
    torch.manual_seed(0)
    model = TAPNet().train()
    video = torch.rand(2, 4, 64, 64, 3) * 2 - 1
    queries = torch.tensor([[[0.0, 20.0, 30.0], [2.0, 40.0, 12.0]]]).expand(2, -1, -1)
    before = model.tsm_resnet.units[0][0].batch_norm.running_mean.clone()
    out = model(video, queries, is_training=True)
    (out["tracks"].sum() + out["occlusion"].sum()).backward()
    assert model.tsm_resnet.stem.weight.grad.abs().sum() > 0
    assert model.occlusion_out.weight.grad.abs().sum() > 0
    assert not torch.equal(model.tsm_resnet.units[0][0].batch_norm.running_mean, before)


def test_track_and_eval_run_a_tapnet_checkpoint(official_npy, tmp_path, capsys):
    import pickle

    from tapforge.cli import main as tapforge
    from tapforge.tapir import track

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 40, 56, 3), dtype=np.uint8)
    result = track(frames, np.array([[0, 10.0, 20.0], [3, 30.0, 40.0]]), checkpoint=str(official_npy))
    assert result.tracks.shape == (2, 5, 2) and np.isfinite(result.tracks).all()
    np.testing.assert_allclose(result.tracks[0, 0], [20.0, 10.0], atol=1e-4)  # the query frame: the query point
    assert ((result.visibility > 0.5) == ~result.occluded).all()
    points = (rng.uniform(0.2, 0.8, (3, 1, 2)) + np.linspace(0, 0.1, 4)[None, :, None]).astype(np.float32)
    davis = {
        "clip": {
            "video": rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8),
            "points": points,
            "occluded": np.zeros((3, 4), bool),
        }
    }
    with open(tmp_path / "davis.pkl", "wb") as f:
        pickle.dump(davis, f)
    assert tapforge(["eval", "--checkpoint", str(official_npy), "--tapvid-davis", str(tmp_path / "davis.pkl")]) == 0
    assert "AJ" in capsys.readouterr().out
    assert (
        tapforge(
            [
                "eval",
                "--checkpoint",
                str(official_npy),
                "--tapvid-davis",
                str(tmp_path / "davis.pkl"),
                "--softmax-temperature",
                "20",
            ]
        )
        == 2
    )
    assert "takes no TAPIR settings (softmax_temperature)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "fmt,name", [("safetensors", "tapnet.safetensors"), ("onnx", "tapnet.onnx"), ("torchscript", "tapnet.ts")]
)
def test_export_of_tapnet_is_verified_on_write(official_npy, tmp_path, fmt, name, capsys):
    from tapforge.cli import main as tapforge

    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    out = tmp_path / name
    assert (
        tapforge(["export", str(official_npy), "--to", fmt, "--out", str(out), "--frames", "2", "--num-queries", "3"])
        == 0
    ), capsys.readouterr().err
    printed = capsys.readouterr().out
    difference = float(printed.split("max |exported - pytorch| = ")[1].split()[0])
    assert difference < 1e-3
    assert tapforge(["export", str(official_npy), "--to", "tapnet-pt", "--out", str(tmp_path / "x.pt")]) == 2
    assert "a tapnet .pt holds a TAPIR or a TAPNext, and this is a TAPNet" in capsys.readouterr().err
