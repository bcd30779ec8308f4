"""Optimiser recipe, skipped non-finite steps and init_from, on the real (tiny) TAPIR; TAPNext's training."""

import math
from unittest import mock

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback

from tapforge.base.errors import TapforgeError
from tapforge.train.data import TAPIRDataModule
from tapforge.train.module import TAPIRModule
from tapforge.train.optim import param_groups, warmup_cosine

torch.set_num_threads(1)
TINY = dict(
    initial_resolution=[32, 32], mixer_hidden_dim=32, num_mixer_blocks=1, blocks_per_group=[1, 1, 1, 1], num_pips_iter=1
)


def test_weight_decay_follows_tapnet_exclusions():
    module = TAPIRModule(model=TINY)
    decay, no_decay = param_groups(module.model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in module.model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert len(undecayed) + len(decayed) == len(names)
    kinds = dict(module.model.named_modules())
    for name in names.values():
        owner = kinds[name.rpartition(".")[0]]
        if isinstance(owner, torch.nn.LayerNorm):
            assert name in undecayed, name  # Haiku "layer_norm*" modules
        elif isinstance(owner, torch.nn.InstanceNorm2d):
            assert name in decayed, name  # Haiku "instancenorm_*" matches no exclusion
        elif name.endswith(".bias"):
            assert name in undecayed, name  # Haiku "b"
        else:
            assert name in decayed, name
    assert any("layer_norm" in n for n in undecayed) and any(n.endswith("bn_0.bias") for n in decayed)


def test_tapnext_weight_decay_leaves_tokens_biases_norms_and_the_recurrence_alone():
    module = TAPIRModule(architecture="tapnext", model=TINY_TAPNEXT)
    decay, no_decay = param_groups(module.model, 0.1)
    names = {id(p): n for n, p in module.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(undecayed) == len(names)
    for name in ("mask_token", "unknown_token", "point_query_token", "image_pos_emb", "lin_proj.bias"):
        assert name in undecayed, name
    block = "blocks.0.ssm_block.recurrent_block."
    for name in ("rg_lru.a_param", "rg_lru.a_gate.b", "conv_1d.b", "linear_x.bias"):
        assert block + name in undecayed, name
    assert "blocks.0.ssm_block.temporal_pre_norm.scale" in undecayed
    assert (
        "blocks.0.vit_block.ln_1.weight" in undecayed and "blocks.0.vit_block.self_attention.in_proj_bias" in undecayed
    )
    for name in ("rg_lru.a_gate.w", "conv_1d.w", "linear_x.weight"):
        assert block + name in decayed, name
    assert {"lin_proj.weight", "blocks.0.vit_block.self_attention.in_proj_weight"} <= decayed
    assert "blocks.0.ssm_block.mlp_block.ffw_up.w" in decayed and "blocks.0.ssm_block.mlp_block.ffw_up.b" in undecayed


def test_warmup_cosine_matches_the_optax_shape():
    assert warmup_cosine(0, 10, 110) == 0.0
    assert warmup_cosine(5, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0)
    assert warmup_cosine(500, 10, 110, end_factor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(35, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(lr=0.0), "model.lr"),
        (dict(weight_decay=-1.0), "model.weight_decay"),
        (dict(init_from="/no/such.pt"), "model.init_from"),
        (dict(model={"pyramid_levels": 1}), "model.model"),
        (dict(expected_dist_thresh=0.0), "model.expected_dist_thresh"),
    ],
)
def test_bad_module_config_names_the_key(kwargs, key):
    with pytest.raises(TapforgeError, match=key.replace(".", r"\.")):
        TAPIRModule(**kwargs).setup("fit")  # init_from is read (and checked) at setup, unless resuming


def tiny_data(shards):
    return TAPIRDataModule(
        train_shards=shards,
        batch_size=2,
        num_frames=4,
        num_queries=8,
        resolution=(32, 32),
        epoch_length=3,
        num_workers=0,
        shuffle_buffer=0,
    )


def test_non_finite_steps_are_skipped_and_counted(tiny_shards, tmp_path):
    module = TAPIRModule(model=TINY, warmup_steps=0, lr=1e-2)
    from tapforge.tapir.losses import tapir_loss

    calls = []

    def loss_with_a_nan(*args, **kwargs):
        loss, parts = tapir_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            loss = loss * float("nan")
        return loss, parts

    snapshots = []

    class Remember(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snapshots.append([p.detach().clone() for p in pl_module.parameters()])

    trainer = Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Remember()],
        default_root_dir=str(tmp_path),
    )
    with mock.patch("tapforge.train.module.tapir_loss", loss_with_a_nan):
        trainer.fit(module, datamodule=tiny_data(tiny_shards))
    assert trainer.global_step == 3 and module.skipped_steps == 1
    changed = [
        any(not torch.equal(a, b) for a, b in zip(before, after)) for before, after in zip(snapshots, snapshots[1:])
    ]
    assert changed == [False, True]  # step 2 (NaN) left every weight as it was, step 3 updated again
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_init_from_copies_weights_and_rejects_other_architectures(tiny_shards, tmp_path):
    source = TAPIRModule(model=TINY)
    trainer = Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
    )
    trainer.fit(source, datamodule=tiny_data(tiny_shards))
    path = str(tmp_path / "source.ckpt")
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["hyper_parameters"]["model"] == source.model.config  # the contract tapforge.tapir.checkpoint relies on

    target = TAPIRModule(model=TINY, init_from=path)
    target.setup("validate")
    for (name, a), b in zip(source.model.state_dict().items(), target.model.state_dict().values()):
        assert torch.equal(a, b), name

    other = TAPIRModule(model={**TINY, "num_mixer_blocks": 2}, init_from=path)
    with pytest.raises(TapforgeError, match="num_mixer_blocks: 1"):
        other.setup("fit")


