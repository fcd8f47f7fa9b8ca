"""Zero-copy views over the library's memory, each owning its tensor's release.

A delivered ms_tensor stays the library's until ms_tensor_release(). The view handed to
Python is built over that memory with no copy, and a _Lease object is the only thing that
owns it: numpy's array (through __array_interface__) or torch's tensor (through numpy, or
__cuda_array_interface__ on a GPU) keeps the lease alive, and when the last of them is
gone the lease releases the tensor. So a memory-limited stream can never write over a
tensor Python still holds: the library raises its limit error instead.

The lease also keeps the streamer's handle alive, so tensors stay valid after the
SafetensorsStreamer context has exited; the C streamer is freed when the last one goes.
"""

from __future__ import annotations

from . import _capi

try:  # optional: torch tensors when torch is installed, numpy arrays otherwise
    import torch
except ImportError:  # pragma: no cover - exercised where torch is missing
    torch = None
import numpy as np

try:  # numpy has no bfloat16 or float8 of its own; ml_dtypes gives them where installed
    import ml_dtypes
except ImportError:
    ml_dtypes = None

# ms_dtype, in modelstream.h's order: (safetensors name, element bits).
DTYPES = ["BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "U64", "I64",
          "F64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"]


def _torch_dtypes():
    if torch is None:
        return {}
    names = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
             "F16": "float16", "BF16": "bfloat16", "U32": "uint32", "I32": "int32",
             "F32": "float32", "U64": "uint64", "I64": "int64", "F64": "float64",
             "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
             "F8_E8M0": "float8_e8m0fnu"}
    return {k: getattr(torch, v) for k, v in names.items() if hasattr(torch, v)}


def _numpy_dtypes():
    out = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
           "I16": np.int16, "F16": np.float16, "U32": np.uint32, "I32": np.int32,
           "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64,
           "C64": np.complex64}
    if ml_dtypes is not None:
        out.update({"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
                    "F8_E5M2": ml_dtypes.float8_e5m2})
    else:
        out["BF16"] = np.uint16  # the raw bits: numpy has no bfloat16 without ml_dtypes
    return {k: np.dtype(v) for k, v in out.items()}


TORCH = _torch_dtypes()
TORCH_ITEMSIZE = {k: torch.empty(0, dtype=v).element_size() for k, v in TORCH.items()}
if torch is not None:
    import warnings

    # Mapped delivery hands torch the file's read-only pages on purpose (see streamer.py):
    # its warning about that is silenced for this module's calls, once, instead of around
    # every tensor.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable",
                            category=UserWarning, module=r"modelstream\._tensors")
NUMPY = _numpy_dtypes()


class Handle:
    """The C streamer, freed when the last lease (or the Python streamer) lets go of it."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __del__(self):
        if self.ptr:
            _capi.ms_streamer_free(self.ptr)
            self.ptr = 0


class _Lease:
    """One delivered tensor's memory: host bytes by __array_interface__, device bytes by
    __cuda_array_interface__; released when nothing refers to it any more."""

    __slots__ = ("handle", "tensor", "size", "__array_interface__",
                 "__cuda_array_interface__")

    def __init__(self, handle: Handle, t, c, readonly: bool):
        self.handle = handle
        self.tensor = t  # ctypes.POINTER(ms_tensor), valid until released
        self.size = size = c.size
        if c.device >= 0:
            self.__cuda_array_interface__ = {
                "shape": (size,), "typestr": "|u1", "data": (c.device_ptr, readonly),
                "version": 3, "strides": None,
                "stream": None}  # the copy has completed: no stream to wait on
        else:
            self.__array_interface__ = {"shape": (size,), "typestr": "|u1",
                                        "data": (c.data or 0, readonly), "version": 3}

    def __del__(self):
        if self.tensor is not None and self.handle.ptr:
            _capi.ms_tensor_release(self.handle.ptr, self.tensor)
            self.tensor = None


def shape_of(c) -> tuple:
    return tuple(c.shape[:c.ndim])


def make_tensor(handle: Handle, t, readonly: bool):
    """The delivered tensor `t` as a torch tensor (or numpy array without torch), without a
    copy unless its address does not suit its dtype (then copied, and released at once)."""
    c = t.contents
    name = DTYPES[c.dtype] if 0 <= c.dtype < len(DTYPES) else "U8"
    shape = tuple(c.shape[:c.ndim])
    lease = _Lease(handle, t, c, readonly)
    if c.device >= 0:
        if torch is None:
            raise RuntimeError(f"{c.name.decode()}: a CUDA tensor needs torch")
        raw = torch.as_tensor(lease, device=f"cuda:{c.device}") if lease.size else \
            torch.empty(0, dtype=torch.uint8, device=f"cuda:{c.device}")
        return _typed_torch(raw, name, shape)
    if lease.size == 0:
        del lease
        raw = np.empty(0, dtype=np.uint8)
        address = 0
    else:
        raw = np.asarray(lease)
        address = c.data
    if torch is not None:
        if address % TORCH_ITEMSIZE.get(name, 1):
            raw = raw.copy()  # Run:ai does the same for an address its dtype cannot use
        return _typed_torch(torch.from_numpy(raw), name, shape)
    dtype = NUMPY.get(name)
    if dtype is None and name.startswith("F8"):
        dtype = np.dtype(np.uint8)  # one byte each: the raw bits, in the tensor's shape
    if dtype is None:
        return raw  # sub-byte types (F4, F6): the packed bytes
    if address % dtype.itemsize:
        raw = raw.copy()
    return raw.view(dtype).reshape(shape)


def _typed_torch(raw, name: str, shape: tuple):
    dtype = TORCH.get(name)
    if dtype is None:
        return raw  # F4, F6: the packed bytes, as Run:ai gives them
    return raw.view(dtype).reshape(shape)
