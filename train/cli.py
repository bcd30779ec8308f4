"""``tapforge train fit|validate|test --config configs/train/X.yaml [--section.key value ...]``.

LightningCLI over :class:`train.module.TAPIRModule` (``model:`` section) and
:class:`train.data.TAPIRDataModule` (``data:`` section), with ``trainer:`` the Lightning Trainer.
The resolved config is saved as ``config.yaml`` in the first logger's folder. Loggers: those of
the config (TensorBoard by default), plus CSV always, plus W&B when ``wandb`` is installed and
``WANDB_PROJECT`` is set. Bad config values end with one TapforgeError line naming the key.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import warnings

SUBCOMMANDS = ("fit", "validate", "test")
log = logging.getLogger(__name__)


def _one_line(message: str) -> str:
    """The useful line of an error that may carry a DataLoader worker traceback or usage text."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.match(r"^(?:tapforge\.errors\.)?TapforgeError: (.*)$", line)
        if match:
            return match.group(1)
    return " ".join(lines) if len(lines) < 4 else lines[-1]


def _resolve_precision(trainer) -> None:
    """bf16 only where it runs fast: fall back to 32-true on the CPU and 16-mixed on pre-Ampere GPUs."""
    import torch

    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator"))
    if "bf16" not in precision:
        return
    if not (torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")):
        warnings.warn(f"trainer.precision={precision} needs a GPU; training in 32-true on the CPU")
        trainer["precision"] = "32-true"
    elif not torch.cuda.is_bf16_supported():
        warnings.warn(f"this GPU has no bfloat16; trainer.precision={precision} becomes 16-mixed")
        trainer["precision"] = "16-mixed"


def _has_tensorboard() -> bool:
    """TensorBoard logging needs tensorboard or tensorboardX; without either, training logs CSV only (and says so)."""
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        return True
    print("tapforge train: tensorboard is not installed: logging to CSV only (pip install tensorboard)", file=sys.stderr)
    return False


def _build_cli_class():
    from jsonargparse import Namespace
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger, Logger

    class TapforgeCLI(LightningCLI):
        """LightningCLI with tapforge's logger and precision rules."""

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            trainer = config["trainer"]
            _resolve_precision(trainer)
            root = trainer.get("default_root_dir") or "runs"
            trainer["default_root_dir"] = root
            if trainer.get("logger") in (None, True):
                kinds = (("TensorBoardLogger", "tensorboard"),) if _has_tensorboard() else ()
                trainer["logger"] = [
                    Namespace(class_path=f"lightning.pytorch.loggers.{kind}", init_args=Namespace(save_dir=root, name=name))
                    for kind, name in kinds + (("CSVLogger", "csv"),)
                ]
            for callback in trainer.get("callbacks") or []:
                if isinstance(callback, Namespace) and str(callback.get("class_path", "")).endswith("ModelCheckpoint"):
                    if callback.get("init_args") is None:
                        callback["init_args"] = Namespace()
                    if not callback.init_args.get("dirpath"):
                        callback.init_args["dirpath"] = os.path.join(root, "checkpoints")

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            loggers = list(trainer.loggers)
            if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):
                loggers.append(CSVLogger(save_dir=trainer.default_root_dir, name="csv"))
            if loggers and os.environ.get("WANDB_PROJECT"):
                try:
                    import wandb  # noqa: F401
                    from lightning.pytorch.loggers import WandbLogger
                except ImportError:
                    log.info("WANDB_PROJECT is set but wandb is not installed; not logging to W&B")
                else:
                    if not any(isinstance(lg, WandbLogger) for lg in loggers):
                        loggers.append(WandbLogger(project=os.environ["WANDB_PROJECT"], save_dir=trainer.default_root_dir))
            trainer.loggers = [lg for lg in loggers if isinstance(lg, Logger)]
            return trainer

    return TapforgeCLI


def main(argv: list[str] | None = None) -> int:
    """Run ``fit``, ``validate`` or ``test``; see the module docstring."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from tapforge.errors import TapforgeError
    from train.callbacks import FinalCheckpoint
    from train.data import TAPIRDataModule
    from train.module import TAPIRModule

    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")  # ours is exact
    parser_kwargs = {"exit_on_error": False, **{name: {"exit_on_error": False} for name in SUBCOMMANDS}}
    cli_class = _build_cli_class()

    class Subcommands(cli_class):
        @staticmethod
        def subcommands():
            return {k: v for k, v in cli_class.subcommands().items() if k in SUBCOMMANDS}

    try:
        Subcommands(
            TAPIRModule,
            TAPIRDataModule,
            args=argv,
            parser_kwargs=parser_kwargs,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [FinalCheckpoint()]},
            seed_everything_default=0,
            auto_configure_optimizers=False,
        )
    except ArgumentError as err:
        raise TapforgeError(
            f"bad training config: {_one_line(str(err))}; fix: correct that key in the YAML or on the command line "
            "(tapforge train fit --help lists every key)"
        ) from None
    except MisconfigurationException as err:
        raise TapforgeError(
            f"conflicting trainer settings: {_one_line(str(err))}; fix: change one of them in the YAML or on the "
            "command line"
        ) from None
    except TapforgeError as err:
        raise TapforgeError(_one_line(str(err))) from None
    return 0
