"""Parallel rendering: worker processes on one machine."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synth.render_job import plan_workers
from synth.schema import decode_clip
from synth.shards import iter_tar_samples

SMALL = ["render.resolution=32", "render.samples=1", "scene.num_frames=2", "tracks.num_tracks=64",
         "scene.num_static_objects=[1,2]", "scene.num_dynamic_objects=1", "outputs.scenes_per_shard=2"]
SETS = [arg for item in SMALL for arg in ("--set", item)]
NUM_SCENES = 5  # shards of 2, 2 and 1 scenes
SCHEDULER_VARIABLES = ("JOB_COMPLETION_INDEX", "TAPFORGE_NUM_SHARDS")


def _env(**extra):
    """This environment without scheduler variables, with this Python's scripts (tapforge) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in SCHEDULER_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _render_cmd(out, num_scenes=NUM_SCENES, *extra):
    return [sys.executable, "-m", "tapforge.cli", "synth", "render", "--config", "tiny", "--out", str(out),
            "--num-scenes", str(num_scenes), "--no-progress", *SETS, *extra]


def _summary(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def _content(out):
    """The manifest without its timing fields, and every clip by key."""
    manifest = json.loads((out / "manifest.json").read_text())
    for shard in manifest["shards"]:
        shard.pop("timing_seconds")
    clips = {}
    for path in sorted(out.glob("shard-*.tar")):
        for sample in iter_tar_samples(path):
            clip = decode_clip(sample)
            clips[clip.key] = clip
    return manifest, clips


def _assert_same_dataset(a, b):
    manifest_a, clips_a = _content(a)
    manifest_b, clips_b = _content(b)
    assert manifest_a == manifest_b  # config, keys, seeds, sample counts, sha256 of every shard
    assert sorted(clips_a) == sorted(clips_b) == [f"scene-{i:07d}" for i in range(NUM_SCENES)]
    for key in clips_a:
        for entry in ("tracks", "occluded", "tracks_3d", "object_ids", "query", "video"):
            assert np.array_equal(getattr(clips_a[key], entry), getattr(clips_b[key], entry)), (key, entry)


def _workers_of(pid):
    """Process ids of the spawned worker processes of `pid`."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_until(condition, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None and time.time() < deadline, "the render ended before it was interrupted"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The reference dataset: one job, one worker."""
    out = tmp_path_factory.mktemp("one_worker")
    result = subprocess.run(_render_cmd(out, NUM_SCENES, "--workers", "1"), env=_env(), capture_output=True,
                            text=True, check=True)
    assert _summary(result.stdout)["workers"] == 1
    return out


def test_worker_plan_splits_the_cores_between_the_workers():
    assert plan_workers(None, 0, 100, 16) == (4, 4)
    assert plan_workers(None, 0, 100, 2) == (1, 2)
    assert plan_workers(2, 0, 100, 2) == (2, 1)
    assert plan_workers(8, 0, 3, 16) == (3, 5)  # never more workers than scenes
    assert plan_workers(2, 3, 100, 16) == (2, 3)  # render.threads is kept


def test_bad_worker_count_is_one_error_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tapforge.cli", "synth", "render", "--out", str(tmp_path),
                          "--workers", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "--workers 0" in out.stderr and "auto" in out.stderr


# ------------------------------------------------------------------------------------------- worker processes
@pytest.mark.slow
def test_two_workers_write_the_same_dataset_as_one(one_worker, tmp_path):
    # run from a process that imported bpy first (a notebook, a benchmark): the workers must still find it
    code = "import sys, bpy; from tapforge.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, *_render_cmd(tmp_path, NUM_SCENES, "--workers", "2")[3:]]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, check=True)
    summary = _summary(result.stdout)
    assert summary["workers"] == 2 and summary["scenes_rendered"] == NUM_SCENES
    _assert_same_dataset(one_worker, tmp_path)


@pytest.mark.slow
def test_a_dead_worker_or_ctrl_c_stops_the_run_and_every_worker_and_complete_shards_are_kept(tmp_path):
    def start():
        return subprocess.Popen(_render_cmd(tmp_path, 40, "--workers", "2"), env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def shards():
        return {path.name for path in tmp_path.glob("shard-*.tar")}

    # a worker dies (as in a Blender crash or from the out-of-memory killer): one error line, no hanging pool
    proc = start()
    first = tmp_path / "shard-000000.tar"
    _wait_until(first.exists, proc)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("tapforge synth: error: a render worker process died")
    assert not any(_running(pid) for pid in workers)
    stamp, kept = first.stat().st_mtime_ns, shards()

    # the rerun resumes after the complete shards; Ctrl-C (SIGINT to the process group) stops it and its workers
    proc = start()
    _wait_until(lambda: shards() - kept, proc)
    workers = _workers_of(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr and "interrupted" in stderr
    assert workers and not any(_running(pid) for pid in workers)
    assert first.stat().st_mtime_ns == stamp and "shard-000019.tar" not in shards()
    verify = subprocess.run([sys.executable, "-m", "tapforge.cli", "synth", "verify", str(tmp_path)], env=_env(),
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr  # only complete shards are visible, all in the manifest
