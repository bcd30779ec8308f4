"""synth's promises by construction, without Blender: one dataset whatever runs at once (real concurrent processes
on the commit path), damaged or hand-edited manifests and stray files, output paths, config key paths and flags,
cluster variables, render sizes, and an exception inside a scene script."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tapforge.base.errors import TapforgeError
from tapforge.synth.cli import main as synth_main
from tapforge.synth.config import load_config
from tapforge.synth.shards import (
    DATASET_VERSION,
    check_identity,
    job_from_environment,
    load_records,
    read_manifest,
    update_manifest,
    verify_dataset,
    write_shard,
)

TINY = ["render.resolution=32", "render.samples=1", "scene.num_frames=2", "tracks.num_tracks=16"]


def _samples(first: int, count: int = 1, config_hash: str = "a" * 16) -> list[dict]:
    from tapforge.synth.schema import Clip, encode_clip

    rng = np.random.default_rng(first)
    return [
        encode_clip(
            Clip(
                key=f"scene-{i:07d}",
                video=rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
                tracks=rng.uniform(0, 8, (3, 2, 2)).astype(np.float32),
                occluded=rng.random((3, 2)) < 0.5,
                tracks_3d=rng.normal(size=(3, 2, 3)).astype(np.float32),
                object_ids=np.array([0, 1, 1], np.int32),
                camera={"K": np.eye(3).tolist()},
                meta={"seed": i, "config_hash": config_hash, "fps": 12},
            )
        )
        for i in range(first, first + count)
    ]


def _header(config_hash="a" * 16, num_scenes=4, assets=None) -> dict:
    return {
        "dataset_version": DATASET_VERSION,
        "config_hash": config_hash,
        "num_scenes": num_scenes,
        "assets_sha256": assets,
    }


def _record(header: dict, shard: int) -> dict:
    return {**header, "num_samples": 1, "keys": [f"scene-{shard:07d}"]}


def _dataset(folder: Path, num_shards: int = 2) -> Path:
    """A small dataset of fake clips, committed as `tapforge synth render` commits them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = _header(num_scenes=num_shards)
    for shard in range(num_shards):
        write_shard(folder, shard, _samples(shard), _record(header, shard), header)
    return folder


