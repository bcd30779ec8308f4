"""Atomic writes: the file appears whole, with the mode a plain open() would give under the umask."""

import os
import stat

import pytest

from tapforge.base.atomic import atomic_write_bytes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "manifest.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert open(path, "rb").read() == b"{}" and os.listdir(tmp_path) == ["manifest.json"]  # no temporary left


def test_a_killed_writes_temporaries_are_removed_and_nothing_else(tmp_path):
    from tapforge.base.atomic import TEMPORARY_NAME, atomic_write, remove_stale_temporaries

    made = []
    for suffix in (".tmp", ".tmp.mp4"):  # the names atomic_write really makes are the ones cleaned
        atomic_write(
            tmp_path / "a.mp4", lambda tmp: made.append(os.path.basename(tmp)) or open(tmp, "wb").close(), suffix
        )
    assert all(TEMPORARY_NAME.match(name).group("name") == "a.mp4" for name in made)
    stale = made + [".a.mp4.k2j4_9zq.tmp.mp4", ".shard-000001.tar.0a1b2c3d.tmp"]
    kept = ["a.mp4", ".a.mp4.tmp", "a.mp4.abcdefgh.tmp", ".b.mp4.abcdefgh.tmp", ".a.mp4.abc.tmp", "notes.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")  # as a SIGKILL leaves them
    removed = remove_stale_temporaries(tmp_path / "a.mp4") + remove_stale_temporaries(tmp_path / "shard-*.tar")
    assert sorted(os.path.basename(p) for p in removed) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing" / "x.json") == []


def _output_cases(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    return {
        "an existing folder": (tmp_path / "folder", "is an existing folder, not a file"),
        "a file as its folder": (tmp_path / "afile" / "out.json", "afile is a file, not a folder"),
        "a file further up": (tmp_path / "afile" / "sub" / "out.json", "afile is a file, not a folder"),
        "a missing folder": (tmp_path / "nowhere" / "out.json", "nowhere does not exist; fix: create it first"),
        "a device": ("/dev/null", "exists and is not a regular file"),
        "an input": (tmp_path / "in.pkl", "is the input data, an input of this command"),
    }


@pytest.mark.parametrize(
    "case",
    ["an existing folder", "a file as its folder", "a file further up", "a missing folder", "a device", "an input"],
)
def test_output_files_that_could_not_be_written_are_one_line(tmp_path, case):
    from tapforge.base.atomic import check_output_file
    from tapforge.base.errors import TapforgeError

    path, message = _output_cases(tmp_path)[case]
    (tmp_path / "in.pkl").write_bytes(b"x")
    with pytest.raises(TapforgeError, match=message) as err:
        check_output_file(path, "--json", {"the input data": tmp_path / "in.pkl"})
    assert str(err.value).startswith(f"--json {path}") and "\n" not in str(err.value)
    assert check_output_file(tmp_path / "ok.json", "--json") == str(tmp_path / "ok.json")


@pytest.mark.parametrize("under", ["afile", "afile/sub", "afile/sub/deeper"])
def test_output_folders_under_a_file_are_one_line(tmp_path, under):
    from tapforge.base.atomic import check_output_folder
    from tapforge.base.errors import TapforgeError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(TapforgeError, match="is a file, not a folder") as err:
        check_output_folder(tmp_path / under, "--out")
    assert "\n" not in str(err.value)
    assert check_output_folder(tmp_path / "new" / "deeper", "--out") == str(tmp_path / "new" / "deeper")
