"""The one way the pack unpickles: a pre-scan, then an unpickler that resolves only allowed globals.

Every pickle stream (an NVIDIA ``.pkl``, the ``data.pkl`` of a ``torch.save`` zip, each pickle of
torch's legacy format, the storage bytes inside NVIDIA's pickles) goes through :func:`unpickle`:

1. :func:`.pickle_scan.scan` bounds its size, nesting, memo and opcodes without building anything;
2. :class:`RestrictedUnpickler` maps each global the stream names to the stand-in the caller allows
   (anything else raises :class:`~.common.CheckpointError` before it could be called) and hands
   persistent ids to the caller;
3. every failure becomes a :class:`~.common.CheckpointError` naming the file.

Why a scan in the same process rather than unpickling in a child process: a child would re-import
torch (seconds) and send the weights back through a pipe (a second copy of a 1 GB file, on MPS a
round trip through the CPU anyway), and its failures would arrive as exit codes; the scan costs a
few per cent of a load and keeps errors in-process, with their messages.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
from typing import Any, Callable, Mapping, Optional, Union

from .common import CheckpointError
from .pickle_scan import scan

__all__ = ["RestrictedUnpickler", "unpickle"]

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves a global only through ``allowed`` ((module, name) -> object) and persistent ids
    only through ``persistent_load``; ``hint`` is added to the error for a refused global."""

    def __init__(self, file, path: "str | os.PathLike", allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Optional[Callable[[Any], Any]] = None, hint: str = ""):
        super().__init__(file)
        self.path, self.allowed, self.load_persistent, self.hint = path, allowed, persistent_load, hint

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise CheckpointError(self.path, f"refusing to load: the file references {module}.{name}, which a "
                                             "weights file never needs (it may be malicious or of an unknown "
                                             f"format){self.hint}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self.load_persistent is None:
            raise CheckpointError(self.path, "refusing to load: the pickle uses persistent ids, which this kind of "
                                             "file never does (it may be malicious or of an unknown format)")
        return self.load_persistent(pid)


def unpickle(data: Buffer, path: "str | os.PathLike", allowed: Mapping[tuple[str, str], Any], start: int = 0, *,
             persistent_load: Optional[Callable[[Any], Any]] = None, hint: str = "") -> tuple[Any, int]:
    """Scans, then unpickles the stream at ``data[start:]``; returns the object and the offset after it.

    ``persistent_load`` may raise ``pickle.UnpicklingError`` (or ``ValueError``) to refuse a record;
    every failure is re-raised as :class:`CheckpointError` naming ``path``.
    """
    end = scan(data, path, start, persistent_ids=persistent_load is not None)
    if isinstance(data, mmap.mmap):  # a mapped file reads as a file: no copy of a large pickle
        data.seek(start)
        stream = data
    else:
        stream = io.BytesIO(data if start == 0 and end == len(data) else bytes(memoryview(data)[start:end]))
    try:
        return RestrictedUnpickler(stream, path, allowed, persistent_load, hint).load(), end
    except CheckpointError:
        raise
    except MemoryError as e:
        raise CheckpointError(path, "the file asks for more memory than this machine has; it is not a weights "
                                    "file (or it is damaged)") from e
    except RecursionError as e:
        raise CheckpointError(path, "the file is nested too deeply to be a weights file") from e
    except Exception as e:  # noqa: BLE001 - a malformed stream fails in many ways; all mean "corrupt"
        raise CheckpointError(path, f"corrupt or unsupported file ({type(e).__name__}: {e}); download it "
                                    "again") from e
