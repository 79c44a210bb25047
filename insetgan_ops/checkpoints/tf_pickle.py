"""TensorFlow-era NVIDIA generators (NVlabs/stylegan2 and stylegan2-ada TF, e.g.
``stylegan2-ffhq-config-f.pkl``): variables renamed and transposed into NVIDIA's PyTorch layout.

Such a pickle is a tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects whose state is
``{version, name, static_kwargs, components, build_module_src, build_func_name, variables}`` (version 4
from NVlabs/stylegan2, 5 with four more keys from stylegan2-ada's TF code); ``variables`` is a list of
``(name, value)`` as TensorFlow's session returned them: an ndarray, or a numpy scalar for a 0-d
variable (every ``noise_strength``, ``lod``); ``components`` holds the sub-networks (``synthesis``,
``mapping``). The embedded ``build_module_src`` is never run. Layout changes:

====================================  ============================================  ==================
TF variable                           PyTorch name                                  transform
====================================  ============================================  ==================
``mapping/Dense{i}/weight [in,out]``  ``mapping.fc{i}.weight``                      transpose
``synthesis/4x4/Const/const``         ``synthesis.b4.const``                        drop batch axis
``synthesis/{r}x{r}/Conv*/weight``    ``synthesis.b{r}.conv*.weight``               ``[k,k,I,O]->[O,I,k,k]``
``.../Conv0_up/weight``               ``synthesis.b{r}.conv0.weight``               flip kernel, then same
``.../mod_weight``, ``mod_bias``      ``.../affine.weight``, ``affine.bias``        transpose, bias + 1
``synthesis/noise{k} [1,1,h,w]``      ``synthesis.b{r}.conv*.noise_const [h,w]``    drop two axes
``dlatent_avg``                       ``mapping.w_avg``
====================================  ============================================  ==================
"""

from __future__ import annotations

import math
import os
import pickle
import reprlib
from typing import Any, Callable

import numpy as np
import torch

from ..generator import MAX_RESOLUTION
from .common import Checkpoint, CheckpointError
from .shapes import config_from_state_dict


MAX_NETWORKS = 100  # a generator has three: itself, mapping, synthesis


class TFNetwork:
    """A ``dnnlib.tflib.network.Network`` as stored: its pickled state dict, nothing executed."""

    state: dict = {}  # until unpickling sets it (a hostile file may never do so)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("variables", []), list) \
                or not isinstance(state.get("components", {}), dict):
            raise pickle.UnpicklingError("malformed TF Network state")
        self.state = state

    def variables(self) -> dict[str, Any]:
        """All variables of this network and its components, keyed ``component/.../name``.

        Raises ``ValueError`` for a malformed entry, a network reached twice (real ones form a
        tree) or more than :data:`MAX_NETWORKS` networks.
        """
        found: dict[str, Any] = {}
        seen: set[int] = set()
        pending: list[tuple[str, TFNetwork]] = [("", self)]
        while pending:
            prefix, network = pending.pop()
            if id(network) in seen or len(seen) >= MAX_NETWORKS:
                raise ValueError("the TF networks do not form a tree of sub-networks")
            seen.add(id(network))
            for item in network.state.get("variables", []):
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                    raise ValueError("a TF variable entry is not a (name, array) pair")
                found[prefix + item[0]] = item[1]
            for name, component in network.state.get("components", {}).items():
                if not isinstance(component, TFNetwork):
                    raise ValueError(f"TF component {name!r} is not a Network")
                pending.append((f"{prefix}{name}/", component))
        return found


# What each static kwarg must be for the generator to be StyleGAN2's (the only kind supported).
_REQUIRED: dict[str, Any] = {"mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu", "architecture": "skip",
                             "resample_kernel": [1, 3, 3, 1], "use_noise": True}

# The static_kwargs read here, with the TF code's defaults (sizes and channels come from the variables).
_DEFAULTS: dict[str, Any] = {"resolution": 1024, "mapping_lrmul": 0.01, "w_avg_beta": 0.995, "num_fp16_res": 0,
                             "conv_clamp": None, **_REQUIRED}

