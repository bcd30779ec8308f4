"""The plain torch dataset (`tapforge.train.dataset.ShardDataset`): layout, exact tracks, workers, augmentation."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import iter_tar_samples
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.dataset import ShardDataset, make_training_example
from tapforge.train.shards import expand_shards

torch.set_num_threads(1)


def test_examples_follow_the_documented_layout_and_keep_the_tracks(tiny_shards):
    dataset = ShardDataset(tiny_shards, resolution=(32, 32), num_frames=6, num_queries=8)
    examples = list(dataset)
    assert len(examples) == 4  # every clip once per pass
    clips = {}
    for url in expand_shards(tiny_shards):
        for sample in iter_tar_samples(url):
            clips[sample["__key__"]] = np.load(io.BytesIO(sample["tracks.npy"]))
    for example in examples:
        assert example["video"].shape == (6, 32, 32, 3) and example["video"].dtype == torch.float32
        assert -1.0 <= example["video"].min() and example["video"].max() <= 1.0
        assert example["tracks"].shape == (8, 6, 2) and example["occluded"].shape == (8, 6)
        query_frame = example["query_frame"]
        assert not example["occluded"][torch.arange(8), query_frame].any()
        points = example["query_points"]  # (t, y, x) of the query
        torch.testing.assert_close(points[:, 0], query_frame.float())
        torch.testing.assert_close(points[:, [2, 1]], example["tracks"][torch.arange(8), query_frame])
        # same size and length, no augmentation: each track is one of the shard's tracks, exactly
        for row in example["tracks"].numpy():
            assert any((tracks == row).all(axis=(1, 2)).any() for tracks in clips.values())


def test_resize_augmentation_and_workers(tiny_shards):
    plain = ShardDataset(tiny_shards, resolution=(48, 64), num_frames=6, num_queries=8)
    example = next(iter(plain))
    assert example["video"].shape == (6, 48, 64, 3) and example["tracks"][..., 0].max() > 32
    augmented = ShardDataset(tiny_shards, resolution=(32, 32), num_frames=6, num_queries=8, augment=AugmentConfig())
    loader = DataLoader(augmented, batch_size=2, num_workers=2)
    batches = list(loader)
    assert sum(len(b["video"]) for b in batches) == 4  # two workers, each its own shard
    assert batches[0]["video"].shape == (2, 6, 32, 32, 3) and batches[0]["query_points"].shape == (2, 8, 3)


def test_bad_settings_are_one_line(tmp_path, tiny_shards):
    with pytest.raises(TapforgeError, match="shards"):
        ShardDataset(str(tmp_path / "nothing-*.tar"))
    with pytest.raises(TapforgeError, match="on_corrupt"):
        ShardDataset(tiny_shards, on_corrupt="ignore")


def test_importing_the_dataset_does_not_import_lightning():
    code = "import sys, tapforge.train.dataset; print('lightning' in sys.modules, 'bpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_window_of_a_long_clip_decodes_only_its_own_frames():
    import dataclasses
    from unittest import mock

    from tapforge.synth import schema
    from tapforge.train.procedural import make_clip

    rng = np.random.default_rng(0)
    base = make_clip(rng, "long", num_frames=8, size=(32, 32))
    loop = np.arange(300) % 8
    long = dataclasses.replace(
        base,
        video=base.video[loop],
        tracks=base.tracks[:, loop],
        occluded=base.occluded[:, loop],
        tracks_3d=base.tracks_3d[:, loop],
    )
    sample = schema.encode_clip(long)
    with mock.patch.object(schema, "decode_frame", wraps=schema.decode_frame) as decode:
        example = make_training_example(sample, 6, [1, 4], 8, rng)
    assert decode.call_count == 6 and example["video"].shape[0] == 6
