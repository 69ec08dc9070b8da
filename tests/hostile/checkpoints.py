"""Hostile checkpoint files, made at run time from pickle opcodes, hand-written zips and torch.save.

``checkpoint_cases()`` returns ``Case(name, content, expect)``: ``name`` is the file name (its extension is what
a user would see), ``content`` is the file's bytes or a function that writes it to a given path (for files
that need torch or take a moment to make), and ``expect`` is a fragment of the one-line error that reading it
must give. Each case is small (at most ~1.1 MB) but, read naively, crashes the process, allocates gigabytes,
recurses or runs code; read by ``read_checkpoint`` it must end in one ``CheckpointError`` line.
"""

from __future__ import annotations

import pickle
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

P = pickle  # opcode constants: P.MARK, P.TUPLE, ...


class Case(NamedTuple):
    name: str
    content: bytes | Callable[[Path], None]
    expect: str


def write_case(case: Case, directory: Path) -> Path:
    path = Path(directory) / case.name
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        case.content(path)
    return path


# --- pickle opcodes --------------------------------------------------------------------------------------


def _int(i: int) -> bytes:
    if 0 <= i < 256:
        return P.BININT1 + bytes([i])
    if -2**31 <= i < 2**31:
        return P.BININT + struct.pack("<i", i)
    raw = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return P.LONG1 + bytes([len(raw)]) + raw


def _str(s: str) -> bytes:
    raw = s.encode()  # BINUNICODE, not SHORT_BINUNICODE: torch's unpickler knows only the former
    return P.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _bytes(b: bytes) -> bytes:
    return P.SHORT_BINBYTES + bytes([len(b)]) + b if len(b) < 256 else P.BINBYTES + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def _tuple(*items: bytes) -> bytes:
    return P.MARK + b"".join(items) + P.TUPLE


def _call(func: bytes, *args: bytes) -> bytes:
    return func + _tuple(*args) + P.REDUCE


def _put(i: int) -> bytes:
    return P.LONG_BINPUT + struct.pack("<I", i)


def _get(i: int) -> bytes:
    return P.LONG_BINGET + struct.pack("<I", i)


def _pickle(body: bytes, proto: int = 4) -> bytes:
    return P.PROTO + bytes([proto]) + body + P.STOP


def _model(value: bytes) -> bytes:
    """A pickle of ``{"model": {"w": value}}`` (protocol 2 opcodes only, which torch's unpickler reads too)."""
    return _pickle(P.EMPTY_DICT + _str("model") + P.EMPTY_DICT + _str("w") + value + P.SETITEM + P.SETITEM, 2)


_NDARRAY = _global("numpy", "ndarray")
_STANDARD_DTYPE_STATE = (_int(3), _str("<"), P.NONE, P.NONE, P.NONE, _int(-1), _int(-1), _int(0))


def _dtype(code: str, state: tuple[bytes, ...] | None = _STANDARD_DTYPE_STATE) -> bytes:
    made = _call(_global("numpy", "dtype"), _str(code), P.NEWFALSE, P.NEWTRUE)
    return made if state is None else made + _tuple(*state) + P.BUILD


def _array(shape: tuple[int, ...] | bytes, dtype: bytes, raw: bytes) -> bytes:
    """numpy's own protocol: ``_reconstruct(ndarray, (0,), b"b")`` then BUILD ``(1, shape, dtype, False, raw)``."""
    empty = _call(_global("numpy.core.multiarray", "_reconstruct"), _NDARRAY, _tuple(_int(0)), _bytes(b"b"))
    shape = shape if isinstance(shape, bytes) else _tuple(*map(_int, shape))
    return empty + _tuple(_int(1), shape, dtype, P.NEWFALSE, raw) + P.BUILD


# --- .pth files ------------------------------------------------------------------------------------------


