"""`tapforge train` end to end on CPU: fit with validation, checkpoints, resume, config errors."""

import csv
import glob
import os
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from tapforge.base.errors import TapforgeError
from tapforge.tapir.checkpoint import load_model
from tapforge.train.cli import main
from tapforge.train.optim import warmup_cosine
from tapforge.train.procedural import write_shards

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "configs", "train", "cpu_smoke.yaml")


def tiny_config(tmp, train, val, davis):
    """cpu_smoke.yaml shrunk to seconds: 32x32, 4 frames, a one-block TAPIR."""
    config = {
        "trainer": {
            "max_steps": 4,
            "default_root_dir": str(tmp / "run"),
            "log_every_n_steps": 1,
            "limit_val_batches": 8,
            "enable_progress_bar": False,
        },
        "model": {
            "model": {
                "initial_resolution": [32, 32],
                "mixer_hidden_dim": 32,
                "num_mixer_blocks": 1,
                "blocks_per_group": [1, 1, 1, 1],
                "num_pips_iter": 1,
            },
            "warmup_steps": 2,
        },
        "data": {
            "train_shards": train,
            "val_shards": val,
            "tapvid": {"davis": davis, "kinetics": str(tmp / "absent")},
            "batch_size": 2,
            "num_frames": 4,
            "num_queries": 8,
            "resolution": [32, 32],
            "epoch_length": 2,
            "num_workers": 0,
            "val_num_workers": 0,
            "val_max_tracks": 8,
            "shuffle_buffer": 2,
        },
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    kw = dict(num_frames=6, size=(32, 32), num_objects=2, points_per_object=8, background_points=8)
    write_shards(str(tmp / "train"), num_clips=4, clips_per_shard=2, seed=0, **kw)
    write_shards(str(tmp / "val"), num_clips=2, clips_per_shard=2, seed=9, **kw)
    rng = np.random.default_rng(0)
    occluded = rng.random((4, 5)) < 0.2
    occluded[:, 0] = False
    davis = {
        "v0": {
            "video": rng.integers(0, 255, (5, 40, 48, 3), dtype=np.uint8),
            "points": rng.random((4, 5, 2)).astype(np.float32),
            "occluded": occluded,
        }
    }
    with open(tmp / "davis.pkl", "wb") as f:
        pickle.dump(davis, f)
    return tmp, tiny_config(tmp, str(tmp / "train"), str(tmp / "val"), str(tmp / "davis.pkl"))


def read_metrics(run):
    rows = []
    for path in glob.glob(os.path.join(run, "csv", "version_*", "metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


def test_fit_validates_checkpoints_and_resumes_the_schedule(setup, caplog):
    tmp, tiny = setup
    run = str(tmp / "run")
    with caplog.at_level("WARNING"):
        assert main(["fit", "--config", SMOKE, "--config", tiny]) == 0
    assert "data.tapvid.kinetics" in caplog.text  # an absent pickle is skipped with a message

    last = os.path.join(run, "checkpoints", "last.ckpt")
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 4
    assert not glob.glob(os.path.join(run, "checkpoints", "last-v*.ckpt"))  # one last.ckpt, not a copy beside it
    model = load_model(last)  # the checkpoint contract: model.* keys + hyper_parameters["model"]
    assert model.config["num_mixer_blocks"] == 1

    saved = yaml.safe_load(open(glob.glob(os.path.join(run, "tensorboard", "version_*", "config.yaml"))[0]))
    assert saved["data"]["num_queries"] == 8 and saved["trainer"]["max_steps"] == 4
    rows = read_metrics(run)
    val = {k: float(v) for r in rows for k, v in r.items() if k.startswith("val/") and v}
    for name in ("synthetic_first", "synthetic_strided", "davis_first", "davis_strided"):
        assert 0.0 <= val[f"val/{name}/average_jaccard"] <= 1.0
        assert 0.0 <= val[f"val/{name}_stay_put/occlusion_accuracy"] <= 1.0
    assert val["val/synthetic_first/num_videos"] == 2 and val["val/davis_first/num_videos"] == 1
    assert 0.0 <= val["val/davis_first/AJ_RD"] <= 1.0  # the re-detection AJ beside AJ (the DAVIS clip has a gap)
    assert any(r.get("train/loss") for r in rows) and any(r.get("train/lr") for r in rows)
    assert any(r.get("data/bad_shards") for r in rows) and any(r.get("data/clips_without_visible_track") for r in rows)
    overlays = glob.glob(os.path.join(run, "tensorboard", "version_*", "overlays", "overlay_*.gif"))
    assert overlays and all("_first_" in os.path.basename(p) for p in overlays)  # each clip once, in its first mode

    # resume: the step count and the learning-rate schedule carry on where they stopped
    assert main(["fit", "--config", SMOKE, "--config", tiny, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 6
    expected_lr = 1e-3 * warmup_cosine(6, 2, 6)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected_lr, abs=1e-12)


def test_validate_and_test_subcommands_score_a_checkpoint(setup):
    tmp, tiny = setup
    last = os.path.join(str(tmp / "run"), "checkpoints", "last.ckpt")
    if not os.path.exists(last):
        pytest.skip("needs the checkpoint of test_fit_validates_checkpoints_and_resumes_the_schedule")
    assert main(["validate", "--config", SMOKE, "--config", tiny, "--ckpt_path", last]) == 0
    assert (
        main(["test", "--config", SMOKE, "--config", tiny, "--ckpt_path", last, "--data.query_modes", "[first]"]) == 0
    )
    rows = read_metrics(str(tmp / "run"))
    assert any(r.get("test/davis_first/average_jaccard") for r in rows)


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--data.batch_size", "abc"], r"bad training config: .*batch_size"),
        (["--data.bacth_size", "3"], r"bad training config: .*bacth_size"),
        (["--data.num_queries", "0"], r"data\.num_queries is 0; fix"),
        (["--model.lr", "-1"], r"model\.lr is -1.0; fix"),
        (["--data.augment.crop.p", "2"], r"data\.augment\.crop\.p is 2.0; fix"),
        (["--data.train_shards", "/does/not/exist-*.tar"], r"data\.train_shards: .* matches no shard"),
        (["--trainer.enable_checkpointing", "false"], r"conflicting trainer settings: .*enable_checkpointing"),
        (["--config", "/does/not/exist.yaml"], r"--config /does/not/exist.yaml: not a readable YAML file"),
        (["--config", os.path.dirname(SMOKE)], r"--config .*train: not a readable YAML file \(Is a directory\)"),
        (["--config=" + __file__], r"--config=?.*test_cli.py: not a readable YAML file|holds a str, not a mapping"),
    ],
)
def test_bad_config_is_one_clear_error(setup, extra, pattern):
    tmp, tiny = setup
    with pytest.raises(TapforgeError, match=pattern) as info:
        main(["fit", "--config", SMOKE, "--config", tiny, "--trainer.max_steps", "1"] + extra)
    assert "\n" not in str(info.value)


def test_train_help_is_short_and_imports_no_lightning():
    code = (
        "import contextlib, io, sys\nfrom tapforge.train.cli import main\n"
        "for argv in ([], ['fit'], ['validate'], ['--config', 'x.yaml', 'test']):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        assert main(argv + ['--help']) == 0\n"
        "    print(len(out.getvalue().splitlines()), out.getvalue().splitlines()[0])\n"
        "print(sorted(m for m in ('lightning', 'jsonargparse', 'torch') if m in sys.modules))\n"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    *helps, imported = lines.splitlines()
    assert imported == "[]"
    assert [h.split(" ", 1)[1] for h in helps] == [
        "usage: tapforge train {fit,validate,test} --config FILE [--section.key VALUE ...]",
        "usage: tapforge train fit --config FILE [--section.key VALUE ...]",
        "usage: tapforge train validate --config FILE --ckpt_path CKPT [--section.key VALUE ...]",
        "usage: tapforge train test --config FILE --ckpt_path CKPT [--section.key VALUE ...]",
    ]
    assert all(int(h.split()[0]) <= 25 for h in helps)


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_short_help_names_real_options_and_help_all_is_lightnings_full_help(subcommand, capsys):
    assert main([subcommand, "--help"]) == 0
    short = capsys.readouterr().out
    flags = {line.split()[0] for line in short.splitlines() if line.startswith("  --")}
    assert {"--config", "--ckpt_path", "--print_config"} <= flags and f"{subcommand} --help-all" in short
    assert ("--data.train_shards" in flags) == (subcommand == "fit")
    with pytest.raises(SystemExit) as info:
        main([subcommand, "--help-all"])
    assert info.value.code == 0
    full = capsys.readouterr().out
    assert full.startswith(f"usage: tapforge train [options] {subcommand} ") and len(full.splitlines()) > 300
    assert flags <= set(re.findall(r"--[a-z_][\w.]*", full))  # every option the short help names is LightningCLI's


@pytest.mark.parametrize(
    "name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "train", "*.yaml")))
)
def test_shipped_configs_parse(name, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", os.path.join(ROOT, "configs", "train", name), "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["batch_size"] >= 1 and (
        printed["model"]["model"] or printed["model"]["architecture"] == "tapnet"
    )


def test_fit_trains_tapnet_and_its_checkpoint_loads_as_tapnet(setup, tmp_path):
    from tapforge.tapir import TAPNet
    from tapforge.tapir.checkpoint import save_safetensors

    tmp, tiny = setup
    config = yaml.safe_load(open(tiny))
    config["model"] = {"architecture": "tapnet", "warmup_steps": 2}
    config["trainer"].update(
        default_root_dir=str(tmp_path / "run"),
        accelerator="cpu",
        devices=1,
        precision="32-true",
        sync_batchnorm=False,
        check_val_every_n_epoch=1,
    )
    path = tmp_path / "tiny_tapnet.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", os.path.join(ROOT, "configs", "train", "tapnet.yaml"), "--config", str(path)]) == 0
    rows = read_metrics(str(tmp_path / "run"))
    assert any(r.get("train/loss") for r in rows)
    assert all(float(r["train/expected_dist"]) == 0.0 for r in rows if r.get("train/expected_dist"))
    val = {k: float(v) for r in rows for k, v in r.items() if k.startswith("val/") and v}
    assert 0.0 <= val["val/davis_first/average_jaccard"] <= 1.0
    model = load_model(str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    assert isinstance(model, TAPNet) and model.config["architecture"] == "tapnet"
    again = load_model(save_safetensors(model, tmp_path / "tapnet.safetensors"))
    assert isinstance(again, TAPNet)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


class PreemptAt(Callback):
    """Sends this process SLURM's pre-emption signal (SIGUSR1) after a given training step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


class RecordStart(Callback):
    """Writes the step training starts from (0, or where a resumed run picks up) to a file."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        with open(self.path, "w") as f:
            f.write(str(trainer.global_step))


def test_slurm_preemption_checkpoints_then_the_requeued_job_resumes(setup, tmp_path, monkeypatch):
    _, tiny = setup
    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "tapir",
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "node0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol here: the requeue call fails, the checkpoint is kept
    run = tmp_path / "slurm"
    args = [
        "fit",
        "--config",
        SMOKE,
        "--config",
        tiny,
        "--trainer.default_root_dir",
        str(run),
        "--data.val_shards",
        "null",
        "--data.tapvid.davis",
        "null",
        "--data.tapvid.kinetics",
        "null",
    ]
    assert (
        main(
            args
            + [
                "--trainer.max_steps",
                "2",
                "--trainer.callbacks+=tests.train.test_cli.PreemptAt",
                "--trainer.callbacks.init_args.step",
                "1",
            ]
        )
        == 0
    )
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=False)
    assert hpc["global_step"] == 1
    # the requeued job starts with the same command and picks the pre-emption checkpoint up by itself
    start = tmp_path / "start.txt"
    assert (
        main(
            args
            + [
                "--trainer.max_steps",
                "4",
                "--trainer.callbacks+=tests.train.test_cli.RecordStart",
                "--trainer.callbacks.init_args.path",
                str(start),
            ]
        )
        == 0
    )
    assert start.read_text() == "1"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


def test_validate_without_validation_data_says_what_to_set(setup):
    _, tiny = setup
    with pytest.raises(TapforgeError, match="nothing to validate.*data.val_shards"):
        main(
            [
                "validate",
                "--config",
                SMOKE,
                "--config",
                tiny,
                "--data.val_shards",
                "null",
                "--data.tapvid.davis",
                "null",
                "--data.tapvid.kinetics",
                "null",
            ]
        )


def test_an_error_in_a_dataloader_worker_is_one_line(setup, tmp_path):
    """A TapforgeError raised inside a DataLoader worker process reaches the user as the same one line, without
    the worker's traceback or the error's module path."""
    import shutil
    import subprocess
    import sys

    tmp, tiny = setup
    shards = tmp_path / "shards"
    shutil.copytree(tmp / "train", shards)
    damaged = sorted(shards.glob("*.tar"))[0]
    damaged.write_bytes(b"not a tar file" * 100)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tapforge.cli",
            "train",
            "fit",
            "--config",
            SMOKE,
            "--config",
            tiny,
            "--data.train_shards",
            str(shards),
            "--data.on_corrupt",
            "fail",
            "--data.num_workers",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert lines[-1].startswith(f"tapforge train: error: shard {damaged}") and "fix: " in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr and "TapforgeError" not in result.stderr, result.stderr[-3000:]


class InterruptAt(Callback):
    """Sends this process a signal (Ctrl-C's SIGINT, or SIGTERM as SLURM and Kubernetes stop jobs) after a step."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [int(signal.SIGINT), int(signal.SIGTERM)], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_fit_saves_a_checkpoint_and_resumes_from_its_step(setup, tmp_path, signum, capsys):
    from tapforge.cli import main as tapforge_main

    _, tiny = setup
    run = tmp_path / "run"
    args = [
        "train",
        "fit",
        "--config",
        SMOKE,
        "--config",
        tiny,
        "--trainer.default_root_dir",
        str(run),
        "--data.val_shards",
        "null",
        "--data.tapvid.davis",
        "null",
        "--data.tapvid.kinetics",
        "null",
        "--trainer.max_steps",
        "6",
    ]
    # Python's Ctrl-C handler, as in a foreground shell: a suite run as a background job (`cmd &`) inherits SIGINT
    # ignored, and Python then installs no handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = tapforge_main(
            args
            + [
                "--trainer.callbacks+=tests.train.test_cli.InterruptAt",
                "--trainer.callbacks.init_args.step",
                "3",
                "--trainer.callbacks.init_args.signum",
                str(signum),
            ]
        )
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C after one
    last = run / "checkpoints" / "last.ckpt"
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        code == 130 and message == f"tapforge train: interrupted at step 3, saved {last}: resume with --ckpt_path last"
    )
    assert torch.load(last, weights_only=False)["global_step"] == 3
    start = tmp_path / "start.txt"
    assert (
        tapforge_main(
            args
            + [
                "--ckpt_path",
                "last",
                "--trainer.callbacks+=tests.train.test_cli.RecordStart",
                "--trainer.callbacks.init_args.path",
                str(start),
            ]
        )
        == 0
    )
    assert start.read_text() == "3"
    assert torch.load(last, weights_only=False)["global_step"] == 6


class RunsACommand:
    """A crafted checkpoint's object: unpickling it would run a command leaving a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_sigterm_during_fit_is_our_one_line_in_a_real_process(setup, tmp_path):
    """Lightning's own 'Received SIGTERM' and 'An SIGTERMException was raised ...' lines are not shown: ours says it."""
    import subprocess
    import sys

    _, tiny = setup
    command = [sys.executable, "-m", "tapforge.cli", "train", "fit", "--config", SMOKE, "--config", tiny]
    command += ["--trainer.default_root_dir", str(tmp_path / "run"), "--data.val_shards", "null"]
    command += ["--data.tapvid.davis", "null", "--data.tapvid.kinetics", "null", "--trainer.max_steps", "6"]
    command += ["--trainer.callbacks+=tests.train.test_cli.InterruptAt", "--trainer.callbacks.init_args.step", "2"]
    command += ["--trainer.callbacks.init_args.signum", str(int(signal.SIGTERM))]
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"tapforge train: interrupted at step 2, saved {last}: resume with --ckpt_path last"
    )
    assert "SIGTERM" not in result.stderr and "was raised with message" not in result.stderr, result.stderr[-3000:]


def test_a_bad_ckpt_path_is_one_clear_error(setup, tmp_path):
    tmp, tiny = setup
    run = tmp_path / "run"
    args = ["--config", SMOKE, "--config", tiny, "--trainer.default_root_dir", str(run)]
    assert main(["fit", *args, "--trainer.max_steps", "2"]) == 0
    last = run / "checkpoints" / "last.ckpt"
    random_bytes = tmp_path / "alone" / "random.ckpt"
    random_bytes.parent.mkdir()
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    bare = tmp_path / "bare.ckpt"
    torch.save({"model.x": torch.zeros(1)}, bare)
    other = tmp_path / "other_model.ckpt"  # a Lightning checkpoint of another model
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}, "hyper_parameters": {}}, other)
    crafted, marker = tmp_path / "crafted.ckpt", tmp_path / "ran"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": RunsACommand(marker)}}, crafted)
    cases = [
        (["validate", "--ckpt_path", str(tmp_path / "absent.ckpt")], "no such file"),
        (["validate", "--ckpt_path", str(crafted)], r"holds Python objects \(posix.system\).*nothing was run"),
        (["validate", "--ckpt_path", str(random_bytes)], "not a readable checkpoint .*fix: delete it"),
        (["validate", "--ckpt_path", str(bare)], "not a Lightning checkpoint .*model.init_from"),
        (
            ["validate", "--ckpt_path", str(other)],
            "does not fit this model.model: .*missing keys.*1 unexpected keys: encoder.weight",
        ),
    ]
    for extra, pattern in cases:
        with pytest.raises(TapforgeError, match=pattern) as info:
            main([extra[0], *args, *extra[1:]])
        assert "\n" not in str(info.value)
    assert not marker.exists()
    last.write_bytes(last.read_bytes()[:100_000])  # a last.ckpt cut short by a full disk or a kill
    with pytest.raises(TapforgeError, match="last.ckpt is not a readable checkpoint .*fix: delete it and start over"):
        main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last"])


