"""Self-supervised fine-tuning on unlabeled real video (BootsTAP): EMA teacher, pseudo-labels mapped through the
student's transform, trust masks, real-video input with a broken file, packing, resume."""

import json
import os

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from tapforge.base import __version__
from tapforge.base.errors import TapforgeError
from tapforge.base.video import write_video
from tapforge.synth.shards import iter_checked_samples
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import (
    AugmentConfig,
    BlurConfig,
    ColorConfig,
    CropConfig,
    FlipConfig,
    JpegConfig,
    NoiseConfig,
    OccluderConfig,
)
from tapforge.train.batches import RealClipBatch
from tapforge.train.bootstrap import (
    SelfSupervisedConfig,
    TeacherTracks,
    confidence_mask,
    consistency_mask,
    ema_update,
    make_teacher,
    pseudo_labels,
)
from tapforge.train.cli import pack_videos_main as pack_main
from tapforge.train.data import TAPIRDataModule
from tapforge.train.module import TAPIRModule
from tapforge.train.real_videos import RealClipStream
from tapforge.train.video_sources import expand_video_sources

torch.set_num_threads(1)
TINY = dict(
    initial_resolution=[32, 32], mixer_hidden_dim=32, num_mixer_blocks=1, blocks_per_group=[1, 1, 1, 1], num_pips_iter=1
)
TINY_TAPNEXT = dict(image_size=[32, 32], width=32, patch_size=[8, 8], num_heads=2, lru_width=32, depth=1)


def test_ema_update_moves_the_teacher_a_fraction_towards_the_student():
    student = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(3.0)
    ema_update(teacher, student, decay=0.9)
    for old, new, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)  # buffers are copied


class DotTeacher(torch.nn.Module):
    """A tracker that knows where the one bright dot of the test clip is: every query follows the dot."""

    def __init__(self, path: torch.Tensor, hidden: torch.Tensor):
        super().__init__()
        self.path, self.hidden = path, hidden  # [T,2] (x, y); [T] bool

    def forward(self, video, queries, is_training=False, query_chunk_size=64):
        batch, num = queries.shape[:2]
        tracks = self.path[None, None].expand(batch, num, -1, -1).clone()
        occlusion = torch.where(self.hidden, 10.0, -10.0)[None, None].expand(batch, num, -1).clone()
        return {"tracks": tracks, "occlusion": occlusion, "expected_dist": torch.full_like(occlusion, -10.0)}


