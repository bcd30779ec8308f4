"""Callbacks that ``tapforge train`` always adds."""
from __future__ import annotations

import os
from typing import Iterator

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


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
            rank_zero_info(f"tapforge train: resuming from {trainer.ckpt_path} at step {trainer.global_step} "
                           f"(epoch {trainer.current_epoch})")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted, self._trainer = True, trainer

    def saved_checkpoint(self) -> str:
        """What the interrupted fit left to resume from, as a phrase."""
        trainer = self._trainer
        paths = [c.last_model_path for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")]
        if not paths:
            return (f"at step {trainer.global_step} with no checkpoint to resume from; fix: set save_last: true and "
                    "save_on_exception: true on the ModelCheckpoint (as the shipped configs do)")
        return f"at step {trainer.global_step}, saved {paths[0]}: resume with --ckpt_path last"
