"""SafetensorsStreamer, list_safetensors and pull_files: Run:ai Model Streamer's Python API
over libmodelstream.

    with SafetensorsStreamer() as streamer:
        streamer.stream_files(paths, device="cpu")     # files, directories, s3://, gs://
        for name, tensor in streamer.get_tensors():    # file order
            ...

What differs from Run:ai, on purpose:
  - a yielded tensor is a zero-copy view that owns its memory: it is never overwritten
    while Python holds it (a memory-limited stream raises MemoryLimitError instead), and
    it stays valid after the `with` block; no clone is needed;
  - device="cuda:N" streams into GPU memory directly (pinned staging, or the file's pages
    registered with the driver), instead of yielding CPU tensors to copy;
  - Ctrl-C during get_tensors() cancels the stream and raises KeyboardInterrupt.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os
from typing import Collection, Dict, Iterator, List, Optional, Tuple

from . import _capi
from ._tensors import DTYPES, Handle, make_tensor
from .errors import InvalidArgumentError, NotFoundError, check, error_from_last

SAFETENSORS_PATTERN = "*.safetensors"


class TensorMetadata:
    """What files_to_tensors_metadata lists per tensor, as Run:ai's does: name, dtype (the
    safetensors name), shape, offsets into the file's data section, and byte size."""

    def __init__(self, name: str, dtype: str, shape: List[int], start: int, end: int):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.offsets = range(start, end)

    def get_bytesize(self) -> int:
        return len(self.offsets)

    def __repr__(self) -> str:
        return f"TensorMetadata({self.name!r}, {self.dtype}, {self.shape})"


def _is_url(path: str) -> bool:
    return "://" in path


def _encode(text: str) -> bytes:
    return os.fsencode(text) if not _is_url(text) else text.encode()


def _device_index(device: Optional[str]) -> int:
    if device is None:
        return _capi.MS_DEVICE_CPU
    out = ctypes.c_int()
    check(_capi.ms_device_parse(ctypes.byref(out), str(device).lower().encode()))
    return out.value


