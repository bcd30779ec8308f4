"""Real 2-process DDP on the CPU (gloo) through `tapforge train fit`.

Both ranks must run the same number of steps, log validation metrics reduced over both ranks
(each rank alone holds only part of the videos), and the checkpoint must be written once.
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from tapforge.base.video import write_video
from tapforge.train.procedural import write_shards

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "configs", "train", "cpu_smoke.yaml")
TAPNEXT_SMOKE = os.path.join(ROOT, "configs", "train", "tapnext_cpu_smoke.yaml")


class RankReport(Callback):
    """Writes what this rank saw to $RANK_REPORT_DIR/rank<R>.json at the end of fit."""

    def __init__(self):
        self.batches = 0
        self.val_videos = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.val_videos[batch.set_name] = self.val_videos.get(batch.set_name, 0) + 1

    def on_train_end(self, trainer, pl_module):
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        teacher = pl_module._teacher
        teacher_sum = float(sum(p.double().sum() for p in teacher.parameters())) if teacher is not None else None
        report = dict(
            rank=trainer.global_rank,
            world=trainer.world_size,
            step=trainer.global_step,
            batches=self.batches,
            local_val_videos=self.val_videos,
            metrics=metrics,
            teacher_sum=teacher_sum,
            bad_videos=trainer.datamodule.stats.totals()["bad_videos"],
        )
        with open(os.path.join(os.environ["RANK_REPORT_DIR"], f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump(report, f)


def _fit(tmp_path, config: dict, base: str = SMOKE) -> list[dict]:
    """``tapforge train fit`` with ``base`` (cpu_smoke) and ``config`` on 2 CPU processes; each rank's report."""
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    env = dict(
        os.environ,
        RANK_REPORT_DIR=str(tmp_path),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tapforge.cli",
            "train",
            "fit",
            "--config",
            base,
            "--config",
            str(tmp_path / "ddp.yaml"),
        ],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]


TINY_MODEL = {
    "initial_resolution": [32, 32],
    "mixer_hidden_dim": 32,
    "num_mixer_blocks": 1,
    "blocks_per_group": [1, 1, 1, 1],
    "num_pips_iter": 1,
}


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    kw = dict(num_frames=6, size=(32, 32), num_objects=2, points_per_object=8, background_points=8)
    write_shards(str(tmp_path / "train"), num_clips=4, clips_per_shard=1, seed=0, **kw)
    write_shards(str(tmp_path / "val"), num_clips=3, clips_per_shard=3, seed=9, **kw)
    rng = np.random.default_rng(0)
    occluded = rng.random((4, 5)) < 0.2
    occluded[:, 0] = False
    videos = {
        f"v{i}": {
            "video": rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8),
            "points": rng.random((4, 5, 2)).astype(np.float32),
            "occluded": occluded,
        }
        for i in range(2)
    }
    with open(tmp_path / "davis.pkl", "wb") as f:
        pickle.dump(videos, f)
    config = {
        "trainer": {
            "max_steps": 4,
            "default_root_dir": str(tmp_path / "run"),
            "enable_progress_bar": False,
            "strategy": "ddp",
            "accelerator": "cpu",
            "devices": 2,
            "callbacks": [{"class_path": "tests.train.test_ddp.RankReport"}],
        },
        "model": {"model": TINY_MODEL, "warmup_steps": 1},
        "data": {
            "train_shards": str(tmp_path / "train"),
            "val_shards": str(tmp_path / "val"),
            "tapvid": {"davis": str(tmp_path / "davis.pkl")},
            "query_modes": ["first"],
            "batch_size": 1,
            "num_frames": 4,
            "num_queries": 8,
            "resolution": [32, 32],
            "epoch_length": 2,
            "num_workers": 1,
            "val_num_workers": 0,
            "val_max_tracks": 8,
            "shuffle_buffer": 1,
        },
    }
    # the YAML replaces cpu_smoke's callback list, so keep the checkpoint callback explicitly
    config["trainer"]["callbacks"].append(
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "save_last": True,
                "every_n_train_steps": 2,
                "filename": "step{step:07d}",
                "save_top_k": -1,
                "auto_insert_metric_name": False,
            },
        }
    )
    reports = _fit(tmp_path, config)
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[0]["step"] == reports[1]["step"] == 4
    assert reports[0]["batches"] == reports[1]["batches"] == 4
    # 3 held-out clips and 2 DAVIS videos, dealt to the ranks: each rank scored only its share ...
    for name, total in (("synthetic_first", 3), ("davis_first", 2)):
        local = [r["local_val_videos"].get(name, 0) for r in reports]
        assert sum(local) == total * 2 and max(local) < total * 2  # two validation runs (after epochs 1 and 2)
        # ... but both logged the metrics of all of them, reduced over the ranks
        for r in reports:
            assert r["metrics"][f"val/{name}/num_videos"] == total
    assert reports[0]["metrics"] == reports[1]["metrics"]
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["last.ckpt", "step0000002.ckpt", "step0000004.ckpt"]


