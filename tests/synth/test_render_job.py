"""Parallel rendering: worker processes on one machine, and shard-indexed jobs fanned out by SLURM arrays or
Kubernetes Indexed Jobs (the recipes in configs/ are run here as plain commands with the scheduler's variables)."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tapforge.synth.cli import _parser
from tapforge.synth.config import load_config
from tapforge.synth.render_job import plan_workers
from tapforge.synth.schema import decode_clip, iter_tar_samples
from tapforge.synth.shards import job_from_environment, job_slice, verify_dataset
from tests.conftest import render_command

ROOT = Path(__file__).resolve().parents[2]
RENDER_SBATCH = ROOT / "configs" / "synth" / "slurm_array.sbatch"
TRAIN_SBATCH = ROOT / "configs" / "train" / "slurm_multinode.sbatch"
K8S_JOB = ROOT / "configs" / "k8s" / "synth-render-indexed-job.yaml"
SMALL = [
    "render.resolution=32",
    "render.samples=1",
    "scene.num_frames=2",
    "tracks.num_tracks=64",
    "scene.num_static_objects=[1,2]",
    "scene.num_dynamic_objects=1",
    "outputs.scenes_per_shard=2",
]
SETS = [arg for item in SMALL for arg in ("--set", item)]
NUM_SCENES = 5  # shards of 2, 2 and 1 scenes
SCHEDULER_VARIABLES = ("JOB_COMPLETION_INDEX", "TAPFORGE_NUM_SHARDS")


def _env(**extra):
    """This environment without scheduler variables, with this Python's scripts (tapforge) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in SCHEDULER_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _render_cmd(out, num_scenes=NUM_SCENES, *extra):
    return render_command(out, num_scenes, SMALL, *extra)


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


def _sbatch_options(path):
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", path.read_text(), re.M))


