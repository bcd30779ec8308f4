"""Shard files on disk: atomic writes, per-shard records, the manifest, job slicing and verification.

Layout of a dataset folder::

    shard-000000.tar   complete WebDataset shards (written to a temp name, fsynced, renamed)
    shard-000000.json  the shard's record: sample count, sha256, scene keys and seeds, timing
    manifest.json      rebuilt from all records under a lock after every shard (safe for parallel jobs)

A job killed at any moment leaves only complete shards visible; rerunning renders the missing ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tapforge.base.atomic import atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import SchemaError, decode_clip, iter_tar_samples, write_tar_samples

MANIFEST = "manifest.json"
GENERATOR = "tapforge-synth"
# the version of what a dataset's bytes are made from, in the manifest and every shard record; a folder made by
# another version is not resumed (its scenes would not match the ones rendered now). 1 (no field): the first
# format; 2: named random streams (script, tracks, textures, the movi sub-streams), shard tars without PAX headers
DATASET_VERSION = 2


def shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:06d}.tar"


def record_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:06d}.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(out_dir: Path, shard: int, samples: Iterable[dict[str, Any]], record: dict[str, Any]) -> dict:
    """Write a shard atomically with its record; return the record with ``sha256`` and ``bytes`` added.

    Order: tar to a temp name (fsynced), then the record, then the rename; so a visible tar always has
    its record. The tar uses a fixed mtime: the same content gives the same bytes and checksum.
    """
    path = shard_path(out_dir, shard)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write_tar_samples(f, samples)
            f.flush()
            os.fsync(f.fileno())
        record = dict(record, sha256=sha256_of(tmp), bytes=tmp.stat().st_size)
        atomic_write_bytes(record_path(out_dir, shard), (json.dumps(record, sort_keys=True) + "\n").encode())
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
    return record


def dataset_version(entry: dict[str, Any]) -> int:
    """The dataset version of a manifest or shard record (1 for those written before the field existed)."""
    return int(entry.get("dataset_version", 1))


def job_slice(num_shards_total: int, job_index: int, num_jobs: int) -> list[int]:
    """Output shards of job `job_index` out of `num_jobs`: every num_jobs-th shard (disjoint, deterministic)."""
    if num_jobs < 1 or not 0 <= job_index < num_jobs:
        raise TapforgeError(
            f"shard index {job_index} is not in [0, {num_jobs}); give --shard-index I --num-shards K with 0 <= I < K"
        )
    return list(range(job_index, num_shards_total, num_jobs))


def job_from_environment(
    shard_index: int | None, num_shards: int | None, env: dict[str, str] | None = None
) -> tuple[int, int]:
    """Job index and count from the flags, else SLURM array or Kubernetes indexed-job variables, else (0, 1)."""
    env = dict(os.environ if env is None else env)
    if shard_index is not None or num_shards is not None:
        if shard_index is None or num_shards is None:
            raise TapforgeError("give --shard-index and --num-shards together")
        return shard_index, num_shards
    if "SLURM_ARRAY_TASK_ID" in env:
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise TapforgeError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --num-shards")
        offset = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - offset, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "JOB_COMPLETION_INDEX" in env:
        if "TAPFORGE_NUM_SHARDS" not in env:
            raise TapforgeError(
                "JOB_COMPLETION_INDEX is set: also set TAPFORGE_NUM_SHARDS to the job's "
                "completions count (or pass --num-shards)"
            )
        return int(env["JOB_COMPLETION_INDEX"]), int(env["TAPFORGE_NUM_SHARDS"])
    return 0, 1


def shard_is_complete(out_dir: Path, shard: int) -> bool:
    """A shard counts as done when its tar and its record both exist and the sizes agree (a record without
    its tar is a job killed between the two writes: the shard is redone)."""
    tar, rec = shard_path(out_dir, shard), record_path(out_dir, shard)
    if not (tar.is_file() and rec.is_file()):
        return False
    try:
        return json.loads(rec.read_text())["bytes"] == tar.stat().st_size
    except (json.JSONDecodeError, KeyError, OSError):
        return False


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    with open(out_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_records(out_dir: Path) -> dict[int, dict]:
    """Records of the complete shards, by shard number."""
    records = {}
    for path in sorted(out_dir.glob("shard-*.json")):
        shard = int(path.stem.split("-")[1])
        if shard_is_complete(out_dir, shard):
            records[shard] = json.loads(path.read_text())
    return records


def update_manifest(out_dir: Path, header: dict[str, Any]) -> dict:
    """Rebuild manifest.json from the header and every shard record, under a file lock."""
    with _locked(out_dir):
        for stale in out_dir.glob(f".{MANIFEST}.*.tmp"):  # left by a killed writer: none is writing while we lock
            stale.unlink(missing_ok=True)
        records = load_records(out_dir)
        manifest = dict(header)
        manifest["shards"] = [dict(records[k], name=shard_path(out_dir, k).name) for k in sorted(records)]
        manifest["num_complete_shards"] = len(records)
        manifest["num_complete_scenes"] = sum(r["num_samples"] for r in records.values())
        atomic_write_bytes(out_dir / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        raise TapforgeError(
            f"{out_dir} has no {MANIFEST}; fix: give a dataset folder written by `tapforge synth render` "
            "(rerunning the render command that made it rebuilds a lost manifest from the shard records)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TapforgeError(
            f"{path} is not valid JSON ({err}); rerun `tapforge synth render` on the folder to rebuild it"
        ) from err


def iter_checked_samples(dataset: Path, entry: dict, decode: Callable[[dict], Any] = decode_clip) -> Iterator[Any]:
    """The samples of the manifest's shard ``entry``, through ``decode``, after checking the shard against the
    manifest's sha256: damaged bytes end in one error naming the shard and the fix, never in wrong data."""
    path = dataset / entry["name"]
    fix = (
        f"run `tapforge synth verify {dataset}`, delete the damaged shard and its .json record, then rerun "
        "`tapforge synth render` with the same config"
    )
    if not path.is_file():
        raise TapforgeError(f"{path}: listed in the manifest but missing; {fix}")
    if sha256_of(path) != entry["sha256"]:
        raise TapforgeError(f"{path}: checksum mismatch (the shard is damaged); {fix}")
    try:
        for sample in iter_tar_samples(path):
            yield decode(sample)
    except (SchemaError, tarfile.TarError, EOFError) as err:
        raise TapforgeError(f"{path}: unreadable sample ({err}); {fix}") from err


