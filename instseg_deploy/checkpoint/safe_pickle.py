"""A pickle reader that can only build plain containers and numpy arrays.

detectron2's model-zoo ``.pkl`` files are pickles of ``{"model": {name: ndarray}}``. Plain
``pickle.load`` would run any callable the file names (``os.system``, ...), so we resolve
globals from a short allow-list and refuse everything else before it is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

from instseg_deploy.errors import CheckpointError

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Float16DType"),
    ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "Int32DType"),
    ("numpy.dtypes", "UInt8DType"),
    ("numpy.dtypes", "BoolDType"),
    ("_codecs", "encode"),  # Python 3 pickles of Python 2 byte strings use it for bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise CheckpointError(
            f"refusing to load: the pickle wants to call {module}.{name}, which a weights file never needs"
        )


def safe_load_pickle(f: BinaryIO | bytes) -> Any:
    """Unpickle data holding only containers, numbers, strings and numpy arrays."""
    if isinstance(f, bytes):
        f = io.BytesIO(f)
    try:
        # latin1: the model zoo's older files are Python 2 pickles of numpy arrays.
        return _RestrictedUnpickler(f, encoding="latin1").load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"not a readable pickle ({type(e).__name__}: {e})") from None
