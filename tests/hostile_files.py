"""Hostile and malformed files for every loader of the pack, and a harness that loads each one in a
child process so that a crash, a hang or a memory bomb fails one test instead of killing pytest.

Harness: :func:`run_isolated` calls a function in a child forked from a server process that has
already imported torch and the pack (``multiprocessing``'s forkserver, so a case costs tens of
milliseconds, not the seconds of a fresh interpreter). The child limits its address space to
:data:`ADDRESS_SPACE_HEADROOM` beyond what it starts with, uses one thread, and reports (see
:class:`Outcome`) how the call ended: ``pack_error`` (a :class:`CheckpointError`), ``value_error``
(any other ``ValueError``), ``other_error`` or ``returned``, with the error's message, whether an
allocation failed anywhere in the error's chain (a loader that refuses a memory bomb only because
the allocation failed has not refused it), how much address space the call added at its peak, and,
for a returned value, whether all its floating-point tensors are finite.

Writers: one ``write_*`` function per case, ``write_x(folder, sentinel) -> path``. Each writes a
small file (a few KB to a few MB) into ``folder`` and returns its path; where the file could run
code it embeds a payload creating ``sentinel``, placed *after* the hazard in the stream (a payload
before it would be refused first and hide the hazard). The base material is real: NVIDIA, TF-era and
rosinality generator files from :mod:`tests.checkpoint_writers`, ``torch.save`` files in the zip and
the legacy formats, the pack's own ``.safetensors`` files; opcode-level pickles are written by hand.

Hostile library inputs: the ``*_call`` functions at the end run one library call with an absurd
argument, for :func:`run_isolated`.
"""

from __future__ import annotations

import collections
import dataclasses
import faulthandler
import functools
import io
import json
import math
import multiprocessing
import os
import pickle
import pickletools
import random
import re
import resource
import shlex
import signal
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from safetensors import safe_open
from PIL import Image
from safetensors.torch import load_file, save_file

from insetgan_ops.checkpoints import CheckpointError, save_generator
from insetgan_ops.crop_paste import box_mask, crop, paste
from insetgan_ops.detection import FaceDetector
from insetgan_ops.editing import load_directions
from insetgan_ops.face_parsers import BiSeNetFaceParser, UNetConfig, UNetFaceParser, save_face_parser
from insetgan_ops.latents import FORMAT_TAG, FORMAT_VERSION, GeneratorIdentity, Latent, save_latent
from insetgan_ops.lpips_loader import backbone_filename, load_lpips
from insetgan_ops.projection import ProjectionSettings, project
from insetgan_ops.segmentation import CELEBAMASK_19
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from insetgan_ops.target_mask import dilate, feather
from tests.checkpoint_writers import (_NVIDIA_GLOBALS, PersistentRecord, TFNetwork, _registered_as, nvidia_snapshot,
                                      rosinality_state_dict, stylegan3_record, tf_networks, write_pickle,
                                      write_rosinality_pt, write_tf_pickle)
from tests.encoder_checkpoints import write_small_encoder
from tests.tiny_generator import tiny_generator

# ============================================================================================= the harness

TIMEOUT_S = 60
ADDRESS_SPACE_HEADROOM = 2 << 30
"""Address space a child may map beyond what it starts with; memory bombs here claim more."""
PEAK_GROWTH_LIMIT = 1 << 30
"""Address space no loader needs for these small files (LPIPS, the largest, builds a 240 MB AlexNet)."""

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])  # the server imports torch and the pack once


@dataclasses.dataclass
class Outcome:
    """How an isolated call ended. ``report`` (None when the child died) holds ``outcome``
    (``pack_error``, ``value_error``, ``other_error`` or ``returned``), ``type``, ``message``,
    ``allocation_failed``, ``peak_growth`` (bytes), ``where`` (the raising line) and, for a returned
    value, ``tensors``, ``finite``, ``min`` and ``max`` over its floating-point tensors."""

    exitcode: Optional[int]
    timed_out: bool
    report: Optional[dict]
    output: str = dataclasses.field(default="", repr=False)
    """What the child printed, faulthandler's traceback of a crash included."""

    @property
    def crashed(self) -> bool:
        return not self.timed_out and (self.exitcode != 0 or self.report is None)

    def describe(self) -> str:
        """One line for a failing assertion: crash, timeout, the error, or what was returned."""
        if self.timed_out:
            return f"timeout: still running after {TIMEOUT_S} s"
        if self.crashed:
            how = (f"signal {signal.Signals(-self.exitcode).name}" if self.exitcode and self.exitcode < 0
                   else f"exit code {self.exitcode}")
            trace = self.output.split("\nExtension modules:")[0]  # faulthandler's traceback, without the module list
            return f"crash ({how}) {trace[:800]}".strip()
        r = self.report
        growth = f", peak +{r['peak_growth'] / 2**20:.0f} MiB"
        if r["outcome"] == "returned":
            values = "finite" if r["finite"] else "NON-FINITE"
            return (f"returned {r['type']} ({r['tensors']} tensors, {values}, min {r['min']}, max {r['max']}"
                    f"{growth})")
        alloc = ", after an allocation FAILED" if r["allocation_failed"] else ""
        return f"{r['outcome']} {r['type']} at {r['where']}{alloc}{growth}: {r['message'][:400]}"


def run_isolated(call: Callable[..., Any], *args: Any, timeout: float = TIMEOUT_S) -> Outcome:
    """Runs ``call(*args)`` (a module-level function and picklable arguments) in a child process
    with :data:`ADDRESS_SPACE_HEADROOM` of address space and ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as folder:
        result, output = Path(folder) / "result.json", Path(folder) / "output.txt"
        process = _CONTEXT.Process(target=_child, args=(call, args, str(result), str(output)), daemon=True)
        process.start()
        process.join(timeout)
        timed_out = process.is_alive()
        if timed_out:
            process.kill()
            process.join()
        report = json.loads(result.read_text()) if result.exists() else None
        return Outcome(process.exitcode, timed_out, report,
                       output.read_text(errors="replace") if output.exists() else "")


def _status_bytes(field: str) -> int:
    """A ``Vm*`` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _child(call, args, result_file: str, output_file: str) -> None:
    """In the child: limits itself, calls, writes the report to ``result_file``; what it prints (and
    faulthandler's traceback of a crash) goes to ``output_file``, not into pytest's captured output."""
    start = _status_bytes("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (start + ADDRESS_SPACE_HEADROOM,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    torch.set_num_threads(1)
    with open(output_file, "w") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        faulthandler.enable(output)
        try:
            value = call(*args)
        except BaseException as error:  # noqa: BLE001 - RecursionError and MemoryError are outcomes too
            report = _error_report(error)
        else:
            report = {"outcome": "returned", "allocation_failed": False, **_value_report(value)}
        faulthandler.disable()
    report["peak_growth"] = _status_bytes("VmPeak") - start
    partial = result_file + ".partial"
    Path(partial).write_text(json.dumps(report))
    os.replace(partial, result_file)


_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "unable to allocate", "out of memory")


def _error_report(error: BaseException) -> dict:
    """The outcome of a call that raised ``error``; ``allocation_failed`` looks along its cause chain."""
    chain, seen = [], set()
    e: Optional[BaseException] = error
    while e is not None and id(e) not in seen and len(chain) < 20:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else "?"
    kind = ("pack_error" if isinstance(error, CheckpointError) else
            "value_error" if isinstance(error, ValueError) else "other_error")
    return {"outcome": kind, "type": type(error).__name__, "message": str(error)[:4000], "where": where,
            "allocation_failed": any(isinstance(e, MemoryError) or any(s in str(e).lower() for s in
                                                                      _ALLOCATION_FAILURES) for e in chain)}