def test_a_known_transform_maps_the_teachers_tracks_onto_the_students_frame():
    frames, size = 8, 48
    t = torch.arange(frames, dtype=torch.float32)
    path = torch.stack([6.5 + 5 * t, 24.5 - t], dim=-1)  # pixel centres, so that the 3x3 dot is centred on them
    video = torch.zeros(1, frames, size, size, 3, dtype=torch.uint8)
    for t, (x, y) in enumerate(path.tolist()):
        video[0, t, int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255  # a 3x3 dot centred on the track
    hidden = torch.zeros(frames, dtype=torch.bool)
    hidden[3] = True  # the teacher says the dot is hidden in frame 3
    config = SelfSupervisedConfig(num_queries=4, consistency_filter=True)
    # a zoomed-in window: about half the frame, so the dot leaves the student's view on the left or the right
    view = AugmentConfig(
        crop=CropConfig(p=1.0, area=(0.25, 0.25), aspect=(1.0, 1.0), drift_p=0.0),
        flip=FlipConfig(horizontal_p=1.0),
        occluder=OccluderConfig(p=0.0),
        color=ColorConfig(p=0.0, grayscale_p=0.0),
        blur=BlurConfig(gaussian_p=0.0, motion_p=0.0),
        noise=NoiseConfig(p=0.0),
        jpeg=JpegConfig(p=0.0),
    )
    gen = torch.Generator().manual_seed(0)
    labels = pseudo_labels(
        DotTeacher(path, hidden),
        RealClipBatch(video=video, keys=["dot"]),
        config,
        Sim2RealAugment(view, (size, size)),
        gen,
    )
    student = labels.batch
    assert student.video.shape == (1, frames, size, size, 3)
    tracks, occluded, mask = student.tracks[0, 0], student.occluded[0, 0], labels.mask[0, 0]
    inside = (tracks[:, 0] >= 0) & (tracks[:, 0] < size) & (tracks[:, 1] >= 0) & (tracks[:, 1] < size)
    assert inside.any() and (~inside).any(), "the window should keep the dot in some frames and lose it in others"
    for t in range(frames):
        if inside[t]:
            assert bool(occluded[t]) == (t == 3) and bool(mask[t])  # confident, consistent, in the frame
            if bool(((tracks[t] >= 4) & (tracks[t] <= size - 4)).all()):  # the whole dot is in view: find it
                weight = (student.video[0, t].mean(-1) + 1.0).clamp(min=0)  # [-1, 1] -> dark pixels weigh 0
                centre = torch.arange(size) + 0.5
                found = torch.stack([(weight.sum(0) * centre).sum(), (weight.sum(1) * centre).sum()]) / weight.sum()
                torch.testing.assert_close(found, tracks[t], atol=0.5, rtol=0, msg=f"frame {t}")
        else:  # left the student's frame: occluded, and not trusted as a label
            assert bool(occluded[t]) and not bool(mask[t])
    query_t = int(student.query_points[0, 0, 0])
    assert not bool(occluded[query_t])  # the student's query is a visible point of the teacher's trajectory
    torch.testing.assert_close(student.query_points[0, 0, 1:].flip(-1), tracks[query_t])


def test_confidence_mask_keeps_sure_labels_either_way():
    visibility = torch.tensor([0.95, 0.8, 0.79, 0.5, 0.21, 0.2, 0.01])
    assert confidence_mask(visibility, 0.8).tolist() == [True, True, False, False, False, True, True]


def test_consistency_mask_compares_positions_at_256_scale_and_occlusion():
    def prediction(xs, occluded):
        tracks = torch.tensor(xs, dtype=torch.float32)[None, None, :, None].repeat(1, 1, 1, 2)
        return TeacherTracks(tracks, torch.zeros(1, 1, len(xs)), torch.tensor(occluded)[None, None])

    a = prediction([10.0, 10.0, 10.0, 10.0, 10.0], [False, False, False, True, True])
    # at 64x64, 2 px in x and y is 8 * sqrt(2) = 11.3 px at 256 scale; 1 px is 5.7
    b = prediction([11.0, 12.0, 10.0, 30.0, 10.0], [False, False, True, True, False])
    assert consistency_mask(a, b, 8.0, (64, 64))[0, 0].tolist() == [True, False, False, True, False]


def _videos(folder, count=2, frames=10, size=40, broken=True):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 255, (size * 2, size * 2, 3), dtype=np.uint8)
        clip = np.stack([base[t : t + size, 2 * t : 2 * t + size] for t in range(frames)])  # a panning texture
        write_video(os.path.join(folder, f"clip{i}.mp4"), clip, fps=10)
    if broken:
        with open(os.path.join(folder, "broken.mp4"), "wb") as f:
            f.write(b"\x00not a video" * 50)
    return folder


