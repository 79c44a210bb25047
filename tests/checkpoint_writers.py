"""Writes generator files in the public formats, from one of this pack's Generators.

* :func:`write_nvidia_pickle`: NVIDIA's PyTorch-era network pickle, ``dict(G, D, G_ema,
  training_set_kwargs, augment_pipe)``, every network stored through the
  ``torch_utils.persistence._reconstruct_persistent_obj`` global with ``meta = {type, version,
  module_src, class_name, state}`` and ``state`` = the module ``__dict__`` (torch's own
  ``_parameters`` / ``_buffers`` / ``_modules`` bookkeeping, NVIDIA's configuration attributes,
  ``_init_kwargs`` as a plain dict), tensors pickled by torch itself;
* :func:`write_stylegan3_pickle`: the same for a StyleGAN3 generator, in stylegan3's classes and
  attributes (StyleGAN-Human's ``square`` where it applies);
* :func:`write_tf_pickle`: a TensorFlow-era pickle, ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``
  objects whose state holds the variables in TF layout as TF's session returns them (numpy arrays,
  numpy scalars for 0-d variables), pickled at protocol 4 with numpy 1.x's global names;
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
from insetgan_ops.checkpoints.rosinality import rosinality_state_dict
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator, SynthesisInput
from insetgan_ops.stylegan3 import SynthesisLayer as StyleGAN3Layer
from insetgan_ops.stylegan3 import SynthesisNetwork as StyleGAN3Synthesis

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


def _init_kwargs(cfg, layout: str = "ada") -> dict:
    """The Generator's ``_init_kwargs`` as persistence stores them: a plain dict (``**kwargs``) whose
    nested kwargs are EasyDicts. ``"ada"``: stylegan2-ada-pytorch's train.py nests the synthesis
    kwargs; ``"stylegan3"``: stylegan3's train.py (``--cfg=stylegan2``) passes them flat."""
    mapping = EasyDict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier)
    synthesis = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                     conv_clamp=cfg.conv_clamp)
    common = dict(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    if layout == "stylegan3":
        return dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping, **synthesis,
                    fused_modconv_default="inference_only", **common)
    return dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping, synthesis_kwargs=EasyDict(synthesis),
                **common)


def persistent_record(module: torch.nn.Module, cfg, module_src: str = MODULE_SRC,
                      layout: str = "ada") -> PersistentRecord:
    """Our module tree as NVIDIA's persistent networks (names, attributes and tensor layout of ada;
    the Generator's ``_init_kwargs`` in ``layout``, see :func:`_init_kwargs`)."""
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
    state["_modules"] = collections.OrderedDict((name, persistent_record(child, cfg, module_src, layout))
                                                for name, child in children)
    state.update(attributes)
    state["_init_args"] = ()
    state["_init_kwargs"] = _init_kwargs(cfg, layout) if isinstance(module, Generator) else {}
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
                    training_set_kwargs: Any = None, layout: str = "ada") -> dict:
    """The dict a training loop pickles, in its key order (``"ada"``: training_set_kwargs first;
    ``"stylegan3"``: last), with ``G`` as both G and G_ema unless given. training_set_kwargs is the
    plain dict both write (``dict(training_set_kwargs)``)."""
    if training_set_kwargs is None:
        training_set_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path="dataset.zip",
                                   use_labels=G.c_dim > 0, max_size=None, xflip=False, resolution=G.img_resolution)
    record = persistent_record(G, G.config, module_src, layout)
    networks = dict(G=record, D=_discriminator_record(), G_ema=record if G_ema is None else G_ema, augment_pipe=None)
    if layout == "stylegan3":
        return dict(**networks, training_set_kwargs=training_set_kwargs)
    return dict(training_set_kwargs=training_set_kwargs, **networks)


def write_nvidia_pickle(G: Generator, path, **snapshot_kwargs) -> None:
    write_pickle(nvidia_snapshot(G, **snapshot_kwargs), path)


