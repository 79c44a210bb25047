"""Writes generator files in the public formats, from one of this pack's Generators.

* :func:`write_nvidia_pickle`: NVIDIA's PyTorch-era network pickle, ``dict(G, D, G_ema,
  training_set_kwargs, augment_pipe)``, every network stored through the
  ``torch_utils.persistence._reconstruct_persistent_obj`` global with ``meta = {type, version,
  module_src, class_name, state}`` and ``state`` = the module ``__dict__`` (torch's own
  ``_parameters`` / ``_buffers`` / ``_modules`` bookkeeping, NVIDIA's configuration attributes,
  ``_init_kwargs`` as an ``EasyDict``), tensors pickled by torch itself;
* :func:`write_tf_pickle`: a TensorFlow-era pickle, ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``
  objects whose state holds the variables as numpy arrays in TF layout;
* :func:`write_rosinality_pt`: ``torch.save({'g_ema': ..., 'latent_avg': ...})`` in rosinality's names.

Pickle names a global by module and attribute and checks that the name resolves to the object, so
the stand-in classes below are registered under NVIDIA's module names while a file is written
(:func:`_registered_as`) and removed afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import math
import pickle
import sys
import types
from typing import Any, Iterator, Optional

import numpy as np
import torch

from insetgan_ops.generator import (FullyConnected, Generator, MappingNetwork, SynthesisBlock, SynthesisLayer,
                                    SynthesisNetwork, ToRGBLayer)

PERSISTENCE_VERSION = 6
MODULE_SRC = "# the networks' source code would be here\n"


class EasyDict(dict):
    """Stands for ``dnnlib.util.EasyDict`` (a dict subclass) in written files."""


class TFNetwork:
    """Stands for ``dnnlib.tflib.network.Network``; pickles as its ``state`` dict."""

    def __init__(self, state: dict):
        self.state = state

    def __getstate__(self) -> dict:
        return self.state


def _reconstruct_persistent_obj(meta):  # never called: only its name is written
    raise AssertionError("stand-in for NVIDIA's reconstructor")


class PersistentRecord:
    """A network as NVIDIA's persistence layer pickles it."""

    def __init__(self, class_name: str, state: dict, module_src: str = MODULE_SRC):
        self.meta = dict(type="class", version=PERSISTENCE_VERSION, module_src=module_src, class_name=class_name,
                         state=state)

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


@contextlib.contextmanager
def _registered_as(names: dict[str, tuple[str, Any]]) -> Iterator[None]:
    """Makes ``module.attr`` resolve to each object (keyed by attr) while pickling; restores sys.modules."""
    added = []
    try:
        for attr, (module_name, obj) in names.items():
            parts = module_name.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in sys.modules:
                    sys.modules[name] = types.ModuleType(name)
                    added.append(name)
            setattr(sys.modules[module_name], attr, obj)
            obj.__module__ = module_name
            obj.__qualname__ = attr
        yield
    finally:
        for name in added:
            del sys.modules[name]


_NVIDIA_GLOBALS = {"_reconstruct_persistent_obj": ("torch_utils.persistence", _reconstruct_persistent_obj),
                   "EasyDict": ("dnnlib.util", EasyDict),
                   "Network": ("dnnlib.tflib.network", TFNetwork)}


# ----------------------------------------------------------------------------------------- NVIDIA PyTorch pickle

def _resample_filter() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum()