def test_mixed_fine_tune_counts_a_broken_video_keeps_a_lagging_teacher_and_resumes(tiny_shards, tmp_path):
    real = _videos(str(tmp_path / "real"))
    data = dict(
        train_shards=tiny_shards,
        real_videos=real,
        real_batch_size=1,
        batch_size=1,
        num_frames=4,
        num_queries=8,
        resolution=(32, 32),
        epoch_length=2,
        num_workers=0,
        shuffle_buffer=0,
    )
    # an untrained teacher is sure of nothing: accept every label here, the masks have their own tests
    ssl = SelfSupervisedConfig(num_queries=8, ema_decay=0.5, confidence=0.5, consistency_px=1e4)
    checkpoints = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, every_n_train_steps=2)
    module = TAPIRModule(model=TINY, warmup_steps=0, lr=1e-3, self_supervised=ssl)
    with torch.no_grad():  # an untrained model calls every point hidden; this one starts out seeing them all
        module.model.torch_cost_volume_track_mods.occ_out.bias.fill_(-6.0)
    datamodule = TAPIRDataModule(**data)
    trainer = Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoints],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2
    assert datamodule.stats.totals()["bad_videos"] == 1  # counted once, though drawn from in every batch
    logged = trainer.logged_metrics
    for name in (
        "train/supervised_loss",
        "train/self_supervised_loss",
        "self_supervised/kept_share",
        "self_supervised/position_agreement",
        "self_supervised/occlusion_agreement",
    ):
        assert torch.isfinite(logged[name]), name
    assert 0.0 < float(logged["self_supervised/kept_share"]) <= 1.0

    saved = torch.load(str(tmp_path / "ckpt" / "last.ckpt"), weights_only=False)
    teacher = saved["self_supervised_teacher"]
    student = {k[len("model.") :]: v for k, v in saved["state_dict"].items()}
    assert set(teacher) == set(student)  # the teacher stays out of state_dict (the checkpoint contract)
    assert any(not torch.equal(teacher[k], student[k]) for k in student)  # EMA lags the student

    resumed = TAPIRModule(model=TINY, warmup_steps=0, lr=1e-3, self_supervised=ssl)
    trainer = Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    seen = {}
    original = resumed.teacher

    def spy():
        teacher_model = original()
        seen.setdefault("state", {k: v.clone() for k, v in teacher_model.state_dict().items()})
        return teacher_model

    resumed.teacher = spy
    trainer.fit(resumed, datamodule=TAPIRDataModule(**data), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.global_step == 3
    assert all(torch.equal(seen["state"][k], teacher[k]) for k in teacher)  # the teacher resumed, not re-made


@pytest.mark.parametrize("architecture", ["tapir", "tapnext"])
def test_real_videos_alone_need_no_synthetic_shards(tmp_path, architecture):
    real = _videos(str(tmp_path / "real"), count=1, broken=False)
    model = TINY if architecture == "tapir" else TINY_TAPNEXT
    ssl = SelfSupervisedConfig(num_queries=8, confidence=0.5, consistency_px=1e4)  # accept the untrained teacher
    module = TAPIRModule(architecture=architecture, model=model, warmup_steps=0, lr=1e-3, self_supervised=ssl)
    # an untrained model may call every point hidden (no label left to learn from): this one starts out seeing them
    with torch.no_grad():
        if architecture == "tapir":
            module.model.torch_cost_volume_track_mods.occ_out.bias.fill_(-6.0)
        else:
            module.model.visible_head[-1].bias.fill_(6.0)
    start = {k: v.clone() for k, v in module.model.state_dict().items()}
    data = TAPIRDataModule(
        real_videos=real, batch_size=1, num_frames=4, resolution=(32, 32), epoch_length=2, num_workers=0
    )
    trainer = Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=data)
    logged = trainer.logged_metrics
    assert trainer.global_step == 2 and "train/supervised_loss" not in logged
    assert torch.isfinite(logged["train/self_supervised_loss"]) and float(logged["self_supervised/kept_share"]) > 0
    # the pseudo-labels trained the student (BootsTAPNext's recipe for a TAPNext)
    assert any(not torch.equal(start[k], v) for k, v in module.model.state_dict().items())


def test_real_video_sources_and_one_line_errors(tmp_path):
    real = _videos(str(tmp_path / "real"), count=1)
    frames = tmp_path / "real" / "frames"
    frames.mkdir()
    from PIL import Image

    for t in range(3):
        Image.fromarray(np.full((8, 8, 3), t * 40, np.uint8)).save(frames / f"f{t}.png")
    videos, shards = expand_video_sources(real)
    assert sorted(os.path.basename(v) for v in videos) == ["broken.mp4", "clip0.mp4", "frames"] and shards == []
    with pytest.raises(TapforgeError, match="matches no file"):
        expand_video_sources(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TapforgeError, match="names no videos"):
        expand_video_sources(str(tmp_path / "empty"))
    # a reader whose every video is unreadable stops with one line instead of waiting forever
    stream = RealClipStream([os.path.join(real, "broken.mp4")], [], 1, 2, 4, [1], (16, 16))
    with pytest.raises(TapforgeError, match="no readable video left"):
        next(iter(stream))


