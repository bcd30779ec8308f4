"""Shards: atomic writes, kill-and-resume, determinism, verify, preview, job slicing."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import decode_clip, iter_tar_samples
from tapforge.synth.shards import job_from_environment, job_slice
from tests.conftest import TINY, render_command

pytestmark = pytest.mark.slow


def _render_cmd(out, num_scenes, *extra):
    return render_command(out, num_scenes, TINY, *extra)


def _tracks(out):
    result = {}
    for shard in sorted(out.glob("shard-*.tar")):
        for sample in iter_tar_samples(shard):
            clip = decode_clip(sample)
            result[clip.key] = (clip.tracks, clip.occluded, clip.video)
    return result


def test_kill_and_resume_then_same_as_one_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_render_cmd(killed, 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "shard-000000.tar").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = sorted(p.name for p in killed.glob("shard-*.tar"))
    assert visible and "shard-000002.tar" not in visible  # killed before the end
    for name in visible:  # every visible shard is complete and readable
        assert len(list(iter_tar_samples(killed / name))) == 1
    first = killed / "shard-000000.tar"
    stamp = first.stat().st_mtime_ns
    out = subprocess.run(_render_cmd(killed, 3), capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["shards_skipped"] >= 1 and summary["shards_rendered"] == 3 - summary["shards_skipped"]
    assert first.stat().st_mtime_ns == stamp  # complete shards are not redone
    assert not list(killed.glob(".*tmp*"))
    assert subprocess.run([sys.executable, "-m", "tapforge.cli", "synth", "verify", str(killed)]).returncode == 0

    fresh = tmp_path / "fresh"
    subprocess.run(_render_cmd(fresh, 3), capture_output=True, check=True)
    a, b = _tracks(killed), _tracks(fresh)
    assert sorted(a) == sorted(b) == ["scene-0000000", "scene-0000001", "scene-0000002"]
    for key in a:  # same seed + config => bit-identical tracks
        assert np.array_equal(a[key][0], b[key][0]) and np.array_equal(a[key][1], b[key][1])
    manifest_a = json.loads((killed / "manifest.json").read_text())
    manifest_b = json.loads((fresh / "manifest.json").read_text())
    assert [s["keys"] for s in manifest_a["shards"]] == [s["keys"] for s in manifest_b["shards"]]

    # verify names a damaged shard and exits non-zero
    shard = fresh / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "verify", str(fresh)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "shard-000001.tar" in result.stderr and "checksum" in result.stderr

    # preview of a real scene
    gif = tmp_path / "preview.gif"
    subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "preview", str(killed), "--out", str(gif), "--index", "2"],
        check=True,
        capture_output=True,
    )
    from tapforge.base.video import read_video

    frames, _ = read_video(gif)
    assert frames.shape == (4, 384, 384, 3)  # the 48 px scene, drawn on enlarged 8x

    # the clips as a TAP-Vid DAVIS-format pickle, readable by the TAP-Vid loader
    pkl = tmp_path / "synthetic_tapvid.pkl"
    subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "to-tapvid", str(killed), "--out", str(pkl)],
        check=True,
        capture_output=True,
    )
    from tapforge.tapir.tapvid import load_tapvid_pickle

    videos = dict(load_tapvid_pickle(pkl))
    assert sorted(videos) == sorted(a)
    example = videos["scene-0000001"]
    assert np.allclose(example["points"] * 48, a["scene-0000001"][0])
    assert np.array_equal(example["occluded"], a["scene-0000001"][1])

    # a different config in the same folder is refused with a clear message
    result = subprocess.run(_render_cmd(killed, 3, "--set", "seed=7"), capture_output=True, text=True)
    assert result.returncode == 2 and "another config" in result.stderr and "Traceback" not in result.stderr


def test_plain_webdataset_reads_a_shard_without_tapforge(tmp_path):
    import webdataset as wds

    subprocess.run(_render_cmd(tmp_path, 1), capture_output=True, check=True)
    samples = list(wds.WebDataset(str(tmp_path / "shard-000000.tar"), shardshuffle=False).decode("rgb8"))
    assert len(samples) == 1
    sample = samples[0]
    assert sample["__key__"] == "scene-0000000"
    assert sample["video.000.png"].shape == (48, 48, 3)
    assert sample["tracks.npy"].dtype == np.float32 and sample["tracks.npy"].shape == (128, 4, 2)
    assert sample["occluded.npy"].dtype == bool
    assert sample["object_ids.npy"].dtype == np.int32
    assert "K" in sample["camera.json"]


def _samples(num_clips=2):
    from tapforge.synth.schema import Clip, encode_clip

    rng = np.random.default_rng(0)
    clips = [
        Clip(
            key=f"scene-{i:07d}",
            video=rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
            tracks=rng.uniform(0, 8, (3, 2, 2)).astype(np.float32),
            occluded=rng.random((3, 2)) < 0.5,
            tracks_3d=rng.normal(size=(3, 2, 3)).astype(np.float32),
            object_ids=np.array([0, 1, 1], np.int32),
            camera={"K": np.eye(3).tolist()},
            meta={"seed": i, "config_hash": "x"},
        )
        for i in range(num_clips)
    ]
    return [encode_clip(clip) for clip in clips]


def test_the_schema_writes_and_groups_shards_byte_for_byte_as_webdataset_does(tmp_path):
    import io

    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from tapforge.synth.schema import write_tar_samples

    samples = _samples()
    ours, theirs = io.BytesIO(), io.BytesIO()
    write_tar_samples(ours, samples)
    with wds.TarWriter(theirs, user="tapforge", group="tapforge", mtime=0) as sink:
        for sample in samples:
            sink.write(sample)
    assert ours.getvalue() == theirs.getvalue()
    path = tmp_path / "shard.tar"
    path.write_bytes(ours.getvalue())
    read = list(iter_tar_samples(path))
    with open(path, "rb") as stream:
        grouped = list(group_by_keys(tar_file_expander([{"url": str(path), "stream": stream}])))
    assert read == samples == [{k: v for k, v in g.items() if k != "__url__"} for g in grouped]
    assert decode_clip(read[1]).meta["seed"] == 1


def test_writing_reading_and_verifying_shards_imports_neither_torch_nor_webdataset(tmp_path):
    code = (
        "import sys, json, pathlib\n"
        "from tapforge.synth.shards import update_manifest, verify_dataset, write_shard\n"
        "from tapforge.synth.schema import encode_clip\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "samples = [{k: bytes.fromhex(v) if k != '__key__' else v for k, v in s.items()} for s in json.load(sys.stdin)]\n"
        "write_shard(out, 0, samples, {'config_hash': 'x', 'num_samples': 2, 'keys': [s['__key__'] for s in samples]})\n"
        "update_manifest(out, {'config_hash': 'x'})\n"
        "assert verify_dataset(out) == [], verify_dataset(out)\n"
        "print(sorted(m for m in ('torch', 'webdataset', 'bpy') if m in sys.modules))\n"
    )
    samples = [{k: v if k == "__key__" else v.hex() for k, v in s.items()} for s in _samples()]
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], input=json.dumps(samples), capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "records-only"])
def test_a_folder_made_by_an_older_dataset_version_is_not_resumed(tmp_path, with_manifest):
    from tapforge.synth.config import load_config
    from tapforge.synth.render_job import render_dataset
    from tapforge.synth.shards import DATASET_VERSION, MANIFEST, update_manifest, write_shard

    config = load_config("tiny", TINY)
    identity = config.hash  # the same config: only the version tells the old scenes from the new
    write_shard(tmp_path, 0, _samples(1), {"config_hash": identity, "num_samples": 1, "keys": ["scene-0000000"]})
    if with_manifest:
        update_manifest(tmp_path, {"config": config.tree, "config_hash": identity, "num_scenes": 2})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(TapforgeError) as info:
        render_dataset(config, tmp_path, 2, progress=False, workers=1)
    assert str(info.value) == (
        f"{tmp_path} holds a dataset made by an older tapforge (dataset version 1, this one writes "
        f"{DATASET_VERSION}); render into a new --out folder, or resume it with the tapforge version that made it"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / MANIFEST).exists() == with_manifest


def test_job_slices_are_disjoint_and_cover_every_shard():
    slices = [job_slice(10, i, 3) for i in range(3)]
    assert sorted(sum(slices, [])) == list(range(10))
    assert slices[1] == [1, 4, 7]
    with pytest.raises(TapforgeError):
        job_slice(10, 3, 3)


def test_job_index_comes_from_flags_slurm_or_kubernetes():
    assert job_from_environment(2, 5, {}) == (2, 5)
    assert job_from_environment(None, None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == (3, 4)
    assert job_from_environment(
        None, None, {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "2"}
    ) == (1, 2)
    assert job_from_environment(None, None, {"JOB_COMPLETION_INDEX": "1", "TAPFORGE_NUM_SHARDS": "3"}) == (1, 3)
    assert job_from_environment(None, None, {}) == (0, 1)
    with pytest.raises(TapforgeError, match="TAPFORGE_NUM_SHARDS"):
        job_from_environment(None, None, {"JOB_COMPLETION_INDEX": "1"})


def test_readers_refuse_damaged_shards_with_one_line(tmp_path):
    from tapforge.synth.cli import main as synth_main

    subprocess.run(_render_cmd(tmp_path, 2, "--set", "outputs.scenes_per_shard=1"), capture_output=True, check=True)
    shard = tmp_path / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a payload
    shard.write_bytes(bytes(data))
    for command in (
        ["preview", str(tmp_path), "--out", str(tmp_path / "p.gif"), "--index", "1"],
        ["to-tapvid", str(tmp_path), "--out", str(tmp_path / "t.pkl")],
    ):
        with pytest.raises(TapforgeError, match="shard-000001.tar: checksum mismatch.*synth verify"):
            synth_main(command)
    assert not (tmp_path / "t.pkl").exists() and not (tmp_path / "p.gif").exists()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tapforge.cli",
            "synth",
            "preview",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.gif"),
            "--index",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0  # the good shard still previews
    shard.write_bytes(bytes(data[: len(data) // 3]))  # truncated: one error line, no traceback
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "to-tapvid", str(tmp_path), "--out", str(tmp_path / "t.pkl")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "shard-000001.tar" in result.stderr and "Traceback" not in result.stderr


def test_a_dataset_does_not_change_identity_when_its_manifest_is_lost(tmp_path):
    from tapforge.synth.shards import verify_dataset

    subprocess.run(_render_cmd(tmp_path, 1), capture_output=True, check=True)
    manifest = tmp_path / "manifest.json"
    original = json.loads(manifest.read_text())
    manifest.unlink()
    result = subprocess.run(_render_cmd(tmp_path, 1, "--set", "seed=7"), capture_output=True, text=True)
    assert result.returncode == 2 and "made with another config" in result.stderr and "Traceback" not in result.stderr
    assert not manifest.exists() or json.loads(manifest.read_text())["config_hash"] == original["config_hash"]
    (tmp_path / ".manifest.json.x1y2.tmp").write_text("{")  # as a writer killed mid-write leaves it
    subprocess.run(_render_cmd(tmp_path, 1), capture_output=True, check=True)  # the same config resumes
    assert verify_dataset(tmp_path) == [] and not list(tmp_path.glob(".*tmp*"))
    forged = dict(original, config_hash="0" * 16)  # a manifest claiming another identity than its shards
    manifest.write_text(json.dumps(forged))
    assert any("made with another config" in p for p in verify_dataset(tmp_path))


def _render_workers(parent: int) -> list[int]:
    """Pids of the spawned render workers of process `parent` (Linux /proc)."""
    pids = []
    for task in os.listdir(f"/proc/{parent}/task"):
        with open(f"/proc/{parent}/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return [p for p in pids if b"spawn_main" in _read_proc(p, "cmdline")]


def _read_proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    stat = _read_proc(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has exited


def _rss_mb(pid: int) -> float:
    for line in _read_proc(pid, "status").splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker processes from Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_render_workers_die_with_their_parent(tmp_path, signum):
    proc = subprocess.Popen(
        _render_cmd(tmp_path, 8, "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline, workers = time.time() + 180, []
    while time.time() < deadline and proc.poll() is None:  # kill it while both workers render
        workers = _render_workers(proc.pid)
        if (tmp_path / "shard-000000.tar").exists() and len(workers) == 2:
            break
        time.sleep(0.2)
    assert len(workers) == 2 and proc.poll() is None, "the render did not run two workers"
    assert all(_rss_mb(p) > 200 for p in workers), "the workers are not Blender sessions"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    deadline = time.time() + 5
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "render workers outlived their parent"
    if signum == signal.SIGTERM:  # ends like Ctrl-C: one line, manifest kept up to date
        assert proc.returncode == 130 and "interrupted" in stderr.strip().splitlines()[-1], stderr
        shards = json.loads((tmp_path / "manifest.json").read_text())["shards"]
        assert sorted(s["name"] for s in shards) == sorted(p.name for p in tmp_path.glob("shard-*.tar"))


@pytest.fixture
def small_filesystem(tmp_path):
    """A 128 KiB tmpfs (room for one tiny shard and the manifest, not two shards), mounted here; needs root."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here ({made.stderr.decode().strip() or 'mount failed'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing_half_written(small_filesystem):
    full = small_filesystem / "data"
    result = subprocess.run(_render_cmd(full, 3), capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "No space left on device" in last and "Traceback" not in result.stderr
    assert "rerun the same command to resume" in last
    assert sorted(p.name for p in full.iterdir() if not p.name.startswith(".manifest.lock")) == [
        "manifest.json",
        "shard-000000.json",
        "shard-000000.tar",
    ]  # the complete shard and nothing half-written
    assert subprocess.run([sys.executable, "-m", "tapforge.cli", "synth", "verify", str(full)]).returncode == 0

    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    result = subprocess.run(_render_cmd(small_filesystem / "new", 1), capture_output=True, text=True)
    assert result.returncode == 2 and "cannot be written (Read-only file system)" in result.stderr


def test_an_out_that_is_a_file_or_a_run_that_fails_before_writing_leaves_nothing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    result = subprocess.run(_render_cmd(a_file, 1), capture_output=True, text=True)
    assert result.returncode == 2 and "is a file; fix: give a folder" in result.stderr.strip().splitlines()[-1]
    out = tmp_path / "new" / "data"
    result = subprocess.run(_render_cmd(out, 1, "--set", "render.device=cuda"), capture_output=True, text=True)
    if result.returncode == 0:
        pytest.skip("this machine renders on CUDA, so a device error cannot be provoked")
    assert result.returncode == 2 and "render.device=cuda" in result.stderr.strip().splitlines()[-1]
    assert not out.exists()