def _stylegan3_attributes(module: torch.nn.Module, cfg: StyleGAN3Config) -> tuple[str, dict]:
    """NVIDIA's StyleGAN3 class name and attributes for one of our StyleGAN3 modules (StyleGAN-Human's
    classes add ``square``): numpy scalars and arrays where NVIDIA's code keeps numpy values."""
    square = {} if cfg.square else {"square": False}
    if isinstance(module, StyleGAN3Generator):
        return "Generator", dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                                 img_channels=cfg.img_channels, num_ws=cfg.num_ws, **square)
    if isinstance(module, MappingNetwork):
        return "MappingNetwork", dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                                      num_layers=cfg.mapping_layers, w_avg_beta=cfg.w_avg_beta,
                                      **({} if cfg.c_dim else {"embed": None}))
    if isinstance(module, FullyConnected):
        return "FullyConnectedLayer", dict(in_features=module.weight.shape[1], out_features=module.weight.shape[0],
                                           activation="lrelu" if module.lrelu else "linear",
                                           weight_gain=np.float64(module.weight_gain), bias_gain=module.bias_gain)
    if isinstance(module, StyleGAN3Synthesis):
        return "SynthesisNetwork", dict(w_dim=cfg.w_dim, num_ws=cfg.num_ws, img_resolution=cfg.img_resolution,
                                        img_channels=cfg.img_channels, num_layers=cfg.num_layers,
                                        num_critical=cfg.num_critical, margin_size=cfg.margin_size,
                                        output_scale=cfg.output_scale, num_fp16_res=cfg.num_fp16_res,
                                        layer_names=list(module.layer_names), **square)
    if isinstance(module, SynthesisInput):
        return "SynthesisInput", dict(w_dim=cfg.w_dim, channels=module.channels, size=np.array(module.size),
                                      sampling_rate=np.float64(module.sampling_rate),
                                      bandwidth=np.float64(module.bandwidth), **square)
    if isinstance(module, StyleGAN3Layer):
        spec = module.spec
        return "SynthesisLayer", dict(
            w_dim=cfg.w_dim, is_torgb=spec.is_torgb, is_critically_sampled=spec.is_critically_sampled,
            use_fp16=np.bool_(spec.use_fp16), in_channels=spec.in_channels, out_channels=spec.out_channels,
            in_size=np.array(spec.in_size), out_size=np.array(spec.out_size), in_sampling_rate=spec.in_sampling_rate,
            out_sampling_rate=spec.out_sampling_rate, tmp_sampling_rate=spec.tmp_sampling_rate,
            in_cutoff=np.float64(spec.in_cutoff), out_cutoff=np.float64(spec.out_cutoff),
            in_half_width=np.float64(spec.in_half_width), out_half_width=np.float64(spec.out_half_width),
            conv_kernel=spec.conv_kernel, conv_clamp=module.conv_clamp, magnitude_ema_beta=module.magnitude_ema_beta,
            up_factor=spec.up_factor, up_taps=spec.up_taps, down_factor=spec.down_factor, down_taps=spec.down_taps,
            down_radial=spec.down_radial, padding=list(spec.padding), **square)
    raise TypeError(f"no NVIDIA StyleGAN3 counterpart for {type(module).__name__}")


def stylegan3_init_kwargs(cfg: StyleGAN3Config) -> dict:
    """The ``_init_kwargs`` stylegan3's train.py gives a StyleGAN3 ``Generator`` (config R: the
    1x1 kernel and radial filters named), flat, with its nested mapping kwargs an EasyDict."""
    kwargs = dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim,
                  mapping_kwargs=EasyDict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier,
                                          w_avg_beta=cfg.w_avg_beta),
                  channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                  magnitude_ema_beta=cfg.magnitude_ema_beta, num_fp16_res=cfg.num_fp16_res,
                  conv_clamp=cfg.conv_clamp, num_layers=cfg.num_layers, num_critical=cfg.num_critical,
                  margin_size=cfg.margin_size, c_dim=cfg.c_dim, img_resolution=cfg.img_resolution,
                  img_channels=cfg.img_channels)
    if cfg.kind == "R":
        kwargs.update(conv_kernel=1, use_radial_filters=True)
    if not cfg.square:
        kwargs["square"] = False
    return kwargs