@pytest.mark.slow
def test_two_process_ddp_mixes_synthetic_and_self_supervised_real_batches(tmp_path):
    kw = dict(num_frames=6, size=(32, 32), num_objects=2, points_per_object=8, background_points=8)
    write_shards(str(tmp_path / "train"), num_clips=4, clips_per_shard=1, seed=0, **kw)
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # one video per reader and one left over; plus a broken file
        base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        write_video(str(real / f"clip{i}.mp4"), np.stack([base[t : t + 32, t : t + 32] for t in range(8)]), fps=8)
    (real / "broken.mp4").write_bytes(b"not a video" * 40)
    config = {
        "trainer": {
            "max_steps": 4,
            "default_root_dir": str(tmp_path / "run"),
            "enable_progress_bar": False,
            "strategy": "ddp",
            "accelerator": "cpu",
            "devices": 2,
            "check_val_every_n_epoch": 100,
            "callbacks": [
                {"class_path": "tests.train.test_ddp.RankReport"},
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "every_n_train_steps": 4},
                },
            ],
        },
        "model": {
            "model": TINY_MODEL,
            "warmup_steps": 1,
            "self_supervised": {"num_queries": 8, "confidence": 0.5, "consistency_px": 10000.0},
        },
        "data": {
            "train_shards": str(tmp_path / "train"),
            "real_videos": str(real),
            "real_batch_size": 1,
            "batch_size": 1,
            "num_frames": 4,
            "num_queries": 8,
            "resolution": [32, 32],
            "epoch_length": 2,
            "num_workers": 1,
            "val_num_workers": 0,
            "shuffle_buffer": 1,
        },
    }
    reports = _fit(tmp_path, config)
    assert reports[0]["step"] == reports[1]["step"] == 4
    assert reports[0]["batches"] == reports[1]["batches"] == 4
    # the EMA teacher follows the all-reduced student, so it is the same on both ranks
    assert reports[0]["teacher_sum"] is not None and reports[0]["teacher_sum"] == reports[1]["teacher_sum"]
    assert sum(r["bad_videos"] for r in reports) == 1  # the broken file fell to one rank's reader, counted there
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "self_supervised_teacher" in saved and not any(k.startswith("_teacher") for k in saved["state_dict"])


@pytest.mark.slow
def test_two_process_ddp_trains_tapnext(tmp_path):
    """TAPNext through the same DDP path: equal steps, validation reduced over the ranks, one checkpoint."""
    kw = dict(num_frames=6, size=(32, 32), num_objects=2, points_per_object=8, background_points=8)
    write_shards(str(tmp_path / "train"), num_clips=4, clips_per_shard=1, seed=0, **kw)
    write_shards(str(tmp_path / "val"), num_clips=3, clips_per_shard=3, seed=9, **kw)
    config = {
        "trainer": {
            "max_steps": 2,
            "default_root_dir": str(tmp_path / "run"),
            "enable_progress_bar": False,
            "strategy": "ddp",
            "accelerator": "cpu",
            "devices": 2,
            "callbacks": [
                {"class_path": "tests.train.test_ddp.RankReport"},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
            ],
        },
        "model": {
            "model": {"image_size": [32, 32], "width": 32, "num_heads": 2, "lru_width": 32, "depth": 1},
            "warmup_steps": 1,
        },
        "data": {
            "train_shards": str(tmp_path / "train"),
            "val_shards": str(tmp_path / "val"),
            "query_modes": ["strided"],
            "batch_size": 1,
            "num_frames": 4,
            "num_queries": 8,
            "resolution": [32, 32],
            "epoch_length": 2,
            "num_workers": 1,
            "val_num_workers": 0,
            "val_max_tracks": 8,
            "shuffle_buffer": 1,
        },
    }
    reports = _fit(tmp_path, config, base=TAPNEXT_SMOKE)
    assert reports[0]["step"] == reports[1]["step"] == 2 and reports[0]["batches"] == reports[1]["batches"] == 2
    local = [r["local_val_videos"].get("synthetic_strided", 0) for r in reports]
    assert sum(local) == 3 and max(local) < 3
    for r in reports:
        assert r["metrics"]["val/synthetic_strided/num_videos"] == 3
    assert reports[0]["metrics"] == reports[1]["metrics"]
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["model"]["architecture"] == "tapnext"
