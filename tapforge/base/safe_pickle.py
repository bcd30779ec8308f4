"""Pickles from data files (TAP-Vid pickles, the official TAP-Net ``checkpoint.npy``), read without running code.

A pickle names the functions that rebuild its objects, so a crafted one can run any command while it loads. This
reader admits only what such data files hold: dicts, lists, tuples, strings, bytes, numbers, booleans, None, and
numpy arrays, dtypes and scalars (under numpy 1's and numpy 2's module names). Anything else is refused before it
is called, with `UnsafePickle` naming it.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from typing import Any, BinaryIO

import numpy as np

# (module, name) pairs a data pickle may name; numpy 2 writes numpy._core where numpy 1 wrote numpy.core
_NUMPY = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
# _codecs.encode: how protocols 0-2 store bytes (it only turns a string into bytes)
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core") for module, name in _NUMPY
}
_DTYPE_CLASSES = "numpy.dtypes"  # numpy 2 pickles a dtype through its class, e.g. numpy.dtypes.Float32DType


class UnsafePickle(pickle.UnpicklingError):
    """The pickle names something a data file may not (its name is the message)."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED and not (module == _DTYPE_CLASSES and name.endswith("DType")):
            raise UnsafePickle(f"{module}.{name}")
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError:  # a numpy 2 pickle read under numpy 1
            return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), name)


def load(file: BinaryIO) -> Any:
    """Unpickle data from an open binary file, admitting only plain data and numpy arrays."""
    return _DataUnpickler(file).load()


def loads(data: bytes) -> Any:
    """Unpickle data from bytes, admitting only plain data and numpy arrays."""
    return load(io.BytesIO(data))


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """An ``.npy`` file, including one that holds pickled objects (``np.save`` of a dict), read with this module's
    unpickler instead of ``np.load(allow_pickle=True)``."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(f)
        if dtype.hasobject:
            return load(f)
        f.seek(0)
        return np.load(f, allow_pickle=False)
