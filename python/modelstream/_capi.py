"""The public C API of libmodelstream, through ctypes: the library, its structs and calls.

Nothing here decides anything: every rule (planning, memory limits, credentials, retries)
is the C library's. This module only declares what `modelstream.h` declares, loads the
library that ships in the package (or $MODELSTREAM_LIBRARY), and turns a failed call into
a Python exception carrying the library's one-line message.
"""

from __future__ import annotations

import ctypes
import os

# -- the library ---------------------------------------------------------------------------

_here = os.path.dirname(os.path.abspath(__file__))


def _load() -> ctypes.CDLL:
    candidates = [os.environ.get("MODELSTREAM_LIBRARY", ""),
                  os.path.join(_here, "_lib", "libmodelstream.so.1"),
                  "libmodelstream.so.1"]
    errors = []
    for path in candidates:
        if not path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:  # the next candidate
            errors.append(f"{path}: {e}")
    raise ImportError("modelstream: cannot load libmodelstream: " + "; ".join(errors))


lib = _load()

# -- error codes (modelstream.h, never renumbered) -----------------------------------------

MS_ERROR, MS_ENOMEM, MS_EINVAL, MS_ENOTFOUND, MS_EACCES = -1, -2, -3, -4, -5
MS_EIO, MS_EFORMAT, MS_ELIMIT, MS_ECANCELED, MS_EUNSUPPORTED = -6, -7, -8, -9, -10
MS_ESTATE, MS_ENOSPC, MS_EUNAVAILABLE, MS_EBUSY, MS_ENODEVICE = -11, -12, -13, -14, -15
MS_ITER_END = -31

MS_DEVICE_CPU = -1
MS_MEMORY_UNLIMITED = -1
MS_DELIVER_COPY, MS_DELIVER_MAPPED, MS_DELIVER_AUTO = 0, 1, 2
MS_LIST_RECURSIVE = 1
MS_STREAMER_OPTIONS_VERSION = 4
MS_MAX_NDIM = 32


class ms_error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char_p)]


class ms_tensor(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint),
                ("name", ctypes.c_char_p),
                ("dtype", ctypes.c_int),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("ndim", ctypes.c_size_t),
                ("data", ctypes.c_void_p),
                ("size", ctypes.c_uint64),
                ("file_index", ctypes.c_size_t),
                ("file_offset", ctypes.c_uint64),
                ("device", ctypes.c_int),
                ("device_ptr", ctypes.c_uint64)]


class ms_file_info(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint),
                ("path", ctypes.c_char_p),
                ("size", ctypes.c_uint64),
                ("header_size", ctypes.c_uint64),
                ("tensor_count", ctypes.c_size_t),
                ("metadata_count", ctypes.c_size_t),
                ("direct_io", ctypes.c_int)]


class ms_stats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint),
                ("bytes_total", ctypes.c_uint64),
                ("bytes_read", ctypes.c_uint64),
                ("bytes_delivered", ctypes.c_uint64),
                ("tensors_total", ctypes.c_uint64),
                ("tensors_delivered", ctypes.c_uint64),
                ("read_requests", ctypes.c_uint64),
                ("arena_bytes", ctypes.c_uint64),
                ("arena_huge_pages", ctypes.c_int),
                ("time_to_first_tensor_ns", ctypes.c_uint64),
                ("elapsed_ns", ctypes.c_uint64),
                ("chunk_size", ctypes.c_uint64),
                ("concurrency", ctypes.c_uint),
                ("delivery", ctypes.c_int),
                ("device", ctypes.c_int),
                ("device_copy", ctypes.c_int),
                ("copy_streams", ctypes.c_uint),
                ("device_bytes", ctypes.c_uint64),
                ("bytes_to_device", ctypes.c_uint64),
                ("pageable_copies", ctypes.c_uint64),
                ("pin_ns", ctypes.c_uint64)]


DEVICE_ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_uint64),
                                   ctypes.POINTER(ms_tensor), ctypes.c_int, ctypes.c_void_p)


