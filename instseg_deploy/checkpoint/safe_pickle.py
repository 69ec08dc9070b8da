"""A pickle reader that can only build plain containers and numeric numpy arrays.

detectron2's model-zoo ``.pkl`` files are pickles of ``{"model": {name: ndarray}}``. Plain ``pickle.load`` runs
any callable the file names, and even numpy's own callables are unsafe with hostile arguments:
``numpy.ndarray(shape, object_dtype, buffer)`` makes an array of pointers the file chose, which segfaults as
soon as numpy touches them. So this reader

- runs only the opcodes numpy's and detectron2's pickles use (no NEWOBJ, INST/OBJ, EXT, persistent ids,
  out-of-band buffers), and BUILD only on the array and dtype stand-ins below;
- resolves the allowed globals to stand-ins that accept only what numpy itself writes: an array is
  ``_reconstruct(ndarray, (0,), b"b")`` then BUILD ``(1, shape, dtype, is_fortran, raw bytes)`` (or, protocol 5,
  ``_frombuffer(bytes, dtype, shape, order)``); we make it with ``np.frombuffer`` once the dtype (numbers only),
  the shape and the byte count are checked. A dtype is ``dtype(code, False, True)`` with numpy's standard state;
- bounds what a small file can make us allocate or recurse into: array bytes and decoded bytes at most the
  file's size, at most MAX_OPS operations, dict keys and set items plain values (hashing them cannot recurse
  or collide at scale), containers nested at most MAX_DEPTH deep and without cycles.

Every failure is a one-line ``CheckpointError``. :func:`check_pickle_stream` and :func:`walk_leaves` are the
same bounds for pickles read by another unpickler (``torch.load``'s ``data.pkl``).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import reprlib
import stat
from collections import OrderedDict
from collections.abc import Callable
from struct import unpack
from typing import Any, BinaryIO

import numpy as np

from instseg_deploy.errors import CheckpointError

# A detectron2 model pickle is ~30 operations per array (the R50-FPN .pkl: ~9k), a trainer .pth's data.pkl
# ~100 per parameter (optimizer state included): MAX_OPS bounds the scan of a .pth's pickle. The .pkl
# unpickler builds objects, and 500k empty sets (the costliest) measured 1 GB with torch loaded: its cap
# is lower, still 10x the R50's count (a ResNeXt-152 zoo .pkl needs about 40k).
MAX_OPS = 500_000
MAX_PKL_OPS = 100_000
MAX_DEPTH = 100  # levels of nested containers; weights files use 2 or 3, config blocks a few more
MAX_NDIM = 32
NUMERIC_KINDS = "biufc"  # numpy kinds: bool, int, uint, float, complex
_KIND_NAMES = {"O": "Python objects", "U": "strings", "S": "byte strings", "a": "byte strings", "V": "raw records",
               "M": "dates", "m": "time spans"}
_DTYPE_CODE = re.compile(r"[biufc][0-9]{1,2}")  # what numpy writes for numeric dtypes: f4, i8, u1, b1, c8, f16
_INT_KEY_LIMIT = 2**61 - 1  # ints below this hash to themselves, so keys cannot be chosen to collide
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxtuple = _short.maxlist = _short.maxdict = 8


def _refuse(why: str) -> CheckpointError:
    return CheckpointError(f"refusing to load: {why}")


def describe(obj: Any) -> str:
    """A short, bounded repr for error messages (a file may hold a 100 MB string or deep nesting)."""
    try:
        return _short.repr(obj)
    except Exception:  # a repr of hostile data must never be what fails
        return f"<{type(obj).__name__}>"


def reason(e: BaseException, text: str | None = None, limit: int = 200) -> str:
    """``Type: message`` (or ``Type: text``) of an exception on one bounded line, for "not readable (reason)"."""
    if isinstance(e, EOFError):
        return "the data ends early: truncated?"
    text = " ".join((str(e) if text is None else text).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --- stand-ins for the allowed globals -------------------------------------------------------------------


class _Global:
    """What ``find_class`` hands out: a name and, for callables, the checked function REDUCE may call."""

    __hash__ = None  # never a dict key or set item

    def __init__(self, name: str, build: Callable[..., Any] | None = None):
        self.name, self.build = name, build

    def __repr__(self) -> str:
        return f"<pickled reference to {self.name}>"


class _DType:
    """A numeric dtype from ``numpy.dtype(code, False, True)``; numpy's pickles then BUILD it with its state."""

    __hash__ = None

    def __init__(self, dtype: np.dtype):
        self.dtype, self.state_set = dtype, False

    def set_state(self, state: Any) -> None:
        # numpy writes (3, byte order, subarray, names, fields, elsize, alignment, flags) with everything but the
        # byte order fixed for a builtin numeric type. Any other state (flags saying "holds objects" or "no
        # objects", sizes, fields) would change what numpy believes the bytes are, so it is refused, and the
        # state is never handed to a real dtype: only the byte order is taken from it.
        if self.state_set:
            raise _refuse("the pickle sets a dtype's state twice")
        orders = "|<>=" if self.dtype.itemsize == 1 else "<>="
        standard = (type(state) is tuple and len(state) == 8 and type(state[0]) is int and state[0] == 3
                    and type(state[1]) is str and len(state[1]) == 1 and state[1] in orders
                    and all(s is None for s in state[2:5]) and all(type(s) is int for s in state[5:])
                    and state[5:] == (-1, -1, 0))
        if not standard:
            raise _refuse(f"the pickle sets an unexpected state on dtype {self.dtype.name}: {describe(state)} "
                          f"(numpy writes (3, '<', None, None, None, -1, -1, 0))")
        self.state_set = True
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])

    def __repr__(self) -> str:
        return f"<pickled dtype {self.dtype.str}>"