def iter_dataset_clips(dataset: Path) -> Iterator[Any]:
    """The decoded clips of a dataset folder, in shard order, each shard checked (`iter_checked_samples`)."""
    for entry in read_manifest(dataset)["shards"]:
        yield from iter_checked_samples(dataset, entry)


def verify_dataset(out_dir: Path, decode: bool = True) -> list[str]:
    """Check the manifest against every shard (presence, sha256, sample count, schema); return problems."""
    manifest = read_manifest(out_dir)
    problems = []
    listed = {s["name"] for s in manifest.get("shards", [])}
    for path in sorted(out_dir.glob("shard-*.tar")):
        if path.name not in listed:
            problems.append(f"{path.name}: on disk but not in the manifest; rerun `tapforge synth render` to record it")
    for entry in manifest.get("shards", []):
        path = out_dir / entry["name"]
        if not path.is_file():
            problems.append(f"{entry['name']}: missing; rerun `tapforge synth render` with the same config to redo it")
            continue
        if sha256_of(path) != entry["sha256"]:
            problems.append(
                f"{entry['name']}: checksum mismatch (damaged); delete it and its .json record, "
                "then rerun `tapforge synth render`"
            )
            continue
        try:
            clips = [decode_clip(s, with_video=decode) for s in iter_tar_samples(path)]
        except (SchemaError, tarfile.TarError) as err:
            problems.append(f"{entry['name']}: unreadable sample ({err}); delete it and rerun the render")
            continue
        keys = [clip.key for clip in clips]
        foreign = [clip.key for clip in clips if clip.meta.get("config_hash") != manifest.get("config_hash")]
        if foreign or entry.get("config_hash") != manifest.get("config_hash"):
            problems.append(
                f"{entry['name']}: made with another config than the manifest's "
                f"({len(foreign)} of {len(clips)} samples); delete it and rerun `tapforge synth render`"
            )
            continue
        if len(keys) != entry["num_samples"] or keys != entry["keys"]:
            problems.append(f"{entry['name']}: holds {len(keys)} samples, manifest says {entry['num_samples']}")
    return problems