class ms_streamer_options(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint),
                ("concurrency", ctypes.c_uint),
                ("memory_limit", ctypes.c_int64),
                ("chunk_size", ctypes.c_size_t),
                ("direct_io", ctypes.c_int),
                ("select", ctypes.POINTER(ctypes.c_char_p)),
                ("select_count", ctypes.c_size_t),
                ("arena_pages", ctypes.c_int),
                ("deliver", ctypes.c_int),
                ("node_dir", ctypes.c_char_p),
                ("node_connections", ctypes.c_uint),
                ("node_bytes_per_second", ctypes.c_uint64),
                ("patience_seconds", ctypes.c_uint),
                ("device", ctypes.c_int),
                ("device_alignment", ctypes.c_uint64),
                ("device_alloc", DEVICE_ALLOC_FN),
                ("device_alloc_payload", ctypes.c_void_p)]


class ms_object(ctypes.Structure):
    _fields_ = [("location", ctypes.c_char_p),
                ("name", ctypes.c_char_p),
                ("size", ctypes.c_uint64),
                ("etag", ctypes.c_char_p),
                ("last_modified", ctypes.c_char_p),
                ("is_prefix", ctypes.c_int)]


LIST_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ms_object), ctypes.c_void_p)


def _declare(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_p = ctypes.c_void_p
ms_version = _declare("ms_version", ctypes.c_char_p)
ms_global_init = _declare("ms_global_init", ctypes.c_int)
ms_error_last = _declare("ms_error_last", ctypes.POINTER(ms_error))
ms_strerror = _declare("ms_strerror", ctypes.c_char_p, ctypes.c_int)
ms_dtype_name = _declare("ms_dtype_name", ctypes.c_char_p, ctypes.c_int)
ms_device_parse = _declare("ms_device_parse", ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                           ctypes.c_char_p)
ms_cancel_new = _declare("ms_cancel_new", ctypes.c_int, ctypes.POINTER(_p))
ms_cancel_fire = _declare("ms_cancel_fire", None, _p)
ms_cancel_free = _declare("ms_cancel_free", None, _p)
ms_streamer_options_init = _declare("ms_streamer_options_init", None,
                                    ctypes.POINTER(ms_streamer_options))
ms_streamer_options_from_env = _declare("ms_streamer_options_from_env", ctypes.c_int,
                                        ctypes.POINTER(ms_streamer_options))
ms_streamer_new = _declare("ms_streamer_new", ctypes.c_int, ctypes.POINTER(_p),
                           ctypes.POINTER(ms_streamer_options))
ms_streamer_add = _declare("ms_streamer_add", ctypes.c_int, _p, ctypes.c_char_p)
ms_streamer_file_count = _declare("ms_streamer_file_count", ctypes.c_size_t, _p)
ms_streamer_file_info = _declare("ms_streamer_file_info", ctypes.c_int,
                                 ctypes.POINTER(ms_file_info), _p, ctypes.c_size_t)
ms_streamer_metadata_at = _declare("ms_streamer_metadata_at", ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_char_p),
                                   ctypes.POINTER(ctypes.c_char_p), _p, ctypes.c_size_t,
                                   ctypes.c_size_t)
ms_streamer_tensor_count = _declare("ms_streamer_tensor_count", ctypes.c_size_t, _p)
ms_streamer_tensor_at = _declare("ms_streamer_tensor_at", ctypes.c_int,
                                 ctypes.POINTER(ms_tensor), _p, ctypes.c_size_t)
ms_streamer_next = _declare("ms_streamer_next", ctypes.c_int,
                            ctypes.POINTER(ctypes.POINTER(ms_tensor)), _p)
ms_streamer_next_timeout = _declare("ms_streamer_next_timeout", ctypes.c_int,
                                    ctypes.POINTER(ctypes.POINTER(ms_tensor)), _p, ctypes.c_uint)
ms_tensor_release = _declare("ms_tensor_release", ctypes.c_int, _p, ctypes.POINTER(ms_tensor))
ms_tensor_copy = _declare("ms_tensor_copy", ctypes.c_int, _p, ctypes.c_size_t,
                          ctypes.POINTER(ms_tensor))
ms_streamer_cancel = _declare("ms_streamer_cancel", None, _p)
ms_streamer_stats = _declare("ms_streamer_stats", ctypes.c_int, ctypes.POINTER(ms_stats), _p)
ms_streamer_fallback = _declare("ms_streamer_fallback", ctypes.c_char_p, _p)
ms_streamer_free = _declare("ms_streamer_free", None, _p)
ms_storage_list = _declare("ms_storage_list", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, _p,
                           LIST_FN, _p)
ms_storage_get = _declare("ms_storage_get", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, _p)