# ------------------------------------------------------------------------------- one dataset, whatever runs at once
# each process waits for the start file, then commits shards 0..N-1 of the given config hash, one by one, and prints
# the shards it committed (or the error that stopped it) as JSON
COMMITTER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from tapforge.base.errors import TapforgeError
    from tapforge.synth.shards import DATASET_VERSION, write_shard
    sys.path.insert(0, sys.argv[4])
    from tests.synth.test_reliability import _samples

    out, config_hash, num_shards = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    header = {"dataset_version": DATASET_VERSION, "config_hash": config_hash, "num_scenes": num_shards,
              "assets_sha256": None}
    samples = {s: _samples(s, config_hash=config_hash) for s in range(num_shards)}
    while not (out / "start").exists():
        time.sleep(0.001)
    committed = []
    try:
        for shard in range(num_shards):
            record = {**header, "num_samples": 1, "keys": [f"scene-{shard:07d}"]}
            if write_shard(out, shard, samples[shard], record, header) is not None:
                committed.append(shard)
    except TapforgeError as err:
        print(json.dumps({"committed": committed, "error": str(err)}))
        sys.exit(0)
    print(json.dumps({"committed": committed, "error": None}))
    """
)


def _race(out: Path, hashes: list[str], num_shards: int) -> list[dict]:
    out.mkdir()
    here = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COMMITTER, str(out), h, str(num_shards), here], stdout=subprocess.PIPE, text=True
        )
        for h in hashes
    ]
    time.sleep(1.5)  # every process imported and waiting
    (out / "start").touch()
    results = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    (out / "start").unlink()
    return results


def test_jobs_with_different_configs_at_once_leave_one_dataset(tmp_path):
    for attempt in range(3):  # three races: whoever commits first, the folder stays one dataset
        out = tmp_path / f"race{attempt}"
        results = _race(out, ["a" * 16, "b" * 16, "c" * 16], 12)
        winners = [r for r in results if r["error"] is None]
        assert len(winners) == 1, results
        losers = [r for r in results if r["error"] is not None]
        assert all("made with another config" in r["error"] for r in losers)
        hashes = {r["config_hash"] for r in load_records(out).values()}
        assert len(hashes) == 1 and len(load_records(out)) == 12
        manifest = read_manifest(out)
        assert {manifest["config_hash"]} == hashes and verify_dataset(out) == []
        assert not [p.name for p in out.iterdir() if "tmp" in p.name]


def test_identical_jobs_at_once_commit_each_shard_once_and_never_overwrite(tmp_path):
    out = tmp_path / "same"
    results = _race(out, ["a" * 16] * 3, 16)
    assert all(r["error"] is None for r in results)
    committed = [shard for r in results for shard in r["committed"]]
    assert sorted(committed) == list(range(16))  # every shard once: the later copies were dropped
    assert verify_dataset(out) == [] and not [p.name for p in out.iterdir() if "tmp" in p.name]


def test_the_identity_is_checked_at_commit_not_only_at_start(tmp_path):
    header = _header()
    write_shard(tmp_path, 0, _samples(0), _record(header, 0), header)
    stamp = (tmp_path / "shard-000000.tar").stat().st_mtime_ns
    for other, reason in (
        (_header(config_hash="b" * 16), "made with another config"),
        (_header(num_scenes=9), "made with another --num-scenes"),
        (_header(assets="f" * 16), "made with other asset files"),
    ):
        with pytest.raises(TapforgeError, match=reason):
            write_shard(tmp_path, 1, _samples(1), _record(other, 1), other)
        with pytest.raises(TapforgeError, match=reason):
            update_manifest(tmp_path, other)
    assert sorted(load_records(tmp_path)) == [0] and read_manifest(tmp_path)["config_hash"] == "a" * 16
    assert write_shard(tmp_path, 0, _samples(0), _record(header, 0), header) is None  # complete: kept
    assert (tmp_path / "shard-000000.tar").stat().st_mtime_ns == stamp
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]


def test_a_replaced_texture_is_another_dataset(tmp_path):
    from PIL import Image

    from tapforge.synth.render_job import assets_digest, dataset_identity, render_dataset

    textures = tmp_path / "textures"
    textures.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(textures / "a.png")
    config = load_config("tiny", TINY + [f"assets.textures_dir={textures}"])
    digest = assets_digest(config)
    assert digest and assets_digest(load_config("tiny", TINY)) is None
    out = tmp_path / "data"
    out.mkdir()
    header = dataset_identity(config, 2, digest)
    write_shard(out, 0, _samples(0), _record(header, 0), header)  # as the first fan-out job commits it
    Image.new("RGB", (16, 16), (30, 200, 30)).save(textures / "a.png")  # same name, other bytes
    assert assets_digest(config) != digest
    with pytest.raises(TapforgeError, match="made with other asset files .*textures_dir"):
        render_dataset(config, out, 2, 1, 2, progress=False, workers=1)  # the second job, before rendering
    directory = tmp_path / "kubric"
    (directory / "cube").mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"data_dir": ".", "assets": {"cube": {"kwargs": {}}}}))
    (directory / "cube" / "visual_geometry.obj").write_text("v 0 0 0\n")
    config = load_config("tiny", TINY + [f"assets.directory={directory}"])
    before = assets_digest(config)
    (directory / "cube" / "visual_geometry.obj").write_text("v 0 0 1\n")
    assert assets_digest(config) != before


# ------------------------------------------------------------------------------ stray files and damaged manifests
def test_stray_files_are_ignored_by_the_writer_and_named_by_verify(tmp_path):
    out = _dataset(tmp_path / "data")
    (out / "shard-abc.json").write_text("{}")
    (out / "shard-000002.json").write_text("[1, 2]")  # a record that is no object
    (out / "shard-000003.json").write_text('{"bytes": "many"}')
    (out / "shard-7.tar").write_bytes(b"x")
    (out / "notes.txt").write_text("mine")
    header = _header(num_scenes=2)
    assert sorted(load_records(out)) == [0, 1]
    update_manifest(out, header)
    check_identity(out, header)
    problems = verify_dataset(out)
    assert sorted(p.split(":")[0] for p in problems) == ["shard-7.tar", "shard-abc.json"]
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "verify", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert all(line.startswith("DAMAGED shard-") for line in result.stderr.strip().splitlines())


def _edit(manifest: dict, how: str) -> object:
    entry = manifest["shards"][0]
    edits = {
        "a list": lambda: [manifest],
        "no shards": lambda: {**manifest, "shards": "all"},
        "entry not an object": lambda: {**manifest, "shards": ["shard-000000.tar"]},
        "parent path": lambda: {**manifest, "shards": [{**entry, "name": "../outside/shard-000000.tar"}]},
        "absolute path": lambda: {**manifest, "shards": [{**entry, "name": "/tmp/shard-000000.tar"}]},
        "sub folder": lambda: {**manifest, "shards": [{**entry, "name": "sub/shard-000000.tar"}]},
        "other name": lambda: {**manifest, "shards": [{**entry, "name": "manifest.json"}]},
        "no sha256": lambda: {**manifest, "shards": [{k: v for k, v in entry.items() if k != "sha256"}]},
        "count as text": lambda: {**manifest, "shards": [{**entry, "num_samples": "one"}]},
        "keys missing": lambda: {**manifest, "shards": [{k: v for k, v in entry.items() if k != "keys"}]},
        "scene count as text": lambda: {**manifest, "num_complete_scenes": "two"},
        "a shard twice": lambda: {**manifest, "shards": [entry, entry]},
    }
    return edits[how]()


EDITS = [
    "a list",
    "no shards",
    "entry not an object",
    "parent path",
    "absolute path",
    "sub folder",
    "other name",
    "no sha256",
    "count as text",
    "keys missing",
    "scene count as text",
    "a shard twice",
]


@pytest.mark.parametrize("how", EDITS)
def test_a_damaged_or_hand_edited_manifest_is_one_line_in_every_reader(tmp_path, how):
    out = _dataset(tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shard-000000.tar").write_bytes((out / "shard-000000.tar").read_bytes())  # a readable target
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(_edit(manifest, how)))
    problems = verify_dataset(out)
    assert len(problems) == 1 and "damaged or was edited by hand" in problems[0] and "synth render" in problems[0]
    for command in (
        ["preview", str(out), "--out", str(tmp_path / "p.gif")],
        ["to-tapvid", str(out), "--out", str(tmp_path / "t.pkl")],
    ):
        with pytest.raises(TapforgeError, match="damaged or was edited by hand") as info:
            synth_main(command)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "p.gif").exists() and not (tmp_path / "t.pkl").exists()
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "verify", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("DAMAGED ")


def test_a_manifest_that_is_not_json_or_not_there(tmp_path):
    out = _dataset(tmp_path / "data")
    (out / "manifest.json").write_bytes(b"\xff{not json")
    assert "is not valid JSON" in verify_dataset(out)[0]
    with pytest.raises(TapforgeError, match="is not valid JSON"):
        synth_main(["to-tapvid", str(out), "--out", str(tmp_path / "t.pkl")])
    update_manifest(out, _header(num_scenes=2))  # what a rerun of the render does: rebuilt from the records
    assert verify_dataset(out) == []
    with pytest.raises(TapforgeError, match="is not a folder"):
        synth_main(["verify", str(out / "shard-000000.tar")])


# ---------------------------------------------------------------------------------------------------- output paths
def test_output_paths_that_are_folders_or_lie_under_a_file_are_refused_before_any_work(tmp_path):
    out = _dataset(tmp_path / "data")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "clip.gif").mkdir()
    cases = [
        (["preview", str(out), "--out", str(tmp_path)], "is a folder; give a file name"),
        (["preview", str(out), "--out", str(tmp_path / "clip.gif")], "is a folder; give a file name"),
        (["preview", str(out), "--out", str(a_file / "p.gif")], "a_file is a file, not a folder"),
        (["preview", str(out), "--out", str(a_file / "sub" / "p.gif")], "a_file is a file, not a folder"),
        (["preview", str(out), "--out", str(tmp_path / "p.png")], "give a file name ending in .gif or"),
        (["to-tapvid", str(out), "--out", str(tmp_path)], "is a folder; give a file name"),
        (["to-tapvid", str(out), "--out", str(a_file / "t.pkl")], "a_file is a file, not a folder"),
        (["render", "--out", str(a_file), *sum((["--set", s] for s in TINY), [])], "is a file; fix: give a folder"),
        (["render", "--out", str(a_file / "data"), *sum((["--set", s] for s in TINY), [])], "a_file is a file"),
    ]
    for args, message in cases:
        with pytest.raises(TapforgeError, match=message):
            synth_main(args)
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "clip.gif", "data"]


# ----------------------------------------------------------------------------------------- config, flags, variables
def test_flags_that_are_not_numbers_or_out_of_range_are_one_line(tmp_path):
    data = str(_dataset(tmp_path / "data"))
    cases = [
        (["render", "--out", "x", "--num-scenes", "ten"], "argument --num-scenes: invalid int value: 'ten'"),
        (["render", "--out", "x", "--num-scenes", "1e3"], "invalid int value: '1e3'"),
        (["render", "--out", "x", "--num-scenes", "nan"], "invalid int value: 'nan'"),
        (["render", "--out", "x", "--shard-index", "0.5", "--num-shards", "2"], "invalid int value: '0.5'"),
        (["render", "--out", "x", "--shard-index", "2", "--num-shards", "2"], "shard index 2 is not in [0, 2)"),
        (["render", "--out", "x", "--num-shards", "0", "--shard-index", "0"], "--num-shards 0: give 1 or more"),
        (["render", "--out", "x", "--workers", "-1"], "--workers -1: give a positive number"),
        (["render", "--out", "x", "--workers", "1.5"], "--workers 1.5: give a positive number"),
        (["render", "--out", "x", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["preview", data, "--out", "p.gif", "--index", "inf"], "argument --index: invalid int value: 'inf'"),
        (["preview", data, "--out", str(tmp_path / "p.gif"), "--index", "5"], "--index 5 is out of range"),
        (["preview", data, "--out", "p.gif", "--max-tracks", "-2"], "--max-tracks -2: give 1 or more"),
        (["to-tapvid", data, "--out", "t.pkl", "--max-tracks", "many"], "invalid int value: 'many'"),
        (["verify"], "the following arguments are required: dir"),
    ]
    for args, message in cases:
        with pytest.raises(TapforgeError) as info:
            synth_main(args)
        assert message in str(info.value) and "\n" not in str(info.value), (args, str(info.value))
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "render", "--out", "x", "--num-scenes", "-"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("tapforge synth: error: argument --num-scenes: invalid int value")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SLURM_ARRAY_TASK_ID": "abc", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID='abc': not an integer"),
        ({"SLURM_ARRAY_TASK_ID": "-1", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID='-1': not an integer >= 0"),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID=4 is not one of the 4"),
        (
            {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "0"},
            "SLURM_ARRAY_TASK_COUNT='0': not an integer >= 1",
        ),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2.5"}, "SLURM_ARRAY_TASK_COUNT='2.5'"),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "x"}, "TASK_MIN='x'"),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}, "is not one of"),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, "in steps of 2"),
        ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT is not"),
        ({"JOB_COMPLETION_INDEX": "one", "TAPFORGE_NUM_SHARDS": "4"}, "JOB_COMPLETION_INDEX='one': not an integer"),
        ({"JOB_COMPLETION_INDEX": "-3", "TAPFORGE_NUM_SHARDS": "4"}, "JOB_COMPLETION_INDEX='-3'"),
        ({"JOB_COMPLETION_INDEX": "4", "TAPFORGE_NUM_SHARDS": "4"}, "JOB_COMPLETION_INDEX=4 is not below"),
        ({"JOB_COMPLETION_INDEX": "1", "TAPFORGE_NUM_SHARDS": ""}, "TAPFORGE_NUM_SHARDS='': not an integer"),
        ({"JOB_COMPLETION_INDEX": "1", "TAPFORGE_NUM_SHARDS": "99999999999999999999999"}, "TAPFORGE_NUM_SHARDS="),
    ],
)
def test_cluster_variables_are_checked_with_one_line(env, message):
    with pytest.raises(TapforgeError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        job_from_environment(None, None, env)
    assert "\n" not in str(info.value)


def test_a_slurm_array_with_a_step_selects_its_slices():
    env = {"SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "5"}
    assert [job_from_environment(None, None, {**env, "SLURM_ARRAY_TASK_ID": str(t)}) for t in (10, 15, 20)] == [
        (0, 3),
        (1, 3),
        (2, 3),
    ]


def test_every_key_path_and_duplicate_key_is_one_problem_line(tmp_path):
    overrides = [
        (["render=5"], "--set render: render is a section of keys, not a value"),
        (["scene=movi"], "--set scene: scene is a section of keys"),
        (["scene.num_frames.first=2"], "--set scene.num_frames.first: scene.num_frames is a value (2)"),
        (["render.samples.x=1"], "--set render.samples.x: unknown key"),
        (["seed.value=1"], "--set seed.value: unknown key"),
        (["render.samples={a: 1}"], "render.samples: bad value {'a': 1}"),
        (["render.samples={a: 1, a: 2}"], "key 'a' is given twice in one mapping"),
        (["render.noise_threshold=.nan"], "render.noise_threshold: bad value nan"),
        (["tracks.depth_tolerance=.inf"], "tracks.depth_tolerance: bad value inf"),
        (["scene.max_camera_movement=.nan"], "scene.max_camera_movement: bad value nan"),
        (["render.threads=100000"], "render.threads: bad value 100000"),
    ]
    for items, message in overrides:
        with pytest.raises(TapforgeError) as info:
            load_config("tiny", TINY + items)
        assert message in str(info.value) and "\n" not in str(info.value), (items, str(info.value))
    files = [
        ("render: 5\n", "render: a section of keys"),
        ("scene: [movi]\n", "scene: a section of keys"),
        ("assets: none\n", "assets: a section of keys"),
        ("seed: {value: 3}\n", "seed: bad value {'value': 3}"),
        ("render:\n  samples: {x: 1}\n", "render.samples: bad value {'x': 1}"),
        ("render:\n  samples: 3\n  denoise: false\n  samples: 4\n", "'samples' is given twice in one mapping (lines"),
        ("render: {samples: 3}\nrender: {samples: 4}\n", "key 'render' is given twice"),
        ("scene:\n  num_frames: .nan\n", "scene.num_frames: bad value nan"),
    ]
    for text, message in files:
        path = tmp_path / "config.yaml"
        path.write_text("inherit: tiny\n" + text)
        with pytest.raises(TapforgeError) as info:
            load_config(path)
        assert message in str(info.value) and "\n" not in str(info.value), (text, str(info.value))
    path.write_text("inherit: 5\n")
    with pytest.raises(TapforgeError, match="inherit: 5 is not a preset name"):
        load_config(path)
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(TapforgeError, match="cannot be read \\(not UTF-8 text\\)"):
        load_config(path)


def test_a_script_float_key_refuses_nan_and_infinity(tmp_path):
    script = tmp_path / "spin.py"
    script.write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass Config:\n    spin: float = 1.0\n\n"
        "def build(scene, rng, cfg):\n    pass\n"
    )
    for value in (".nan", ".inf", "-.inf"):
        with pytest.raises(TapforgeError, match="scene.spin: bad value .*; use a finite number"):
            load_config("base", [f"scene.script={script}", f"scene.spin={value}"])
    assert load_config("base", [f"scene.script={script}", "scene.spin=2.5"]).script_values["spin"] == 2.5
    no_default = tmp_path / "no_default.py"  # new files: a script module is imported once per process
    no_default.write_text(script.read_text().replace("spin: float = 1.0", "spin: float"))
    with pytest.raises(TapforgeError, match=f"scene.script {no_default}: its Config or check_config failed \\(TypeE"):
        load_config("base", [f"scene.script={no_default}"])
    buggy = tmp_path / "buggy.py"
    buggy.write_text(script.read_text() + "\ndef check_config(cfg, config):\n    return cfg.missing\n")
    with pytest.raises(TapforgeError, match="check_config failed \\(AttributeError: .*'missing'"):
        load_config("base", [f"scene.script={buggy}"])


def test_renders_that_cannot_fit_in_memory_or_absurd_scene_counts_are_refused_up_front(tmp_path, monkeypatch):
    from tapforge.synth import render_job, resources

    out = tmp_path / "data"
    huge = load_config("tiny", ["render.resolution=8192", "scene.num_frames=2000"])
    with pytest.raises(TapforgeError, match=r"8192x8192 pixels x 2000 frames with 256 tracks needs about [\d.]+ [GT]B"):
        render_job.render_dataset(huge, out, 1, progress=False)
    small = load_config("tiny", TINY)
    with pytest.raises(TapforgeError, match=r"--num-scenes 100000000000: over 10000000 scenes .* up to [\d.]+ [TP]B"):
        render_job.render_dataset(small, out, 10**11, progress=False)
    need = resources.scene_memory(small)
    monkeypatch.setattr(resources, "machine_memory", lambda: 3 * need)
    assert resources.fit_workers_in_memory(small, 8, automatic=True) == 3
    with pytest.raises(TapforgeError, match="--workers 8: each worker needs about .* of memory .* fix: --workers 3 or"):
        resources.fit_workers_in_memory(small, 8, automatic=False)
    assert not out.exists()


def test_a_long_clip_is_held_by_its_tracks_not_its_passes_and_needs_scratch_disk(tmp_path, monkeypatch):
    from tapforge.synth import render_job, resources

    short = load_config("tiny", ["render.resolution=256", "scene.num_frames=24", "tracks.num_tracks=2048"])
    long = load_config("tiny", ["render.resolution=256", "scene.num_frames=1024", "tracks.num_tracks=2048"])
    grown = resources.scene_memory(long) - resources.scene_memory(short)
    assert grown <= 1000 * (256 * 256 * 6 + 2048 * 120)  # tracks and the encoded frames, no passes
    assert resources.scene_memory(long) < 2 * resources.SESSION_BYTES
    four = load_config(
        "tiny",
        [
            "render.resolution=256",
            "scene.num_frames=1024",
            "render.views.rig=ring",
            "render.views.count=4",
            "tracks.num_tracks=2048",
        ],
    )
    assert resources.view_count(four) == 4 and resources.scene_disk(four) == 4 * resources.scene_disk(long)
    assert resources.scene_memory(four) - resources.scene_memory(long) > 2 * grown  # every view's tracks and frames
    monkeypatch.setattr(resources, "scratch_free", lambda folder: resources.scene_disk(long) // 2)
    with pytest.raises(
        TapforgeError, match=r"256x256 pixels x 1024 frames needs about [\d.]+ GB of scratch disk.*TMPDIR"
    ):
        render_job.render_dataset(long, tmp_path / "data", 1, progress=False)
    assert resources.fit_workers_in_memory(short, 4, True, str(tmp_path)) == 4
    assert resources.fit_workers_in_memory(long, 4, True, str(tmp_path)) == 1
    with pytest.raises(TapforgeError, match=r"--workers 4: .* of scratch disk .*--workers 1 or fewer"):
        resources.fit_workers_in_memory(long, 4, False, str(tmp_path))


# ---------------------------------------------------------------------------------------- a scene script that raises
def test_an_exception_inside_build_names_the_scene_the_seed_and_the_script_line(tmp_path):
    pytest.importorskip("pybullet")
    from tapforge.synth.pipeline import build_scene

    script = tmp_path / "boom.py"
    script.write_text(
        "def helper(rng):\n    return 1 / 0\n\n\ndef build(scene, rng, cfg):\n    scene.camera.look_at((5, 0, 2), (0, 0, 0))\n"
        "    helper(rng)\n"
    )
    config = load_config("base", TINY + [f"scene.script={script}"])
    with pytest.raises(TapforgeError) as info:
        build_scene(config, 1234, scene_index=7)
    message = str(info.value)
    assert message.startswith("scene 7 (seed 1234): the scene script's build() raised ZeroDivisionError")
    assert f"at {script}:2 (return 1 / 0)" in message and "\n" not in message


@pytest.mark.slow
def test_a_render_whose_script_raises_is_one_line_naming_the_scene(tmp_path):
    pytest.importorskip("bpy")
    script = tmp_path / "boom.py"
    script.write_text("def build(scene, rng, cfg):\n    raise ValueError('no floor today')\n")
    result = subprocess.run(
        [sys.executable, "-m", "tapforge.cli", "synth", "render", "--out", str(tmp_path / "data"), "--num-scenes", "1"]
        + ["--no-progress", "--workers", "1", "--config", "base", "--set", f"scene.script={script}"]
        + sum((["--set", s] for s in TINY), []),
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("tapforge synth: error: scene 0 (seed ") and "raised ValueError: no floor today" in last
    assert f"{script}:2" in last