def test_pack_videos_writes_resumable_shards_that_train_reads(tmp_path):
    real = _videos(str(tmp_path / "real"))
    out = tmp_path / "packed"
    args = [real, "--out", str(out), "--num-frames", "4", "--size", "16", "16", "--clips-per-shard", "2"]
    assert pack_main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [os.path.basename(p) for p in manifest["skipped"]] == ["broken.mp4"]
    assert sum(s["num_samples"] for s in manifest["shards"]) == 4  # 2 videos x 10 frames -> 2 clips of 4 each
    # the synthetic datasets' field names for the same things: synth's shard checker reads a packed shard's entry
    assert manifest["generator"] == "tapforge-pack-videos" and manifest["generator_version"] == __version__
    assert manifest["num_shards"] == manifest["num_complete_shards"] == 2 and manifest["config"]["num_frames"] == 4
    for entry in manifest["shards"]:
        keys = list(iter_checked_samples(out, entry, decode=lambda sample: sample["__key__"]))
        assert keys == entry["keys"] and len(keys) == entry["num_samples"]
        assert entry["bytes"] == (out / entry["name"]).stat().st_size
    first = out / "shard-000000.tar"
    stamp = first.stat().st_mtime_ns
    assert pack_main(args) == 0 and first.stat().st_mtime_ns == stamp  # a second run keeps complete shards
    with pytest.raises(TapforgeError, match="other videos or settings"):
        pack_main(args[:-1] + ["3"])
    videos, shards = expand_video_sources(str(out))
    assert videos == [] and len(shards) == 2
    batch = next(iter(RealClipStream(videos, shards, 2, 1, 3, [1], (16, 16))))
    assert batch.video.shape == (2, 3, 16, 16, 3) and batch.video.dtype == torch.uint8


