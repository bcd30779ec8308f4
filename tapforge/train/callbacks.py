"""Callbacks that ``tapforge train`` always adds."""

from __future__ import annotations

import os
from typing import Iterator

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tapforge.base.errors import TapforgeError
from tapforge.train.overlays import log_overlay, overlay_frames


class LastCheckpoint(Callback):
    """Keep one ``last.ckpt`` per ModelCheckpoint folder (``save_last``), holding the final step when training ends.

    Lightning's ModelCheckpoint writes ``last-v1.ckpt`` beside a ``last.ckpt`` it did not write in this run (a
    resumed or pre-empted run, or one whose first save is at its end); here it takes the folder's ``last.ckpt``
    as its own. It also does not rewrite ``last.ckpt`` at the end when it wrote it earlier in the run, so a run
    stopping between checkpoint intervals would leave older weights there: it is rewritten here.
    """

    @staticmethod
    def _last_paths(trainer) -> Iterator[tuple[Callback, str]]:
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_last", False) and callback.dirpath:
                yield callback, os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)

    def on_train_start(self, trainer, pl_module) -> None:
        for callback, path in self._last_paths(trainer):
            callback.last_model_path = path

    def on_train_end(self, trainer, pl_module) -> None:
        for _, path in self._last_paths(trainer):
            trainer.save_checkpoint(path)


class InterruptedFit(Callback):
    """Says where a resumed fit continues from, and notes an interrupt (Ctrl-C, SIGTERM) of the fit.

    Lightning ends an interrupted fit with ``SystemExit``; the command line reads :attr:`interrupted` to end it
    with its interrupt message instead, naming the checkpoint that ModelCheckpoint's ``save_on_exception``
    wrote (:meth:`saved_checkpoint`).
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._trainer = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path:
            rank_zero_info(
                f"tapforge train: resuming from {trainer.ckpt_path} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch})"
            )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted, self._trainer = True, trainer

    def saved_checkpoint(self) -> str:
        """What the interrupted fit left to resume from, as a phrase."""
        trainer = self._trainer
        paths = [c.last_model_path for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")]
        if not paths:
            return (
                f"at step {trainer.global_step} with no checkpoint to resume from; fix: set save_last: true and "
                "save_on_exception: true on the ModelCheckpoint (as the shipped configs do)"
            )
        return f"at step {trainer.global_step}, saved {paths[0]}: resume with --ckpt_path last"


class TrackOverlays(Callback):
    """Ground truth | prediction videos of the first ``num_videos`` evaluation clips of each source (rank 0), in
    the loggers and as GIFs under ``<log_dir>/overlays``: each clip once, in the first query mode it comes in.

    Reads the eval step's outputs (``tracks`` [N,T,2], ``occluded`` [N,T] of the batch's one clip). Configured as
    ``overlays.num_videos`` and ``overlays.max_points`` (tracks drawn per video).
    """

    def __init__(self, num_videos: int = 2, max_points: int = 40):
        if num_videos < 0 or max_points < 1:
            raise TapforgeError(
                f"overlays.num_videos is {num_videos} and overlays.max_points {max_points}; "
                "fix: use num_videos >= 0 and max_points >= 1"
            )
        self.num_videos, self.max_points = int(num_videos), int(max_points)
        self._drawn: dict[str, set[str]] = {}
        self._folder: str | None = None

    def _start(self, trainer) -> None:
        self._drawn = {}
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        self._folder = os.path.join(log_dir, "overlays") if log_dir else None

    def _draw(self, trainer, outputs, batch) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking or not outputs or not self.num_videos:
            return
        drawn = self._drawn.setdefault(batch.source, set())
        if batch.name in drawn or len(drawn) >= self.num_videos:
            return
        drawn.add(batch.name)
        frames = overlay_frames(
            batch.video[0].float().cpu().numpy(),
            batch.target_points[0].cpu().numpy(),
            batch.occluded[0].cpu().numpy(),
            outputs["tracks"],
            outputs["occluded"],
            self.max_points,
        )
        log_overlay(trainer, f"overlay/{batch.set_name}/{batch.name}", frames, self._folder)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._draw(trainer, outputs, batch)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._draw(trainer, outputs, batch)


class DataStatistics(Callback):
    """Logs the data module's skipped shards, samples, clips and real videos (``data/*``), summed over workers and
    ranks, at the logging cadence, beside the synthetic clips that augmentation left without a visible point."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stats = getattr(trainer.datamodule, "stats", None)
        if stats is None or trainer.global_step % max(1, trainer.log_every_n_steps) != 0:
            return
        totals = stats.totals()
        synthetic = batch.get("synthetic") if isinstance(batch, dict) else batch
        empty = float(synthetic.no_visible_track.sum()) if synthetic is not None else 0.0
        local = torch.tensor(list(totals.values()) + [empty], device=pl_module.device)
        summed = trainer.strategy.reduce(local.double(), reduce_op="sum").tolist()
        names = [f"data/{k}" for k in totals] + ["data/clips_without_visible_track"]
        for name, value in zip(names, summed):
            pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)