def _tensors(value: Any, depth: int = 0):
    """The tensors inside a returned value: modules' state, dataclass fields, containers."""
    if depth > 8:
        return
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, torch.nn.Module):
        yield from value.state_dict().values()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _tensors(getattr(value, field.name), depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item, depth + 1)


def _value_report(value: Any) -> dict:
    """The outcome of a call that returned ``value``: its floating-point tensors, finite or not."""
    floats = [t.detach().float() for t in _tensors(value) if t.is_floating_point() and t.numel()]
    return {"type": type(value).__name__, "tensors": len(floats),
            "finite": all(bool(torch.isfinite(t).all()) for t in floats),
            "min": min((t.min().item() for t in floats), default=None),
            "max": max((t.max().item() for t in floats), default=None)}


def load_alexnet_lpips(path: str):
    """``load_lpips("alex")`` finding its backbone ``path`` (torchvision's file name) in its folder."""
    return load_lpips("alex", "cpu", search_dirs=[os.path.dirname(path)])


def abort_call() -> None:
    """Dies of SIGABRT, as a crashing loader would (for the harness's own test)."""
    os.abort()


def sleep_call(seconds: float) -> None:
    """Hangs for ``seconds`` (for the harness's own test)."""
    time.sleep(seconds)


def allocate_call() -> torch.Tensor:
    """Asks for a TiB, beyond the child's address space, and reports the failure as a plain error."""
    try:
        return torch.empty(1 << 40, dtype=torch.uint8)
    except RuntimeError as e:
        raise ValueError("allocation refused") from e


# ============================================================================================= building blocks

@functools.lru_cache(maxsize=None)
def _generator():
    """The tiny generator every generator file is written from (16x16, w_dim 32, blocks b4-b16); never modified."""
    return tiny_generator(0)


class Payload:
    """Unpickling this runs ``os.system('touch <sentinel>')`` (or ``builtins.exec`` of code creating it)."""

    def __init__(self, sentinel: Path, via: str = "os.system"):
        self.sentinel, self.via = str(sentinel), via

    def __reduce__(self):
        if self.via == "exec":
            return exec, (f"open({self.sentinel!r}, 'w').close()",)
        return os.system, (f"touch {shlex.quote(self.sentinel)}",)


def payload_opcodes(sentinel: Path) -> bytes:
    """The opcodes of :class:`Payload` (``os.system`` applied to a string), for hand-written pickles."""
    command = f"touch {shlex.quote(str(sentinel))}".encode()
    return b"cos\nsystem\n" + b"X" + struct.pack("<I", len(command)) + command + b"\x85R"


class TensorView:
    """Pickles (by ``torch.save`` or plain pickle) as a tensor over ``storage`` with any size and stride,
    whatever the storage holds: ``torch._utils._rebuild_tensor_v2(storage, 0, size, stride, ...)``."""

    def __init__(self, storage: torch.TypedStorage, size: tuple, stride: tuple):
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride, False,
                                                 collections.OrderedDict())


class HugeNumpyArray:
    """Pickles as numpy's own array pickle, ``_reconstruct(ndarray, (0,), b'b')`` then ``__setstate__``
    with ``shape`` and 16 bytes of data; ``in_reconstruct``: ``_reconstruct`` is asked for ``shape`` too
    (numpy allocates that array before the state is read)."""

    def __init__(self, shape: tuple, in_reconstruct: bool):
        self.shape, self.in_reconstruct = shape, in_reconstruct

    def __reduce__(self):
        reconstruct = np.zeros(0).__reduce__()[0]
        return (reconstruct, (np.ndarray, self.shape if self.in_reconstruct else (0,), b"b"),
                (1, self.shape, np.dtype("<f4"), False, b"\0" * 16))


class _Marker:
    """Stands where :func:`_spliced_pickle` puts hand-written opcodes."""

    def __reduce__(self):
        return _splice_point, ()


def _splice_point():  # never called: only its name is written
    raise AssertionError("stand-in for spliced opcodes")


def _spliced_pickle(obj: Any, path: Path, opcodes: bytes) -> Path:
    """Pickles ``obj`` (NVIDIA names available, protocol 2: no frames) and replaces the one
    :class:`_Marker` in it, ``GLOBAL _splice_point``, its memo put, ``EMPTY_TUPLE REDUCE``, with
    ``opcodes``, which must push exactly one object."""
    write_pickle(obj, path, protocol=2)
    marker = re.compile(b"c" + re.escape(f"{__name__}\n_splice_point\n".encode()) + b"(?:q.|r....)\\)R", re.DOTALL)
    data, count = marker.subn(lambda _: opcodes, path.read_bytes())
    assert count == 1, "the marker must appear exactly once"
    path.write_bytes(data)
    return path


def _module_state(record: PersistentRecord, dotted: str) -> dict:
    """The stored ``__dict__`` of a submodule of a written network, e.g. ``"synthesis.b8.conv1"``."""
    for name in dotted.split(".") if dotted else ():
        record = record.meta["state"]["_modules"][name]
    return record.meta["state"]


def _snapshot() -> dict:
    """A fresh NVIDIA snapshot of the tiny generator (its tensors are copies, free to modify)."""
    return nvidia_snapshot(_generator())


def _rosinality_data() -> dict:
    """What rosinality's convert_weight.py saves, for the tiny generator (copies, free to modify)."""
    G = _generator()
    return {"g_ema": rosinality_state_dict(G), "latent_avg": G.mapping.w_avg.detach().clone()}


@dataclasses.dataclass
class _Member:
    """A zip member as stored: ``data`` deflated when ``method`` is 8, else as is."""

    name: str
    data: bytes
    size: int
    crc: int
    method: int = 0


def _stored(name: str, data: bytes) -> _Member:
    return _Member(name, data, len(data), zlib.crc32(data))


def _zip_members(path: Path) -> list[_Member]:
    with zipfile.ZipFile(path) as z:
        return [_stored(info.filename, z.read(info)) for info in z.infolist()]


def _member_name(members: list[_Member], suffix: str) -> str:
    """The full name of the torch archive member ending in ``suffix`` (``/data.pkl``, ``/data/0``)."""
    return next(m.name for m in members if m.name.endswith(suffix))


def _write_zip(path: Path, members: list[_Member]) -> Path:
    """Writes a plain zip archive (no zip64, no extra fields), members in order."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m.name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, m.method, 0, 0x21, m.crc, len(m.data), m.size, len(name), 0)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, len(out)) + name
        out += b"PK\x03\x04" + fields + name + m.data
    n = len(members)
    path.write_bytes(bytes(out + central + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, n, n, len(central),
                                                                       len(out), 0)))
    return path


def _torch_zip_with_data_pkl(folder: Path, name: str, data_pkl: bytes) -> Path:
    """A rosinality ``.pt`` (zip format) whose ``data.pkl`` is replaced by ``data_pkl``."""
    path = folder / name
    write_rosinality_pt(_generator(), path)
    members = _zip_members(path)
    pkl = _member_name(members, "/data.pkl")
    return _write_zip(path, [_stored(pkl, data_pkl) if m.name == pkl else m for m in members])


def _truncated(path: Path) -> Path:
    """Cuts the file at half its size, as an interrupted download leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _rewrite_safetensors(path: Path, tensors: Optional[dict] = None, **metadata: str) -> Path:
    """Rewrites a ``.safetensors`` file with other ``tensors`` and/or metadata entries."""
    with safe_open(str(path), framework="pt") as f:
        old = dict(f.metadata() or {})
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata={**old, **metadata})
    return path


