"""Atomic file writes shared by every package (stdlib only): readers never see a half-written file.

Also what a command checks before its work: that its output paths can be written (`check_output_file`,
`check_output_folder`), and the temporaries a killed run of it left (`remove_stale_temporaries`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from typing import Callable, Mapping

from tapforge.base.errors import TapforgeError

TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
"""The temporaries `atomic_write` makes beside ``NAME``: ``.NAME.XXXXXXXX.tmp`` (plus ``.EXT`` when the writer needs
the real suffix), XXXXXXXX being tempfile's random characters."""


def _umask() -> int:
    """The process umask; read from /proc where there is one (setting it to read it races with other threads)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> str:
    """Call ``write(tmp)`` on a temporary name beside ``path``, fsync it, then rename it into place.

    ``suffix`` (``.tmp`` or ``.tmp.EXT``) ends the temporary name (writers that pick a format by extension need the
    real one); a killed process leaves the temporary behind, named as ``TEMPORARY_NAME`` says.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600: give it the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporaries that a killed `atomic_write` of ``path`` left beside it; returns their paths.

    The last part of ``path`` may be a glob pattern (``DIR/shard-*.tar``). Call it where one run owns the output, at
    its start (as ``synth render`` does for its shards): a writer of the same path still running would lose its file.
    """
    folder, pattern = os.path.split(os.path.abspath(os.fspath(path)))
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:  # no folder yet: nothing was left
        return removed
    for name in names:
        match = TEMPORARY_NAME.match(name)
        if match and fnmatch.fnmatchcase(match.group("name"), pattern):
            stale = os.path.join(folder, name)
            try:
                os.remove(stale)
            except FileNotFoundError:
                continue
            removed.append(stale)
    return removed


def check_output_file(
    path: str | os.PathLike, flag: str, inputs: Mapping[str, str | os.PathLike | None] | None = None
) -> str:
    """Refuse, with one TapforgeError line naming ``flag``, an output file that could not be written after the work.

    Refused: an existing folder or other non-regular file (a device) at ``path``; a parent folder that is missing,
    a file, or not writable; ``path`` being one of the command's ``inputs`` (what it is -> its path, e.g.
    ``{"the input video": args.video}``). Returns the absolute path.
    """
    shown = os.fspath(path)
    path = os.path.abspath(shown)
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise TapforgeError(
            f"{flag} {shown} is an existing folder, not a file; fix: name a file, e.g. {os.path.join(shown, 'NAME')}"
        )
    if os.path.lexists(path) and not os.path.isfile(path):
        raise TapforgeError(f"{flag} {shown} exists and is not a regular file; fix: name another file")
    existing = _nearest_existing(parent)
    if not os.path.isdir(existing):
        raise TapforgeError(f"{flag} {shown}: {existing} is a file, not a folder; fix: name another path")
    if existing != parent:
        raise TapforgeError(
            f"{flag} {shown}: its folder {parent} does not exist; fix: create it first (mkdir -p {parent}) "
            "or name a file in an existing folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TapforgeError(f"{flag} {shown}: cannot write in {parent} (permission); fix: name a folder you can write")
    for what, given in (inputs or {}).items():
        given = None if given is None else os.path.abspath(os.fspath(given))
        if given == path or (
            given and os.path.isfile(path) and os.path.exists(given) and os.path.samefile(given, path)
        ):
            raise TapforgeError(f"{flag} {shown} is {what}, an input of this command; fix: write to another file")
    return path


def check_output_folder(path: str | os.PathLike, flag: str) -> str:
    """Refuse, with one TapforgeError line naming ``flag``, an output folder that could not be made or written: a file
    at ``path`` or at one of its parents, or a folder without write permission. Missing folders are fine (the
    command creates them). Returns the absolute path."""
    shown = os.fspath(path)
    path = os.path.abspath(shown)
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        where = "it" if existing == path else existing
        raise TapforgeError(f"{flag} {shown}: {where} is a file, not a folder; fix: name a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TapforgeError(
            f"{flag} {shown}: cannot write in {existing} (permission); fix: name a folder you can write"
        )
    return path


def _nearest_existing(path: str) -> str:
    """``path`` itself if it exists, else its nearest existing parent (a file, where one stands in the way)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