def _k8s_container():
    job = yaml.safe_load(K8S_JOB.read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return job, container


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The reference dataset: one job, one worker."""
    out = tmp_path_factory.mktemp("one_worker")
    result = subprocess.run(
        _render_cmd(out, NUM_SCENES, "--workers", "1"), env=_env(), capture_output=True, text=True, check=True
    )
    assert _summary(result.stdout)["workers"] == 1
    return out


# ------------------------------------------------------------------------------------------ slicing, planning
@pytest.mark.parametrize("num_jobs", [1, 2, 3, 7])
def test_scheduler_variables_select_the_same_slices_as_the_flags(num_jobs):
    num_shards = 10
    slices = []
    for i in range(num_jobs):
        slurm = {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": str(num_jobs)}
        slurm_offset = {
            "SLURM_ARRAY_TASK_ID": str(i + 4),
            "SLURM_ARRAY_TASK_MIN": "4",
            "SLURM_ARRAY_TASK_COUNT": str(num_jobs),
        }
        kubernetes = {"JOB_COMPLETION_INDEX": str(i), "TAPFORGE_NUM_SHARDS": str(num_jobs)}
        flags = job_from_environment(i, num_jobs, {})
        for env in (slurm, slurm_offset, kubernetes):
            assert job_from_environment(None, None, env) == flags == (i, num_jobs)
        assert job_from_environment(i, num_jobs, {**slurm, "SLURM_ARRAY_TASK_ID": "0"}) == flags  # flags win
        slices.append(job_slice(num_shards, *flags))
    assert sorted(sum(slices, [])) == list(range(num_shards))  # every shard exactly once


def test_worker_plan_splits_the_cores_between_the_workers():
    assert plan_workers(None, 0, 100, 16) == (4, 4)
    assert plan_workers(None, 0, 100, 2) == (1, 2)
    assert plan_workers(2, 0, 100, 2) == (2, 1)
    assert plan_workers(8, 0, 3, 16) == (3, 5)  # never more workers than scenes
    assert plan_workers(2, 3, 100, 16) == (2, 3)  # render.threads is kept


def test_bad_worker_count_is_one_error_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "render", "--out", str(tmp_path), "--workers", "0"],
        capture_output=True,
        text=True,
    )
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
        # far more scenes than are rendered before each interruption, so the run cannot finish first on any machine
        # SIGINT back to its default first: a parent that runs us in the background (nohup, `cmd &`) ignores it
        return subprocess.Popen(
            _render_cmd(tmp_path, 400, "--workers", "2"),
            env=_env(),
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

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
    assert first.stat().st_mtime_ns == stamp and "shard-000199.tar" not in shards()
    assert verify_dataset(tmp_path) == []  # only complete shards are visible, all in the manifest


STOP_BOUND_S = 10.0  # seconds from the signal to the exit; measured 0.1-0.2 s (the workers are killed, not asked)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_ctrl_c_and_sigterm_stop_a_render_within_seconds_for_every_worker_count(tmp_path, workers, signum):
    # one worker is what --workers auto picks below 8 cores: there Blender used to swallow the KeyboardInterrupt raised
    # inside its render call and go on rendering. Scenes here take a few seconds each, 200 of them far longer than
    # the bound; the signal comes while the next scene renders, after the first shard is complete.
    out, scratch = tmp_path / "data", tmp_path / "tmp"
    scratch.mkdir()
    sets = ["render.resolution=96", "render.samples=16", "scene.num_frames=6", "outputs.scenes_per_shard=1"]
    command = _render_cmd(out, 200, "--workers", str(workers), *[a for s in sets for a in ("--set", s)])
    proc = subprocess.Popen(
        command,
        env=_env(TMPDIR=str(scratch)),
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _wait_until((out / "shard-000000.tar").exists, proc, timeout=180)
    time.sleep(1.0)  # into the next scene's render
    sent = time.monotonic()
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # Ctrl-C in a terminal: the whole process group
    else:
        proc.send_signal(signum)  # as SLURM and Kubernetes stop a job
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    latency = time.monotonic() - sent
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("render.device=auto")]
    assert proc.returncode == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert lines == ["tapforge synth: interrupted; completed work is kept, rerun the same command to resume"]
    assert latency < STOP_BOUND_S, f"stopped {latency:.1f} s after the signal"
    kept = sorted(p.name for p in out.glob("shard-*.tar"))
    assert kept and "shard-000199.tar" not in kept and verify_dataset(out) == []  # complete shards, all recorded
    assert not [p.name for p in out.iterdir() if "tmp" in p.name]
    assert not list(scratch.iterdir()), "temporary files left behind"  # Blender's own included


# -------------------------------------------------------------------------------------------- cluster recipes
def test_render_sbatch_script_is_consistent_with_what_tapforge_reads():
    subprocess.run(["bash", "-n", str(RENDER_SBATCH)], check=True)
    options = _sbatch_options(RENDER_SBATCH)
    first, last = map(int, re.fullmatch(r"(\d+)-(\d+)(%\d+)?", options["array"]).groups()[:2])
    assert "requeue" in options and int(options["cpus-per-task"]) >= 1
    text = RENDER_SBATCH.read_text()
    (command,) = [line for line in text.splitlines() if line.startswith("tapforge ")]
    assert command.startswith("tapforge synth render --config") and '"$@"' in command
    assert "--shard-index" not in command and "--num-shards" not in command  # the index comes from SLURM
    for flag in ("--out", "--num-scenes", "--no-progress"):
        assert flag in command
    config = re.search(r'CONFIG="\$\{CONFIG:-(\w+)\}"', text).group(1)
    num_scenes = int(re.search(r'NUM_SCENES="\$\{NUM_SCENES:-(\d+)\}"', text).group(1))
    shards = math.ceil(num_scenes / load_config(config).outputs.scenes_per_shard)
    assert 1 <= last - first + 1 <= shards  # no task without shards


def test_kubernetes_indexed_job_is_consistent_with_what_tapforge_reads():
    job, container = _k8s_container()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert 1 <= spec["parallelism"] <= spec["completions"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert int(env["TAPFORGE_NUM_SHARDS"]) == spec["completions"]
    assert "JOB_COMPLETION_INDEX" not in env  # Kubernetes sets it in each pod
    command = container["command"] + container["args"]
    assert command[:3] == ["tapforge", "synth", "render"] and container["image"] == "tapforge:latest"
    args = _parser().parse_args(command[2:])  # every flag is one `tapforge synth render` takes
    assert args.shard_index is None and args.num_shards is None and args.no_progress
    shards = math.ceil(args.num_scenes / load_config(args.config).outputs.scenes_per_shard)
    assert spec["completions"] <= shards
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (data,) = [name for path, name in mounts.items() if str(args.out).startswith(path + "/")]
    assert "persistentVolumeClaim" in volumes[data]  # one folder shared by every pod
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["restartPolicy"] in ("Never", "OnFailure")


@pytest.mark.slow
def test_fanned_out_jobs_write_the_same_dataset_as_one_job(one_worker, tmp_path):
    """Three independent jobs share one folder: a SLURM array task (the sbatch script, array starting at 5),
    a Kubernetes indexed pod (the manifest's command) and a job given --shard-index."""
    out = tmp_path / "fanout"
    slurm = _env(
        CONFIG="tiny",
        OUT=str(out),
        NUM_SCENES=str(NUM_SCENES),
        SLURM_ARRAY_TASK_ID="5",
        SLURM_ARRAY_TASK_MIN="5",
        SLURM_ARRAY_TASK_COUNT="3",
    )
    _, container = _k8s_container()
    k8s = container["command"] + container["args"] + SETS
    for flag, value in (("--config", "tiny"), ("--out", str(out)), ("--num-scenes", str(NUM_SCENES))):
        k8s[k8s.index(flag) + 1] = value
    jobs = [
        (["bash", str(RENDER_SBATCH), *SETS], slurm),
        (k8s, _env(JOB_COMPLETION_INDEX="1", TAPFORGE_NUM_SHARDS="3")),
        (_render_cmd(out, NUM_SCENES, "--shard-index", "2", "--num-shards", "3"), _env()),
    ]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, env in jobs
    ]
    for index, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        summary = _summary(stdout)
        assert summary["job"] == [index, 3] and summary["shards_rendered"] == 1
    _assert_same_dataset(one_worker, out)


def test_training_sbatch_runs_lightning_ddp_under_srun_and_resumes_from_the_newest_checkpoint(tmp_path):
    options = _sbatch_options(TRAIN_SBATCH)
    assert options["signal"].startswith("SIGUSR1@") and "requeue" in options
    assert options["ntasks-per-node"] == options["gpus-per-node"]  # one DDP rank per GPU
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$SRUN_ARGS"\n')
    (shims / "srun").chmod(0o755)
    run_dir = tmp_path / "run"
    env = _env(
        SLURM_JOB_NUM_NODES="2",
        SLURM_NTASKS_PER_NODE="8",
        SLURM_CPUS_PER_TASK="10",
        SRUN_ARGS=str(tmp_path / "srun_args"),
        RUN_DIR=str(run_dir),
    )
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"

    def srun_args():
        subprocess.run(
            ["bash", str(TRAIN_SBATCH), "--data.train_shards", "data/train"], env=env, cwd=tmp_path, check=True
        )
        return (tmp_path / "srun_args").read_text().splitlines()

    args = srun_args()
    assert args[:4] == ["--cpus-per-task=10", "tapforge", "train", "fit"]
    value = {
        flag: args[args.index(flag) + 1]
        for flag in ("--trainer.num_nodes", "--trainer.devices", "--trainer.strategy", "--trainer.default_root_dir")
    }
    assert value == {
        "--trainer.num_nodes": "2",
        "--trainer.devices": "8",
        "--trainer.strategy": "ddp",
        "--trainer.default_root_dir": str(run_dir),
    }
    assert "--ckpt_path" not in args and args[-2:] == ["--data.train_shards", "data/train"]
    (run_dir / "checkpoints").mkdir(parents=True)
    last, hpc = run_dir / "checkpoints" / "last.ckpt", run_dir / "hpc_ckpt_1.ckpt"
    for path, stamp in ((last, 1_000_000), (hpc, 2_000_000)):
        path.write_bytes(b"")
        os.utime(path, (stamp, stamp))
    args = srun_args()
    assert args[args.index("--ckpt_path") + 1] == str(hpc)  # requeued after SIGUSR1
    os.utime(last, (3_000_000, 3_000_000))
    args = srun_args()
    assert args[args.index("--ckpt_path") + 1] == str(last)  # requeued after pre-emption
    assert args[-2:] == ["--data.train_shards", "data/train"]  # the user's arguments come last and win
