"""Shard files on disk: atomic writes, per-shard records, the manifest, job slicing and verification.

Layout of a dataset folder::

    shard-000000.tar   complete WebDataset shards (written to a temp name, fsynced, renamed)
    shard-000000.json  the shard's record: sample count, sha256, scene keys and seeds, timing, the dataset's identity
    manifest.json      rebuilt from all records under a lock after every shard (safe for parallel jobs)

A job killed at any moment leaves only complete shards visible; rerunning renders the missing ones. Jobs that run
at once into one folder (fanned out, or started twice by mistake) commit each shard under one file lock: the folder's
identity (`IDENTITY_FIELDS`: dataset version, config hash, scene count, asset files' digest) is checked there at every
commit, so a job made as another dataset is refused before its first shard lands, and a shard another job completed
first is kept (the later copy, identical by determinism, is dropped).

Manifests and records are data read back from disk: a damaged or hand-edited one is one error line (readers) or
ignored and rebuilt from the records (writers), and the shard names it lists must be plain ``shard-NNNNNN.tar``
names inside the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from tapforge.base.atomic import atomic_write_bytes
from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import SchemaError, decode_clip, iter_tar_samples, write_tar_samples

MANIFEST = "manifest.json"
GENERATOR = "tapforge-synth"
# the version of what a dataset's bytes are made from, in the manifest and every shard record; a folder made by
# another version is not resumed (its scenes would not match the ones rendered now). 1 (no field): the first
# format; 2: named random streams (script, tracks, textures, the movi sub-streams), shard tars without PAX headers
DATASET_VERSION = 2
# what makes two jobs' shards one dataset, besides the dataset version (the config hash includes the scene script's
# sha256); written into the manifest and every record, checked under the folder lock at every commit. A field an
# older writer did not record is not compared.
IDENTITY_FIELDS = ("config_hash", "num_scenes", "assets_sha256")
LOCK_FILE = ".manifest.lock"
SHARD_NAME = re.compile(r"shard-(\d{6,})\.(tar|json)")
SHA256 = re.compile(r"[0-9a-f]{64}")


def shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:06d}.tar"


def record_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:06d}.json"


def shard_number(name: str, suffix: str = "tar") -> int | None:
    """The shard number of a file name tapforge writes (``shard-000012.tar`` -> 12), None for any other name."""
    match = SHARD_NAME.fullmatch(name)
    if not match or match[2] != suffix or f"shard-{int(match[1]):06d}.{suffix}" != name:
        return None
    return int(match[1])


def _sha256_of_file(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_of_file(f)


def dataset_version(entry: dict[str, Any]) -> int:
    """The dataset version of a manifest or shard record (1 for those written before the field existed)."""
    version = entry.get("dataset_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else -1


def _describe(field: str) -> str:
    return {
        "config_hash": "another config",
        "num_scenes": "another --num-scenes",
        "assets_sha256": "other asset files (the bytes in assets.textures_dir, assets.hdri_dir or assets.directory)",
    }[field]


def check_identity(out_dir: Path, header: dict[str, Any]) -> None:
    """Refuse, with one error line, a folder whose manifest or complete shards were made as another dataset than
    ``header`` describes (`IDENTITY_FIELDS` and the dataset version). Call it holding the folder lock (`locked`)
    so that no other job commits between the check and the write it guards."""
    version = dataset_version(header)
    records = load_records(out_dir)
    existing = [(f"shard {k}", r) for k, r in records.items()]
    manifest = _read_json(out_dir / MANIFEST)  # a damaged manifest is rebuilt from the records
    if isinstance(manifest, dict):
        existing.append(("its manifest", manifest))
    for _, entry in existing:  # the version first: another version differs in every other field too
        if dataset_version(entry) != version:
            other = dataset_version(entry)
            made_by = "an older" if 0 <= other < version else "a newer" if other > version else "another"
            raise TapforgeError(
                f"{out_dir} holds a dataset made by {made_by} tapforge "
                f"(dataset version {other}, this one writes {version}); render into a new --out folder, or "
                "resume it with the tapforge version that made it"
            )
    for field in IDENTITY_FIELDS:
        others = [(what, e[field]) for what, e in existing if field in e and e[field] != header.get(field)]
        if others:
            shards = sum(what != "its manifest" for what, _ in others)
            held = f"{shards} complete shard(s)" if shards else "a dataset"
            what, value = others[0]
            raise TapforgeError(
                f"{out_dir} holds {held} made with {_describe(field)} (first: {what}, {field} {value}; this run's is "
                f"{header.get(field)}); resume with the config, --num-scenes and asset files that made them, or "
                "choose a new --out folder"
            )


@contextlib.contextmanager
def _shard_temp(out_dir: Path, shard: int) -> Iterator[tuple[Path, BinaryIO]]:
    """A new temp file beside shard ``shard``, open for writing and reading, created and flock'ed under the folder
    lock and held until the block ends (`remove_stale_temps` removes only temp files whose writer is gone), then
    removed if still there. Written and read through this one file object: on NFS, where flock is a POSIX lock,
    closing any other descriptor of the file would drop the lock."""
    tmp = out_dir / f".{shard_path(out_dir, shard).name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    with locked(out_dir):
        f = open(tmp, "x+b")
        fcntl.flock(f, fcntl.LOCK_EX)
    try:
        yield tmp, f
    finally:
        tmp.unlink(missing_ok=True)
        f.close()


def remove_stale_temps(out_dir: Path) -> None:
    """Remove the temp files of writers that were killed (a shard's, held by no live writer; a record's or the
    manifest's, which are written under the folder lock and so are stale whenever we hold it)."""
    with locked(out_dir):
        for stale in out_dir.glob(".shard-*.json.*.tmp"):
            stale.unlink(missing_ok=True)
        for stale in out_dir.glob(f".{MANIFEST}.*.tmp"):
            stale.unlink(missing_ok=True)
        for stale in out_dir.glob(".shard-*.tar.tmp-*"):
            with contextlib.suppress(OSError), open(stale, "r+b") as f:  # NFS's flock needs it open for writing
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                stale.unlink(missing_ok=True)


def write_shard(
    out_dir: Path,
    shard: int,
    samples: Iterable[dict[str, Any]],
    record: dict[str, Any],
    header: dict[str, Any] | None = None,
) -> dict | None:
    """Write a shard atomically with its record and rebuild the manifest; return the record with ``sha256`` and
    ``bytes`` added, or None when another job completed the shard first (its copy is kept).

    The tar goes to a temp name (fsynced); then, under the folder lock, the folder's identity is checked against
    ``header`` (`check_identity`; without a header only the manifest is left alone), the record is written and the
    tar renamed into place, so a visible tar always has its record. The tar uses a fixed mtime: the same content
    gives the same bytes and checksum.
    """
    with _shard_temp(out_dir, shard) as (tmp, f):
        write_tar_samples(f, samples)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        record = dict(record, sha256=_sha256_of_file(f), bytes=tmp.stat().st_size)
        with locked(out_dir):
            if header is not None:
                check_identity(out_dir, header)
            if shard_is_complete(out_dir, shard):
                return None
            atomic_write_bytes(record_path(out_dir, shard), (json.dumps(record, sort_keys=True) + "\n").encode())
            os.replace(tmp, shard_path(out_dir, shard))
            if header is not None:
                _write_manifest(out_dir, header)
    return record


def job_slice(num_shards_total: int, job_index: int, num_jobs: int) -> list[int]:
    """Output shards of job `job_index` out of `num_jobs`: every num_jobs-th shard (disjoint, deterministic)."""
    if num_jobs < 1 or not 0 <= job_index < num_jobs:
        raise TapforgeError(
            f"shard index {job_index} is not in [0, {num_jobs}); give --shard-index I --num-shards K with 0 <= I < K"
        )
    return list(range(job_index, num_shards_total, num_jobs))


def _env_int(env: dict[str, str], name: str, minimum: int, fix: str) -> int:
    text = env[name].strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", text) or int(text) < minimum:
        raise TapforgeError(f"{name}={env[name]!r}: not an integer >= {minimum}; {fix}")
    return int(text)


def job_from_environment(
    shard_index: int | None, num_shards: int | None, env: dict[str, str] | None = None
) -> tuple[int, int]:
    """Job index and count from the flags, else SLURM array or Kubernetes indexed-job variables, else (0, 1); each
    value checked (an integer, the index in [0, count)) with one error line naming the flag or variable."""
    env = dict(os.environ if env is None else env)
    if shard_index is not None or num_shards is not None:
        if shard_index is None or num_shards is None:
            raise TapforgeError("give --shard-index and --num-shards together")
        job_slice(0, shard_index, num_shards)
        return shard_index, num_shards
    if "SLURM_ARRAY_TASK_ID" in env:
        fix = "set by a SLURM job array (sbatch --array=0-K); or pass --shard-index and --num-shards"
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise TapforgeError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --num-shards")
        task = _env_int(env, "SLURM_ARRAY_TASK_ID", 0, fix)
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT", 1, fix)
        first = _env_int(env, "SLURM_ARRAY_TASK_MIN", 0, fix) if "SLURM_ARRAY_TASK_MIN" in env else 0
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1, fix) if "SLURM_ARRAY_TASK_STEP" in env else 1
        index, off_step = divmod(task - first, step)
        if task < first or off_step or index >= count:
            raise TapforgeError(
                f"SLURM_ARRAY_TASK_ID={task} is not one of the {count} tasks of the array from "
                f"SLURM_ARRAY_TASK_MIN={first} in steps of {step}; give --shard-index and --num-shards instead"
            )
        return index, count
    if "JOB_COMPLETION_INDEX" in env:
        if "TAPFORGE_NUM_SHARDS" not in env:
            raise TapforgeError(
                "JOB_COMPLETION_INDEX is set: also set TAPFORGE_NUM_SHARDS to the job's "
                "completions count (or pass --num-shards)"
            )
        fix = "set JOB_COMPLETION_INDEX (Kubernetes indexed job) and TAPFORGE_NUM_SHARDS (its completions)"
        index = _env_int(env, "JOB_COMPLETION_INDEX", 0, fix)
        count = _env_int(env, "TAPFORGE_NUM_SHARDS", 1, fix)
        if index >= count:
            raise TapforgeError(
                f"JOB_COMPLETION_INDEX={index} is not below TAPFORGE_NUM_SHARDS={count}; set TAPFORGE_NUM_SHARDS to "
                "the indexed job's completions count"
            )
        return index, count
    return 0, 1


