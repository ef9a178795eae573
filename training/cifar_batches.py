"""CIFAR-10's python batches, read without trusting them.

The batches are pickles, and `pickle.load` imports and calls whatever a file names: a batch from a stranger could run
any code when read. Here every opcode is read first (pickletools builds nothing), then an unpickler that calls
nothing of numpy's builds stubs, which become arrays of whole numbers no larger than the file's bytes.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np


class _Stub:
    """What a batch's pickle builds instead of calling numpy: the call's arguments and the state given to it, kept
    until _plain_array has checked them."""

    def __init__(self, kind: str, *args):
        self.kind, self.args, self.state = kind, args, None

    def __setstate__(self, state):  # pickle's BUILD
        self.state = state


def _latin1_bytes(text, encoding="latin1"):  # protocol 2's way to pickle bytes: _codecs.encode(text, "latin1")
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    """The CIFAR-10 batches are pickles, and `pickle.load` imports and calls whatever a file names: a batch from a
    stranger could run any code when read. Even numpy's own pickle functions are not safe to call with a stranger's
    arguments (an object-dtype scalar is a pointer read from the file; ndarray((10**9, 3072)) allocates it), so
    none is called: the globals an array needs become stubs, which _plain_array turns into arrays of plain numbers
    no larger than the bytes in the file. Every other global is refused."""

    STUBS = {("numpy", "ndarray"): "ndarray", ("numpy", "dtype"): "dtype",
             ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
             ("numpy._core.numeric", "_frombuffer"): "frombuffer",  # protocol 5
             ("_codecs", "encode"): "encode"}

    def find_class(self, module: str, name: str):
        canonical = module.replace("numpy.core.", "numpy._core.", 1)  # numpy 1 names these modules numpy.core
        kind = self.STUBS.get((canonical, name))
        if kind is None:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a batch of arrays never needs; not "
                                         "loaded (a pickle can run code)")
        # A new function each time: BUILD can set attributes on what it is given, and must not reach a shared one.
        if kind == "encode":
            return lambda *args: _latin1_bytes(*args)
        return lambda *args: _Stub(kind, *args)


# The opcodes a batch of arrays, lists and strings is written with (protocols 0-5, Python 2's too), and bounds that
# no real batch comes near (~30,000 opcodes, ~10 containers, 5 dict items). The C unpickler builds what the opcodes
# say before any of our checks: a tuple nested 200,000 deep crashed it when hashed as a dict key, 20,000 int keys
# that hash alike took minutes to insert, one memo index made it allocate gigabytes, one-byte opcodes made ~60-byte
# objects.
BATCH_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1",
    "BININT2", "LONG1", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "EMPTY_DICT", "DICT", "SETITEM",
    "SETITEMS", "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET",
    "LONG_BINGET"}
CONTAINER_OPCODES = {"EMPTY_DICT", "DICT", "EMPTY_LIST", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"}
MAX_BATCH_OPCODES, MAX_CONTAINERS, MAX_DICT_ITEMS = 100_000, 64, 64


def _check_batch_opcodes(data: bytes) -> None:
    """Read a batch's opcodes (pickletools, which builds nothing) before the unpickler runs them."""
    import pickletools

    memo = containers = dict_items = 0
    since_mark = [0]  # objects pushed since each open MARK: what SETITEMS will take as key/value pairs
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if count >= MAX_BATCH_OPCODES or op.name not in BATCH_OPCODES:
            raise pickle.UnpicklingError(f"opcode {op.name} at #{count:,}: not how a batch of arrays is written"
                                         if count < MAX_BATCH_OPCODES else f"more than {count:,} opcodes")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
            index = int(arg)
            if index > memo or (index == memo and op.name.endswith("GET")):
                raise pickle.UnpicklingError(f"memo index {index:,} at #{count:,}, with {memo:,} entries")
            memo += index == memo
        memo += op.name == "MEMOIZE"
        containers += op.name in CONTAINER_OPCODES
        if op.name == "MARK":
            since_mark.append(0)
            continue
        before = [item for item in op.stack_before if item not in (pickletools.markobject, pickletools.stackslice)]
        if pickletools.markobject in op.stack_before:
            taken = since_mark.pop() if len(since_mark) > 1 else 0
            dict_items += taken // 2 if op.name in ("SETITEMS", "DICT") else 0
        dict_items += op.name == "SETITEM"
        since_mark[-1] += len(op.stack_after) - len(before)
        if containers > MAX_CONTAINERS or dict_items > MAX_DICT_ITEMS:
            raise pickle.UnpicklingError(f"more than {MAX_CONTAINERS} containers or {MAX_DICT_ITEMS} dict items")


