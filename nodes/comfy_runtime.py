"""Everything the pack takes from ComfyUI's runtime, and plain fallbacks when ComfyUI is absent.

This is the only module that touches ComfyUI (``folder_paths``, ``comfy.utils``,
``comfy.model_management``). ComfyUI imports ``folder_paths`` at start-up, before any custom node,
so its presence in ``sys.modules`` says that the pack runs inside ComfyUI; the other modules are
imported on first use. Without ComfyUI (tests, scripts):

=====================  =========================================================================
device                 CUDA if available, else MPS, else CPU
progress / interrupt   progress is logged at debug level; nothing can interrupt
model folders          ``$INSETGAN_MODELS_DIR/<folder>/`` and the pack's built-in folders
input / output         ``$INSETGAN_INPUT_DIR`` / ``$INSETGAN_OUTPUT_DIR``, else ``./input`` / ``./output``
=====================  =========================================================================

It also holds the one cache of loaded models (:data:`MODELS`) and the one adapter from the
library's progress protocol to ComfyUI's bar (:class:`ProgressBar`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

import torch

from ..insetgan_ops.demo import WEIGHTS_DIR as DEMO_WEIGHTS
from .convert import to_pil

log = logging.getLogger(__name__)

PACK_ROOT = Path(__file__).resolve().parents[1]
MODEL_EXTENSIONS = (".pkl", ".pt", ".pth", ".safetensors")
MODELS_DIR_ENV = "INSETGAN_MODELS_DIR"
INPUT_DIR_ENV = "INSETGAN_INPUT_DIR"
OUTPUT_DIR_ENV = "INSETGAN_OUTPUT_DIR"
PREVIEW_MAX_SIZE = 512
PREVIEWS_PER_RUN = 25

# Model folder names this pack registers, each with the folders inside the pack that also serve it
# (files found there appear by name next to the user's own models, without being copied).
MODEL_FOLDERS: dict[str, tuple[Path, ...]] = {
    "stylegan": (DEMO_WEIGHTS,),
    "lpips": (),
    "face_parsing": (DEMO_WEIGHTS,),
    "stylegan_directions": (),
    "stylegan_encoders": (DEMO_WEIGHTS,),
}


def _comfy(name: str) -> Optional[ModuleType]:
    """ComfyUI's module ``name`` when running inside ComfyUI, else None."""
    module = sys.modules.get(name)
    if module is not None or "folder_paths" not in sys.modules:
        return module
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return _comfy("folder_paths") is not None


def torch_device() -> torch.device:
    """The device ComfyUI computes on; without ComfyUI the best available (CUDA > MPS > CPU)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Returns cached accelerator memory (ComfyUI's policy inside ComfyUI, else CUDA's cache only)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def throw_if_interrupted() -> None:
    """Raises ComfyUI's interruption exception once the user pressed Cancel; a no-op outside ComfyUI."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class ProgressBar:
    """The library's progress protocol (:data:`insetgan_ops.optimization.StepCallback`) on ComfyUI's bar.

    Called as ``bar(step, total, preview, stage)``: first lets a pending Cancel interrupt the job
    (ComfyUI raises its interruption exception), then shows ``step`` of ``total``, with the
    rendered ``preview()`` about ``previews`` times per run (and at the last step). The bar is
    made at the first report, with the total the library computed.
    """

    def __init__(self, label: str, previews: int = PREVIEWS_PER_RUN):
        self.label, self.previews = label, max(1, previews)
        self._bar, self._total = None, None

    def __call__(self, step: int, total: int, preview: Callable[[], torch.Tensor], stage: str = "") -> None:
        throw_if_interrupted()
        utils = _comfy("comfy.utils")
        if utils is None:
            log.debug("%s: %s step %d/%d", self.label, stage, step, total)
            return
        if self._bar is None or total != self._total:
            self._bar, self._total = utils.ProgressBar(total), total
        every = max(1, total // self.previews)
        shown = to_pil(preview()) if step % every == 0 or step == total else None
        self._bar.update_absolute(step, total, None if shown is None else ("JPEG", shown, PREVIEW_MAX_SIZE))


class ModelCache:
    """Models already loaded, one per kind, file and device, reused while the file is unchanged.

    A changed file's old model is dropped before the new one loads, so two copies of a large
    generator never sit in memory together.
    """

    def __init__(self):
        self._entries: dict[tuple[str, str, str], tuple[int, Any]] = {}

    def get(self, kind: str, path: str, device: "str | torch.device", load: Callable[[], Any]) -> Any:
        """The model of ``kind`` in file ``path`` on ``device``; ``load()`` makes it when needed."""
        key, stamp = (kind, os.path.abspath(path), str(device)), os.stat(path).st_mtime_ns
        entry = self._entries.pop(key, None)
        if entry is not None and entry[0] == stamp:
            self._entries[key] = entry
            return entry[1]
        model = load()
        self._entries[key] = (stamp, model)
        return model


MODELS = ModelCache()
"""The models of this ComfyUI session (generators, face parsers, LPIPS)."""


def resolve_device(choice: str) -> torch.device:
    """A node's device choice: ``"auto"`` is ComfyUI's device, anything else that device."""
    return torch_device() if choice == "auto" else torch.device(choice)


def register_model_folders() -> None:
    """Adds this pack's model folders to ComfyUI (``models/<name>`` and the built-in ones).

    ComfyUI's ``add_model_folder_path`` appends, so folders from ``extra_model_paths.yaml`` stay
    first. Without ComfyUI nothing needs registering.
    """
    fp = _comfy("folder_paths")
    if fp is None:
        return
    for name, builtin in MODEL_FOLDERS.items():
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, name))
        for folder in builtin:
            fp.add_model_folder_path(name, str(folder))


