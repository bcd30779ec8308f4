"""Shard lists and robust shard reading for training.

Shards are given as local folders (every ``shard-*.tar`` inside), files, globs, brace patterns
(``shard-{000000..000099}.tar``) or remote URLs. Remote URLs open through WebDataset's own
routes (``http(s)://``, ``gs://``, ``pipe:...``) and, for any other scheme fsspec knows
(``s3://``, ``gcs://``, ``az://``, ``hf://`` ...), through fsspec.

A shard that cannot be opened or read to the end is skipped and counted (``on_corrupt="skip"``)
or stops the run with a :class:`~tapforge.base.errors.TapforgeError` (``on_corrupt="fail"``).
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlparse

import braceexpand
from webdataset.gopen import gopen, gopen_schemes
from webdataset.tariterators import group_by_keys, tar_file_expander

from tapforge.base.errors import TapforgeError

log = logging.getLogger(__name__)

ON_CORRUPT = ("skip", "fail")
_GLOB_CHARS = set("*?[")


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than ``file`` (Windows drive letters are local)."""
    scheme = urlparse(url).scheme
    return len(scheme) > 1 and scheme != "file"


def _remote_glob(pattern: str) -> list[str]:
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(pattern)
    return sorted(fs.unstrip_protocol(p) for p in paths)


def expand_shards(spec: str | Sequence[str] | None, key: str = "data.train_shards") -> list[str]:
    """Turn a shard spec (or a list of them) into the sorted list of shard URLs it names.

    Raises TapforgeError naming ``key`` when the spec is empty or matches nothing.
    """
    items = [spec] if isinstance(spec, str) else list(spec or [])
    if not items:
        raise TapforgeError(f"{key} is empty; fix: set {key} to a shard folder, file, glob, brace pattern or URL")
    urls: list[str] = []
    for item in items:
        item = os.path.expanduser(str(item))
        found: list[str] = []
        for part in braceexpand.braceexpand(item):
            if is_remote(part):
                found += _remote_glob(part) if _GLOB_CHARS & set(part) else [part]
            elif os.path.isdir(part):
                found += sorted(glob.glob(os.path.join(part, "shard-*.tar")))
            elif _GLOB_CHARS & set(part):
                found += sorted(glob.glob(part))
            elif os.path.isfile(part):
                found.append(part)
        if not found:
            raise TapforgeError(
                f"{key}: {item!r} matches no shard; fix: point {key} at a folder of shard-*.tar files, "
                "a .tar file, a glob, a brace pattern or a URL"
            )
        urls += found
    return urls


def open_shard(url: str):
    """Open a shard for reading: local path, a WebDataset URL scheme, or any fsspec protocol."""
    scheme = urlparse(url).scheme
    if is_remote(url) and scheme not in gopen_schemes:
        import fsspec

        return fsspec.open(url, "rb").open()
    return gopen(url, "rb")


class CorruptShardHandler:
    """Exception handler for the tar readers: logs, counts, and either skips or fails.

    ``bad_shards`` and ``bad_samples`` count distinct damaged shards and samples (a resampled stream meets
    the same damaged shard again and again; it is logged and counted once).
    """

    def __init__(self, on_corrupt: str = "skip", max_consecutive: int | None = None):
        if on_corrupt not in ON_CORRUPT:
            raise TapforgeError(f"data.on_corrupt is {on_corrupt!r}; fix: use one of {', '.join(ON_CORRUPT)}")
        self.on_corrupt = on_corrupt
        self.max_consecutive = max_consecutive
        self.damaged_shards: set[str] = set()
        self.damaged_samples: set[tuple[str, str]] = set()
        self.consecutive = 0  # bad shard reads since the last good sample

    @property
    def bad_shards(self) -> int:
        return len(self.damaged_shards)

    @property
    def bad_samples(self) -> int:
        return len(self.damaged_samples)

    def shard_error(self, exn: Exception) -> bool:
        """Called by the WebDataset readers; True means carry on with the next shard."""
        self.consecutive += 1
        where = next((a for a in reversed(exn.args) if isinstance(a, str)), "a shard")
        message = f"shard {where} is unreadable ({type(exn).__name__}: {exn.args[0] if exn.args else exn})"
        if self.on_corrupt == "fail":
            raise TapforgeError(f"{message}; fix: re-create it (tapforge synth verify DIR) or set data.on_corrupt=skip")
        if self.max_consecutive is not None and self.consecutive > self.max_consecutive:
            raise TapforgeError(
                f"{self.consecutive} shard reads in a row failed (last: {message}); "
                "fix: check that the shard paths/URLs are readable from every node"
            )
        if where not in self.damaged_shards:
            self.damaged_shards.add(where)
            log.warning("%s; skipped (%d bad shards so far)", message, self.bad_shards)
        return True

    def sample_error(self, key: str, url: str, err: Exception) -> None:
        """A sample that does not follow the shard schema: skip and count, or fail."""
        message = f"sample {key!r} in {url} is damaged ({err})"
        if self.on_corrupt == "fail":
            raise TapforgeError(
                f"{message}; fix: re-create the shard (tapforge synth verify DIR) or set data.on_corrupt=skip"
            )
        if (url, key) not in self.damaged_samples:
            self.damaged_samples.add((url, key))
            log.warning("%s; skipped (%d bad samples so far)", message, self.bad_samples)


def read_samples(urls: Iterable[str], handler: CorruptShardHandler) -> Iterator[dict]:
    """Raw WebDataset samples (entry name -> bytes, plus ``__key__`` and ``__url__``) from shards."""

    def opened() -> Iterator[dict]:
        for url in urls:
            try:
                yield {"url": url, "stream": open_shard(url)}
            except Exception as exn:  # noqa: BLE001 - any failure to open is a bad shard
                exn.args = exn.args + (url,)
                handler.shard_error(exn)

    for sample in group_by_keys(tar_file_expander(opened(), handler=handler.shard_error), handler=handler.shard_error):
        handler.consecutive = 0
        yield sample


def split_urls(urls: Sequence[str], part: int, num_parts: int) -> list[str]:
    """This part's share of the shards (every ``num_parts``-th); all of them if there are too few."""
    if len(urls) < num_parts:
        return list(urls)
    return list(urls[part::num_parts])
