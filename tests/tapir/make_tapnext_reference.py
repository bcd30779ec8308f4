"""Make ``tests/tapir/data/tapnext_reference.npz``: the official torch TAPNext's outputs on seeded parameters and
inputs of a small configuration, and the layouts of its full-size checkpoints.

    python tests/tapir/make_tapnext_reference.py --tapnet-src DIR [--seed 0]

Runs where torch, numpy, einops and torchvision import, with the official tapnet sources in DIR (a checkout of
google-deepmind/tapnet; read, never copied here). It stores, for ``tapnext_layout.TINY`` with parameters from
``random_parameters``:

* the official outputs offline (eval mode: the sequential scan), in training mode (its parallel ``pscan``) and
  online (one frame per call with the carried state): tracks (y, x in 256-bin units), visible logits, the
  offline position logits, and ``tracker_certainty`` of each;
* the full-size (released) configuration's torch ``state_dict`` layout and the JAX ``.npz`` layout that the
  official ``convert_pytorch_model_to_jax_checkpoint`` writes, as ``key shape`` lines.

Before writing, it checks tapforge's ``.npz`` mapping against the official one at full size: a random full-size
model written by the official converter and read back by the official ``restore_model_from_jax_checkpoint`` and
by ``tapforge.tapir.checkpoint.load_model`` must give identical state dicts. ``tests/tapir/test_tapnext.py``
compares tapforge's TAPNext with the stored outputs without the official code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from tests.tapir.tapnext_layout import TINY, layout_text, random_parameters, reference_inputs  # noqa: E402


def seeded_official(module, config: dict, seed: int):
    model = module.TAPNext(**config)
    shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}
    values = {k: torch.from_numpy(v) for k, v in random_parameters(shapes, seed).items()}
    model.load_state_dict({**values, "query_pos_embed": model.query_pos_embed}, strict=True)
    return model


def run_official(model, utils, video, queries):
    """Offline, training-mode and online outputs; tracks and logits as [B,T,Q,...]."""
    out = {}
    with torch.no_grad():
        model.eval()
        tracks, logits, visible, _ = model(video=video, query_points=queries)
        out.update(
            offline_tracks=tracks,
            offline_track_logits=logits,
            offline_visible_logits=visible,
            offline_certainty=utils.tracker_certainty(tracks, logits),
        )
        model.train()
        tracks, logits, visible, _ = model(video=video, query_points=queries)
        out.update(train_tracks=tracks, train_visible_logits=visible)
        model.eval()
        steps, state = [], None
        for t in range(video.shape[1]):
            kwargs = {"query_points": queries} if state is None else {"state": state}
            *outputs, state = model(video=video[:, t : t + 1], **kwargs)
            steps.append(outputs)
        tracks, logits, visible = (torch.cat(parts, dim=1) for parts in zip(*steps))
        out.update(
            online_tracks=tracks,
            online_visible_logits=visible,
            online_certainty=utils.tracker_certainty(tracks, logits),
        )
    return {k: v.numpy() for k, v in out.items()}


def check_full_size_mapping(module, utils, seed: int) -> tuple[str, str]:
    """(torch layout, JAX layout) of the released configuration, after checking that tapforge reads the official
    converter's .npz exactly as the official restore does."""
    from tapforge.tapir.checkpoint import load_model

    config = {"image_size": (256, 256)}
    official = seeded_official(module, config, seed)
    torch_layout = layout_text({k: v.shape for k, v in official.state_dict().items()})
    arrays = utils.convert_pytorch_model_to_jax_checkpoint(official)
    jax_layout = layout_text({k: np.shape(v) for k, v in arrays.items()})
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tapnext_ckpt.npz")
        np.savez(path, **arrays)
        del arrays
        restored = utils.restore_model_from_jax_checkpoint(module.TAPNext(**config), path).state_dict()
        ours = load_model(path).state_dict()
    if set(ours) != set(restored):
        raise SystemExit(f"tapforge's TAPNext keys differ from the official: {sorted(set(ours) ^ set(restored))[:6]}")
    worst = max(float((ours[k] - restored[k]).abs().max()) for k in ours)
    if worst != 0.0:
        raise SystemExit(f"tapforge's .npz mapping differs from the official restore by up to {worst}")
    print(f"full-size .npz mapping: {len(ours)} tensors identical to the official restore")
    return torch_layout, jax_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tapnet-src", required=True, help="folder holding the official tapnet package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "data", "tapnext_reference.npz"))
    args = parser.parse_args()
    sys.path.insert(0, args.tapnet_src)
    from tapnet.tapnext import tapnext_torch, tapnext_torch_utils

    torch.manual_seed(args.seed)
    model = seeded_official(tapnext_torch, TINY, args.seed)
    params_sum = float(sum(float(p.detach().double().sum()) for p in model.parameters()))
    video, queries = reference_inputs(args.seed)
    outputs = run_official(model, tapnext_torch_utils, torch.from_numpy(video), torch.from_numpy(queries))
    torch_layout, jax_layout = check_full_size_mapping(tapnext_torch, tapnext_torch_utils, args.seed)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(
        args.out,
        seed=args.seed,
        config=json.dumps(TINY),
        query_points=queries,
        video_sum=float(video.astype(np.float64).sum()),
        params_sum=params_sum,
        full_torch_layout=torch_layout,
        full_jax_layout=jax_layout,
        **outputs,
    )
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KB): tracks {outputs['offline_tracks'].shape}, "
        f"visible logits in [{outputs['offline_visible_logits'].min():.2f}, "
        f"{outputs['offline_visible_logits'].max():.2f}], certainty in [{outputs['offline_certainty'].min():.3f}, "
        f"{outputs['offline_certainty'].max():.3f}]"
    )


if __name__ == "__main__":
    main()