def _fallback_folders(name: str) -> list[Path]:
    folders = [Path(os.environ[MODELS_DIR_ENV]) / name] if os.environ.get(MODELS_DIR_ENV) else []
    return folders + list(MODEL_FOLDERS[name])


def _check_folder_name(name: str) -> None:
    if name not in MODEL_FOLDERS:
        raise ValueError(f"unknown model folder {name!r}; this pack's folders are {sorted(MODEL_FOLDERS)}")


def model_folders(name: str) -> list[str]:
    """The folders searched for models of ``name``, in search order."""
    _check_folder_name(name)
    fp = _comfy("folder_paths")
    return list(fp.get_folder_paths(name)) if fp is not None else [str(f) for f in _fallback_folders(name)]


def list_models(name: str, extensions: tuple[str, ...] = MODEL_EXTENSIONS) -> list[str]:
    """Model files (by default ``.pkl .pt .pth .safetensors``) in the folders of ``name``, as relative paths."""
    _check_folder_name(name)
    fp = _comfy("folder_paths")
    if fp is not None:
        files = fp.get_filename_list(name)
    else:
        files = set()
        for folder in _fallback_folders(name):
            files.update(_walk_files(folder))
    return sorted(f for f in files if f.lower().endswith(extensions))


def _walk_files(folder: Path) -> Iterator[str]:
    """Regular files under ``folder`` (links followed, each folder visited once, so a link loop
    ends), as relative paths."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        info = os.stat(root)
        if (info.st_dev, info.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        rel = Path(root).relative_to(folder)
        yield from ((rel / n).as_posix() for n in names if os.path.isfile(os.path.join(root, n)))


def inside(folder: str, path: str) -> bool:
    """Whether ``path`` lies inside ``folder`` once every link in both is resolved."""
    folder, path = os.path.realpath(folder), os.path.realpath(path)
    return os.path.commonpath([folder, path]) == folder


def model_path(name: str, filename: str) -> str:
    """The full path of model ``filename`` (as listed by :func:`list_models`) in the folders of ``name``."""
    _check_folder_name(name)
    fp = _comfy("folder_paths")
    if fp is not None:
        return fp.get_full_path_or_raise(name, filename)
    folders = _fallback_folders(name)
    for folder in folders:
        path = (folder / filename).resolve()
        if path.is_relative_to(folder.resolve()) and path.is_file():
            return str(path)
    raise FileNotFoundError(f"model {filename!r} not found in the {name!r} folders {[str(f) for f in folders]}; "
                            f"put it into $INSETGAN_MODELS_DIR/{name}/ (or ComfyUI's models/{name}/)")


def model_file_stamp(name: str, filename: str) -> float:
    """A loader node's ``IS_CHANGED``: the model file's modification time, or NaN (never equal to
    itself, so the node runs and reports the problem) when it cannot be found."""
    try:
        return os.stat(model_path(name, filename)).st_mtime_ns
    except (OSError, ValueError):
        return float("nan")


def input_directory() -> str:
    """ComfyUI's input folder (files users upload or place for loading)."""
    fp = _comfy("folder_paths")
    return fp.get_input_directory() if fp is not None else os.path.abspath(os.environ.get(INPUT_DIR_ENV, "input"))


def output_directory() -> str:
    """ComfyUI's output folder (where saved results go)."""
    fp = _comfy("folder_paths")
    return fp.get_output_directory() if fp is not None else os.path.abspath(os.environ.get(OUTPUT_DIR_ENV, "output"))


def save_path(filename_prefix: str, extension: str) -> tuple[str, str]:
    """A new file ``<output>/<prefix>_<counter:05><extension>`` (ComfyUI's counter style);
    returns ``(full path, path relative to the output folder)``. The prefix may name subfolders but
    must stay inside the output folder."""
    out = output_directory()
    fp = _comfy("folder_paths")
    if fp is not None:
        folder, base, counter, subfolder, _ = fp.get_save_image_path(filename_prefix, out)
    else:
        folder = os.path.abspath(os.path.join(out, os.path.dirname(os.path.normpath(filename_prefix))))
        if os.path.commonpath([out, folder]) != out:
            raise ValueError(f"filename_prefix {filename_prefix!r} points outside the output folder {out}")
        base, subfolder = os.path.basename(os.path.normpath(filename_prefix)), os.path.relpath(folder, out)
        os.makedirs(folder, exist_ok=True)
        taken = [n[len(base) + 1:].split(".")[0].split("_")[0] for n in os.listdir(folder) if n.startswith(base + "_")]
        counter = max([int(t) for t in taken if t.isdigit()], default=0) + 1
    if not inside(out, folder):
        raise ValueError(f"filename_prefix {filename_prefix!r} leads outside the output folder {out} through a "
                         "link; choose a folder inside it")
    name = f"{base}_{counter:05}{extension}"
    return os.path.join(folder, name), os.path.normpath(os.path.join(subfolder, name))
