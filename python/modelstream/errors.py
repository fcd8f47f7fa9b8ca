"""Exceptions carrying the library's one-line messages, one class per error code.

Each also derives from the built-in exception a Python caller would catch for it
(FileNotFoundError for MS_ENOTFOUND, PermissionError, MemoryError for the memory limit,
ValueError for malformed input or a bad argument...), so existing handlers keep working.
"""

from __future__ import annotations

from . import _capi


class ModelStreamError(RuntimeError):
    """Base class: `code` is the library's MS_E* code, str() its one-line message."""

    code = _capi.MS_ERROR

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class NotFoundError(ModelStreamError, FileNotFoundError):
    code = _capi.MS_ENOTFOUND


class AccessDeniedError(ModelStreamError, PermissionError):
    code = _capi.MS_EACCES


class FormatError(ModelStreamError, ValueError):
    code = _capi.MS_EFORMAT


class InvalidArgumentError(ModelStreamError, ValueError):
    code = _capi.MS_EINVAL


class MemoryLimitError(ModelStreamError, MemoryError):
    """The memory limit cannot hold what is asked: raise RUNAI_STREAMER_MEMORY_LIMIT, or
    drop tensors you hold (they are never overwritten while held)."""
    code = _capi.MS_ELIMIT


class CanceledError(ModelStreamError):
    code = _capi.MS_ECANCELED


class UnavailableError(ModelStreamError, ConnectionError):
    code = _capi.MS_EUNAVAILABLE


class NoDeviceError(ModelStreamError):
    code = _capi.MS_ENODEVICE


class StorageIOError(ModelStreamError, OSError):
    code = _capi.MS_EIO


class UnsupportedError(ModelStreamError, ValueError):
    """Valid, but not something this library does: an az:// location, say."""
    code = _capi.MS_EUNSUPPORTED


_BY_CODE = {c.code: c for c in (NotFoundError, AccessDeniedError, FormatError,
                                InvalidArgumentError, MemoryLimitError, CanceledError,
                                UnavailableError, NoDeviceError, StorageIOError,
                                UnsupportedError)}


def error_from_last(code: int | None = None) -> ModelStreamError:
    last = _capi.ms_error_last().contents
    rc = code if code is not None else last.code
    message = (last.message or b"").decode("utf-8", "replace")
    return _BY_CODE.get(rc, ModelStreamError)(message, rc)


def check(rc: int) -> int:
    """Raises the library's error for a negative return code."""
    if rc < 0:
        raise error_from_last(rc)
    return rc