def _nvidia_attributes(module: torch.nn.Module, cfg) -> tuple[str, dict]:
    """NVIDIA's class name and configuration attributes for one of our modules."""
    if isinstance(module, Generator):
        return "Generator", dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                                 img_channels=cfg.img_channels, num_ws=cfg.num_ws)
    if isinstance(module, MappingNetwork):
        return "MappingNetwork", dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                                      num_layers=cfg.mapping_layers, w_avg_beta=cfg.w_avg_beta)
    if isinstance(module, FullyConnected):
        return "FullyConnectedLayer", dict(activation="lrelu" if module.lrelu else "linear",
                                           weight_gain=np.float64(module.weight_gain), bias_gain=module.bias_gain)
    if isinstance(module, SynthesisNetwork):
        return "SynthesisNetwork", dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                                        img_resolution_log2=int(math.log2(cfg.img_resolution)),
                                        img_channels=cfg.img_channels, block_resolutions=cfg.block_resolutions,
                                        num_ws=cfg.num_ws)
    if isinstance(module, SynthesisBlock):
        return "SynthesisBlock", dict(in_channels=module.in_channels, w_dim=cfg.w_dim, resolution=module.res,
                                      img_channels=cfg.img_channels, is_last=module.res == cfg.img_resolution,
                                      architecture="skip", use_fp16=module.use_fp16, channels_last=False,
                                      num_conv=module.num_conv, num_torgb=1)
    if isinstance(module, SynthesisLayer):
        return "SynthesisLayer", dict(resolution=module.noise_const.shape[0], up=2 if module.up else 1,
                                      use_noise=True, activation="lrelu", conv_clamp=module.conv_clamp, padding=1,
                                      act_gain=np.float64(math.sqrt(2)))
    if isinstance(module, ToRGBLayer):
        return "ToRGBLayer", dict(conv_clamp=module.conv_clamp, weight_gain=np.float64(module.weight_gain))
    raise TypeError(f"no NVIDIA counterpart for {type(module).__name__}")


def _init_kwargs(cfg) -> EasyDict:
    return EasyDict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                    img_channels=cfg.img_channels,
                    mapping_kwargs=EasyDict(num_layers=cfg.mapping_layers,
                                            lr_multiplier=cfg.mapping_lr_multiplier),
                    synthesis_kwargs=EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                              num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp))


def persistent_record(module: torch.nn.Module, cfg, module_src: str = MODULE_SRC) -> PersistentRecord:
    """Our module tree as NVIDIA's persistent networks (names, attributes and tensor layout of ada)."""
    class_name, attributes = _nvidia_attributes(module, cfg)
    state = dict(torch.nn.Module().__dict__)  # torch's bookkeeping exactly as a real module pickles it
    state["training"] = False
    state["_parameters"] = collections.OrderedDict(
        (name, torch.nn.Parameter(p.detach().clone(), requires_grad=False)) for name, p in module._parameters.items())
    buffers = collections.OrderedDict((name, b.detach().clone()) for name, b in module._buffers.items())
    if class_name in ("SynthesisBlock", "SynthesisLayer"):
        buffers["resample_filter"] = _resample_filter()
    state["_buffers"] = buffers
    children = list(module.named_children())
    if isinstance(module, Generator):  # ada builds synthesis before mapping
        children.reverse()
    state["_modules"] = collections.OrderedDict((name, persistent_record(child, cfg, module_src))
                                                for name, child in children)
    state.update(attributes)
    state["_init_args"] = ()
    state["_init_kwargs"] = _init_kwargs(cfg) if isinstance(module, Generator) else EasyDict()
    return PersistentRecord(class_name, state, module_src)


def _discriminator_record() -> PersistentRecord:
    state = dict(torch.nn.Module().__dict__)
    state["_parameters"] = collections.OrderedDict(weight=torch.nn.Parameter(torch.randn(1, 8)),
                                                   bias=torch.nn.Parameter(torch.zeros(1)))
    return PersistentRecord("Discriminator", {**state, "c_dim": 0, "_init_args": (), "_init_kwargs": EasyDict()})