def _pack_error(capsys, argv, during_work=False):
    """The one error line of a refused pack-videos (after its progress bar, for a failure ``during_work``)."""
    from tapforge.cli import main as tapforge_main

    assert tapforge_main(["pack-videos", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()[-1:] if during_work else captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tapforge pack-videos: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("out", ["afile", "afile/packed", "afile/a/b"])
def test_pack_videos_refuses_an_output_under_a_file_before_the_work(tmp_path, capsys, out):
    real = _videos(str(tmp_path / "real"), count=1, broken=False)
    (tmp_path / "afile").write_text("x")
    line = _pack_error(capsys, [real, "--out", str(tmp_path / out), "--num-frames", "4"])
    assert f"--out {tmp_path / out}" in line and "is a file, not a folder" in line


DAMAGED_MANIFESTS = {
    "truncated": (b'{"generator": "tapforge-pack-videos", "config_hash": "ab', "is damaged (JSONDecodeError"),
    "not utf-8": (b"\xff\xfe\x00garbage", "is damaged (UnicodeDecodeError"),
    "empty": (b"", "is damaged (JSONDecodeError"),
    "a list": (b"[1, 2]", "was not written by pack-videos"),
    "a synth dataset": (
        b'{"generator": "tapforge", "shards": []}',
        "was not written by pack-videos (generator 'tapforge')",
    ),
    "no shards": (b'{"generator": "tapforge-pack-videos", "config_hash": "ab"}', "is damaged (no config_hash"),
    "bad shard entry": (
        b'{"generator": "tapforge-pack-videos", "config_hash": "ab", "shards": [{"name": 3}]}',
        "shard entries without name",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_MANIFESTS))
def test_pack_videos_refuses_to_resume_over_a_damaged_manifest_with_one_line(tmp_path, capsys, case):
    content, message = DAMAGED_MANIFESTS[case]
    real = _videos(str(tmp_path / "real"), count=1, broken=False)
    out = tmp_path / "packed"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    (out / "shard-000000.tar").write_bytes(b"kept as it is")
    line = _pack_error(capsys, [real, "--out", str(out), "--num-frames", "4"])
    assert message in line and "fix:" in line
    assert (out / "manifest.json").read_bytes() == content and sorted(os.listdir(out)) == [
        "manifest.json",
        "shard-000000.tar",
    ]


def test_pack_videos_removes_the_temporaries_a_killed_run_left(tmp_path):
    real = _videos(str(tmp_path / "real"), count=1, broken=False)
    out = tmp_path / "packed"
    out.mkdir()
    stale = [".shard-000000.tar.a1b2c3d4.tmp", ".shard-000007.tar.zzzzzzzz.tmp", ".manifest.json.x_y_z_w_.tmp"]
    for name in stale + ["notes.txt"]:
        (out / name).write_bytes(b"half")
    assert pack_main([real, "--out", str(out), "--num-frames", "4"]) == 0
    assert sorted(os.listdir(out)) == ["manifest.json", "notes.txt", "shard-000000.tar"]


def _frames(folder, images):
    folder.mkdir(parents=True)
    for t, data in enumerate(images):
        (folder / f"f{t:02d}.png").write_bytes(data)
    return str(folder)


def test_pack_videos_packs_16_bit_frames_as_gray_and_names_a_folder_of_mixed_sizes(tmp_path, capsys):
    import io

    from PIL import Image

    from tapforge.synth.schema import decode_frames
    from tests.image_modes import png16

    gray = _frames(tmp_path / "gray16", [png16(np.full((16, 16), 30000, np.uint16))] * 4)
    out = tmp_path / "packed"
    assert pack_main([gray, "--out", str(out), "--num-frames", "4", "--codec", "png"]) == 0
    entry = json.loads((out / "manifest.json").read_text())["shards"][0]
    (sample,) = iter_checked_samples(out, entry, decode=lambda sample: sample)
    frames = decode_frames(sample, range(4))
    assert np.all(frames == round(30000 / 257))  # gray, not clipped to white
    capsys.readouterr()

    def png(height):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, 16, 3), np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    mixed = _frames(tmp_path / "mixed", [png(16), png(16), png(17), png(16)])
    line = _pack_error(capsys, [mixed, "--out", str(tmp_path / "p2"), "--num-frames", "2"])
    assert "frame 'f02.png'" in line and "is 16x17 but 'f00.png' is 16x16" in line
    truncated = _frames(tmp_path / "truncated", [png(16)] * 3 + [png(16)[:400]])  # its header reads, its pixels do not
    line = _pack_error(capsys, [truncated, "--out", str(tmp_path / "p3"), "--num-frames", "2"], during_work=True)
    assert "failed while packing frames 2.." in line and "f03.png" in line


@pytest.mark.parametrize(
    "flag,values,message",
    [
        ("--num-frames", ["0"], "--num-frames 0: give an integer in 1..4096"),
        ("--num-frames", ["99999"], "--num-frames 99999: give an integer in 1..4096"),
        ("--stride", ["-2"], "--stride -2: give an integer >= 1"),
        ("--stride", ["1.5"], "--stride '1.5': not an integer; give an integer >= 1"),
        ("--size", ["4", "16"], "--size 4: give an integer in 8..4096"),
        ("--size", ["16", "nan"], "--size 'nan': not an integer"),
        ("--clips-per-video", ["0"], "--clips-per-video 0: give an integer >= 1"),
        ("--clips-per-shard", ["-1"], "--clips-per-shard -1: give an integer >= 1"),
        ("--jpeg-quality", ["0"], "--jpeg-quality 0: give an integer in 1..100"),
        ("--jpeg-quality", ["101"], "--jpeg-quality 101: give an integer in 1..100"),
    ],
)
def test_pack_videos_numeric_flags_are_one_line_naming_flag_value_and_range(tmp_path, capsys, flag, values, message):
    line = _pack_error(capsys, [str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), flag, *values])
    assert line.startswith(f"tapforge pack-videos: error: {message}")
    assert not (tmp_path / "out").exists()
