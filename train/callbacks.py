"""Callbacks that ``tapforge train`` always adds."""
from __future__ import annotations

import os

from lightning.pytorch.callbacks import Callback


class FinalCheckpoint(Callback):
    """Write ``last.ckpt`` of every ``save_last`` ModelCheckpoint when training ends.

    Lightning's ModelCheckpoint skips this when it already wrote ``last.ckpt`` earlier in the run,
    so a run stopping between checkpoint intervals (``max_steps`` not a multiple of the epoch
    length or of ``every_n_train_steps``) would otherwise leave older weights there.
    """

    def on_train_end(self, trainer, pl_module) -> None:
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_last", False) and callback.dirpath:
                name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
                trainer.save_checkpoint(os.path.join(callback.dirpath, name))