def _zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip of (name, stored payload, uncompressed size, crc32, method) entries, written by hand so that a
    payload can be a pre-made deflate stream."""
    body, central = b"", b""
    for name, payload, size, crc, method in entries:
        raw_name = name.encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(payload), size,
                               len(raw_name), 0, 0, 0, 0, 0, len(body)) + raw_name
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(payload), size,
                            len(raw_name), 0) + raw_name + payload
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(body), 0)
    return body + central + end


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, len(data), zlib.crc32(data), 0


def _torch_zip(data_pkl: bytes, records: dict[str, tuple[str, bytes, int, int, int]] | None = None) -> bytes:
    """The layout torch.save writes: archive/data.pkl, byteorder, version and one record per storage."""
    entries = [_stored("archive/data.pkl", data_pkl), _stored("archive/byteorder", b"little"),
               *(records or {}).values(), _stored("archive/version", b"3\n")]
    return _zip(entries)


def _tensor_pkl(numel: int) -> bytes:
    """torch.save's data.pkl of ``{"model": {"w": float32 tensor of numel elements in storage "0"}}``."""
    storage = _tuple(_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"), _int(numel))
    tensor = _call(_global("torch._utils", "_rebuild_tensor_v2"), storage + P.BINPERSID, _int(0),
                   _tuple(_int(numel)), _tuple(_int(1)), P.NEWFALSE, _call(_global("collections", "OrderedDict")))
    return _model(tensor)


def _zip_bomb(path: Path, gib: int = 1) -> None:
    # Deflate resets after a full flush, so one compressed MiB of zeros repeats: 1 GiB in ~1 MB of file.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = bytes(1 << 20)
    block = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(mib, crc)
    size = (1 << 30) * gib
    record = ("archive/data/0", block * (1024 * gib) + deflate.flush(), size, crc, 8)
    path.write_bytes(_torch_zip(_tensor_pkl(size // 4), {"0": record}))


def _torch_save(make: Callable[[], object]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized, sparse CSR and nested tensor creation notices
            torch.save({"model": {"w": make()}}, path)
    return write


def _pickled(make: Callable[[], object]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(pickle.dumps({"model": {"w": make()}}, protocol=4))
    return write


def _out_of_band(path: Path) -> None:
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(4, "f4")}}, protocol=5, buffer_callback=lambda b: False))


def _deep_tuple(depth: int) -> bytes:
    return P.EMPTY_TUPLE + P.TUPLE1 * depth


def _deep_lists(depth: int) -> bytes:
    return P.MARK * depth + P.LIST * depth


def _aliased_lists(depth: int) -> bytes:
    """Lists nested ``depth`` deep through the memo (L0.append(L1), L1.append(L2), ...), so no single opcode
    nests: ``(tuple of the lists, list of what the appends left on the stack)``."""
    made = P.MARK + b"".join(P.EMPTY_LIST + _put(i) for i in range(depth)) + P.TUPLE
    linked = P.EMPTY_LIST + P.MARK + b"".join(_get(i) + _get(i + 1) + P.APPEND for i in range(depth - 1)) + P.APPENDS
    return P.MARK + made + linked + P.TUPLE


def _raw_reused(count: int = 4096, raw_size: int = 256 << 10) -> bytes:
    """One 256 KiB buffer in the memo, made into 4096 arrays: 1 GiB of arrays from a 0.4 MB file."""
    arrays = _array((raw_size // 4,), _dtype("f4") + _put(1), _bytes(bytes(raw_size)) + _put(0))
    for _ in range(count - 1):
        arrays += _array((raw_size // 4,), _get(1), _get(0))
    return _pickle(P.EMPTY_DICT + _str("model") + P.EMPTY_LIST + P.MARK + arrays + P.APPENDS + P.SETITEM)


def _ordered_dict_copies(pairs: int = 20_000, copies: int = 2_000) -> bytes:
    """OrderedDict(list of 20k pairs) called 2000 times on the same memoised list: 40M dict entries."""
    items = P.EMPTY_LIST + P.MARK + b"".join(_tuple(_int(i), P.NONE) for i in range(pairs)) + P.APPENDS + _put(0)
    od = _global("collections", "OrderedDict") + _put(1)
    calls = b"".join(_get(1) + _tuple(_get(0)) + P.REDUCE for _ in range(copies))
    return _pickle(P.EMPTY_DICT + _str("model") + P.EMPTY_LIST + items + P.POP + od + P.POP + P.MARK + calls
                   + P.APPENDS + P.SETITEM)


def _encode_copies(copies: int = 8192, size: int = 256 << 10) -> bytes:
    """_codecs.encode of one memoised 256 KiB string, 8192 times: 2 GiB of bytes."""
    text = _str("a" * size) + _put(0)
    calls = b"".join(_call(_global("_codecs", "encode"), _get(0), _str("latin1")) for _ in range(copies))
    return _pickle(P.EMPTY_DICT + _str("model") + P.EMPTY_LIST + text + P.POP + P.MARK + calls + P.APPENDS
                   + P.SETITEM)


def checkpoint_cases() -> list[Case]:
    """Every hostile checkpoint, with a fragment of the error each must give."""
    f4, o8 = _dtype("f4"), _dtype("O8")
    pointers = _bytes(b"\x41" * 8)  # 0x4141414141414141: what numpy would incref as a PyObject*
    return [
        # issue 22, item 1: numpy's own callables with chosen arguments make object arrays over raw bytes.
        Case("ndarray_newobj_object_array.pkl",
             _model(_NDARRAY + _tuple(_tuple(_int(1)), o8, pointers) + P.NEWOBJ), "Python objects"),
        Case("ndarray_newobj_float_array.pkl",
             _model(_NDARRAY + _tuple(_tuple(_int(2)), f4, pointers) + P.NEWOBJ), "NEWOBJ"),
        Case("ndarray_call_object_array.pkl",
             _model(_call(_NDARRAY, _tuple(_int(1)), o8, pointers)), "Python objects"),
        Case("dtype_object_flags_cleared.pkl",
             _model(_array((1,), _dtype("O8", (_int(3), _str("|"), P.NONE, P.NONE, P.NONE, _int(-1), _int(-1),
                                               _int(0))), pointers)), "Python objects"),
        Case("dtype_numeric_flags_forged.pkl",
             _model(_array((1,), _dtype("f8", (_int(3), _str("<"), P.NONE, P.NONE, P.NONE, _int(-1), _int(-1),
                                               _int(63))), pointers)), "unexpected state on dtype"),
        Case("dtype_state_set_twice.pkl",
             _model(_array((1,), f4 + _tuple(*_STANDARD_DTYPE_STATE) + P.BUILD, _bytes(bytes(4)))), "twice"),
        Case("dtype_itemsize_forged.pkl",
             _model(_array((1,), _dtype("f4", (_int(3), _str("<"), P.NONE, P.NONE, P.NONE, _int(1 << 20),
                                               _int(-1), _int(0))), _bytes(bytes(4)))), "unexpected state"),
        Case("reconstruct_other_type.pkl",
             _model(_call(_global("numpy._core.multiarray", "_reconstruct"), _global("numpy", "dtype"),
                          _tuple(_int(0)), _bytes(b"b"))), "_reconstruct"),
        Case("scalar_object.pkl",
             _model(_call(_global("numpy.core.multiarray", "scalar"), o8, pointers)), "Python objects"),
        Case("object_array.pkl", _pickled(lambda: np.array([1, "a"], dtype=object)), "Python objects"),
        Case("string_array.pkl", _pickled(lambda: np.array(["ab", "cd"])), "strings"),
        Case("structured_array.pkl", _pickled(lambda: np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])), "raw records"),
        Case("datetime_array.pkl", _pickled(lambda: np.array(["2020-01-01"], dtype="datetime64[D]")), "dates"),
        Case("longdouble_array.pkl", _pickled(lambda: np.ones(3, dtype=np.longdouble)), "PyTorch cannot hold"),
        # issue 22, item 12: small files that drive big allocations.
        Case("ndarray_call_huge.pkl", _model(_call(_NDARRAY, _tuple(_int(1 << 30)), f4)), "numpy.ndarray"),
        Case("ndarray_newobj_huge.pkl", _model(_NDARRAY + _tuple(_tuple(_int(1 << 30)), f4) + P.NEWOBJ), "NEWOBJ"),
        Case("huge_shape_small_file.pkl", _model(_array((1 << 30,), f4, _bytes(bytes(4)))), "needs"),
        Case("negative_shape.pkl", _model(_array((-1, 4), f4, _bytes(bytes(16)))), "negative dimension"),
        Case("shape_product_overflow.pkl", _model(_array((1 << 40, 1 << 40, 0), f4, _bytes(b""))), "far too large"),
        Case("shape_bigint_dim.pkl", _model(_array((1 << 200,), f4, _bytes(b""))), "far too large"),
        Case("shape_not_ints.pkl", _model(_array(_tuple(P.BINFLOAT + struct.pack(">d", 1.0)), f4, _bytes(bytes(4)))),
             "not a tuple"),
        Case("array_raw_reused.pkl", _raw_reused(), "add up to more bytes"),
        Case("ordered_dict_copies.pkl", _ordered_dict_copies(), "dict items"),
        Case("encode_copies.pkl", _encode_copies(), "decodes more bytes"),
        Case("many_operations.pkl", _pickle(P.MARK + P.NONE * 600_000 + P.LIST), "operations"),
        # just under the operation cap: the most memory a pickle can make us spend on objects.
        Case("many_empty_sets.pkl", _model(P.MARK + P.EMPTY_SET * 99_900 + P.LIST), "is a list, not an array"),
        Case("bytearray8_huge_length.pkl", _pickle(P.BYTEARRAY8 + struct.pack("<Q", 1 << 40), proto=5), "declares"),
        Case("binbytes8_huge_length.pkl", _pickle(P.BINBYTES8 + struct.pack("<Q", 1 << 40)), "not a readable"),
        Case("memo_huge_index.pkl", _pickle(P.EMPTY_DICT + _put(0xFFFFFFF0)), "no model weights"),
        Case("memo_missing_entry.pkl", _model(_get(7)), "not a readable pickle"),
        # deep nesting: hashing a deep tuple (a dict key) overflows the C stack; deep containers break any
        # recursive consumer.
        # 400k deep: what crashes plain unpicklers; refused here by the operation cap before it is built.
        Case("deep_tuple_key.pkl", _pickle(P.EMPTY_DICT + _deep_tuple(400_000) + P.NONE + P.SETITEM), "operations"),
        Case("deep_tuple_value.pkl", _model(_deep_tuple(400_000)), "operations"),
        # ... and the rules themselves, on nesting within the cap
        Case("nested_tuple_key.pkl", _pickle(P.EMPTY_DICT + _deep_tuple(150) + P.NONE + P.SETITEM), "dict key"),
        Case("nested_tuple_value.pkl", _model(_deep_tuple(150)), "nested deeper"),
        Case("deep_lists.pkl", _model(_deep_lists(30_000)), "nested deeper"),
        Case("deep_aliased_lists.pkl", _model(_aliased_lists(10_000)), "nested deeper"),
        Case("cycle.pkl", _model(P.EMPTY_LIST + _put(0) + _get(0) + P.APPEND), "holds itself"),
        # opcodes and globals a weights file never needs.
        Case("os_system.pkl", _model(_call(_global("os", "system"), _str("true"))), "os.system"),
        Case("build_on_dict.pkl", _model(P.EMPTY_DICT + P.EMPTY_DICT + P.BUILD), "sets the state of a dict"),
        Case("reduce_on_value.pkl", _model(P.EMPTY_DICT + P.EMPTY_TUPLE + P.REDUCE), "calls a dict"),
        Case("ext_opcode.pkl", _model(P.EXT1 + b"\x01"), "EXT1"),
        Case("out_of_band_buffer.pkl", _out_of_band, "NEXT_BUFFER"),
        # .pth (torch.load) contents
        Case("zip_bomb.pth", _zip_bomb, "zip bomb"),
        Case("sparse_tensor.pth", _torch_save(lambda: torch.eye(3).to_sparse()), "model/w is a sparse_coo tensor"),
        Case("sparse_csr_tensor.pth", _torch_save(lambda: torch.eye(3).to_sparse_csr()), "sparse_csr tensor"),
        Case("quantized_tensor.pth",
             _torch_save(lambda: torch.quantize_per_tensor(torch.zeros(4), 0.1, 0, torch.qint8)), "quantized tensor"),
        Case("meta_tensor.pth", _torch_save(lambda: torch.zeros(1 << 20, device="meta")), "meta tensor"),
        Case("nested_tensor.pth",
             _torch_save(lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])), "nested tensor"),
        Case("numpy_string_array.pth", _torch_save(lambda: np.array(["ab", "cd"])), "holds more than weights"),
        Case("string_weight.pth", _torch_save(lambda: "hello"), "is a str"),
        # one stored element expanded (stride 0) to 4 GiB if anything materialises it
        Case("expanded_tensor.pth", _torch_save(lambda: torch.zeros(1).expand(1 << 30)), "more than the file holds"),
        Case("deep_tuple_key.pth",
             _torch_zip(_pickle(P.EMPTY_DICT + _deep_tuple(1_000_000) + P.NONE + P.SETITEM, proto=2)),
             "nested deeper"),
        Case("deep_aliased_lists.pth", _torch_zip(_model(_aliased_lists(5_000))), "nested deeper"),
        Case("many_operations.pth", _torch_zip(_pickle(P.MARK + P.NONE * 600_000 + P.TUPLE, proto=2)),
             "operations"),
        Case("storage_larger_than_record.pth",
             _torch_zip(_tensor_pkl(1 << 28), {"0": _stored("archive/data/0", bytes(16))}), "not a readable"),
    ]
