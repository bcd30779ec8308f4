"""The LightningModule: TAPIR, TAP-Net or TAPNext + its loss, tapnet's optimiser, TAP-Vid validation.

Checkpoint contract (read by ``tapforge.tapir.checkpoint.load_model``): the model is ``self.model``, so
state_dict keys are ``model.<official key>``, and ``hyper_parameters["model"]`` is the full
keyword-argument dict (``model.config``; TAP-Net's and TAPNext's carry ``architecture: tapnet`` / ``tapnext``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from tapforge.base import seeds
from tapforge.base.errors import TapforgeError
from tapforge.tapir import tapvid
from tapforge.tapir.checkpoint import (
    ARCHITECTURES,
    load_model,
    load_state_dict_strict,
    tracking_outputs,
    visibility_uncertainty,
)
from tapforge.tapir.losses import tapir_loss
from tapforge.tapir.model import postprocess
from tapforge.tapir.tapnext_losses import RELEASED_LOSS, TAPNextLossConfig, tapnext_loss
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.batches import EvalBatch, RealClipBatch, TrainBatch
from tapforge.train.bootstrap import SelfSupervisedConfig, ema_update, make_teacher, pseudo_labels, self_supervised_loss
from tapforge.train.evaluation import MetricAccumulator
from tapforge.train.optim import grad_norm, param_groups, warmup_cosine

log = logging.getLogger(__name__)

STRUCTURAL_KEYS = (
    "pyramid_level",
    "extra_convs",
    "use_casual_conv",
    "mixer_hidden_dim",
    "num_mixer_blocks",
    "mixer_kernel_shape",
    "patch_size",
    "blocks_per_group",
    # TAPNext
    "image_size",
    "width",
    "num_heads",
    "lru_width",
    "depth",
)


def _all_ranks_names(names: list[str]) -> list[str]:
    """Every rank's ``names`` (this rank's alone outside DDP): the sets some rank has scored videos of."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return names
    gathered: list[list[str] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, names)
    return [name for rank_names in gathered for name in rank_names]