# Every static kwarg NVIDIA's TF StyleGAN2 generators carry; any other means a different network.
_KNOWN: frozenset[str] = frozenset(_DEFAULTS) | {
    "latent_size", "label_size", "dlatent_size", "num_channels", "mapping_layers", "label_fmaps", "mapping_fmaps",
    "fmap_base", "fmap_max", "truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"}


def _array(path, variables: dict[str, Any], name: str, ndim: int) -> np.ndarray:
    """The variable ``name`` as an ndarray of ``ndim`` dimensions: an ndarray, or a numpy scalar for
    a 0-d variable, of a float or integer type; anything else is refused naming the variable."""
    value = variables.get(name)
    if value is None:
        raise CheckpointError(path, f"TF variable {name!r} is missing; not a StyleGAN2 (config-e/f) generator")
    if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "fiu":
        raise CheckpointError(path, f"TF variable {name!r} is not numeric (got {type(value).__name__})")
    value = np.asarray(value)
    if value.ndim != ndim:
        raise CheckpointError(path, f"TF variable {name!r} has {value.ndim} dimensions {list(value.shape)}, "
                                    f"expected {ndim}; not a StyleGAN2 generator")
    return value


def _conv(weight: np.ndarray) -> np.ndarray:
    """TF conv kernel [k, k, I, O] -> PyTorch [O, I, k, k]."""
    return weight.transpose(3, 2, 0, 1)


def _conv_up(weight: np.ndarray) -> np.ndarray:
    """TF's up-sampling conv is a true convolution: flip the kernel before the layout change."""
    return weight[::-1, ::-1].transpose(3, 2, 0, 1)


def tf_generator_state_dict(path: "str | os.PathLike", variables: dict[str, Any],
                            resolution: int) -> dict[str, torch.Tensor]:
    """Renames and transposes a TF StyleGAN2 generator's variables into NVIDIA's PyTorch layout."""
    if not any(k.startswith("synthesis/") for k in variables):
        raise CheckpointError(path, "the TF network has no 'synthesis' component; not a StyleGAN2 generator")
    if any(k.startswith("synthesis/ToRGB_lod") for k in variables):
        raise CheckpointError(path, "this TF generator uses the 'orig' (progressive-growing) architecture, "
                                    "which is not supported; use a config-e/config-f StyleGAN2 generator")
    if "mapping/LabelConcat/weight" in variables:
        raise CheckpointError(path, "this is a class-conditional generator of the original StyleGAN2 code (labels "
                                    "concatenated to z), which is not supported; stylegan2-ada's conditional "
                                    "generators (LabelEmbed) are")
    # (PyTorch name, TF name, layout change, the TF variable's number of dimensions)
    plan: list[tuple[str, str, Callable[[np.ndarray], np.ndarray], int]] = [
        ("mapping.w_avg", "dlatent_avg", np.asarray, 1)]
    n_dense = sum(1 for k in variables if k.startswith("mapping/Dense") and k.endswith("/weight"))
    for i in range(n_dense):
        plan += [(f"mapping.fc{i}.weight", f"mapping/Dense{i}/weight", np.transpose, 2),
                 (f"mapping.fc{i}.bias", f"mapping/Dense{i}/bias", np.asarray, 1)]
    if "mapping/LabelEmbed/weight" in variables:
        plan += [("mapping.embed.weight", "mapping/LabelEmbed/weight", np.transpose, 2),
                 ("mapping.embed.bias", "mapping/LabelEmbed/bias", np.asarray, 1)]
    plan.append(("synthesis.b4.const", "synthesis/4x4/Const/const", lambda a: a[0], 4))
    for log2 in range(2, int(math.log2(resolution)) + 1):
        r = 2 ** log2
        layers = [("conv1", "Conv", _conv, "noise0")] if r == 4 else [
            ("conv0", "Conv0_up", _conv_up, f"noise{2 * log2 - 5}"), ("conv1", "Conv1", _conv, f"noise{2 * log2 - 4}")]
        for ours, theirs, conv, noise in layers:
            src, dst = f"synthesis/{r}x{r}/{theirs}", f"synthesis.b{r}.{ours}"
            plan += [(f"{dst}.weight", f"{src}/weight", conv, 4),
                     (f"{dst}.bias", f"{src}/bias", np.asarray, 1),
                     (f"{dst}.noise_const", f"synthesis/{noise}", lambda a: a[0, 0], 4),
                     (f"{dst}.noise_strength", f"{src}/noise_strength", np.asarray, 0),
                     (f"{dst}.affine.weight", f"{src}/mod_weight", np.transpose, 2),
                     (f"{dst}.affine.bias", f"{src}/mod_bias", lambda a: a + 1, 1)]
        src, dst = f"synthesis/{r}x{r}/ToRGB", f"synthesis.b{r}.torgb"
        plan += [(f"{dst}.weight", f"{src}/weight", _conv, 4),
                 (f"{dst}.bias", f"{src}/bias", np.asarray, 1),
                 (f"{dst}.affine.weight", f"{src}/mod_weight", np.transpose, 2),
                 (f"{dst}.affine.bias", f"{src}/mod_bias", lambda a: a + 1, 1)]
    state_dict = {}
    for ours, theirs, transform, ndim in plan:
        value = transform(_array(path, variables, theirs, ndim))
        state_dict[ours] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
    return state_dict