def _pack_generator_with_config(folder: Path, **changes: Any) -> Path:
    """The pack's ``.safetensors`` generator whose ``config`` metadata has ``changes`` (tensors unchanged)."""
    path = folder / "generator.safetensors"
    save_generator(_generator(), path)
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    return _rewrite_safetensors(path, config=json.dumps({**config, **changes}))


def _nvidia_named_init_kwargs() -> dict:
    """NVIDIA ``Generator`` init kwargs of the tiny generator, as stylegan2-ada's train.py passes them."""
    cfg = _generator().config
    return dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=cfg.mapping_layers, lr_multiplier=0.01),
                synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=0,
                                      conv_clamp=None))


def _nvidia_named_safetensors(folder: Path, extra: Optional[dict] = None, init_kwargs: Optional[dict] = None) -> Path:
    """An NVIDIA-named generator state dict as ``.safetensors`` (``extra`` tensors added), with
    ``init_kwargs`` metadata when given."""
    path = folder / "ffhq.safetensors"
    tensors = {k: v.detach().clone() for k, v in _generator().state_dict().items()}
    tensors.update(extra or {})
    metadata = None if init_kwargs is None else {"arch": "stylegan2", "init_kwargs": json.dumps(init_kwargs)}
    save_file(tensors, str(path), metadata=metadata)
    return path


@functools.lru_cache(maxsize=None)
def bisenet_state_dict() -> dict[str, torch.Tensor]:
    """A 19-class BiSeNet state dict in the public checkpoints' names and shapes (random, finite; 52 MB)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in BiSeNetFaceParser(CELEBAMASK_19).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: (torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked") else
                torch.rand(s, generator=g) + 0.5 if k.endswith("running_var") else
                torch.randn(s, generator=g) * 0.05) for k, s in shapes.items()}


# torchvision's AlexNet features (the part of alexnet-owt-7be5be79.pth that LPIPS reads).
_ALEXNET_FEATURES = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}


def alexnet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's AlexNet ``features.*`` tensors (random, finite; 10 MB): what LPIPS reads of its backbone."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for index, (out, inp, k) in _ALEXNET_FEATURES.items():
        sd[f"features.{index}.weight"] = torch.randn(out, inp, k, k, generator=g) * 0.01
        sd[f"features.{index}.bias"] = torch.zeros(out)
    return sd


def tiny_unet() -> UNetFaceParser:
    """A seeded 16-pixel U-Net face parser (channels 4, 8)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNetFaceParser(UNetConfig(input_size=16, channels=(4, 8)))


def latent_file(folder: Path) -> Path:
    """A good latent of the tiny generator, written by save_latent."""
    G = _generator()
    path = folder / "latent.safetensors"
    save_latent(Latent(G.w_avg.detach().expand(1, G.num_ws, G.w_dim).clone(), GeneratorIdentity.of(G)), path)
    return path


# ================================================================================== 1. crashes

def deep_tuple_key_dict(sentinel: Path, depth: int = 10**6) -> bytes:
    """A pickle of ``{(((None,),),...): None, 'later': payload}``: hashing the key (at SETITEM) recurses
    ``depth`` levels in C, before the payload is read."""
    return (b"\x80\x02}N" + b"\x85" * depth + b"Ns" + b"X\x05\x00\x00\x00later" + payload_opcodes(sentinel)
            + b"s.")


def deep_list_opcodes(depth: int) -> bytes:
    """Opcodes pushing ``[[[...]]]`` nested ``depth`` deep: ``depth`` EMPTY_LISTs, then APPENDs folding them."""
    return b"]" * depth + b"a" * (depth - 1)


def deep_reduce_opcodes(depth: int) -> bytes:
    """Opcodes pushing ``OrderedDict((('c', OrderedDict((('c', ...),))),))`` nested ``depth`` deep: each
    level a REDUCE of the allowed global ``collections.OrderedDict`` on tuples holding the level below,
    so a scan must count REDUCE results as nesting (two stack items per level)."""
    global_ = b"ccollections\nOrderedDict\n"
    # per level: OrderedDict, 'c', <inner>, then TUPLE2 -> ('c', inner), TUPLE1 -> pairs, TUPLE1 -> args, REDUCE
    return (global_ + b"X\x01\x00\x00\x00c") * depth + global_ + b")R" + b"\x86\x85\x85R" * depth


def write_deep_tuple_key_pkl(folder: Path, sentinel: Path) -> Path:
    """A ``.pkl`` whose top is a dict keyed by a tuple nested 10^6 deep (segfaults CPython when hashed)."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(deep_tuple_key_dict(sentinel))
    return path


def write_deep_tuple_key_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A torch zip ``.pt`` whose ``data.pkl`` is the dict keyed by a 10^6-deep tuple."""
    return _torch_zip_with_data_pkl(folder, "g.pt", deep_tuple_key_dict(sentinel))


def write_deep_list_pkl(folder: Path, sentinel: Path, depth: int = 10**6) -> Path:
    """An NVIDIA snapshot whose ``training_set_kwargs`` is a list nested ``depth`` deep."""
    snapshot = _snapshot()
    snapshot["training_set_kwargs"] = _Marker()
    return _spliced_pickle(snapshot, folder / "network-snapshot.pkl", deep_list_opcodes(depth))


def write_deep_reduce_pkl(folder: Path, sentinel: Path, depth: int = 20_000) -> Path:
    """An NVIDIA snapshot whose ``training_set_kwargs`` is the OrderedDict chain of
    :func:`deep_reduce_opcodes`, ``depth`` deep (never 100,000 items on the stack at once)."""
    snapshot = _snapshot()
    snapshot["training_set_kwargs"] = _Marker()
    return _spliced_pickle(snapshot, folder / "network-snapshot.pkl", deep_reduce_opcodes(depth))


# ================================================================================== 2. memory bombs

def write_memo_index_pkl(folder: Path, sentinel: Path) -> Path:
    """A pickle storing to memo index 2^31 (LONG_BINPUT): CPython grows its memo array to 2^32 entries."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(b"\x80\x02N" + b"r" + struct.pack("<I", 2**31) + b"0" + payload_opcodes(sentinel) + b".")
    return path


def write_binbytes8_pkl(folder: Path, sentinel: Path) -> Path:
    """A protocol-4 pickle whose BINBYTES8 claims 2^40 bytes (the file holds a few)."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"\0" * 64 + payload_opcodes(sentinel) + b".")
    return path


def write_binunicode8_pkl(folder: Path, sentinel: Path) -> Path:
    """A protocol-4 pickle whose BINUNICODE8 claims 2^40 bytes of text."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(b"\x80\x04\x8d" + struct.pack("<Q", 2**40) + b"a" * 64 + payload_opcodes(sentinel) + b".")
    return path


def write_stride_zero_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` whose ``style.1.weight`` is [10^6, 10^6] with stride (0, 0) over a 1-element
    storage: 10^12 elements that any elementwise check or copy materialises."""
    data = _rosinality_data()
    data["g_ema"]["style.1.weight"] = TensorView(torch.zeros(1)._typed_storage(), (10**6, 10**6), (0, 0))
    path = folder / "g.pt"
    torch.save(data, path)
    return path


