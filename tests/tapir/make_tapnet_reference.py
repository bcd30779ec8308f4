"""Make ``tests/tapir/data/tapnet_reference.npz``: the official JAX TAP-Net's outputs on seeded parameters and inputs.

    python tests/tapir/make_tapnet_reference.py --tapnet-src DIR [--seed 0]

Runs in an environment with jax, dm-haiku, chex, einops and optax (CPU wheels from the package index) and
the official tapnet sources in DIR (a checkout of google-deepmind/tapnet; they are read, never copied here).
It first checks that ``tapnet_layout`` names and shapes every parameter and batch-norm statistic as the
official model's own initialisation does, then stores the seed, the query points and the official tracks,
occlusion logits and a slice of the feature grid. ``tests/tapir/test_tapnet.py`` rebuilds the same parameters and
inputs from the seed and compares the PyTorch port with these outputs, without JAX.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tests.tapir.tapnet_layout import PREFIX, random_haiku_checkpoint, reference_inputs  # noqa: E402


def shapes(tree) -> dict:
    return {module: {name: tuple(np.shape(v)) for name, v in values.items()} for module, values in tree.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tapnet-src", required=True, help="folder holding the official tapnet package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "data", "tapnet_reference.npz"))
    args = parser.parse_args()
    sys.path.insert(0, args.tapnet_src)
    import haiku as hk
    import jax
    from tapnet.models import tapnet_model

    video, queries = reference_inputs(args.seed)

    def forward(video, queries, is_training):
        model = tapnet_model.TAPNet(cross_replica_axis=None, num_frames=video.shape[1])
        return model(video, is_training, queries, query_chunk_size=8)

    model = hk.transform_with_state(forward)
    official_params, official_state = model.init(jax.random.PRNGKey(0), video, queries, True)
    checkpoint = random_haiku_checkpoint(args.seed)
    for label, ours, theirs in (
        ("params", checkpoint["params"], official_params),
        ("state", checkpoint["state"], official_state),
    ):
        ours, theirs = shapes(ours), shapes(theirs)
        if ours != theirs:
            differ = sorted(m for m in set(ours) | set(theirs) if ours.get(m) != theirs.get(m))
            raise SystemExit(f"tapnet_layout's {label} differ from the official model's in {differ}")
    assert all(module.startswith(PREFIX) for module in official_params)
    out, _ = model.apply(checkpoint["params"], checkpoint["state"], None, video, queries, False)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(
        args.out,
        seed=args.seed,
        query_points=queries,
        tracks=np.asarray(out["tracks"]),
        occlusion=np.asarray(out["occlusion"]),
        feature_grid_slice=np.asarray(out["feature_grid"][0, :, ::4, ::4, :8]),
    )
    print(
        f"wrote {args.out}: tracks {np.asarray(out['tracks']).shape}, occlusion logits in "
        f"[{float(np.min(out['occlusion'])):.2f}, {float(np.max(out['occlusion'])):.2f}]"
    )


if __name__ == "__main__":
    main()
