"""Checkpoint formats (tapnet .pt, Lightning .ckpt, safetensors), strict loading, and exports."""

import argparse
import os

import numpy as np
import pytest
import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir import TAPIR
from tapforge.tapir import checkpoint as ck


@pytest.fixture(scope="module")
def tapir_model():
    torch.manual_seed(0)
    return TAPIR(initial_resolution=(64, 64), softmax_temperature=15.0).eval()


@pytest.fixture(scope="module")
def boots_state_dict():
    torch.manual_seed(1)
    return TAPIR(pyramid_level=1, extra_convs=True).state_dict()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_dict_loads_strictly_into_a_fresh_model(tapir_model):
    fresh = TAPIR(**tapir_model.config)
    ck.load_state_dict_strict(fresh, tapir_model.state_dict())
    assert _same_weights(fresh, tapir_model)


def test_infer_config_from_official_keys(tapir_model, boots_state_dict):
    assert ck.infer_config(tapir_model.state_dict(), "tapir_checkpoint_panning.pt") == {
        "pyramid_level": 0,
        "extra_convs": False,
        "softmax_temperature": 20.0,
        "use_casual_conv": False,
    }
    assert ck.infer_config(boots_state_dict, "causal_bootstapir_checkpoint.pt") == {
        "pyramid_level": 1,
        "extra_convs": True,
        "softmax_temperature": 10.0,
        "use_casual_conv": True,
    }
    with pytest.raises(TapforgeError, match="not a TAPIR state_dict"):
        ck.infer_config({"conv.weight": torch.zeros(1)}, "x.pt")


def test_tapnet_pt_round_trip(tmp_path, tapir_model, boots_state_dict):
    path = ck.save_tapnet_pt(tapir_model, tmp_path / "tapir.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == set(tapir_model.state_dict())  # a bare state_dict, as tapnet writes
    loaded = ck.load_model(path, initial_resolution=(64, 64), softmax_temperature=15.0)
    assert _same_weights(loaded, tapir_model) and loaded.config == tapir_model.config
    assert not loaded.training

    torch.save(boots_state_dict, tmp_path / "bootstapir_checkpoint_v2.pt")
    boots = ck.load_model(tmp_path / "bootstapir_checkpoint_v2.pt")
    assert (
        boots.config["pyramid_level"] == 1
        and boots.config["extra_convs"]
        and boots.config["softmax_temperature"] == 10.0
    )
    assert (
        ck.load_model(tmp_path / "bootstapir_checkpoint_v2.pt", softmax_temperature=20.0).config["softmax_temperature"]
        == 20.0
    )


def test_safetensors_round_trip_keeps_the_config(tmp_path, tapir_model):
    from safetensors import safe_open

    path = ck.save_safetensors(tapir_model, tmp_path / "model.safetensors")
    with safe_open(path, framework="pt") as f:
        assert "tapir_config" in f.metadata()
    loaded = ck.load_model(path)
    assert loaded.config == tapir_model.config and _same_weights(loaded, tapir_model)


def test_lightning_checkpoint(tmp_path, tapir_model):
    state = {f"model.{k}": v for k, v in tapir_model.state_dict().items()}
    state["loss_fn.dummy"] = torch.zeros(1)  # other LightningModule members are not the model
    ckpt = {"state_dict": state, "hyper_parameters": {"model": tapir_model.config}, "epoch": 3}
    torch.save(ckpt, tmp_path / "last.ckpt")
    loaded = ck.load_model(tmp_path / "last.ckpt")
    assert loaded.config == tapir_model.config and _same_weights(loaded, tapir_model)
    # Python objects need the full unpickler, which could run code: refused for every suffix
    ckpt["hyper_parameters"]["optimizer"] = argparse.Namespace(lr=1e-3)
    for name in ("objects.ckpt", "objects.pt"):
        torch.save(ckpt, tmp_path / name)
        with pytest.raises(
            TapforgeError, match=r"Python objects \(argparse.Namespace\) besides tensors.*nothing was run"
        ):
            ck.load_model(tmp_path / name)


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
def test_a_checkpoint_that_runs_a_command_is_refused_before_it_runs(tmp_path, tapir_model, suffix):
    marker, path = tmp_path / "ran", tmp_path / f"crafted{suffix}"
    state = {f"model.{k}": v for k, v in tapir_model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": RunsACommand(marker)}}, path)
    with pytest.raises(TapforgeError, match="nothing was run"):
        ck.load_model(path)
    assert not marker.exists()


def test_mismatches_are_named(tmp_path, tapir_model, boots_state_dict):
    state = dict(tapir_model.state_dict())
    del state["torch_cost_volume_track_mods.hid1.weight"]
    state["extra_head.weight"] = torch.zeros(3)
    state["torch_cost_volume_track_mods.occ_out.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(TapforgeError) as err:
        ck.load_model(tmp_path / "wrong.pt")
    message = str(err.value)
    assert "1 missing keys: torch_cost_volume_track_mods.hid1.weight" in message
    assert "1 unexpected keys: extra_head.weight" in message
    assert "torch_cost_volume_track_mods.occ_out.bias (5,) vs model (2,)" in message and "fix:" in message
    # BootsTAPIR weights forced into a TAPIR without extra convs: the extra-conv keys are named
    torch.save(boots_state_dict, tmp_path / "boots.pt")
    with pytest.raises(TapforgeError, match=r"unexpected keys: extra_convs\.blocks\.0"):
        ck.load_model(tmp_path / "boots.pt", extra_convs=False, pyramid_level=1)
    with pytest.raises(TapforgeError, match="does not take: colour"):
        ck.load_model(tmp_path / "boots.pt", colour="red")


def test_unreadable_files(tmp_path):
    with pytest.raises(TapforgeError, match="does not exist"):
        ck.load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(TapforgeError, match="cannot read checkpoint"):
        ck.load_model(junk)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(TapforgeError, match="neither a state_dict"):
        ck.load_model(tmp_path / "list.pt")


def test_torchscript_and_onnx_match_pytorch(tmp_path):
    import onnxruntime as ort

    # Every layer type of TAPIR, with 2 instead of 12 mixer blocks: the ONNX export of the unrolled
    # graph takes 3x less time, and each block is the same ops.
    torch.manual_seed(2)
    tapir_model = TAPIR(initial_resolution=(64, 64), num_mixer_blocks=2).eval()
    video, queries = ck.example_inputs(tapir_model, num_frames=2, num_queries=3, seed=7)
    with torch.no_grad():
        expected = [t.numpy() for t in ck.TrackingGraph(tapir_model, 3)(video, queries)]
    assert expected[0].shape == (1, 3, 2, 2) and expected[3].shape == (1, 3, 2)

    ts_path = ck.export_torchscript(tapir_model, tmp_path / "tapir.ts.pt", num_frames=2, num_queries=3)
    scripted = torch.jit.load(ts_path)
    with torch.no_grad():
        got = [t.numpy() for t in scripted(video, queries)]
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, atol=1e-3)
    with pytest.raises(Exception, match="exported for video"):
        scripted(video[:, :1], queries)

    onnx_path = ck.export_onnx(tapir_model, tmp_path / "tapir.onnx", num_frames=2, num_queries=3)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["tracks", "occlusion", "expected_dist", "visibility"]
    assert "tapir_config" in session.get_modelmeta().custom_metadata_map
    got = session.run(None, {"video": video.numpy(), "query_points": queries.numpy()})
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, atol=1e-3)
    assert next(tapir_model.parameters()).device.type == "cpu" and not tapir_model.training