def write_size_exceeds_storage_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` whose ``style.1.weight`` claims [10^5, 10^5] over a 4-element storage
    (``set_`` would grow the storage to 40 GB of uninitialised memory); payload after it."""
    data = _rosinality_data()
    data["g_ema"]["style.1.weight"] = TensorView(torch.zeros(4)._typed_storage(), (10**5, 10**5), (10**5, 1))
    data["zz_later"] = Payload(sentinel)
    path = folder / "g.pt"
    torch.save(data, path)
    return path


def write_size_exceeds_storage_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose mapping ``w_avg`` claims [10^5, 10^5] over a 4-element storage; payload after it."""
    snapshot = _snapshot()
    _module_state(snapshot["G_ema"], "mapping")["_buffers"]["w_avg"] = TensorView(
        torch.zeros(4)._typed_storage(), (10**5, 10**5), (10**5, 1))
    snapshot["augment_pipe"] = Payload(sentinel)
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw DEFLATE stream of ``size`` zero bytes (a multiple of 1 MiB) and its CRC-32, made from one
    compressed MiB repeated (a full flush makes every MiB's blocks identical)."""
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size >> 20
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return block * count + compressor.flush(), crc


def write_deflate_bomb_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` whose first storage member is DEFLATE-compressed: 3 MB that inflate to 3 GiB
    (torch writes every member uncompressed); payload after the tensors in ``data.pkl``."""
    path = folder / "g.pt"
    data = _rosinality_data()
    data["zz_later"] = Payload(sentinel)
    torch.save(data, path)
    members = _zip_members(path)
    target = _member_name(members, "/data/0")
    deflated, crc = _zeros_deflated(3 << 30)
    return _write_zip(path, [_Member(m.name, deflated, 3 << 30, crc, method=8) if m.name == target else m
                             for m in members])


def _huge_numpy_tf_pkl(folder: Path, sentinel: Path, in_reconstruct: bool) -> Path:
    G_train, D, Gs = tf_networks(_generator())
    Gs.state["variables"] = [(k, HugeNumpyArray((10**6, 10**6), in_reconstruct) if k == "dlatent_avg" else v)
                             for k, v in Gs.state["variables"]]
    Gs.state["zz_later"] = Payload(sentinel)
    path = folder / "stylegan2-ffhq-config-f.pkl"
    write_pickle((G_train, D, Gs), path)
    return path


def write_huge_numpy_reconstruct_tf_pkl(folder: Path, sentinel: Path) -> Path:
    """A TF-era pickle whose ``dlatent_avg`` asks numpy's ``_reconstruct`` for shape (10^6, 10^6) (1 TB
    allocated before the 16 bytes of state are read); payload after the networks' variables."""
    return _huge_numpy_tf_pkl(folder, sentinel, in_reconstruct=True)


def write_huge_numpy_setstate_tf_pkl(folder: Path, sentinel: Path) -> Path:
    """A TF-era pickle whose ``dlatent_avg`` is built as numpy builds arrays, its ``__setstate__``
    (BUILD) claiming shape (10^6, 10^6) float32 for 16 bytes; payload after the variables."""
    return _huge_numpy_tf_pkl(folder, sentinel, in_reconstruct=False)


def write_channel_max_safetensors(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA-named ``.safetensors`` generator whose init_kwargs say channel_max 10^7 while its tensors
    have 32 channels."""
    kwargs = _nvidia_named_init_kwargs()
    kwargs["synthesis_kwargs"]["channel_max"] = 10**7
    return _nvidia_named_safetensors(folder, init_kwargs=kwargs)


def write_absurd_shape_header_safetensors(folder: Path, sentinel: Path) -> Path:
    """A ``.safetensors`` header declaring ``mapping.fc0.weight`` [2^20, 2^20] float32 (4 TiB) and
    ``synthesis.b4.const``, in a file of a few hundred bytes."""
    size = 4 * 2**40
    header = {"mapping.fc0.weight": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, size]},
              "synthesis.b4.const": {"dtype": "F32", "shape": [32, 4, 4], "data_offsets": [size, size + 2048]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = folder / "ffhq.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(256))
    return path


def write_config_resolution_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator whose config says img_resolution 2^20 (channel_base 2^40, so
    every block has channels): 19 blocks with 2^20 x 2^20 noise buffers, for a 16x16 file."""
    return _pack_generator_with_config(folder, img_resolution=2**20, channel_base=2**40)


def write_config_channels_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator whose config gives every block 10^6 channels."""
    return _pack_generator_with_config(folder, channels={"4": 10**6, "8": 10**6, "16": 10**6})


def write_config_mapping_layers_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator whose config says mapping_layers 10^6."""
    return _pack_generator_with_config(folder, mapping_layers=10**6)


def write_config_z_dim_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator whose config says z_dim 10^8."""
    return _pack_generator_with_config(folder, z_dim=10**8)


def write_unet_channels_face_parser(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` face parser whose config says channels (10^6, 10^6): a 10^6 x 10^6 x 3 x 3
    convolution (36 TB) for a file of a few KB."""
    path = folder / "face_parser.safetensors"
    save_face_parser(tiny_unet(), path)
    return _rewrite_safetensors(path, config=json.dumps({"input_size": 16, "channels": [10**6, 10**6]}))


# ------------------------------------------------------------------------------------------ StyleGAN3 pickles

@functools.lru_cache(maxsize=None)
def _stylegan3_generator() -> StyleGAN3Generator:
    """A tiny StyleGAN3-R generator (16x16, 6 layers); never modified."""
    torch.manual_seed(0)
    return StyleGAN3Generator(StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=16, num_layers=6, margin_size=4,
                                              channel_base=256, channel_max=16, conv_kernel=1,
                                              use_radial_filters=True)).eval()


def _stylegan3_pickle(folder: Path, edit: Callable[[PersistentRecord], None]) -> Path:
    """A StyleGAN3 snapshot of the tiny generator, its G_ema record changed by ``edit``."""
    G = _stylegan3_generator()
    record = stylegan3_record(G, G.config)
    edit(record)
    path = folder / "stylegan3-r-network-snapshot.pkl"
    write_pickle(dict(G=record, G_ema=record, D=None, augment_pipe=None, training_set_kwargs={}), path)
    return path


def write_stylegan3_channel_base_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot whose init_kwargs say channel_base 2^40 (10^12-channel layers)."""
    return _stylegan3_pickle(folder, lambda G: _module_state(G, "")["_init_kwargs"].update(channel_base=2 ** 40))


def write_stylegan3_num_layers_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot whose synthesis says it has 10^7 layers."""
    return _stylegan3_pickle(folder, lambda G: _module_state(G, "synthesis").update(num_layers=10 ** 7))


def write_stylegan3_margin_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot whose synthesis says margin_size 10^9 (feature maps of 10^18 pixels)."""
    return _stylegan3_pickle(folder, lambda G: _module_state(G, "synthesis").update(margin_size=10 ** 9))


def write_stylegan3_filter_size_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot whose init_kwargs say filter_size 10^8 (filters of 10^8 taps)."""
    return _stylegan3_pickle(folder, lambda G: _module_state(G, "")["_init_kwargs"].update(filter_size=10 ** 8))