class TAPIRModule(LightningModule):
    """Trains ``tapir.TAPIR`` (or ``tapir.TAPNet``, ``tapir.TAPNext``) on augmented synthetic batches and scores it
    TAP-Vid style.

    Args:
      model: the model's keyword arguments (TAPIR: ``pyramid_level``, ``extra_convs``, ``softmax_temperature``,
        ``initial_resolution`` ...); saved in checkpoints as the complete ``model.config``.
      architecture: ``tapir``, ``tapnet`` (TAP-Net, trained with the same loss on its one prediction and
        without an expected-distance term, as tapnet's training code does) or ``tapnext`` (TAPNext, trained with
        its own loss, ``tapforge.tapir.tapnext_losses``, and validated with the frames before each query tracked
        on the reversed video).
      lr: peak learning rate; betas, eps: AdamW; weight_decay: decoupled decay (tapnet exclusions).
      warmup_steps: linear warmup from 0; then cosine decay to ``end_lr_factor * lr`` at
        ``total_steps`` (default: the trainer's ``max_steps`` / estimated steps).
      init_from: an official tapnet ``.pt``, a tapforge ``.ckpt`` or ``.safetensors`` whose weights
        start the run (fine-tuning); ignored when resuming from a checkpoint.
      compile: ``torch.compile`` the model (state_dict keys are unchanged).
      expected_dist_thresh: the expected-distance head learns "error above this many pixels (256
        scale)"; tapnet uses 6. Inference calls such points occluded, so a coarse model needs more.
      query_chunk_size: queries per cost-volume chunk in validation (memory bound).
      self_supervised: the BootsTAP term on unlabeled real clips (``tapforge.train.bootstrap``), used when the data module
        gives real batches (``data.real_videos``); its EMA teacher is saved in checkpoints and resumes with them.
        TAPIR and TAP-Net only.
      tapnext_loss: TAPNext's loss weights (``tapforge.tapir.tapnext_losses.TAPNextLossConfig``; the released
        ones by default); read only with ``architecture: tapnext``.
    """

    def __init__(
        self,
        model: dict[str, Any] | None = None,
        architecture: str = "tapir",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        warmup_steps: int = 1000,
        total_steps: int | None = None,
        end_lr_factor: float = 0.0,
        init_from: str | None = None,
        compile: bool = False,
        expected_dist_thresh: float = 6.0,
        query_chunk_size: int = 64,
        self_supervised: SelfSupervisedConfig = SelfSupervisedConfig(),
        tapnext_loss: TAPNextLossConfig = RELEASED_LOSS,
    ):
        super().__init__()
        checks = [
            (lr > 0, f"model.lr is {lr}; fix: use a positive learning rate such as 1e-3"),
            (len(betas) == 2 and all(0 <= b < 1 for b in betas), f"model.betas is {betas}; fix: use [0.9, 0.95]"),
            (eps > 0, f"model.eps is {eps}; fix: use a small positive value such as 1e-8"),
            (weight_decay >= 0, f"model.weight_decay is {weight_decay}; fix: use 0 or more (tapnet: 0.1)"),
            (warmup_steps >= 0, f"model.warmup_steps is {warmup_steps}; fix: use 0 or more"),
            (
                total_steps is None or total_steps > 0,
                f"model.total_steps is {total_steps}; fix: use a positive count or null",
            ),
            (0 <= end_lr_factor <= 1, f"model.end_lr_factor is {end_lr_factor}; fix: use a value in [0, 1]"),
            (
                expected_dist_thresh > 0,
                f"model.expected_dist_thresh is {expected_dist_thresh}; fix: use a positive "
                "distance in pixels at 256x256 (tapnet: 6)",
            ),
            (query_chunk_size > 0, f"model.query_chunk_size is {query_chunk_size}; fix: use a positive count"),
            (
                architecture in ARCHITECTURES,
                f"model.architecture is {architecture!r}; fix: use one of {', '.join(ARCHITECTURES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TapforgeError(message)
        self.save_hyperparameters()
        self.self_supervised = self_supervised
        # checkpoints hold plain values only, so that they load with torch.load(weights_only=True)
        self.hparams.self_supervised = dataclasses.asdict(self_supervised)
        if isinstance(tapnext_loss, dict):  # as a checkpoint's hyper_parameters hold it
            tapnext_loss = TAPNextLossConfig(**tapnext_loss)
        self.tapnext_loss = tapnext_loss
        self.hparams.tapnext_loss = dataclasses.asdict(tapnext_loss)
        model_cls = ARCHITECTURES[architecture]
        kwargs = dict(model or {})
        stated = kwargs.pop("architecture", architecture)  # a checkpoint's model.config names its architecture
        if stated != architecture:
            raise TapforgeError(
                f"model.model says architecture {stated!r} but model.architecture is {architecture!r}; "
                "fix: make them the same"
            )
        try:
            self.model = model_cls(**kwargs)
        except TypeError as err:
            raise TapforgeError(
                f"model.model has a key {model_cls.__name__} does not take ({err}); fix: see "
                f"tapir.{model_cls.__name__}'s arguments"
            ) from None
        self.hparams.model = self.model.config  # the complete kwargs, for tapforge.tapir.checkpoint.load_model
        self.skipped_steps = 0
        self._initialised = False
        self._compiled = False
        self._metrics: MetricAccumulator | None = None
        # the EMA teacher is not a submodule: it stays out of state_dict (the checkpoint contract) and of DDP
        self._teacher: torch.nn.Module | None = None
        self._teacher_state: dict | None = None  # read from a checkpoint before the teacher exists
        self._student_view: Sim2RealAugment | None = None
        self._generator: torch.Generator | None = None

    # -- setup --------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.hparams.init_from and not self._initialised:
            trainer = self._trainer  # None when set up by hand, outside a Trainer
            if trainer is not None and trainer.ckpt_path:
                log.info("resuming from %s, so model.init_from is not loaded", trainer.ckpt_path)
            else:
                self.load_initial_weights(os.path.expanduser(self.hparams.init_from))
        self._initialised = True
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    def load_initial_weights(self, path: str) -> None:
        """Copy the weights of a tapnet / tapforge checkpoint into ``self.model`` (strict)."""
        if not os.path.isfile(path):
            raise TapforgeError(
                f"model.init_from {path!r} does not exist; fix: give the path of a .pt/.ckpt/.safetensors file"
            )
        source = load_model(path)
        if type(source) is not type(self.model):
            raise TapforgeError(
                f"model.init_from {path!r} is a {type(source).__name__}, but model.architecture is "
                f"{self.hparams.architecture!r}; fix: set model.architecture to match it"
            )
        differ = [k for k in STRUCTURAL_KEYS if source.config.get(k) != self.model.config.get(k)]
        if differ:
            wanted = ", ".join(f"{k}: {source.config[k]!r}" for k in differ)
            raise TapforgeError(
                f"model.init_from {path!r} is a {type(source).__name__} with {wanted}, but model.model has "
                + ", ".join(f"{k}: {self.model.config[k]!r}" for k in differ)
                + f"; fix: set model.model to {{{wanted}}} (or use a matching checkpoint)"
            )
        load_state_dict_strict(self.model, source.state_dict(), source=f"model.init_from {path!r}")
        log.info("initialised %s from %s", type(self.model).__name__, path)

    # -- optimisation -------------------------------------------------------------------------

    def configure_optimizers(self):
        hp = self.hparams
        total = hp.total_steps or int(self.trainer.estimated_stepping_batches)
        if total <= 0 or total == float("inf"):
            raise TapforgeError("the schedule length is unknown; fix: set trainer.max_steps (or model.total_steps)")
        fused = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(
            param_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, fused=fused
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, total, hp.end_lr_factor)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer) -> None:
        """Skip (and count) a step whose gradients are not finite; log the gradient norm.

        Gradients are identical on every DDP rank after the all-reduce, so all ranks agree. With a
        gradient scaler (16-mixed) the scaler already skips such steps itself.
        """
        norm = grad_norm(self.parameters())
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None and not bool(torch.isfinite(norm)):
            for p in self.parameters():
                p.grad = None  # AdamW leaves parameters without gradients untouched
            self.skipped_steps += 1
            log.warning(
                "step %d: non-finite gradients, update skipped (%d so far)", self.global_step, self.skipped_steps
            )
        else:
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skipped_steps"] = self.skipped_steps
        if self._teacher is not None:
            checkpoint["self_supervised_teacher"] = self._teacher.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = int(checkpoint.get("skipped_steps", 0))
        self._initialised = True
        self._teacher_state = checkpoint.get("self_supervised_teacher")
        self._teacher = None  # made again from that state (or from the loaded student) at the next real batch

    # -- training -----------------------------------------------------------------------------

    def forward(self, video: torch.Tensor, query_points: torch.Tensor, is_training: bool = False, **kwargs):
        return self.model(video, query_points, is_training=is_training, **kwargs)

    def _student_outputs(self, video: torch.Tensor, query_points: torch.Tensor) -> dict:
        outputs = self.model(video, query_points, is_training=True)
        return {k: [v.float() for v in val] if isinstance(val, list) else val.float() for k, val in outputs.items()}

    def supervised_loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's loss (TAPIR's, or TAPNext's) of a synthetic batch against its ground truth."""
        outputs = self._student_outputs(batch.video, batch.query_points)
        # a clip that augmentation left without any visible point has no valid query: leave it out
        mask = (~batch.no_visible_track).float()[:, None, None].expand(batch.occluded.shape)
        return self.model_loss(outputs, batch, mask)

    def model_loss(
        self, outputs: dict, batch: TrainBatch, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's loss (TAPIR's, or TAPNext's) of its ``outputs`` against ``batch``'s tracks and occlusion,
        counted with the weights ``mask`` [B,N,T]."""
        image_size = tuple(batch.video.shape[2:4])
        if self.hparams.architecture == "tapnext":
            return tapnext_loss(
                outputs,
                batch.tracks,
                batch.occluded,
                image_size=image_size,
                query_frame=batch.query_points[..., 0],
                mask=mask,
                config=self.tapnext_loss,
            )
        return tapir_loss(
            outputs,
            batch.tracks,
            batch.occluded,
            image_size=image_size,
            mask=mask,
            expected_dist_thresh=self.hparams.expected_dist_thresh,
        )

    def _bootstrap_generator(self) -> torch.Generator:
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(
                seeds.seed_int(torch.initial_seed(), "bootstrap", self.global_rank, self.global_step)
            )
        return self._generator

    def teacher(self) -> torch.nn.Module:
        """The EMA teacher: made from the student at the first real batch (or from a resumed checkpoint's state)."""
        if self._teacher is None:
            # set past nn.Module.__setattr__, which would make it a submodule (in state_dict, DDP and the optimiser)
            object.__setattr__(self, "_teacher", make_teacher(self.model))
            if self._teacher_state is not None:
                self._teacher.load_state_dict(self._teacher_state)
                self._teacher_state = None
        return self._teacher.to(self.device)

    def bootstrap_loss(self, clips: RealClipBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The self-supervised (BootsTAP) loss of a batch of unlabeled real clips."""
        config = self.self_supervised
        resolution = tuple(clips.video.shape[2:4])
        if self._student_view is None or self._student_view.resolution != resolution:
            self._student_view = Sim2RealAugment(config.student_augment, resolution)
        labels = pseudo_labels(
            self.teacher(),
            clips,
            config,
            self._student_view,
            self._bootstrap_generator(),
            self.hparams.query_chunk_size,
        )
        outputs = self._student_outputs(labels.batch.video, labels.batch.query_points)
        return self_supervised_loss(self.model, outputs, labels, self.model_loss)

    def training_step(self, batch: TrainBatch | dict, batch_idx: int) -> torch.Tensor:
        """A synthetic batch, or (with ``data.real_videos``) a dict of a ``synthetic`` and/or a ``real`` batch."""
        parts = batch if isinstance(batch, dict) else {"synthetic": batch}
        loss = 0.0
        if parts.get("synthetic") is not None:
            synthetic, logged = self.supervised_loss(parts["synthetic"])
            loss = loss + synthetic
            size = parts["synthetic"].video.shape[0]
            self.log("train/supervised_loss", synthetic, batch_size=size)
            for name, value in logged.items():
                self.log(f"train/{name}", value, batch_size=size)
        if parts.get("real") is not None:
            real, logged = self.bootstrap_loss(parts["real"])
            loss = loss + self.self_supervised.weight * real
            size = parts["real"].video.shape[0]
            self.log("train/self_supervised_loss", real, batch_size=size)
            for name, value in logged.items():
                self.log(f"self_supervised/{name}", value, batch_size=size)
        clips = sum(part.video.shape[0] for part in parts.values() if part is not None)
        self.log("train/loss", loss, prog_bar=True, batch_size=clips)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], batch_size=clips)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._teacher is not None:  # after every training batch; the same on every DDP rank
            ema_update(self._teacher, self.model, self.self_supervised.ema_decay)

    # -- validation / test --------------------------------------------------------------------

    def _start_eval(self) -> None:
        self._metrics = MetricAccumulator()

    def _eval_step(self, batch: EvalBatch) -> dict[str, np.ndarray]:
        """Score one clip (model and stay-put); returns its predicted ``tracks`` and ``occluded`` (for callbacks)."""
        outputs = tracking_outputs(self.model, batch.video, batch.query_points, self.hparams.query_chunk_size)
        _, pred_occluded = postprocess(outputs["occlusion"].float(), visibility_uncertainty(self.model, outputs))
        query = batch.query_points.cpu().numpy()
        gt_occluded = batch.occluded.cpu().numpy()
        gt_tracks = batch.target_points.cpu().numpy()
        pred_tracks = outputs["tracks"].float().cpu().numpy()
        pred_occluded = pred_occluded.cpu().numpy()
        mode, set_name = batch.mode, batch.set_name
        metrics = tapvid.compute_all_metrics(query, gt_occluded, gt_tracks, pred_occluded, pred_tracks, mode)
        self._metrics.add(set_name, metrics)
        stay_tracks, stay_occluded = tapvid.stay_put_prediction(query, gt_tracks.shape[2])
        stay = tapvid.compute_all_metrics(query, gt_occluded, gt_tracks, stay_occluded, stay_tracks, mode)
        self._metrics.add(f"{set_name}_stay_put", stay)
        return {"tracks": pred_tracks[0], "occluded": pred_occluded[0]}

    def _finish_eval(self, prefix: str) -> dict[str, float]:
        results = self._metrics.reduce(
            lambda t: self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum"), gather_names=_all_ranks_names
        )
        with warnings.catch_warnings():  # the values are already reduced over ranks: no sync_dist
            warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed")
            for key, value in results.items():
                self.log(f"{prefix}/{key}", value, sync_dist=False)
        return results

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: EvalBatch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, np.ndarray]:
        return self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: EvalBatch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, np.ndarray]:
        return self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")
