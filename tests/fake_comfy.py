"""A minimal stand-in for ComfyUI's runtime modules that records how the pack calls them.

ComfyUI itself cannot be installed in the test environment; this fake implements only the calls
``nodes/comfy_runtime.py`` makes, with ComfyUI's signatures.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

import torch


class InterruptProcessingException(Exception):
    pass


class FakeComfy:
    """Installs fake ``folder_paths``, ``comfy``, ``comfy.utils``, ``comfy.model_management``."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.calls: list[tuple] = []
        self.interrupted = False
        self.folders: dict[str, list[str]] = {}

        fp = ModuleType("folder_paths")
        fp.models_dir = os.path.join(base_dir, "models")
        fp.add_model_folder_path = self._add_model_folder_path
        fp.get_filename_list = self._get_filename_list
        fp.get_folder_paths = self._get_folder_paths
        fp.get_full_path_or_raise = self._get_full_path_or_raise
        fp.get_input_directory = lambda: os.path.join(base_dir, "input")
        fp.get_output_directory = lambda: os.path.join(base_dir, "output")
        fp.get_save_image_path = self._get_save_image_path

        comfy = ModuleType("comfy")
        utils = ModuleType("comfy.utils")
        fake = self

        class ProgressBar:
            def __init__(self, total, node_id=None):
                fake.calls.append(("ProgressBar", total))

            def update_absolute(self, value, total=None, preview=None):
                fake.calls.append(("update_absolute", value, total, preview))

        utils.ProgressBar = ProgressBar
        mm = ModuleType("comfy.model_management")
        mm.InterruptProcessingException = InterruptProcessingException
        mm.get_torch_device = lambda: torch.device("cpu")
        mm.soft_empty_cache = lambda force=False: self.calls.append(("soft_empty_cache",))
        mm.throw_exception_if_processing_interrupted = self._throw_if_interrupted
        comfy.utils, comfy.model_management = utils, mm
        self.modules = {"folder_paths": fp, "comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm}

    def install(self, monkeypatch) -> "FakeComfy":
        for name, module in self.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return self

    def _add_model_folder_path(self, folder_name, full_folder_path, is_default=False):
        self.calls.append(("add_model_folder_path", folder_name, full_folder_path, is_default))
        paths = self.folders.setdefault(folder_name, [])
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    def _get_filename_list(self, folder_name):
        self.calls.append(("get_filename_list", folder_name))
        files = set()
        for folder in self.folders.get(folder_name, []):
            if os.path.isdir(folder):
                files.update(os.listdir(folder))
        return sorted(files)

    def _get_folder_paths(self, folder_name):
        self.calls.append(("get_folder_paths", folder_name))
        return list(self.folders.get(folder_name, []))

    def _get_full_path_or_raise(self, folder_name, filename):
        self.calls.append(("get_full_path_or_raise", folder_name, filename))
        for folder in self.folders.get(folder_name, []):
            path = os.path.join(folder, filename)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")

    def _get_save_image_path(self, filename_prefix, output_dir, image_width=0, image_height=0):
        self.calls.append(("get_save_image_path", filename_prefix, output_dir))
        subfolder = os.path.dirname(os.path.normpath(filename_prefix))
        folder = os.path.join(output_dir, subfolder)
        os.makedirs(folder, exist_ok=True)
        return folder, os.path.basename(filename_prefix), 7, subfolder, filename_prefix

    def _throw_if_interrupted(self):
        if self.interrupted:
            self.interrupted = False
            raise InterruptProcessingException()
