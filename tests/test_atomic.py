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