def test_lightning_advertisement_is_dropped_unless_verbose(monkeypatch):
    import logging

    import lightning.pytorch  # noqa: F401  (installs Lightning's console handlers)

    from tapforge.cli import main as tapforge_main
    from tapforge.train.cli import _quiet_lightning

    _quiet_lightning()
    handlers = [h for name in ("lightning", "lightning.pytorch") for h in logging.getLogger(name).handlers]
    assert handlers

    def record(msg):
        return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0, msg, None, None)

    for handler in handlers:
        assert not handler.filter(record("💡 Tip: For seamless cloud logging and experiment tracking, try litlogger"))
        assert handler.filter(record("GPU available: False, used: False"))
    monkeypatch.delenv("TAPFORGE_VERBOSE", raising=False)
    assert tapforge_main(["--verbose", "--version"]) == 0
    assert os.environ["TAPFORGE_VERBOSE"] == "1"


def test_validate_scores_a_tapnet_checkpoint(setup, tmp_path):
    """validate --ckpt_path reads the model config the checkpoint stores, which names TAP-Net's architecture."""
    tmp, tiny = setup
    config = yaml.safe_load(open(tiny))
    config["model"] = {"architecture": "tapnet", "warmup_steps": 1}
    config["trainer"].update(
        default_root_dir=str(tmp_path / "run"), max_steps=1, precision="32-true", sync_batchnorm=False
    )
    path = tmp_path / "tiny_tapnet.yaml"
    path.write_text(yaml.safe_dump(config))
    tapnet = os.path.join(ROOT, "configs", "train", "tapnet.yaml")
    assert main(["fit", "--config", tapnet, "--config", str(path)]) == 0
    last = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert main(["validate", "--config", tapnet, "--config", str(path), "--ckpt_path", last]) == 0