MAX_BATCH_BYTES = 64 * 2**20  # the unpickled arrays are views of the bytes read: a file's size is its memory
PLAIN_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"}  # whole numbers: pixels and labels


def _plain_array(value) -> np.ndarray:
    """The array a stub stands for: numpy's (raw bytes, dtype, shape) checked, then a view of the bytes."""
    if not isinstance(value, _Stub) or value.kind not in ("reconstruct", "frombuffer"):
        raise ValueError(f"expected a numpy array, found {type(value).__name__}")
    if value.kind == "reconstruct":  # _reconstruct(ndarray, (0,), b"b"), then BUILD (1, shape, dtype, fortran, raw)
        if not (isinstance(value.state, tuple) and len(value.state) == 5):
            raise ValueError("malformed array")
        _, shape, dtype, fortran, raw = value.state
    else:  # _frombuffer(raw, dtype, shape, order)
        if len(value.args) != 4:
            raise ValueError("malformed array")
        raw, dtype, shape, order = value.args
        fortran = order == "F"
    if not (isinstance(dtype, _Stub) and dtype.kind == "dtype" and dtype.args and dtype.args[0] in PLAIN_DTYPES):
        raise ValueError("only arrays of whole numbers (uint8 pixels, integer labels) are read")
    byte_order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "|"
    if byte_order not in ("|", "<", ">", "="):
        raise ValueError("malformed dtype")
    raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2's str, read with latin1
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError("malformed array data")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError("malformed array shape")
    array = np.frombuffer(raw, np.dtype(dtype.args[0]).newbyteorder("=" if byte_order == "|" else byte_order))
    return array.reshape(shape, order="F" if fortran else "C")  # its size must be the bytes' (else ValueError)


def _labels(value) -> np.ndarray:
    """A flat list of whole numbers (np.asarray of nested lists would build a block of every combination)."""
    if isinstance(value, list) and all(type(v) is int for v in value):
        return np.asarray(value, dtype=np.int64)
    labels = _plain_array(value)
    if labels.ndim != 1:
        raise ValueError(f"labels of shape {labels.shape}")
    return labels.astype(np.int64)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch, without md5 checks (re-packed or partial batches load too).

    The original files are Python 2 pickles (str keys, read as "data" with latin1); batches re-packed from Python 3
    often have bytes keys (b"data"), as the CIFAR web page's `pickle.load(f, encoding="bytes")` returns them.
    """
    if path.stat().st_size > MAX_BATCH_BYTES:
        raise ValueError(f"{path.stat().st_size:,} bytes; a CIFAR-10 batch is ~31 MB, at most {MAX_BATCH_BYTES:,} "
                         "are read")
    data = path.read_bytes()
    _check_batch_opcodes(data)
    entry = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    if not isinstance(entry, dict):
        raise ValueError(f"a batch is a dict, not a {type(entry).__name__}")
    entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    labels = _labels(entry["labels"] if "labels" in entry else entry["fine_labels"])
    data = _plain_array(entry["data"])
    if data.dtype != np.uint8 or data.ndim < 1 or data.size != len(data) * 3 * 32 * 32:
        raise ValueError(f"data must be uint8 rows of 3,072 pixels, not {data.dtype} of shape {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return images, labels
