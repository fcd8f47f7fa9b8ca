"""modelstream: stream safetensors weights from disks, S3 and GCS into host or GPU memory.

A drop-in for Run:ai Model Streamer's Python API (SafetensorsStreamer, list_safetensors,
pull_files) over libmodelstream, a C library; see streamer.py for what differs.
"""

from . import _capi
from .errors import (AccessDeniedError, CanceledError, FormatError, InvalidArgumentError,
                     MemoryLimitError, ModelStreamError, NoDeviceError, NotFoundError,
                     StorageIOError, UnavailableError, UnsupportedError)
from .streamer import SafetensorsStreamer, TensorMetadata, list_safetensors, pull_files

__version__ = _capi.ms_version().decode()
_capi.ms_global_init()  # libcurl's global state, before any thread of ours starts

__all__ = ["SafetensorsStreamer", "TensorMetadata", "list_safetensors", "pull_files",
           "ModelStreamError", "NotFoundError", "AccessDeniedError", "FormatError",
           "InvalidArgumentError", "MemoryLimitError", "CanceledError", "UnavailableError",
           "NoDeviceError", "StorageIOError", "UnsupportedError", "__version__"]