def stylegan3_record(module: torch.nn.Module, cfg: StyleGAN3Config, module_src: str = MODULE_SRC) -> PersistentRecord:
    """Our StyleGAN3 module tree as NVIDIA's persistent networks; identity filters are None buffers."""
    class_name, attributes = _stylegan3_attributes(module, cfg)
    state = dict(torch.nn.Module().__dict__)
    state["training"] = False
    state["_parameters"] = collections.OrderedDict(
        (name, torch.nn.Parameter(p.detach().clone(), requires_grad=False)) for name, p in module._parameters.items())
    state["_buffers"] = collections.OrderedDict(
        (name, None if b is None else b.detach().clone()) for name, b in module._buffers.items())
    state["_modules"] = collections.OrderedDict((name, stylegan3_record(child, cfg, module_src))
                                                for name, child in module.named_children())
    state.update(attributes)
    state["_init_args"] = ()
    state["_init_kwargs"] = stylegan3_init_kwargs(cfg) if isinstance(module, StyleGAN3Generator) else {}
    return PersistentRecord(class_name, state, module_src)


def write_stylegan3_pickle(G: StyleGAN3Generator, path, module_src: str = MODULE_SRC) -> None:
    """A StyleGAN3 training snapshot as stylegan3's training loop pickles it: ``dict(G, D, G_ema,
    augment_pipe, training_set_kwargs)``."""
    record = stylegan3_record(G, G.config, module_src)
    write_pickle(dict(G=record, D=_discriminator_record(), G_ema=record, augment_pipe=None,
                      training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="dataset.zip",
                                               use_labels=G.c_dim > 0, max_size=None, xflip=False,
                                               resolution=G.img_resolution)), path)


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


def _tf_value(value: np.ndarray):
    """What TensorFlow's session returns for a variable: a numpy scalar for 0-d ones, else an array."""
    return np.float32(value) if value.ndim == 0 else np.array(value, order="C")


def _tf_network(name: str, func: str, static_kwargs: dict, variables: dict, components: dict,
                build_module_src: str, version: int) -> TFNetwork:
    state = dict(version=version, name=name, static_kwargs=static_kwargs, components=components,
                 build_module_src=build_module_src, build_func_name=func,
                 variables=[(k, _tf_value(np.asarray(v))) for k, v in variables.items()])
    if version >= 5:  # stylegan2-ada's TF Network keeps its graph's signature too
        state.update(input_shapes=[[None, 512]], output_shapes=[[None, 3, 1024, 1024]], input_names=["latents_in"],
                     output_names=["images_out"])
    return TFNetwork(state)


def tf_static_kwargs(G: Generator) -> dict:
    cfg = G.config
    return dict(num_channels=cfg.img_channels, resolution=cfg.img_resolution, label_size=cfg.c_dim,
                latent_size=cfg.z_dim, dlatent_size=cfg.w_dim, mapping_layers=cfg.mapping_layers,
                fmap_base=cfg.channel_base // 2, fmap_max=cfg.channel_max, mapping_lrmul=cfg.mapping_lr_multiplier,
                num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp)


def tf_networks(G: Generator, build_module_src: str = MODULE_SRC,
                version: int = 4) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """(G, D, Gs) as NVIDIA's TF code pickles them (version 4: NVlabs/stylegan2; 5: stylegan2-ada's TF
    code, without ``lod``); G and Gs carry the same weights. As G_main builds them, the synthesis
    component comes first and both components get G's kwargs (mapping also ``dlatent_broadcast``)."""
    own, mapping, synthesis = tf_variables(G)
    if version < 5:
        own = {"lod": np.float32(0), **own}
    kwargs = tf_static_kwargs(G)

    def generator():
        components = {"synthesis": _tf_network("G_synthesis", "G_synthesis_stylegan2", dict(kwargs), synthesis, {},
                                               build_module_src, version),
                      "mapping": _tf_network("G_mapping", "G_mapping", dict(kwargs, dlatent_broadcast=G.num_ws),
                                             mapping, {}, build_module_src, version)}
        return _tf_network("G", "G_main", dict(kwargs), own, components, build_module_src, version)

    D = _tf_network("D", "D_stylegan2", dict(resolution=G.img_resolution),
                    {"Output/weight": np.ones([8, 1], np.float32)}, {}, build_module_src, version)
    return generator(), D, generator()