def write_stylegan3_nan_magnitude_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot whose first layer's magnitude_ema is NaN (every image would be NaN)."""
    def edit(G: PersistentRecord) -> None:
        first = _module_state(G, "synthesis")["layer_names"][0]
        _module_state(G, f"synthesis.{first}")["_buffers"]["magnitude_ema"] = torch.tensor(float("nan"))
    return _stylegan3_pickle(folder, edit)


def write_stylegan3_os_system_pkl(folder: Path, sentinel: Path) -> Path:
    """A StyleGAN3 snapshot with an ``os.system`` payload as an attribute of the Fourier input."""
    return _stylegan3_pickle(folder, lambda G: _module_state(G, "synthesis.input").update(payload=Payload(sentinel)))


# ================================================================================== 3. hangs

def _persistent_dag(levels: int) -> PersistentRecord:
    """``levels`` persistent modules, each with two children that are the same module (pickled once, then
    by memo): a walk that does not notice sharing visits 2^levels modules."""
    def record(children: dict) -> PersistentRecord:
        return PersistentRecord("Node", {"training": False, "_parameters": collections.OrderedDict(),
                                         "_buffers": collections.OrderedDict(),
                                         "_modules": collections.OrderedDict(children),
                                         "_init_args": (), "_init_kwargs": {}})
    node = record({})
    for _ in range(levels):
        node = record({"a": node, "b": node})
    return node


def write_module_dag_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose G_ema has an extra child: a 40-level DAG of shared modules (2^40 paths)."""
    snapshot = _snapshot()
    _module_state(snapshot["G_ema"], "")["_modules"]["extra"] = _persistent_dag(40)
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def _tf_dag(levels: int) -> TFNetwork:
    """TF Networks whose ``components`` form the same 2^levels-path DAG."""
    def network(components: dict) -> TFNetwork:
        return TFNetwork(dict(version=4, name="Node", static_kwargs={}, components=components,
                              build_module_src="", build_func_name="Node", variables=[]))
    node = network({})
    for _ in range(levels):
        node = network({"a": node, "b": node})
    return node


def write_component_dag_tf_pkl(folder: Path, sentinel: Path) -> Path:
    """A TF-era pickle whose Gs mapping component has a 40-level DAG of shared components."""
    G_train, D, Gs = tf_networks(_generator())
    Gs.state["components"]["mapping"].state["components"]["extra"] = _tf_dag(40)
    path = folder / "stylegan2-ffhq-config-f.pkl"
    write_pickle((G_train, D, Gs), path)
    return path


def _rosinality_with_extra(folder: Path, key: str, value: torch.Tensor) -> Path:
    data = _rosinality_data()
    data["g_ema"][key] = value
    path = folder / "g.pt"
    torch.save(data, path)
    return path


def write_huge_conv_index_pt(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` with a key ``convs.99999999999.conv.weight`` (its block would be 2^(5 x 10^10))."""
    return _rosinality_with_extra(folder, "convs.99999999999.conv.weight", torch.zeros(1, 32, 32, 3, 3))