def _glob_escape(name: str) -> str:
    """A tensor name as an fnmatch pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class _Next:
    """ms_streamer_next() in slices of SLICE_MS, so that the interpreter checks for
    signals between them: Ctrl-C cancels the stream (the library allows it from any
    point) and is raised within a slice, even while a slow store delivers."""

    SLICE_MS = 100

    def __init__(self, handle: Handle):
        self.handle = handle

    def __call__(self):
        while True:
            out = ctypes.POINTER(_capi.ms_tensor)()
            try:
                rc = _capi.ms_streamer_next_timeout(ctypes.byref(out), self.handle.ptr,
                                                    self.SLICE_MS)
                if rc != 1:
                    return rc, out
                # Not yet: back in the interpreter, where a pending Ctrl-C is raised.
            except KeyboardInterrupt:
                _capi.ms_streamer_cancel(self.handle.ptr)
                raise


class SafetensorsStreamer:
    """Streams the tensors of safetensors files, in file order; a context manager.

    RUNAI_STREAMER_CONCURRENCY, RUNAI_STREAMER_MEMORY_LIMIT (-1 unlimited, 0 the largest
    tensor, N bytes) and RUNAI_STREAMER_CHUNK_BYTESIZE keep their meaning, as do the
    MODELSTREAM_* names (which win). MODELSTREAM_DELIVER=mapped|auto|copy chooses zero-copy
    delivery from the page cache or a node cache (read-only tensors); MODELSTREAM_CACHE_DIR
    shares the node's admission budget for object storage.
    """

    def __init__(self) -> None:
        self._metadata: Optional[Dict[int, List[TensorMetadata]]] = None
        self._tensor_names: Optional[Collection[str]] = None
        self._total_size = 0
        self.device_str: Optional[str] = None
        self._handle: Optional[Handle] = None
        self._next: Optional[_Next] = None
        self._readonly = False

    def __enter__(self) -> "SafetensorsStreamer":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def close(self) -> None:
        """Stops streaming. Tensors already yielded stay valid while they are held."""
        self._next = None
        if self._handle is not None:
            if self._metadata is None:
                self._describe()  # Run:ai's stays readable after the stream: so does ours
            _capi.ms_streamer_cancel(self._handle.ptr)
            self._handle = None  # freed once no yielded tensor holds it

    def stream_file(self, path: str, s3_credentials=None, device: Optional[str] = "cpu",
                    is_distributed: bool = False,
                    tensor_names: Optional[Collection[str]] = None, owned: bool = True) -> None:
        self.stream_files([path], s3_credentials=s3_credentials, device=device,
                          is_distributed=is_distributed, tensor_names=tensor_names, owned=owned)

    def stream_files(self, paths: List[str], s3_credentials=None, device: Optional[str] = "cpu",
                     is_distributed: bool = False,
                     tensor_names: Optional[Collection[str]] = None, owned: bool = True) -> None:
        """Starts streaming `paths` (files, directories, prefixes, mixed). `s3_credentials`
        (Run:ai's S3Credentials, or anything with access_key_id, secret_access_key,
        session_token, region_name, endpoint) is applied to the environment the library
        reads. `is_distributed` and `owned` are accepted for compatibility: every yielded
        tensor is owned."""
        if isinstance(paths, (str, bytes)):
            paths = [paths]
        if isinstance(tensor_names, str):
            raise ValueError("tensor_names must be a collection of names, not a single str")
        if tensor_names is not None and len(tensor_names) == 0:
            raise ValueError("tensor_names must not be empty - pass None to load every tensor")
        self.close()
        _apply_credentials(s3_credentials)
        opts = _capi.ms_streamer_options()
        _capi.ms_streamer_options_init(ctypes.byref(opts))
        check(_capi.ms_streamer_options_from_env(ctypes.byref(opts)))
        opts.device = _device_index(device)
        deliver = os.environ.get("MODELSTREAM_DELIVER", "copy")
        opts.deliver = {"copy": _capi.MS_DELIVER_COPY, "mapped": _capi.MS_DELIVER_MAPPED,
                        "auto": _capi.MS_DELIVER_AUTO}.get(deliver, -1)
        if opts.deliver < 0:
            raise InvalidArgumentError(f"MODELSTREAM_DELIVER={deliver}: expected copy, "
                                       "mapped or auto")
        self._readonly = opts.deliver != _capi.MS_DELIVER_COPY
        node_dir = os.environ.get("MODELSTREAM_CACHE_DIR")
        keep = []
        if node_dir:
            keep.append(node_dir.encode())
            opts.node_dir = keep[-1]
        if tensor_names is not None:
            wanted = frozenset(tensor_names)
            patterns = (ctypes.c_char_p * len(wanted))(
                *[_glob_escape(n).encode() for n in sorted(wanted)])
            opts.select = patterns
            opts.select_count = len(wanted)
        ptr = ctypes.c_void_p()
        check(_capi.ms_streamer_new(ctypes.byref(ptr), ctypes.byref(opts)))
        handle = Handle(ptr.value)
        for p in paths:
            check(_capi.ms_streamer_add(handle.ptr, _encode(str(p))))
        self._handle = handle
        self.device_str = device
        self._metadata = None
        self._tensor_names = tensor_names
        if tensor_names is not None:
            self._describe()  # a name that is not there is an error now, as with Run:ai
        self._next = _Next(handle)

    @property
    def files_to_tensors_metadata(self) -> Dict[int, List[TensorMetadata]]:
        """{file index: [TensorMetadata]} of the files stream_files was given, in data
        order. Built on first use: streaming does not wait for it."""
        if self._metadata is None:
            self._describe()
        return self._metadata

    @property
    def total_size(self) -> int:
        """The bytes of every tensor to be streamed."""
        if self._metadata is None:
            self._describe()
        return self._total_size

    def _describe(self) -> None:
        """files_to_tensors_metadata and total_size, from the library's tensor table."""
        tensor_names = self._tensor_names
        # Marked built first: a failed check (a missing name) is raised once, by
        # stream_files, and not again by close().
        self._metadata, self._total_size = {}, 0
        if self._handle is None:
            return
        h = self._handle.ptr
        metadata = {i: [] for i in range(_capi.ms_streamer_file_count(h))}
        total = 0
        data_start = {}
        for i in metadata:
            info = _capi.ms_file_info(struct_size=ctypes.sizeof(_capi.ms_file_info))
            check(_capi.ms_streamer_file_info(ctypes.byref(info), h, i))
            data_start[i] = 8 + info.header_size
        seen = set()
        for i in range(_capi.ms_streamer_tensor_count(h)):
            t = _capi.ms_tensor(struct_size=ctypes.sizeof(_capi.ms_tensor))
            check(_capi.ms_streamer_tensor_at(ctypes.byref(t), h, i))
            name = t.name.decode("utf-8", "replace")
            if tensor_names is not None and name not in tensor_names:
                continue
            seen.add(name)
            start = t.file_offset - data_start[t.file_index]
            metadata[t.file_index].append(TensorMetadata(
                name, DTYPES[t.dtype], t.shape[:t.ndim], start, start + t.size))
            total += t.size
        if tensor_names is not None:
            missing = set(tensor_names) - seen
            if missing:
                raise ValueError(f"tensor_names not found in checkpoint: {sorted(missing)}")
        for tensors in metadata.values():
            tensors.sort(key=lambda m: m.offsets.start)
        self._metadata, self._total_size = metadata, total

    def get_tensors(self) -> Iterator[Tuple[str, object]]:
        """Yields (name, tensor) in file order: torch tensors (numpy arrays without torch),
        on the device stream_files was given."""
        if self._next is None:
            return
        handle, call = self._handle, self._next
        while True:
            rc, t = call()
            if rc == _capi.MS_ITER_END:
                return
            if rc < 0:
                raise error_from_last(rc)
            yield t.contents.name.decode("utf-8", "replace"), make_tensor(handle, t,
                                                                          self._readonly)

    def stats(self) -> dict:
        """The library's counters for this stream (ms_stats), as a dict."""
        st = _capi.ms_stats(struct_size=ctypes.sizeof(_capi.ms_stats))
        if self._handle is not None:
            check(_capi.ms_streamer_stats(ctypes.byref(st), self._handle.ptr))
        return {name: getattr(st, name) for name, _ in st._fields_ if name != "struct_size"}