def _numpy1_reconstruct(*args):  # never called: only its name is written
    raise AssertionError("stand-in for numpy 1.x's numpy.core.multiarray._reconstruct")


def _numpy1_scalar(*args):  # never called: only its name is written
    raise AssertionError("stand-in for numpy 1.x's numpy.core.multiarray.scalar")


class _Numpy1Pickler(pickle.Pickler):
    """Pickles numpy arrays and scalars with numpy 1.x's global names (``numpy.core.multiarray``),
    as every published TF-era file has them, whatever numpy writes the file."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            _, args, state = obj.__reduce__()
            return _numpy1_reconstruct, args, state
        if isinstance(obj, np.generic):
            _, args = obj.__reduce__()
            return _numpy1_scalar, args
        return NotImplemented


@contextlib.contextmanager
def _numpy1_names() -> Iterator[None]:
    """``numpy.core.multiarray._reconstruct`` and ``.scalar`` resolve to the stand-ins while pickling."""
    previous = sys.modules.get("numpy.core.multiarray")
    standins = types.ModuleType("numpy.core.multiarray")
    for name, obj in (("_reconstruct", _numpy1_reconstruct), ("scalar", _numpy1_scalar)):
        obj.__module__, obj.__qualname__ = "numpy.core.multiarray", name
        setattr(standins, name, obj)
    sys.modules["numpy.core.multiarray"] = standins
    try:
        yield
    finally:
        if previous is None:
            del sys.modules["numpy.core.multiarray"]
        else:
            sys.modules["numpy.core.multiarray"] = previous


def write_tf_pickle(G: Generator, path, protocol: int = 4, build_module_src: str = MODULE_SRC,
                    version: int = 4) -> None:
    """A TF-era pickle as NVIDIA wrote it: ``pickle.dump((G, D, Gs), f, protocol=pickle.HIGHEST_PROTOCOL)``
    under Python 3.6 (protocol 4; stylegan2-ada's TF code used the default, 3) and numpy 1.x."""
    with _registered_as(_NVIDIA_GLOBALS), _numpy1_names(), open(path, "wb") as f:
        _Numpy1Pickler(f, protocol=protocol).dump(tf_networks(G, build_module_src, version))


# ------------------------------------------------------------------------------------------- rosinality .pt

def write_rosinality_pt(G: Generator, path, legacy_format: bool = False) -> None:
    """A converted rosinality model, as convert_weight.py writes it and Barbershop ships it:
    ``{"g_ema": ..., "latent_avg": ...}``; ``legacy_format``: torch's pre-1.6 (non-zip) file format,
    as many 2020 files are."""
    torch.save({"g_ema": rosinality_state_dict(G), "latent_avg": G.mapping.w_avg.detach().clone()}, path,
               _use_new_zipfile_serialization=not legacy_format)


def rosinality_training_args(G: Generator):
    """The ``argparse.Namespace`` rosinality's train.py stores as ``args``, as its argument parser fills it."""
    import argparse
    return argparse.Namespace(path="lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=G.img_resolution,
                              r1=10, path_regularize=2, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
                              ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=False,
                              augment_p=0, ada_target=0.6, ada_length=500000, ada_every=256, n_gpu=1,
                              distributed=False, latent=G.w_dim, n_mlp=G.config.mapping_layers, start_iter=0)


def write_rosinality_training_checkpoint(G: Generator, path) -> None:
    """What rosinality's train.py saves every 10000 iterations: the networks, the optimisers' states,
    the run's arguments and the ADA probability; no latent_avg."""
    sd = rosinality_state_dict(G)
    params = list(range(len(sd)))
    optim = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(1), "exp_avg_sq": torch.zeros(1)}
                       for i in params[:2]},
             "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
                               "params": params}]}
    torch.save({"g": sd, "d": {"convs.0.0.weight": torch.zeros(1, 3, 1, 1)}, "g_ema": sd, "g_optim": optim,
                "d_optim": optim, "args": rosinality_training_args(G), "ada_aug_p": 0.0}, path)