def write_huge_noise_index_pt(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` with a key ``noises.noise_99999999999``."""
    return _rosinality_with_extra(folder, "noises.noise_99999999999", torch.zeros(1, 1, 4, 4))


def write_huge_block_safetensors(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA-named ``.safetensors`` generator with an extra ``synthesis.b99999999999999.conv1.weight``."""
    return _nvidia_named_safetensors(folder, {"synthesis.b99999999999999.conv1.weight": torch.zeros(32, 32, 3, 3)})


def write_huge_mapping_index_safetensors(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA-named ``.safetensors`` generator with an extra ``mapping.fc99999999999.weight``."""
    return _nvidia_named_safetensors(folder, {"mapping.fc99999999999.weight": torch.zeros(32, 32)})


def _fifo(folder: Path, name: str) -> Path:
    """A named pipe nobody writes to: opening it for reading blocks forever."""
    path = folder / name
    os.mkfifo(path)
    return path


def _directory(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir()
    return path


# What each loader's files are called: a pipe or a folder under that name must be refused, not opened.
LOADER_FILE_NAMES = {"generator": "network-snapshot.pkl", "latent": "latent.safetensors",
                     "face_parser": "79999_iter.pth", "encoder": "e4e_ffhq_encode.pt",
                     "directions": "stylegan_ffhq_age_w_boundary.npy", "png_latent": "ComfyUI_00001_.png"}


def fifo_writer(loader: str) -> Callable[[Path, Path], Path]:
    return lambda folder, sentinel: _fifo(folder, LOADER_FILE_NAMES[loader])


def directory_writer(loader: str) -> Callable[[Path, Path], Path]:
    return lambda folder, sentinel: _directory(folder, LOADER_FILE_NAMES[loader])


# ================================================================================== 4. garbage accepted silently

def write_nan_weights_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot with NaN in ``synthesis.b8.conv1.weight``."""
    snapshot = _snapshot()
    _module_state(snapshot["G_ema"], "synthesis.b8.conv1")["_parameters"]["weight"].data.fill_(float("nan"))
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def write_inf_weights_pt(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` with +inf in ``convs.0.conv.weight``."""
    data = _rosinality_data()
    data["g_ema"]["convs.0.conv.weight"].fill_(float("inf"))
    path = folder / "g.pt"
    torch.save(data, path)
    return path


def write_nan_weights_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator with NaN in ``mapping.fc1.weight``."""
    path = folder / "generator.safetensors"
    save_generator(_generator(), path)
    tensors = load_file(str(path))
    tensors["mapping.fc1.weight"][0, 0] = float("nan")
    return _rewrite_safetensors(path, tensors)


def write_nan_bisenet(folder: Path, sentinel: Path) -> Path:
    """A 19-class BiSeNet ``.pth`` state dict with NaN in its classifier ``conv_out.conv_out.weight``."""
    sd = dict(bisenet_state_dict())
    sd["conv_out.conv_out.weight"] = torch.full_like(sd["conv_out.conv_out.weight"], float("nan"))
    path = folder / "79999_iter.pth"
    torch.save(sd, path)
    return path


def write_nan_unet_face_parser(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` U-Net face parser with NaN in its classifier."""
    path = folder / "face_parser.safetensors"
    save_face_parser(tiny_unet(), path)
    tensors = load_file(str(path))
    tensors["classifier.weight"].fill_(float("nan"))
    return _rewrite_safetensors(path, tensors)


def write_nan_lpips_backbone(folder: Path, sentinel: Path) -> Path:
    """torchvision's AlexNet features (``alexnet-owt-7be5be79.pth``) with NaN in ``features.3.weight``."""
    sd = alexnet_state_dict()
    sd["features.3.weight"].fill_(float("nan"))
    path = folder / backbone_filename("alex")
    torch.save(sd, path)
    return path


def write_conv_clamp_nan_safetensors(folder: Path, sentinel: Path) -> Path:
    """The pack's ``.safetensors`` generator whose config says conv_clamp NaN."""
    return _pack_generator_with_config(folder, conv_clamp=float("nan"))


def write_lr_multiplier_zero_safetensors(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA-named ``.safetensors`` generator whose init_kwargs say mapping lr_multiplier 0 (every
    mapping weight multiplied by 0: a constant w)."""
    kwargs = _nvidia_named_init_kwargs()
    kwargs["mapping_kwargs"]["lr_multiplier"] = 0
    return _nvidia_named_safetensors(folder, init_kwargs=kwargs)


def write_conv_clamp_nan_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose init_kwargs and synthesis layers say conv_clamp NaN."""
    snapshot = _snapshot()
    G = snapshot["G_ema"]
    _module_state(G, "")["_init_kwargs"]["synthesis_kwargs"]["conv_clamp"] = float("nan")
    for block in ("b4", "b8", "b16"):
        for layer in ("conv0", "conv1", "torgb"):
            if layer in _module_state(G, f"synthesis.{block}")["_modules"]:
                _module_state(G, f"synthesis.{block}.{layer}")["conv_clamp"] = float("nan")
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def write_lr_multiplier_zero_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose mapping layers and init_kwargs say lr_multiplier 0."""
    snapshot = _snapshot()
    G = snapshot["G_ema"]
    _module_state(G, "")["_init_kwargs"]["mapping_kwargs"]["lr_multiplier"] = 0.0
    for fc in ("fc0", "fc1"):
        _module_state(G, f"mapping.{fc}").update(bias_gain=0.0, weight_gain=np.float64(0.0))
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def write_structured_dtype_tf_pkl(folder: Path, sentinel: Path) -> Path:
    """A TF-era pickle whose ``synthesis/4x4/Conv/bias`` is a structured numpy array (dtype [('a', '<f4')])."""
    G_train, D, Gs = tf_networks(_generator())
    network = Gs.state["components"]["synthesis"]
    network.state["variables"] = [(k, np.zeros(v.shape, dtype=[("a", "<f4")]) if k == "4x4/Conv/bias" else v)
                                  for k, v in network.state["variables"]]
    path = folder / "stylegan2-ffhq-config-f.pkl"
    write_pickle((G_train, D, Gs), path)
    return path


def write_huge_latent(folder: Path, sentinel: Path) -> Path:
    """A latent written by save_latent, rewritten with ws of 1e30 (finite, far outside any W space)."""
    path = latent_file(folder)
    tensors = load_file(str(path))
    return _rewrite_safetensors(path, {"ws": torch.full_like(tensors["ws"], 1e30)})


# ================================================================================== 5. weak errors

def write_truncated_nvidia_pkl(folder: Path, sentinel: Path) -> Path:
    path = folder / "network-snapshot.pkl"
    write_pickle(_snapshot(), path)
    return _truncated(path)


def write_truncated_tf_pkl(folder: Path, sentinel: Path) -> Path:
    path = folder / "stylegan2-ffhq-config-f.pkl"
    write_tf_pickle(_generator(), path)
    return _truncated(path)


def write_truncated_rosinality_pt(folder: Path, sentinel: Path) -> Path:
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path)
    return _truncated(path)


def write_truncated_legacy_pt(folder: Path, sentinel: Path) -> Path:
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path, legacy_format=True)
    return _truncated(path)


def write_truncated_safetensors(folder: Path, sentinel: Path) -> Path:
    path = folder / "generator.safetensors"
    save_generator(_generator(), path)
    return _truncated(path)


def write_truncated_latent(folder: Path, sentinel: Path) -> Path:
    return _truncated(latent_file(folder))


def write_truncated_bisenet(folder: Path, sentinel: Path) -> Path:
    path = folder / "79999_iter.pth"
    torch.save(bisenet_state_dict(), path)
    return _truncated(path)


def write_truncated_unet_face_parser(folder: Path, sentinel: Path) -> Path:
    path = folder / "face_parser.safetensors"
    save_face_parser(tiny_unet(), path)
    return _truncated(path)


def write_truncated_lpips_backbone(folder: Path, sentinel: Path) -> Path:
    path = folder / backbone_filename("alex")
    torch.save(alexnet_state_dict(), path)
    return _truncated(path)


def write_random_bytes(folder: Path, sentinel: Path) -> Path:
    """4 KiB of (seeded) random bytes named like a generator pickle."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(random.Random(0).randbytes(4096))
    return path


def write_random_bytes_after_pickle_header(folder: Path, sentinel: Path) -> Path:
    """A protocol-4 pickle header followed by 4 KiB of random bytes."""
    path = folder / "network-snapshot.pkl"
    path.write_bytes(b"\x80\x04" + random.Random(1).randbytes(4096))
    return path


def _zip_not_torch(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not a torch file\n")
    return path


def write_zip_not_torch(folder: Path, sentinel: Path) -> Path:
    """A zip archive holding a text file, named ``g.pt``."""
    return _zip_not_torch(folder / "g.pt")


def write_zip_not_torch_lpips(folder: Path, sentinel: Path) -> Path:
    """A zip archive holding a text file, named like the LPIPS AlexNet backbone."""
    return _zip_not_torch(folder / backbone_filename("alex"))


def write_pt_holding_a_list(folder: Path, sentinel: Path) -> Path:
    path = folder / "g.pt"
    torch.save([torch.zeros(1), 2, "three"], path)
    return path


def write_os_system_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot with an ``os.system`` payload deep inside G_ema (an attribute of synthesis.b8.conv1)."""
    snapshot = _snapshot()
    _module_state(snapshot["G_ema"], "synthesis.b8.conv1")["payload"] = Payload(sentinel)
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


def write_os_system_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` (zip) with an ``os.system`` payload inside g_ema."""
    data = _rosinality_data()
    data["g_ema"]["style.1.weight"] = [Payload(sentinel)]
    path = folder / "g.pt"
    torch.save(data, path)
    return path


def write_os_system_legacy_pt(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` in torch's legacy format with an ``os.system`` payload inside g_ema."""
    data = _rosinality_data()
    data["g_ema"]["style.1.weight"] = [Payload(sentinel)]
    path = folder / "g.pt"
    torch.save(data, path, _use_new_zipfile_serialization=False)
    return path


def write_exec_bisenet(folder: Path, sentinel: Path) -> Path:
    """A BiSeNet ``.pth`` state dict with a ``builtins.exec`` payload as one of its entries."""
    sd = dict(bisenet_state_dict())
    sd["conv_out.conv_out.weight"] = Payload(sentinel, via="exec")
    path = folder / "79999_iter.pth"
    torch.save(sd, path)
    return path


def write_exec_lpips_backbone(folder: Path, sentinel: Path) -> Path:
    """The LPIPS AlexNet backbone with a ``builtins.exec`` payload as one of its entries."""
    sd = alexnet_state_dict()
    sd["features.0.bias"] = Payload(sentinel, via="exec")
    path = folder / backbone_filename("alex")
    torch.save(sd, path)
    return path


class _NNModuleObject:
    """Pickles as ``torch.nn.modules.module.Module()``: a torch global no generator file needs."""

    def __reduce__(self):
        return torch.nn.Module, ()


def write_unknown_torch_global_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose ``augment_pipe`` is ``torch.nn.Module()``."""
    snapshot = _snapshot()
    snapshot["augment_pipe"] = _NNModuleObject()
    path = folder / "network-snapshot.pkl"
    write_pickle(snapshot, path)
    return path


class _PersistentIdPickler(pickle.Pickler):
    """Writes :class:`_Marker` objects as binary persistent ids (BINPERSID), as torch.save does storages."""

    def persistent_id(self, obj):
        return ("storage", "FloatStorage", "0", "cpu", 4) if isinstance(obj, _Marker) else None


def write_persistent_id_pkl(folder: Path, sentinel: Path) -> Path:
    """An NVIDIA snapshot whose mapping ``w_avg`` is a torch-style persistent id (BINPERSID)."""
    snapshot = _snapshot()
    _module_state(snapshot["G_ema"], "mapping")["_buffers"]["w_avg"] = _Marker()
    path = folder / "network-snapshot.pkl"
    with _registered_as(_NVIDIA_GLOBALS), open(path, "wb") as f:
        _PersistentIdPickler(f, protocol=4).dump(snapshot)
    return path


def write_two_data_pkl_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` with its ``data.pkl`` member twice (zip readers disagree on which of two
    same-named members counts; here both are the real one, so only a check of the names refuses it)."""
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path)
    members = _zip_members(path)
    pkl = _member_name(members, "/data.pkl")
    return _write_zip(path, members + [m for m in members if m.name == pkl])


def write_short_storage_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` whose first storage member holds half the bytes ``data.pkl`` says it has."""
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path)
    members = _zip_members(path)
    target = _member_name(members, "/data/0")
    return _write_zip(path, [_stored(m.name, m.data[: len(m.data) // 2]) if m.name == target else m
                             for m in members])


def write_legacy_storage_claim_pt(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` in the legacy format whose first storage record claims 2^40 elements (the
    file holds a few KB): the five pickles, then per storage an int64 count and the raw bytes."""
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path, legacy_format=True)
    data = bytearray(path.read_bytes())
    stream = io.BytesIO(data)
    for _ in range(5):  # magic, protocol version, system info, the object, the storage keys
        for _ in pickletools.genops(stream):
            pass
    data[stream.tell(): stream.tell() + 8] = struct.pack("<q", 2**40)
    path.write_bytes(bytes(data))
    return path


def write_whole_module_pt(folder: Path, sentinel: Path) -> Path:
    """``torch.save(G)``: a whole nn.Module, its classes named in the pickle."""
    path = folder / "generator.pt"
    torch.save(_generator(), path)
    return path


# ================================================================================== found in review

def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(value: str) -> bytes:
    return b"X" + struct.pack("<I", len(value.encode())) + value.encode()


def write_shared_tuple_key_pkl(folder: Path, sentinel: Path) -> Path:
    """A 1.7 KB ``.pkl``: ``t_{k+1} = (t_k, t_k)`` through the memo, 99 levels (never deeper than the
    nesting limit), used as a dict key: hashing it visits 2^99 tuples, freezing the process."""
    out = bytearray(b"\x80\x04)r" + struct.pack("<I", 0))
    for k in range(99):
        out += b"j" + struct.pack("<I", k) + b"j" + struct.pack("<I", k) + b"\x86r" + struct.pack("<I", k + 1) + b"0"
    out += b"}j" + struct.pack("<I", 99) + b"Ns."
    path = folder / "network-snapshot.pkl"
    path.write_bytes(bytes(out))
    return path


def write_pop_after_mark_nesting_pkl(folder: Path, sentinel: Path) -> Path:
    """A tuple nested 100,000 deep built in rounds of 100: before each round a ``MARK`` then ``POP``,
    which CPython's unpickler reads as dropping the mark (a scan that pops the item instead loses
    track of the depth). Hashed as a dict key it overflows a 2 MB thread stack."""
    out = bytearray(b"\x80\x02)r" + struct.pack("<I", 0) + b"0")
    for k in range(1000):
        out += b"Nj" + struct.pack("<I", k) + b"(0" + b"\x85" * 100 + b"r" + struct.pack("<I", k + 1) + b"0"
    out += b"}j" + struct.pack("<I", 1000) + b"Ns."
    path = folder / "network-snapshot.pkl"
    path.write_bytes(bytes(out))
    return path


def write_direct_ndarray_call_tf_pkl(folder: Path, sentinel: Path) -> Path:
    """A TF-era pickle calling ``numpy.ndarray((5*10^8,), 'u1')`` itself (the name is allowed as
    ``_reconstruct``'s argument): an uninitialised 500 MB array backed by no bytes of the file."""
    def network(variables: bytes) -> bytes:
        return (_global("dnnlib.tflib.network", "Network") + b")\x81}(" + _text("version") + b"K\x04"
                + _text("variables") + b"](" + variables + b"eub")
    huge = _global("numpy", "ndarray") + b"J" + struct.pack("<I", 5 * 10**8) + b"\x85" + _text("u1") + b"\x86R"
    path = folder / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(b"\x80\x02" + network(b"") + network(b"") + network(_text("dlatent_avg") + huge + b"\x86")
                     + b"\x87.")
    return path


def write_repeated_storage_bytes_pkl(folder: Path, sentinel: Path) -> Path:
    """One embedded storage (1 MB of legacy storage bytes) stored once in the memo, then rebuilt a
    thousand times by ``_load_from_bytes(GET)``: a 1 MB file that would take 1 GB."""
    buffer = io.BytesIO()
    torch.save(torch.ones(2**18).untyped_storage(), buffer, _use_new_zipfile_serialization=False)
    blob = buffer.getvalue()
    out = bytearray(b"\x80\x04" + _global("torch.storage", "_load_from_bytes") + b"r" + struct.pack("<I", 0))
    out += b"B" + struct.pack("<I", len(blob)) + blob + b"r" + struct.pack("<I", 1) + b"0]("
    out += (b"j" + struct.pack("<I", 0) + b"j" + struct.pack("<I", 1) + b"\x85R") * 1000
    out += b"e."
    path = folder / "network-snapshot.pkl"
    path.write_bytes(bytes(out))
    return path


def write_encrypted_data_pkl_torch_zip(folder: Path, sentinel: Path) -> Path:
    """A rosinality ``.pt`` whose ``data.pkl`` is flagged as encrypted in the zip directory."""
    path = folder / "g.pt"
    write_rosinality_pt(_generator(), path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        pos = z.start_dir
    while raw[pos:pos + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[pos + 28:pos + 34])
        if raw[pos + 46:pos + 46 + name_len].endswith(b"data.pkl"):
            raw[pos + 8] |= 1  # general purpose flag bit 0: encrypted
        pos += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(raw))
    return path


def write_int_storage_key_legacy_pt(folder: Path, sentinel: Path) -> Path:
    """A legacy-format ``.pt`` whose storage-key list holds ints where the records name strings."""
    path = folder / "g.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    stream = io.BytesIO(data)
    for _ in range(4):  # magic, protocol version, system info, the object
        for _ in pickletools.genops(stream):
            pass
    start = stream.tell()
    keys = pickle.loads(data[start:])
    for _ in pickletools.genops(stream):
        pass
    path.write_bytes(data[:start] + pickle.dumps([int(k) for k in keys], protocol=2) + data[stream.tell():])
    return path


# ================================================================================== e4e / pSp encoder files

def _encoder_checkpoint() -> dict:
    """A small e4e-format encoder of the tiny generator, with it as its decoder, as the coaches write it
    (:func:`tests.encoder_checkpoints.write_small_encoder`), read back as the dict they save."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "e4e.pt"
        write_small_encoder(path, _generator())
        return torch.load(path, weights_only=True)


def _save_encoder_checkpoint(folder: Path, checkpoint: dict) -> Path:
    path = folder / LOADER_FILE_NAMES["encoder"]
    torch.save(checkpoint, path)
    return path


def write_encoder_style_width(folder: Path, sentinel: Path) -> Path:
    """An e4e file whose last backbone stage starts with a 2^16-channel unit (one 256 KB tensor): the
    style blocks it implies are 2^16 x 2^16 x 3 x 3 convolutions (150 GB each)."""
    checkpoint = _encoder_checkpoint()
    checkpoint["state_dict"]["encoder.body.3.res_layer.1.weight"] = torch.zeros(2**16, 1, 1, 1)
    return _save_encoder_checkpoint(folder, checkpoint)


def write_encoder_many_units(folder: Path, sentinel: Path) -> Path:
    """An e4e file naming 10^5 backbone units, their tensors views of one small storage (stored once)."""
    checkpoint = _encoder_checkpoint()
    shared = torch.zeros(24, 1, 1, 1)
    checkpoint["state_dict"].update({f"encoder.body.{i}.res_layer.1.weight": shared for i in range(4, 10**5)})
    return _save_encoder_checkpoint(folder, checkpoint)


def write_encoder_nan_latent_avg(folder: Path, sentinel: Path) -> Path:
    """An e4e file whose latent_avg (added to every code) is NaN."""
    checkpoint = _encoder_checkpoint()
    checkpoint["latent_avg"] = torch.full_like(checkpoint["latent_avg"], float("nan"))
    return _save_encoder_checkpoint(folder, checkpoint)


def write_encoder_opts_os_system(folder: Path, sentinel: Path) -> Path:
    """An e4e file whose opts hold an object that runs a shell command when unpickled."""
    checkpoint = _encoder_checkpoint()
    checkpoint["opts"]["exp_dir"] = Payload(sentinel)
    return _save_encoder_checkpoint(folder, checkpoint)


def encoder_file(folder: Path) -> Path:
    """The good e4e-format file the encoder cases start from."""
    return _save_encoder_checkpoint(folder, _encoder_checkpoint())


# ================================================================================== latent directions, latents in PNGs

def load_tiny_directions(path: str):
    """:func:`~insetgan_ops.editing.load_directions` for the tiny generator (w_dim 32)."""
    return load_directions(path, _generator())


def write_pickled_npy_directions(folder: Path, sentinel: Path) -> Path:
    """An InterFaceGAN-named ``.npy`` holding an object array whose element runs a shell command."""
    path = folder / LOADER_FILE_NAMES["directions"]
    array = np.empty((1,), dtype=object)
    array[0] = Payload(sentinel)
    np.save(path, array, allow_pickle=True)
    return path


def write_npy_header_claims_2e40(folder: Path, sentinel: Path) -> Path:
    """A ``.npy`` whose header says float64 ``[1, 2^40]`` (8 TB) over 256 bytes of data."""
    path = folder / LOADER_FILE_NAMES["directions"]
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, %d), }" % 2**40
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(256))
    return path


def write_nan_directions_pt(folder: Path, sentinel: Path) -> Path:
    """An encoder4editing-style GANSpace file (``{'mean', 'comp', 'std'}``) with NaN components."""
    path = folder / "ganspace_pca.pt"
    torch.save({"mean": torch.zeros(1, 32), "comp": torch.full((4, 1, 32), float("nan")), "std": torch.ones(4)}, path)
    return path


def _png_with_text(folder: Path, chunk: bytes) -> Path:
    """A 4x4 PNG written by PIL with ``chunk`` (a whole chunk: length, type, data, CRC) before IEND."""
    path = folder / LOADER_FILE_NAMES["png_latent"]
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    data = buffer.getvalue()
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + chunk + data[end:])
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_png_latent_ztxt_bomb(folder: Path, sentinel: Path) -> Path:
    """A PNG whose latent chunk is a 200 KB zTXt that inflates to 200 MB of text."""
    inflated = zlib.compress(b"0" * (200 << 20), 9)
    return _png_with_text(folder, _png_chunk(b"zTXt", b"insetgan_latent\x00\x00" + inflated))


def write_png_latent_shape_1e9(folder: Path, sentinel: Path) -> Path:
    """A PNG whose latent record claims 10^9 x 10^9 codes over a few bytes of base64."""
    record = json.dumps({"format": FORMAT_TAG, "version": FORMAT_VERSION, "generator_name": "g",
                         "generator_fingerprint": "0", "num_ws": 10**9, "w_dim": 10**9, "ws": "AAAA"})
    return _png_with_text(folder, _png_chunk(b"tEXt", b"insetgan_latent\x00" + record.encode()))


# ================================================================================== hostile library inputs

def _image(size: int = 16) -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * size * size).reshape(1, 3, size, size)


def crop_far_outside_call() -> torch.Tensor:
    """crop() of an 8x8 box a million pixels right of and below a 16x16 image."""
    return crop(_image(), torch.tensor([[1e6, 1e6, 1e6 + 8, 1e6 + 8]]), (8, 8))


def crop_supersampling_call() -> torch.Tensor:
    """crop() of a box 10^7 pixels wide (around a 16x16 image) to 16x16: the anti-aliasing would take
    625,000 x 625,000 samples per output pixel."""
    return crop(_image(), torch.tensor([[-5e6, -5e6, 5e6, 5e6]]), (16, 16))


def box_mask_feather_call() -> torch.Tensor:
    """box_mask() with a feather of 10^12 pixels on a 16x16 image."""
    return box_mask(torch.tensor([[2.0, 2.0, 14.0, 14.0]]), 16, 16, feather=1e12)


def paste_feather_call() -> torch.Tensor:
    """paste() of an inset with a feather of 10^12 pixels on a 16x16 canvas."""
    return paste(-torch.ones(1, 3, 16, 16), torch.ones(1, 3, 8, 8), torch.tensor([[4.0, 4.0, 12.0, 12.0]]),
                 feather=1e12)[0]


def _dot_mask() -> torch.Tensor:
    mask = torch.zeros(1, 16, 16)
    mask[0, 5, 7] = 1
    return mask


def dilate_radius_call() -> torch.Tensor:
    """dilate() of a 16x16 mask (one pixel set) by a radius of 10^6 pixels."""
    return dilate(_dot_mask(), 10**6)


def feather_radius_call() -> torch.Tensor:
    """feather() of a 16x16 mask (one pixel set) by a radius of 10^6 pixels."""
    return feather(_dot_mask(), 10**6)


def detect_empty_batch_call():
    """FaceDetector.detect() on a batch of 0 images."""
    return FaceDetector().detect(torch.zeros(0, 3, 64, 64))


def select_empty_batch_call():
    """FaceDetector.select() on a batch of 0 images."""
    return FaceDetector().select(torch.zeros(0, 3, 64, 64))


def detect_one_pixel_call():
    """FaceDetector.detect() on two 1x1 images."""
    return FaceDetector().detect(torch.zeros(2, 3, 1, 1))


def select_one_pixel_call():
    """FaceDetector.select() on two 1x1 images."""
    return FaceDetector().select(torch.zeros(2, 3, 1, 1))


def _project(target: Optional[torch.Tensor] = None, **settings: Any):
    G = _generator()
    target = _image(16) * 0.5 if target is None else target
    return project(G, target, ProjectionSettings(**{"steps": 2, "w_samples": 16, **settings}))


def project_nan_target_call():
    """project() of a NaN target image."""
    return _project(torch.full((1, 3, 16, 16), float("nan")))


def project_lr_inf_call():
    """project() with lr = inf."""
    return _project(lr=math.inf)


def project_steps_zero_call():
    """project() with steps = 0."""
    return _project(steps=0)


def project_steps_negative_call():
    """project() with steps = -5."""
    return _project(steps=-5)