def checkpoint_from_tf_networks(path: "str | os.PathLike", data: "TFNetwork | tuple[TFNetwork, ...]") -> Checkpoint:
    """Converts the EMA generator ``Gs`` of a TF ``(G, D, Gs)`` tuple (or a lone generator Network)."""
    if isinstance(data, tuple):
        if len(data) != 3:
            raise CheckpointError(path, f"a TF network pickle holds (G, D, Gs), this one {len(data)} networks")
        data = data[2]
    state = data.state
    if not isinstance(state.get("version"), int) or state["version"] < 4:
        raise CheckpointError(path, f"TF network pickle version {reprlib.repr(state.get('version'))} is too old "
                                    "(StyleGAN1 or early StyleGAN2); use a StyleGAN2 config-e/f pickle")
    kwargs = state.get("static_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(path, "the TF network's static_kwargs are not a dict")
    unknown = sorted(set(kwargs) - _KNOWN)
    if unknown:
        raise CheckpointError(path, f"unknown TF generator options {reprlib.repr(unknown)}; not a StyleGAN2 generator")
    opt = {**_DEFAULTS, **{k: v for k, v in kwargs.items() if k in _DEFAULTS and v is not None}}
    for key, required in _REQUIRED.items():
        if (list(opt[key]) if key == "resample_kernel" else opt[key]) != required:
            raise CheckpointError(path, f"TF generator option {key}={reprlib.repr(opt[key])} is not supported "
                                        f"(StyleGAN2 uses {required!r})")
    try:
        variables = data.variables()
    except ValueError as e:
        raise CheckpointError(path, f"malformed TF network: {e}") from e
    resolution = opt["resolution"]
    if type(resolution) is not int or not 4 <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
        raise CheckpointError(path, f"TF generator resolution {reprlib.repr(resolution)} is not a power of two in "
                                    f"4..{MAX_RESOLUTION}; not a StyleGAN2 generator")
    state_dict = tf_generator_state_dict(path, variables, resolution)
    hints = {"mapping_lr_multiplier": opt["mapping_lrmul"], "w_avg_beta": opt["w_avg_beta"],
             "num_fp16_res": opt["num_fp16_res"], "conv_clamp": opt["conv_clamp"]}
    config = config_from_state_dict(path, state_dict, hints)
    return Checkpoint("NVIDIA TF pickle (Gs)", config, state_dict, os.fspath(path))