def _apply_credentials(creds) -> None:
    """Run:ai's S3Credentials, as the environment variables the library reads."""
    if creds is None:
        return
    for attr, var in (("access_key_id", "AWS_ACCESS_KEY_ID"),
                      ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                      ("session_token", "AWS_SESSION_TOKEN"),
                      ("region_name", "AWS_REGION"), ("endpoint", "AWS_ENDPOINT_URL")):
        value = getattr(creds, attr, None)
        if value:
            os.environ[var] = value


def _list(prefix: str, recursive: bool) -> List[Tuple[str, str]]:
    """(location, name relative to prefix) of every object under `prefix`."""
    found: List[Tuple[str, str]] = []

    @_capi.LIST_FN
    def collect(obj, payload):
        o = obj.contents
        if not o.is_prefix:
            found.append((o.location.decode(), o.name.decode()))
        return 0

    if not prefix.endswith("/"):
        prefix += "/"
    check(_capi.ms_storage_list(_encode(prefix), _capi.MS_LIST_RECURSIVE if recursive else 0,
                                None, collect, None))
    return found


def list_safetensors(path: str, s3_credentials=None) -> List[str]:
    """The *.safetensors files directly in `path` (a directory, or an s3:// or gs://
    prefix), as full paths or URLs, in name order. Not recursive."""
    _apply_credentials(s3_credentials)
    return sorted(loc for loc, name in _list(path, recursive=False)
                  if fnmatch.fnmatch(name, SAFETENSORS_PATTERN))


def pull_files(model_path: str, dst: str, allow_pattern: Optional[List[str]] = None,
               ignore_pattern: Optional[List[str]] = None, s3_credentials=None) -> None:
    """Downloads every file under `model_path` (recursively) whose relative name matches
    one of `allow_pattern` (all when None) and none of `ignore_pattern`, into `dst`, keeping
    the layout. Each file appears whole or not at all. Local directories work too."""
    _apply_credentials(s3_credentials)
    for location, name in _list(model_path, recursive=True):
        if allow_pattern and not any(fnmatch.fnmatch(name, p) for p in allow_pattern):
            continue
        if ignore_pattern and any(fnmatch.fnmatch(name, p) for p in ignore_pattern):
            continue
        target = os.path.join(dst, name)
        if os.path.commonpath([os.path.abspath(dst), os.path.abspath(target)]) != \
                os.path.abspath(dst):
            raise InvalidArgumentError(f"{location}: its name {name!r} leaves {dst}")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        check(_capi.ms_storage_get(_encode(location), os.fsencode(target), None))


__all__ = ["SafetensorsStreamer", "TensorMetadata", "list_safetensors", "pull_files",
           "NotFoundError", "error_from_last"]