def write_pickle(obj: Any, path, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    """Pickles ``obj`` with NVIDIA's module names available."""
    with _registered_as(_NVIDIA_GLOBALS), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def nvidia_snapshot(G: Generator, *, G_ema: Optional[Any] = None, module_src: str = MODULE_SRC,
                    training_set_kwargs: Any = None) -> dict:
    """The dict ada's training loop pickles (in its key order), with ``G`` as both G and G_ema unless given."""
    if training_set_kwargs is None:
        training_set_kwargs = EasyDict(path="dataset.zip", resolution=G.img_resolution, use_labels=G.c_dim > 0,
                                       max_size=None, xflip=False)
    record = persistent_record(G, G.config, module_src)
    return dict(training_set_kwargs=training_set_kwargs, G=record, D=_discriminator_record(),
                G_ema=record if G_ema is None else G_ema, augment_pipe=None)


def write_nvidia_pickle(G: Generator, path, **snapshot_kwargs) -> None:
    write_pickle(nvidia_snapshot(G, **snapshot_kwargs), path)


def write_stylegan3_pickle(path) -> None:
    """A StyleGAN3 (alias-free) generator pickle: an input layer with Fourier features, layers named L*_*_*."""
    def record(class_name: str, params: dict, buffers: dict = None, modules: dict = None) -> PersistentRecord:
        state = dict(torch.nn.Module().__dict__)
        state.update(_parameters=collections.OrderedDict(params), _buffers=collections.OrderedDict(buffers or {}),
                     _modules=collections.OrderedDict(modules or {}), _init_args=(), _init_kwargs=EasyDict())
        return PersistentRecord(class_name, state)

    fc = record("FullyConnectedLayer", dict(weight=torch.randn(8, 8), bias=torch.zeros(8)))
    synthesis = record("SynthesisNetwork", {}, modules=dict(
        input=record("SynthesisInput", dict(weight=torch.randn(8, 4)),
                     dict(transform=torch.eye(3), freqs=torch.randn(8, 2), phases=torch.randn(8))),
        L0_36_512=record("SynthesisLayer", dict(weight=torch.randn(8, 8, 3, 3), bias=torch.zeros(8)))))
    mapping = record("MappingNetwork", {}, dict(w_avg=torch.zeros(8)), dict(fc0=fc))
    G = record("Generator", {}, modules=dict(synthesis=synthesis, mapping=mapping))
    write_pickle(dict(training_set_kwargs=None, G=G, D=_discriminator_record(), G_ema=G, augment_pipe=None), path)


# ----------------------------------------------------------------------------------------------- TF-era pickle

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def tf_variables(G: Generator) -> tuple[dict, dict, dict]:
    """(own variables of Gs, of its mapping component, of its synthesis component), in TF layout."""
    sd = G.state_dict()
    cfg = G.config
    mapping = {}
    for i in range(cfg.mapping_layers):
        mapping[f"Dense{i}/weight"] = _np(sd[f"mapping.fc{i}.weight"]).T
        mapping[f"Dense{i}/bias"] = _np(sd[f"mapping.fc{i}.bias"])
    if cfg.c_dim:
        mapping["LabelEmbed/weight"] = _np(sd["mapping.embed.weight"]).T
        mapping["LabelEmbed/bias"] = _np(sd["mapping.embed.bias"])
    synthesis = {"4x4/Const/const": _np(sd["synthesis.b4.const"])[None]}
    for res in cfg.block_resolutions:
        log2 = int(math.log2(res))
        layers = [("conv1", "Conv", 0)] if res == 4 else [("conv0", "Conv0_up", 2 * log2 - 5),
                                                          ("conv1", "Conv1", 2 * log2 - 4)]
        for ours, theirs, noise in layers:
            src, dst = f"synthesis.b{res}.{ours}", f"{res}x{res}/{theirs}"
            weight = _np(sd[f"{src}.weight"]).transpose(2, 3, 1, 0)  # [O,I,k,k] -> [k,k,I,O]
            synthesis[f"{dst}/weight"] = weight[::-1, ::-1] if ours == "conv0" else weight
            synthesis[f"{dst}/bias"] = _np(sd[f"{src}.bias"])
            synthesis[f"{dst}/noise_strength"] = _np(sd[f"{src}.noise_strength"])
            synthesis[f"{dst}/mod_weight"] = _np(sd[f"{src}.affine.weight"]).T
            synthesis[f"{dst}/mod_bias"] = _np(sd[f"{src}.affine.bias"]) - 1
            synthesis[f"noise{noise}"] = _np(sd[f"{src}.noise_const"])[None, None]
        src, dst = f"synthesis.b{res}.torgb", f"{res}x{res}/ToRGB"
        synthesis[f"{dst}/weight"] = _np(sd[f"{src}.weight"]).transpose(2, 3, 1, 0)
        synthesis[f"{dst}/bias"] = _np(sd[f"{src}.bias"])
        synthesis[f"{dst}/mod_weight"] = _np(sd[f"{src}.affine.weight"]).T
        synthesis[f"{dst}/mod_bias"] = _np(sd[f"{src}.affine.bias"]) - 1
    return {"dlatent_avg": _np(sd["mapping.w_avg"])}, mapping, synthesis


def _tf_network(name: str, func: str, static_kwargs: dict, variables: dict, components: dict,
                build_module_src: str) -> TFNetwork:
    return TFNetwork(dict(version=4, name=name, static_kwargs=static_kwargs, components=components,
                          build_module_src=build_module_src, build_func_name=func,
                          variables=[(k, np.array(v, order="C")) for k, v in variables.items()]))


def tf_static_kwargs(G: Generator) -> dict:
    cfg = G.config
    return dict(num_channels=cfg.img_channels, resolution=cfg.img_resolution, label_size=cfg.c_dim,
                latent_size=cfg.z_dim, dlatent_size=cfg.w_dim, mapping_layers=cfg.mapping_layers,
                fmap_base=cfg.channel_base // 2, fmap_max=cfg.channel_max, mapping_lrmul=cfg.mapping_lr_multiplier,
                num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp)


def tf_networks(G: Generator, build_module_src: str = MODULE_SRC) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """(G, D, Gs) as the TF code pickles them; G and Gs carry the same weights."""
    own, mapping, synthesis = tf_variables(G)
    kwargs = tf_static_kwargs(G)

    def generator():
        components = {"mapping": _tf_network("G_mapping", "training.networks_stylegan2.G_mapping", {}, mapping, {},
                                             build_module_src),
                      "synthesis": _tf_network("G_synthesis", "training.networks_stylegan2.G_synthesis_stylegan2",
                                               {}, synthesis, {}, build_module_src)}
        return _tf_network("G", "training.networks_stylegan2.G_main", dict(kwargs), own, components,
                           build_module_src)

    D = _tf_network("D", "training.networks_stylegan2.D_stylegan2", dict(resolution=G.img_resolution),
                    {"Output/weight": np.ones([8, 1], np.float32)}, {}, build_module_src)
    return generator(), D, generator()


def write_tf_pickle(G: Generator, path, protocol: int = 3, build_module_src: str = MODULE_SRC) -> None:
    write_pickle(tf_networks(G, build_module_src), path, protocol=protocol)


# ------------------------------------------------------------------------------------------- rosinality .pt

def rosinality_state_dict(G: Generator) -> dict[str, torch.Tensor]:
    """Our generator in rosinality/stylegan2-pytorch's names and shapes, blur kernels included."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    cfg = G.config
    out = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    kernel = _resample_filter()

    def styled_conv(prefix: str, src: str) -> None:
        out[f"{prefix}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{prefix}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{prefix}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{prefix}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{prefix}.activate.bias"] = sd[f"{src}.bias"]

    def to_rgb(prefix: str, src: str, upsample: bool) -> None:
        if upsample:
            out[f"{prefix}.upsample.kernel"] = kernel * 4
        out[f"{prefix}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        out[f"{prefix}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{prefix}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{prefix}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    styled_conv("conv1", "synthesis.b4.conv1")
    to_rgb("to_rgb1", "synthesis.b4.torgb", upsample=False)
    out["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for i, res in enumerate(cfg.block_resolutions[1:]):
        log2 = int(math.log2(res))
        styled_conv(f"convs.{2 * i}", f"synthesis.b{res}.conv0")
        out[f"convs.{2 * i}.conv.blur.kernel"] = kernel * 4
        styled_conv(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1")
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb", upsample=True)
        out[f"noises.noise_{2 * log2 - 5}"] = sd[f"synthesis.b{res}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * log2 - 4}"] = sd[f"synthesis.b{res}.conv1.noise_const"][None, None]
    return out


def write_rosinality_pt(G: Generator, path) -> None:
    """A converted rosinality model, as Barbershop and StyleGAN-Human ship them."""
    torch.save({"g_ema": rosinality_state_dict(G), "latent_avg": G.mapping.w_avg.detach().clone()}, path)