TINY_TAPNEXT = dict(image_size=[32, 32], width=32, patch_size=[8, 8], num_heads=2, lru_width=32, depth=1)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_tapnext_trains_with_its_own_loss(tiny_shards, tmp_path, precision):
    module = TAPIRModule(architecture="tapnext", model=TINY_TAPNEXT, warmup_steps=0, lr=1e-3)
    before = [p.detach().clone() for p in module.parameters()]
    losses = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})

    trainer = Trainer(
        max_steps=2,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
        default_root_dir=str(tmp_path),
    )
    with mock.patch("tapforge.train.module.tapir_loss", side_effect=AssertionError("TAPIR's loss")):
        trainer.fit(module, datamodule=tiny_data(tiny_shards))
    assert trainer.global_step == 2 and module.skipped_steps == 0
    assert {"train/huber", "train/coordinate_softmax", "train/occlusion"} <= set(losses[-1])
    assert all(math.isfinite(v) for v in losses[-1].values())
    changed = [not torch.equal(a, b) for a, b in zip(before, module.parameters())]
    assert all(changed)  # every parameter, the tokens and both heads included, was trained
    assert module.model.config["architecture"] == "tapnext"


def test_tapnext_validation_tracks_frames_before_the_query_backwards():
    from tapforge.tapir.tapnext import track_both_ways
    from tapforge.train.batches import EvalBatch
    from tapforge.train.evaluation import MetricAccumulator

    torch.manual_seed(0)
    module = TAPIRModule(architecture="tapnext", model=TINY_TAPNEXT).eval()
    video = torch.rand(1, 5, 32, 32, 3) * 2 - 1
    queries = torch.tensor([[[0.0, 10.0, 12.0], [3.0, 20.0, 5.0]]])
    batch = EvalBatch(
        video, queries, torch.rand(1, 2, 5, 2) * 32, torch.zeros(1, 2, 5, dtype=torch.bool), "s", "first", "v"
    )
    module._metrics = MetricAccumulator()
    with torch.no_grad():
        scored = module._eval_step(batch)
        expected = track_both_ways(module.model, video, queries)
    np.testing.assert_allclose(scored["tracks"], expected["tracks"][0].numpy())
    # visible where the visibility logit is positive (the official evaluation's default), certainty aside
    np.testing.assert_array_equal(scored["occluded"], (expected["occlusion"][0] >= 0).numpy())


def test_init_from_official_tapnext_checkpoints(tmp_path):
    from tapforge.tapir import TAPNext
    from tapforge.tapir.tapnext_checkpoint import jax_arrays

    torch.manual_seed(1)
    source = TAPNext(**TINY_TAPNEXT)
    npz = tmp_path / "tapnext_ckpt.npz"
    np.savez(npz, **jax_arrays(source))
    pt = tmp_path / "tapnextpp_ckpt.pt"
    torch.save({"state_dict": {f"tapnext.{k}": v for k, v in source.state_dict().items()}}, pt)
    for path in (npz, pt):
        target = TAPIRModule(architecture="tapnext", model=TINY_TAPNEXT, init_from=str(path))
        target.setup("fit")
        for name, value in source.state_dict().items():
            torch.testing.assert_close(target.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    wider = TAPIRModule(architecture="tapnext", model={**TINY_TAPNEXT, "width": 64, "lru_width": 64}, init_from=str(pt))
    with pytest.raises(
        TapforgeError, match=r"is a TAPNext with width: 32, lru_width: 32, but model.model has width: 64"
    ):
        wider.setup("fit")
    with pytest.raises(TapforgeError, match="is a TAPNext, but model.architecture is 'tapir'"):
        TAPIRModule(model=TINY, init_from=str(npz)).setup("fit")
