"""Data pickles are read without running code (tapforge.base.safe_pickle), and every reader of one uses it."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from tapforge.base import safe_pickle
from tapforge.base.errors import TapforgeError


class RunsACommand:
    """What an attacker pickles: unpickling calls os.system with a command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Subclass(np.ndarray):
    pass


def test_plain_data_and_numpy_arrays_round_trip():
    data = {
        "video": np.zeros((2, 4, 4, 3), np.uint8),
        "points": np.random.default_rng(0).random((3, 2, 2)).astype(np.float32),
        "occluded": np.zeros((3, 2), bool),
        "frames": [b"\xff\xd8jpeg", b"\xff\xd8"],
        "meta": OrderedDict(name="clip", fps=12.5, ok=True, none=None, scalar=np.float64(1.5), shape=(1, 2)),
        "objects": np.array([{"a": 1}, [2, 3]], dtype=object),
    }
    for protocol in (2, 4, 5):
        loaded = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
        assert loaded.keys() == data.keys() and loaded["meta"] == data["meta"]
        for key in ("video", "points", "occluded"):
            assert loaded[key].dtype == data[key].dtype and np.array_equal(loaded[key], data[key])
        assert loaded["objects"].tolist() == [{"a": 1}, [2, 3]]


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: RunsACommand(marker),
        lambda marker: {"video": [RunsACommand(marker)]},  # nested
        lambda marker: np.array([RunsACommand(marker)], dtype=object),  # inside an object array
        lambda marker: Subclass((1,)),  # an ndarray subclass is a class of the file's choosing
    ],
)
def test_anything_else_is_refused_before_it_runs(tmp_path, payload):
    marker = tmp_path / "ran"
    with pytest.raises(safe_pickle.UnsafePickle):
        safe_pickle.loads(pickle.dumps(payload(marker)))
    assert not marker.exists()


def test_tapvid_reader_refuses_a_pickle_that_runs_a_command(tmp_path):
    from tapforge.tapir.tapvid import load_tapvid_pickle

    marker, path = tmp_path / "ran", tmp_path / "davis.pkl"
    path.write_bytes(pickle.dumps({"v": {"video": RunsACommand(marker), "points": 0, "occluded": 0}}))
    with pytest.raises(TapforgeError, match=r"names posix\.system, which a data file may not.*nothing in it was run"):
        load_tapvid_pickle(path)
    assert not marker.exists()


def test_tapnet_npy_reader_refuses_a_pickle_that_runs_a_command(tmp_path):
    from tapforge.tapir.tapnet import load_tapnet_checkpoint

    marker, path = tmp_path / "ran", tmp_path / "checkpoint.npy"
    np.save(path, np.array({"params": RunsACommand(marker), "state": {}}, dtype=object), allow_pickle=True)
    with pytest.raises(TapforgeError, match=r"names posix\.system, which a checkpoint may not"):
        load_tapnet_checkpoint(path)
    assert not marker.exists()


def test_npy_files_of_plain_arrays_and_of_dicts_load(tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(6).reshape(2, 3))
    np.save(tmp_path / "dict.npy", np.array({"params": {"w": np.ones(3)}}, dtype=object), allow_pickle=True)
    assert safe_pickle.load_npy(tmp_path / "plain.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert safe_pickle.load_npy(tmp_path / "dict.npy").item()["params"]["w"].tolist() == [1.0, 1.0, 1.0]
