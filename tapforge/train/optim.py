"""tapnet's optimiser recipe in torch: AdamW parameter groups and the warmup-cosine schedule.

Weight decay exclusions follow tapnet (``tapnet/utils/optimizers.py`` with
``exclude_names=['b']``): biases of convolutions and linear layers (Haiku ``b``) and every
parameter of a normalisation module whose name contains ``layer_norm``, ``batch_norm``, ``_bn`` or
``linear_classifier`` are not decayed. The ResNet's instance norms are named ``instancenorm_*``
in Haiku, which none of those patterns match, so tapnet decays their scale and offset; so do we.

TAPNext (no training code released) follows the usual ViT and Griffin practice instead: only the weight
matrices and kernels of its layers (``weight``, ``w``, ``in_proj_weight`` outside normalisations) are decayed;
its tokens and position embeddings, every bias (``bias``, ``b``, ``in_proj_bias``), the normalisations' scales and
the RG-LRU's recurrence parameter ``a_param`` (decayed, it would shorten the recurrence's memory) are not.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tapforge.tapir.tapnext import TAPNext

NO_DECAY_MODULE_NAMES = ("layer_norm", "batch_norm", "_bn", "linear_classifier")
_NO_DECAY_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
TAPNEXT_DECAYED_NAMES = ("weight", "w", "in_proj_weight")


def decays(module_name: str, module: nn.Module, param_name: str) -> bool:
    """Whether tapnet applies weight decay to ``module_name.param_name``."""
    if isinstance(module, _NO_DECAY_TYPES) or any(n in module_name for n in NO_DECAY_MODULE_NAMES):
        return False
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return True  # Haiku calls these "scale"/"offset" inside "instancenorm_*": decayed
    return param_name != "bias"


def tapnext_decays(module: nn.Module, param_name: str) -> bool:
    """Whether a TAPNext's ``param_name`` of ``module`` is decayed: weight matrices and kernels only."""
    return param_name in TAPNEXT_DECAYED_NAMES and not isinstance(module, _NO_DECAY_TYPES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed and not decayed (the latter with ``weight_decay=0``)."""
    tapnext = isinstance(model, TAPNext)
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                decayed = tapnext_decays(module, param_name) if tapnext else decays(module_name, module, param_name)
                (decay if decayed else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, end_factor: float = 0.0) -> float:
    """Learning-rate factor at ``step``: linear 0 -> 1 over ``warmup_steps``, then cosine to ``end_factor``.

    Same shape as ``optax.warmup_cosine_decay_schedule(0, peak, warmup_steps, total_steps, end)``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def grad_norm(parameters) -> torch.Tensor:
    """Global L2 norm of the gradients (inf/nan if any gradient is not finite)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False)