def _read_json(path: Path) -> Any:
    """The JSON value of ``path``; None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _read_record(out_dir: Path, shard: int) -> dict | None:
    """The record of shard ``shard`` when the shard is complete: its tar and a well-formed record exist and the
    sizes agree (a record without its tar is a job killed between the two writes: the shard is redone)."""
    tar = shard_path(out_dir, shard)
    record = _read_json(record_path(out_dir, shard))
    if not isinstance(record, dict) or not _is_count(record.get("bytes")) or not _is_count(record.get("num_samples")):
        return None
    try:
        return record if tar.is_file() and record["bytes"] == tar.stat().st_size else None
    except OSError:
        return None


def shard_is_complete(out_dir: Path, shard: int) -> bool:
    """Whether shard ``shard`` is done (see `_read_record`)."""
    return _read_record(out_dir, shard) is not None


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold the dataset folder's lock: every commit of a shard or the manifest, by any job, happens under it."""
    path = out_dir / LOCK_FILE
    try:
        lock = open(path, "w")
    except OSError as err:
        raise TapforgeError(
            f"cannot open the lock file {path} ({err.strerror}); fix: remove whatever has that name, or choose a "
            "folder you can write to"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_records(out_dir: Path) -> dict[int, dict]:
    """Records of the complete shards, by shard number; files whose names tapforge does not write are ignored."""
    records = {}
    for path in sorted(out_dir.glob("shard-*.json")):
        shard = shard_number(path.name, "json")
        if shard is not None and (record := _read_record(out_dir, shard)) is not None:
            records[shard] = record
    return records


def _write_manifest(out_dir: Path, header: dict[str, Any]) -> dict:
    records = load_records(out_dir)
    manifest = dict(header)
    manifest["shards"] = [dict(records[k], name=shard_path(out_dir, k).name) for k in sorted(records)]
    manifest["num_complete_shards"] = len(records)
    manifest["num_complete_scenes"] = sum(r["num_samples"] for r in records.values())
    atomic_write_bytes(out_dir / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


def update_manifest(out_dir: Path, header: dict[str, Any]) -> dict:
    """Rebuild manifest.json from the header and every shard record, under the folder lock, after checking that
    the folder is the dataset ``header`` describes (`check_identity`)."""
    with locked(out_dir):
        for stale in out_dir.glob(f".{MANIFEST}.*.tmp"):  # left by a killed writer: none is writing while we lock
            stale.unlink(missing_ok=True)
        check_identity(out_dir, header)
        return _write_manifest(out_dir, header)


class DamagedManifest(TapforgeError):
    """A manifest.json that is not what `tapforge synth render` writes (not JSON, or fields of the wrong kind)."""


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with a manifest's shard entry, None when it is well-formed."""
    if not isinstance(entry, dict):
        return f"a shard entry is {type(entry).__name__}, not an object"
    name = entry.get("name")
    if not isinstance(name, str) or shard_number(name) is None:
        return f"shard name {name!r} is not a plain shard-NNNNNN.tar name inside the folder"
    if not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"]):
        return f"{name}: sha256 {entry.get('sha256')!r} is not 64 hex digits"
    if not _is_count(entry.get("num_samples")):
        return f"{name}: num_samples {entry.get('num_samples')!r} is not a count"
    keys = entry.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return f"{name}: keys is not a list of scene keys"
    return None


def _manifest_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"it is a JSON {type(manifest).__name__}, not an object"
    if not isinstance(manifest.get("shards"), list):
        return "its 'shards' is not a list"
    for field in ("num_complete_shards", "num_complete_scenes", "num_scenes"):
        if field in manifest and not _is_count(manifest[field]):
            return f"its {field} {manifest[field]!r} is not a count"
    for entry in manifest["shards"]:
        if problem := _entry_problem(entry):
            return problem
    names = [entry["name"] for entry in manifest["shards"]]
    if len(set(names)) != len(names):
        return "it lists a shard twice"
    return None


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a dataset folder, checked: one error line when it is missing (`TapforgeError`) or damaged
    (`DamagedManifest`: not JSON, fields of the wrong kind, a shard name that is not a plain name inside the
    folder)."""
    path = out_dir / MANIFEST
    if not out_dir.is_dir():
        raise TapforgeError(f"{out_dir} is not a folder; give a dataset folder written by `tapforge synth render`")
    if not path.is_file():
        raise TapforgeError(
            f"{out_dir} has no {MANIFEST}; fix: give a dataset folder written by `tapforge synth render` "
            "(rerunning the render command that made it rebuilds a lost manifest from the shard records)"
        )
    fix = "rerun `tapforge synth render` with the same config on the folder to rebuild it from the shard records"
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedManifest(f"{path} is not valid JSON ({err}); {fix}") from None
    except OSError as err:
        raise TapforgeError(f"{path} cannot be read ({err.strerror}); fix its permissions") from None
    if problem := _manifest_problem(manifest):
        raise DamagedManifest(f"{path} is damaged or was edited by hand: {problem}; {fix}")
    return manifest


def _listed_path(dataset: Path, entry: dict) -> Path:
    """The file a manifest entry names, refused unless it is a plain shard name inside ``dataset``."""
    if problem := _entry_problem(entry):
        raise DamagedManifest(
            f"{dataset / MANIFEST} is damaged or was edited by hand: {problem}; rerun `tapforge synth render` with "
            "the same config on the folder to rebuild it from the shard records"
        )
    return dataset / entry["name"]


def iter_checked_samples(dataset: Path, entry: dict, decode: Callable[[dict], Any] = decode_clip) -> Iterator[Any]:
    """The samples of the manifest's shard ``entry``, through ``decode``, after checking the shard against the
    manifest's sha256: damaged bytes end in one error naming the shard and the fix, never in wrong data."""
    path = _listed_path(dataset, entry)
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
    """Check the manifest against every shard (presence, sha256, sample count, schema, identity); return problems.

    A missing manifest is an error (not a dataset folder); a damaged one is the one problem returned."""
    try:
        manifest = read_manifest(out_dir)
    except DamagedManifest as err:
        return [str(err)]
    problems = []
    listed = {s["name"] for s in manifest["shards"]}
    for path in sorted(out_dir.glob("shard-*")):
        if shard_number(path.name, path.suffix[1:]) is None:
            problems.append(
                f"{path.name}: not a file tapforge writes (its names are shard-NNNNNN.tar and .json), but a shard "
                "reader's shard-*.tar pattern may read it; move it out of the dataset folder"
            )
        elif path.suffix == ".tar" and path.name not in listed:
            problems.append(f"{path.name}: on disk but not in the manifest; rerun `tapforge synth render` to record it")
    for entry in manifest["shards"]:
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
        except (SchemaError, tarfile.TarError, EOFError) as err:
            problems.append(f"{entry['name']}: unreadable sample ({err}); delete it and rerun the render")
            continue
        keys = [clip.key for clip in clips]
        foreign = [clip.key for clip in clips if clip.meta.get("config_hash") != manifest.get("config_hash")]
        other = [f for f in IDENTITY_FIELDS if f in entry and entry[f] != manifest.get(f)]
        if foreign or entry.get("config_hash") != manifest.get("config_hash"):
            problems.append(
                f"{entry['name']}: made with another config than the manifest's "
                f"({len(foreign)} of {len(clips)} samples); delete it and rerun `tapforge synth render`"
            )
            continue
        if other or dataset_version(entry) != dataset_version(manifest):
            problems.append(
                f"{entry['name']}: made as another dataset than the manifest's "
                f"({', '.join(other) or 'dataset_version'} differ); delete it and rerun `tapforge synth render`"
            )
            continue
        if len(keys) != entry["num_samples"] or keys != entry["keys"]:
            problems.append(f"{entry['name']}: holds {len(keys)} samples, manifest says {entry['num_samples']}")
    return problems