class _ArrayState:
    """What ``_reconstruct`` returns; numpy's pickles then BUILD it with the array's state, and we make the array."""

    __hash__ = None

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __repr__(self) -> str:
        return "<pickled array>"


def _as_raw(raw: Any, what: str) -> bytes:
    if type(raw) is str:  # Python 2 pickles, read as latin1, carry the raw data as str
        try:
            return raw.encode("latin1")
        except UnicodeEncodeError:
            raise _refuse(f"{what} is text that is not Latin-1 bytes") from None
    if type(raw) in (bytes, bytearray):
        return raw
    raise _refuse(f"{what} is a {type(raw).__name__}, not bytes (numpy writes arrays of objects that way)")


def _dtype_of(dtype: Any) -> np.dtype:
    if type(dtype) is not _DType:
        raise _refuse(f"an array's dtype is {describe(dtype)}, not a numpy.dtype(...) from the pickle")
    return dtype.dtype


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler (every opcode is a method we can replace) with a checked dispatch table."""

    def __init__(self, file: BinaryIO, size: int):
        super().__init__(_BoundedReader(file, size), encoding="latin1")  # latin1: Python 2 pickles of numpy
        self.size = size
        self.ops = 0
        self.array_bytes_left = size  # an array cannot hold more data than the file does
        self.text_bytes_left = size  # bytes made by _codecs.encode, same bound
        self.items_left = MAX_OPS  # OrderedDict([...]) copies items: count them as objects made

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _refuse(f"the pickle wants to call {module}.{name}, which a weights file never needs")
        return found

    # -- bounded allocations, called by the stand-ins --

    def charge_array(self, nbytes: int) -> None:
        self.array_bytes_left -= nbytes
        if self.array_bytes_left < 0:
            raise _refuse(f"the pickle's arrays add up to more bytes than the {self.size:,}-byte file holds "
                          "(raw data used more than once)")

    def charge_text(self, nbytes: int) -> None:
        self.text_bytes_left -= nbytes
        if self.text_bytes_left < 0:
            raise _refuse(f"the pickle decodes more bytes than the {self.size:,}-byte file holds")

    def charge_items(self, count: int) -> None:
        self.items_left -= count
        if self.items_left < 0:
            raise _refuse(f"the pickle copies more than {MAX_OPS:,} dict items")

    def array(self, shape: Any, dtype: np.dtype, fortran: Any, raw: Any) -> np.ndarray:
        """A new array from numpy's pickled state, checked before anything is allocated."""
        if type(shape) is not tuple or len(shape) > MAX_NDIM or any(type(d) is not int for d in shape):
            raise _refuse(f"an array's shape is {describe(shape)}, not a tuple of at most {MAX_NDIM} ints")
        if any(d < 0 for d in shape):
            raise _refuse(f"an array's shape {describe(shape)} has a negative dimension")
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise _refuse(f"an array's is_fortran flag is {describe(fortran)}")
        raw = _as_raw(raw, "an array's data")
        count, extent = 1, dtype.itemsize  # elements; bytes the shape would span if its zero dims were one
        for d in shape:
            if d >= 2**62:  # checked before multiplying: the ints come from the file and can be any size
                raise _refuse(f"an array's shape {describe(shape)} is far too large")
            count *= d
            extent *= max(d, 1)
            if extent >= 2**62:  # numpy's and torch's sizes are int64
                raise _refuse(f"an array's shape {describe(shape)} is far too large")
        nbytes = count * dtype.itemsize
        if nbytes != len(raw):
            raise _refuse(f"an array of shape {describe(shape)} and dtype {dtype.name} needs {nbytes:,} bytes "
                          f"but the pickle gives {len(raw):,}")
        self.charge_array(nbytes)
        if count == 0:
            return np.empty(shape, dtype)
        # frombuffer reads exactly the checked bytes; the copy owns its memory, is writable and in native byte
        # order, as numpy's own unpickling makes it.
        view = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
        return view.astype(dtype.newbyteorder("="), order="K", copy=True)

    # -- the opcodes that act on objects, checked --

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(func) is not _Global or func.build is None:
            raise _refuse(f"the pickle calls {_callee(func)}, which numpy's own pickles never call")
        if type(args) is not tuple:
            raise _refuse(f"the pickle calls {func.name} with {describe(args)}")
        self.stack[-1] = func.build(self, *args)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is _DType:
            inst.set_state(state)
        elif type(inst) is _ArrayState:
            if inst.array is not None:
                raise _refuse("the pickle sets an array's state twice")
            if type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1:
                state = state[1:]  # version 1; older numpy wrote the 4 fields without a version
            if type(state) is not tuple or len(state) != 4:
                raise _refuse(f"an array's state is {describe(state)}; numpy writes "
                              "(1, shape, dtype, is_fortran, raw bytes)")
            shape, dtype, fortran, raw = state
            inst.array = self.array(shape, _dtype_of(dtype), fortran, raw)
        else:
            raise _refuse(f"the pickle sets the state of {_callee(inst)}, which a weights file never does")

    def load_append(self) -> None:
        value = self.stack.pop()
        _target(self.stack[-1], (list,), "appends to").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        _target(self.stack[-1], (list,), "appends to").extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        _target(self.stack[-1], (dict, OrderedDict), "sets an item of")[_check_key(key)] = value

    def load_setitems(self) -> None:
        items = _pairs(self.pop_mark())
        target = _target(self.stack[-1], (dict, OrderedDict), "sets an item of")
        for i in range(0, len(items), 2):
            target[_check_key(items[i])] = items[i + 1]

    def load_dict(self) -> None:
        items = _pairs(self.pop_mark())
        self.append({_check_key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def load_additems(self) -> None:
        items = self.pop_mark()
        _target(self.stack[-1], (set,), "adds to").update(_check_key(k) for k in items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self.append(frozenset(_check_key(k) for k in items))

    def load_bytearray8(self) -> None:
        # The stock method allocates the declared length before reading; a file cannot hold more than its size.
        (n,) = unpack("<Q", self.read(8))
        if n > self.size:
            raise _refuse(f"the pickle declares a {n:,}-byte buffer in a {self.size:,}-byte file")
        data = self.read(n)
        if len(data) != n:
            raise CheckpointError("not a readable pickle (truncated)")
        self.append(bytearray(data))


def _callee(obj: Any) -> str:
    return obj.name if type(obj) is _Global else f"a {type(obj).__name__}"


def _target(obj: Any, kinds: tuple[type, ...], verb: str) -> Any:
    if type(obj) not in kinds:
        raise _refuse(f"the pickle {verb} a {type(obj).__name__}")
    return obj


def _pairs(items: list) -> list:
    if len(items) % 2:
        raise CheckpointError("not a readable pickle (a dict's items are not key, value pairs)")
    return items


def _plain_key(key: Any) -> bool:
    kind = type(key)
    return kind in (str, bytes, bool, float, type(None)) or (kind is int and -_INT_KEY_LIMIT < key < _INT_KEY_LIMIT)


def _check_key(key: Any) -> Any:
    """Keys and set items are hashed on insertion: keep them to values whose hash neither recurses (a tuple
    nested a million deep overflows the C stack) nor can be chosen to collide (a quadratic-time dict)."""
    if _plain_key(key) or (type(key) is tuple and len(key) <= 16 and all(_plain_key(k) for k in key)):
        return key
    raise _refuse(f"a dict key or set item is {describe(key)}; weights files key by names and numbers")


# --- the allowed globals ---------------------------------------------------------------------------------


def _reconstruct(u: _Unpickler, subtype: Any, shape: Any, code: Any) -> _ArrayState:
    if subtype is not _NDARRAY or type(shape) is not tuple or shape != (0,) or type(code) not in (bytes, str) \
            or code not in (b"b", "b"):
        raise _refuse(f"_reconstruct({describe(subtype)}, {describe(shape)}, {describe(code)}); numpy's pickles "
                      "pass (numpy.ndarray, (0,), b'b')")
    return _ArrayState()


def _frombuffer(u: _Unpickler, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    # Protocol 5 pickles of contiguous arrays, with the buffer in-band (out-of-band buffers are refused).
    if type(order) is not str or order not in ("C", "F"):
        raise _refuse(f"_frombuffer with order {describe(order)}")
    return u.array(shape, _dtype_of(dtype), order == "F", buffer)


def _dtype(u: _Unpickler, code: Any, align: Any = False, copy: Any = True) -> _DType:
    if type(code) is bytes:
        code = code.decode("latin1")
    if type(code) is not str:
        raise _refuse(f"numpy.dtype({describe(code)}); numpy's pickles name a dtype by its code, e.g. 'f4'")
    if not _DTYPE_CODE.fullmatch(code):
        kind = _KIND_NAMES.get(code[:1], "not numbers")
        raise _refuse(f"an array of dtype {describe(code)} ({kind}); weights are arrays of numbers "
                      "(bool, int, uint, float, complex)")
    if type(align) not in (bool, int) or align != 0 or type(copy) not in (bool, int) or copy not in (0, 1):
        raise _refuse(f"numpy.dtype({code!r}, {describe(align)}, {describe(copy)})")
    try:
        dtype = np.dtype(code)
    except TypeError:
        raise _refuse(f"{code!r} is not a numpy dtype") from None
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _refuse(f"dtype {code!r} is not a plain numeric dtype")
    return _DType(dtype)


def _scalar(u: _Unpickler, dtype: Any, raw: Any) -> np.generic:
    dtype = _dtype_of(dtype)
    raw = _as_raw(raw, "a numpy scalar's data")
    if len(raw) != dtype.itemsize:
        raise _refuse(f"a {dtype.name} scalar of {len(raw)} bytes")
    u.charge_array(len(raw))
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


def _ordered_dict(u: _Unpickler, *args: Any) -> OrderedDict:
    if not args:  # Python 3's OrderedDict.__reduce__: an empty one, items follow as SETITEMS
        return OrderedDict()
    items = args[0]
    if len(args) != 1 or type(items) is not list:  # Python 2's passes [[key, value], ...]
        raise _refuse(f"OrderedDict{describe(args)}")
    u.charge_items(len(items))
    for pair in items:
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise _refuse(f"OrderedDict item {describe(pair)}")
        _check_key(pair[0])
    return OrderedDict(items)


def _encode(u: _Unpickler, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Python 3 pickles bytes at protocol <= 2 as _codecs.encode(latin1 text, "latin1").
    if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _refuse(f"_codecs.encode({describe(text)}, {describe(encoding)}, {describe(errors)})")
    u.charge_text(len(text))
    return _as_raw(text, "encoded text")


def _empty_bytes(u: _Unpickler, *args: Any) -> bytes:
    if args:  # protocol <= 2 writes b"" as bytes(); nothing else calls it
        raise _refuse(f"bytes{describe(args)}")
    return b""


_NDARRAY = _Global("numpy.ndarray")  # only ever an argument of _reconstruct; calling it is refused
_GLOBALS: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_module, "_reconstruct")] = _Global("numpy._reconstruct", _reconstruct)
    _GLOBALS[(_module, "scalar")] = _Global("numpy scalar", _scalar)
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _GLOBALS[(_module, "_frombuffer")] = _Global("numpy._frombuffer", _frombuffer)
_GLOBALS[("numpy", "dtype")] = _Global("numpy.dtype", _dtype)
_GLOBALS[("collections", "OrderedDict")] = _Global("collections.OrderedDict", _ordered_dict)
_GLOBALS[("_codecs", "encode")] = _Global("_codecs.encode", _encode)
_GLOBALS[("__builtin__", "bytes")] = _GLOBALS[("builtins", "bytes")] = _Global("bytes", _empty_bytes)
# numpy 2's dtype classes are values, never called or given state here (REDUCE and BUILD refuse them).
for _name in ("Float32DType", "Float64DType", "Float16DType", "Int64DType", "Int32DType", "UInt8DType", "BoolDType"):
    _GLOBALS[("numpy.dtypes", _name)] = getattr(getattr(np, "dtypes", None), _name, _Global(f"numpy.dtypes.{_name}"))

# Opcodes numpy's and detectron2's pickles use, protocols 0 to 5. Refused: NEWOBJ(_EX), INST, OBJ (calls with
# any class), EXT1/2/4 (the copyreg registry), PERSID/BINPERSID, NEXT_BUFFER/READONLY_BUFFER (out-of-band), DUP.
_ALLOWED_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS", "FROZENSET",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
}
_OPCODE_NAMES = {op.code.encode("latin1")[0]: op.name for op in pickletools.opcodes}


class _Dispatch(dict):
    def __missing__(self, code: int) -> Any:
        name = _OPCODE_NAMES.get(code)
        if name is None:
            raise CheckpointError(f"not a readable pickle (unknown opcode 0x{code:02x})")
        raise _refuse(f"the pickle uses the {name} opcode, which numpy's and detectron2's pickles never need")


def _counted(op: Callable[[_Unpickler], None]) -> Callable[[_Unpickler], None]:
    def run(self: _Unpickler) -> None:
        self.ops += 1
        if self.ops > MAX_PKL_OPS:
            raise _refuse(f"the pickle runs more than {MAX_PKL_OPS:,} operations; weights files need far fewer")
        op(self)
    return run


_Unpickler.dispatch = _Dispatch()
for _code, _name in _OPCODE_NAMES.items():
    if _name in _ALLOWED_OPCODES:
        _method = getattr(_Unpickler, f"load_{_name.lower()}", None)
        _op = _method if _name in ("REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "DICT",
                                   "ADDITEMS", "FROZENSET", "BYTEARRAY8") else pickle._Unpickler.dispatch[_code]
        _Unpickler.dispatch[_code] = _counted(_op)


class _BoundedReader:
    """Reads capped at the bytes left, so no declared length makes a read allocate more than the file holds."""

    def __init__(self, file: BinaryIO, size: int):
        self._file, self._left = file, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._file.read(n)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self._file.readline(self._left) if self._left > 0 else b""
        self._left -= len(data)
        return data


def _finish(path: tuple, leaf: Any) -> Any:
    if type(leaf) is _ArrayState:
        if leaf.array is None:
            raise _refuse("an array in the pickle never gets its data (_reconstruct without BUILD)")
        return leaf.array
    if type(leaf) is _DType:
        return leaf.dtype
    if type(leaf) is _Global:
        raise _refuse(f"the pickle holds {leaf.name} itself as a value, which weights files never do")
    return leaf


def safe_load_pickle(f: BinaryIO | bytes) -> Any:
    """Unpickle data holding only containers, numbers, strings and numeric numpy arrays (see the module doc)."""
    if isinstance(f, (bytes, bytearray, memoryview)):
        data = bytes(f)
        f, size = io.BytesIO(data), len(data)
    else:
        try:
            status = os.fstat(f.fileno())
            size = status.st_size - f.tell() if stat.S_ISREG(status.st_mode) else None
        except (AttributeError, OSError, ValueError):
            size = None
        if size is None:  # not a regular file (a pipe, a stream): read it whole to know its size
            data = f.read()
            f, size = io.BytesIO(data), len(data)
    try:
        obj = _Unpickler(f, size).load()
    except CheckpointError:
        raise
    except Exception as e:  # whatever a hostile stream makes the unpickler raise is a bad file
        raise CheckpointError(f"not a readable pickle ({reason(e)})") from None
    return walk_leaves(obj, _finish)


# --- bounds for pickles read by other unpicklers, and for what any unpickler returns --------------------

_MAKES_CONTAINER = {"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST", "EMPTY_DICT", "DICT",
                    "EMPTY_SET", "FROZENSET"}
_FILLS_CONTAINER = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"}


def check_pickle_stream(data: bytes) -> None:
    """Refuse a pickle that would make an unpickler we do not control (``torch.load``'s) recurse or flood.

    Walks the opcodes without building anything, tracking how deeply nested each stack value is: tuples
    nested a million deep (one byte each) overflow the C stack when hashed as a dict key, a segfault in any
    unpickler. Also caps the operation count, and malformed or truncated streams are refused here.
    """
    stack: list[int] = []  # nesting depth of each value on the unpickler's stack
    marks: list[list[int]] = []
    memo: dict[int, int] = {}
    try:
        for n, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if n >= MAX_OPS:
                raise _refuse(f"the pickle runs more than {MAX_OPS:,} operations; weights files need far fewer")
            name = op.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise CheckpointError(f"not a readable pickle (memo entry {arg} is never set)")
                stack.append(memo[arg])
                continue
            if name == "MARK":
                marks.append(stack)
                stack = []
                continue
            items: list[int] = []
            before = op.stack_before
            if pickletools.markobject in before or (name == "POP" and not stack):
                items, stack = stack, marks.pop()
                before = before[:before.index(pickletools.markobject)] if pickletools.markobject in before else []
            popped = [stack.pop() for _ in before][::-1]
            if name in _MAKES_CONTAINER:
                depth = 1 + max(items + popped, default=0)
            elif name in _FILLS_CONTAINER:
                depth = max(popped[0], 1 + max(items + popped[1:], default=0))
            elif name == "REDUCE":  # a call's result is at most as deep as its arguments' contents
                depth = max(popped[0], popped[1] - 1)
            else:
                depth = max(items + popped, default=0)
            if depth > MAX_DEPTH:
                raise _refuse(f"containers nested deeper than {MAX_DEPTH} levels")
            for after in op.stack_after:
                if after is pickletools.markobject:
                    marks.append(stack)
                    stack = []
                else:
                    stack.append(depth)
    except CheckpointError:
        raise
    except Exception as e:  # genops' errors on a malformed stream, stack underflow
        raise CheckpointError(f"not a readable pickle ({reason(e)})") from None


_CONTAINERS = (dict, list, tuple, set, frozenset)


def _label(key: Any) -> str:
    return key[:80] if type(key) is str else describe(key)


def _children(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [(f"{_label(k)} (key)", k) for k in obj] + [(_label(k), v) for k, v in obj.items()]
    return [(str(i), v) for i, v in enumerate(obj)]


def walk_leaves(root: Any, fn: Callable[[tuple[str, ...], Any], Any], max_depth: int = MAX_DEPTH) -> Any:
    """Call ``fn(path, leaf)`` once for each distinct non-container object under ``root`` and put what it returns
    in the leaf's place (lists and dicts are changed in place, tuples and sets rebuilt). Iterative, so it
    cannot overflow the stack itself; containers nested deeper than ``max_depth`` or holding themselves are
    refused, so later (recursive) code cannot be made to overflow either. Returns the new root.
    """
    done: dict[int, tuple[Any, int]] = {}  # id -> (replacement, levels of containers in it); all kept alive by root
    if not isinstance(root, _CONTAINERS):
        return fn((), root)
    on_path = {id(root)}
    # frames: [container, path, children, replacements, levels below]
    frames: list[list[Any]] = [[root, (), _children(root), [], 0]]
    while True:
        obj, path, kids, reps, below = frame = frames[-1]
        if len(reps) < len(kids):
            label, child = kids[len(reps)]
            key = id(child)
            if key in done:
                rep, levels = done[key]
                if len(path) + 1 + levels > max_depth:
                    raise _refuse(f"containers nested deeper than {max_depth} levels")
            elif not isinstance(child, _CONTAINERS):
                rep, levels = fn(path + (label,), child), 0
                done[key] = (rep, 0)
            elif key in on_path:
                raise _refuse(f"a container holds itself (at {'/'.join(path + (label,))}); weights never do")
            elif len(path) + 1 >= max_depth:
                raise _refuse(f"containers nested deeper than {max_depth} levels")
            else:
                on_path.add(key)
                frames.append([child, path + (label,), _children(child), [], 0])
                continue
            reps.append(rep)
            frame[4] = max(below, levels)
            continue
        frames.pop()
        on_path.discard(id(obj))
        rep = _rebuilt(obj, kids, reps)
        done[id(obj)] = (rep, below + 1)
        if not frames:
            return rep
        parent = frames[-1]
        parent[3].append(rep)
        parent[4] = max(parent[4], below + 1)


def _rebuilt(obj: Any, kids: list[tuple[str, Any]], reps: list[Any]) -> Any:
    if all(r is k for r, (_, k) in zip(reps, kids)):
        return obj
    if isinstance(obj, dict):
        keys = reps[:len(obj)]
        if any(r is not k for r, (_, k) in zip(keys, kids)):
            raise _refuse("a dict key changed while reading")  # keys are plain values; cannot happen
        for k, v in zip(keys, reps[len(obj):]):
            obj[k] = v
        return obj
    if isinstance(obj, list):
        obj[:] = reps
        return obj
    return type(obj)(reps)
