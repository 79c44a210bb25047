"""Every checkpoint format loads to the generator it was written from; hostile or broken files raise
:class:`CheckpointError` and run nothing.

Files are written in the real formats by :mod:`checkpoint_writers`. ``tests/data/checkpoints/``
holds a TF-era pickle and the outputs NVIDIA's own converter (stylegan2-ada-pytorch's
``legacy.py``) produced from it (see the README there).
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.checkpoint_writers import (PersistentRecord, nvidia_snapshot, persistent_record,
                                      tf_networks, write_nvidia_pickle, write_pickle, write_rosinality_pt,
                                      write_rosinality_training_checkpoint,
                                      write_tf_pickle)
from insetgan_ops import cli
from insetgan_ops.checkpoints import CheckpointError, load_generator, read_checkpoint, save_generator
from insetgan_ops.generator import Generator, GeneratorConfig
from insetgan_ops.checkpoints.unpickling import unpickle

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "checkpoints"
WRITERS = {"nvidia": write_nvidia_pickle, "tf": write_tf_pickle, "rosinality": write_rosinality_pt}
SUFFIX = {"nvidia": ".pkl", "tf": ".pkl", "rosinality": ".pt"}
# rosinality scales by 1/sqrt(fan_in) before its demodulation epsilon; the others are the same numbers.
TOLERANCE = {"nvidia": 1e-5, "tf": 1e-5, "rosinality": 1e-4}


def make_generator(seed: int = 0, *, init_shape=(4, 4), c_dim: int = 0, conv_clamp=None,
                   num_fp16_res: int = 0) -> Generator:
    """A 32-pixel-high generator whose every path matters (biases, noise, w_avg all non-zero)."""
    config = GeneratorConfig(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=32, init_shape=init_shape,
                             channel_base=256, channel_max=16, mapping_layers=2, conv_clamp=conv_clamp,
                             num_fp16_res=num_fp16_res)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.normal_(0, 0.5)
                elif name.endswith("bias"):
                    p.add_(torch.randn_like(p) * 0.3)
            G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)


def images(G: Generator, seed: int = 1) -> torch.Tensor:
    """[3, 3, H, W] images with truncation, constant noise and (if conditional) one-hot labels."""
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(seed))
    c = torch.eye(G.c_dim)[:3] if G.c_dim else None
    return G(z, c, truncation_psi=0.7, truncation_cutoff=3, noise_mode="const")


def assert_same_architecture(loaded: GeneratorConfig, source: GeneratorConfig) -> None:
    fields = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "init_shape", "mapping_layers",
              "channels", "num_ws")
    assert {f: getattr(loaded, f) for f in fields} == {f: getattr(source, f) for f in fields}


def state_of(record: PersistentRecord, dotted: str) -> dict:
    """The stored ``__dict__`` of a submodule of a written network (``"synthesis.b8.conv1"``)."""
    for name in dotted.split("."):
        record = record.meta["state"]["_modules"][name]
    return record.meta["state"]


# ---------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("fmt", ["nvidia", "tf", "rosinality"])
@pytest.mark.parametrize("case", ["square", "portrait", "conditional"])
def test_each_format_loads_to_the_generator_it_was_written_from(tmp_path, fmt, case):
    if fmt == "rosinality" and case == "conditional":
        pytest.skip("rosinality's generator has no class conditioning")
    G = make_generator(init_shape=(4, 2) if case == "portrait" else (4, 4), c_dim=4 if case == "conditional" else 0)
    path = tmp_path / f"g{SUFFIX[fmt]}"
    WRITERS[fmt](G, path)
    modules_before = set(sys.modules)

    loaded = load_generator(path)

    assert not {m for m in set(sys.modules) - modules_before if m.split(".")[0] in ("torch_utils", "dnnlib")}
    assert_same_architecture(loaded.config, G.config)
    assert (loaded.img_height, loaded.img_width) == ((32, 16) if case == "portrait" else (32, 32))
    assert torch.equal(loaded.w_avg, G.w_avg)
    assert (images(loaded) - images(G)).abs().max().item() <= TOLERANCE[fmt]


@pytest.mark.parametrize("layout", ["ada", "stylegan3"])
@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_nvidia_pickles_as_the_training_loops_wrote_them(tmp_path, layout, protocol):
    """ada (Python 3.7: protocol 3) and stylegan3 (3.8-3.13: 4, 3.14: 5), each with its own
    _init_kwargs layout and key order."""
    G = make_generator(2, conv_clamp=256, num_fp16_res=2)
    path = tmp_path / "network-snapshot-000000.pkl"
    write_pickle(nvidia_snapshot(G, layout=layout), path, protocol=protocol)
    ckpt = read_checkpoint(path)
    assert (ckpt.config.conv_clamp, ckpt.config.num_fp16_res) == (256, 2)
    assert torch.equal(images(load_generator(path)), images(G))


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_nvidia_pickle_keeps_configuration_stored_in_module_state(tmp_path, protocol):
    G = make_generator(conv_clamp=256, num_fp16_res=2)
    snapshot = nvidia_snapshot(G)
    snapshot["G_ema"].meta["state"]["_init_kwargs"] = {}  # as when a network was built with default arguments
    path = tmp_path / "g.pkl"
    write_pickle(snapshot, path, protocol=protocol)

    ckpt = read_checkpoint(path)

    assert ckpt.format == "NVIDIA PyTorch pickle (G_ema)"
    assert (ckpt.config.conv_clamp, ckpt.config.num_fp16_res, ckpt.config.mapping_lr_multiplier) == (256, 2, 0.01)
    assert ckpt.config.fp16_resolution == G.config.fp16_resolution
    assert not any(k.endswith("resample_filter") for k in load_generator(path).state_dict())


def test_nvidia_pickle_gives_g_ema_not_the_training_generator(tmp_path):
    G, G_ema = make_generator(seed=1), make_generator(seed=2)
    path = tmp_path / "snapshot.pkl"
    write_nvidia_pickle(G, path, G_ema=persistent_record(G_ema, G_ema.config))

    assert torch.equal(images(load_generator(path)), images(G_ema))


def test_tf_conversion_matches_nvidias_own_converter():
    expected = load_file(str(DATA / "tf_generator.expected.safetensors"))
    G = load_generator(DATA / "tf_generator.pkl")

    ws = G.mapping(expected["z"], expected["c"], truncation_psi=0.7)
    assert (ws - expected["ws"]).abs().max().item() <= 1e-5
    assert (G.synthesis(ws, noise_mode="const") - expected["img"]).abs().max().item() <= 1e-5


def _globals_of(path) -> set[str]:
    """The ``module.name`` globals a pickle references, as the pack's unpickler is asked for them."""
    from insetgan_ops.checkpoints.nvidia_pickle import _allowed_globals
    seen = set()

    class Recording(dict):
        def get(self, key, default=None):
            seen.add(".".join(key))
            return super().get(key, default)

    data = Path(path).read_bytes()
    unpickle(data, path, Recording(_allowed_globals(path, len(data))))
    return seen


@pytest.mark.parametrize("protocol, version", [(4, 4), (2, 4), (3, 5)],
                         ids=["stylegan2 (protocol 4)", "protocol 2", "stylegan2-ada TF (v5, protocol 3)"])
def test_tf_pickles_as_tensorflow_wrote_them(tmp_path, protocol, version):
    """0-d variables (every noise_strength, lod) are numpy scalars, as TF's session returned them,
    stored through numpy 1.x's numpy.core.multiarray.scalar."""
    G = make_generator(3)
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    write_tf_pickle(G, path, protocol=protocol, version=version)
    names = _globals_of(path)
    assert "numpy.core.multiarray.scalar" in names and not any(n.startswith("numpy._core") for n in names)
    assert (images(load_generator(path)) - images(G)).abs().max().item() <= 1e-5


def test_protocol_5_pickles_of_numpy_arrays_load(tmp_path):
    """Python 3.14 pickles at protocol 5 by default, where numpy stores arrays through _frombuffer."""
    G = make_generator(4)
    path = tmp_path / "g.pkl"
    write_pickle(tf_networks(G), path, protocol=5)
    assert "numpy._core.numeric._frombuffer" in _globals_of(path)
    assert (images(load_generator(path)) - images(G)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("variable, value, message", [
    ("synthesis/4x4/Conv/weight", 0.5, "'synthesis/4x4/Conv/weight' has 0 dimensions \\[\\], expected 4"),
    ("synthesis/8x8/Conv1/noise_strength", [0.5, 0.5], "noise_strength' has 1 dimensions \\[2\\], expected 0"),
    ("synthesis/8x8/Conv1/bias", "text", "'synthesis/8x8/Conv1/bias' is not numeric \\(got str\\)"),
    ("synthesis/8x8/Conv1/bias", [True, False], "is not numeric"),
])
def test_tf_variables_of_the_wrong_kind_are_named(tmp_path, variable, value, message):
    import numpy as np
    G_train, D, Gs = tf_networks(make_generator())
    component, name = variable.split("/", 1)
    network = Gs.state["components"][component]
    network.state["variables"] = [(k, (np.asarray(value) if not isinstance(value, str) else value) if k == name else v)
                                  for k, v in network.state["variables"]]
    path = tmp_path / "g.pkl"
    write_pickle((G_train, D, Gs), path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_conditional_generators_of_the_original_stylegan2_code_are_refused(tmp_path):
    import numpy as np
    G_train, D, Gs = tf_networks(make_generator())
    Gs.state["components"]["mapping"].state["variables"].append(("LabelConcat/weight", np.ones([3, 16], np.float32)))
    path = tmp_path / "g.pkl"
    write_pickle((G_train, D, Gs), path)
    with pytest.raises(CheckpointError, match="labels concatenated to z.*LabelEmbed"):
        read_checkpoint(path)


@pytest.mark.parametrize("option, value, message", [
    ("architecture", "resnet", "architecture='resnet' is not supported"),
    ("randomize_noise_seed", 3, r"unknown TF generator options \['randomize_noise_seed'\]"),
])
def test_tf_generators_other_than_stylegan2_are_named(tmp_path, option, value, message):
    G_train, D, Gs = tf_networks(make_generator())
    Gs.state["static_kwargs"][option] = value
    path = tmp_path / "g.pkl"
    write_pickle((G_train, D, Gs), path)

    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_rosinality_training_checkpoint_loads_and_gets_w_avg_from_the_mapping(tmp_path):
    G = make_generator()
    path = tmp_path / "100000.pt"  # what rosinality's train.py saves: no latent_avg, the run's args
    write_rosinality_training_checkpoint(G, path)

    loaded = load_generator(path)

    with torch.no_grad():
        sampled = G.mapping(torch.randn([20_000, G.z_dim], generator=torch.Generator().manual_seed(5)))[:, 0]
    assert (loaded.w_avg - sampled.mean(0)).abs().max().item() < 0.05 * sampled.std(0).max().item()
    assert (loaded.synthesis(G.mapping(torch.ones(1, 16)), noise_mode="const")
            - G.synthesis(G.mapping(torch.ones(1, 16)), noise_mode="const")).abs().max().item() <= 1e-4


@pytest.mark.parametrize("prefix", ["", "G."])
def test_nvidia_named_safetensors_take_configuration_from_init_kwargs(tmp_path, prefix):
    G = make_generator(conv_clamp=256, num_fp16_res=2)
    path = tmp_path / "ffhq.safetensors"
    tensors = {prefix + k: v for k, v in {**G.state_dict(), "synthesis.b8.resample_filter": torch.ones(4, 4) / 16}.items()}
    init_kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                       mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256))
    save_file(tensors, str(path), metadata={"arch": "stylegan2", "init_kwargs": json.dumps(init_kwargs)})

    ckpt = read_checkpoint(path)

    assert ckpt.format == "safetensors (NVIDIA names)"
    assert (ckpt.config.conv_clamp, ckpt.config.num_fp16_res) == (256, 2)
    assert torch.equal(images(load_generator(path)), images(G))
    save_file({prefix + k: v for k, v in G.state_dict().items()}, str(path))  # no metadata at all: shapes alone
    assert torch.equal(images(load_generator(path)), images(G))


@pytest.mark.parametrize("init_kwargs", ["[1]", '"x"', '{"mapping_kwargs": "abc"}', "{not json"])
def test_malformed_init_kwargs_metadata_is_named(tmp_path, init_kwargs):
    path = tmp_path / "g.safetensors"
    save_file(make_generator().state_dict(), str(path), metadata={"init_kwargs": init_kwargs})
    with pytest.raises(CheckpointError, match="init_kwargs metadata"):
        read_checkpoint(path)


def test_incomplete_stylegan3_safetensors_get_a_clear_error(tmp_path):
    path = tmp_path / "stylegan3.safetensors"
    save_file({"synthesis.input.freqs": torch.zeros(8, 2), "mapping.fc0.weight": torch.zeros(8, 8)}, str(path),
              metadata={"arch": "stylegan3", "init_kwargs": "{}"})

    with pytest.raises(CheckpointError, match="unsupported StyleGAN3 configuration: .*synthesis.input.weight"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------- hostile and broken files

class MkdirPayload:
    """Unpickling this calls ``os.mkdir(path)``: the directory appearing proves code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


class TensorFromStorageBytes:
    """Pickles like a tensor whose storage is ``torch.storage._load_from_bytes(data)``."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        storage = _StorageBytes(self.data)
        return torch._utils._rebuild_tensor_v2, (storage, 0, (1,), (1,), False, collections.OrderedDict())


class _StorageBytes:
    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)


def legacy_torch_file(obj) -> bytes:
    """``obj`` in torch's legacy (pre-zip) serialisation: magic, protocol, system info, then the object."""
    buf = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001,
                 dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4)), obj):
        pickle.dump(part, buf, protocol=2)
    return buf.getvalue()


def test_payload_in_a_pickle_global_is_refused_before_it_runs(tmp_path):
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "network-snapshot.pkl"
    write_pickle(nvidia_snapshot(make_generator(), training_set_kwargs=MkdirPayload(sentinel)), path)

    with pytest.raises(CheckpointError, match=r"refusing to load: the file references \w+\.mkdir"):
        read_checkpoint(path)
    assert not sentinel.exists()

    with pytest.raises(Exception), open(path, "rb") as f:  # control: a plain unpickler runs it
        pickle.load(f)
    assert sentinel.exists()


def test_payload_in_embedded_module_source_is_never_run(tmp_path):
    sentinel = tmp_path / "payload-ran"
    G = make_generator()
    path = tmp_path / "g.pkl"
    write_nvidia_pickle(G, path, module_src=f"import os\nos.mkdir({str(sentinel)!r})\n")

    assert torch.equal(images(load_generator(path)), images(G))
    assert not sentinel.exists()


def test_payload_in_tf_build_module_source_is_never_run(tmp_path):
    sentinel = tmp_path / "payload-ran"
    G = make_generator()
    path = tmp_path / "g.pkl"
    write_tf_pickle(G, path, build_module_src=f"import os\nos.mkdir({str(sentinel)!r})\n")

    assert (images(load_generator(path)) - images(G)).abs().max().item() <= 1e-5
    assert not sentinel.exists()


def test_payload_in_tensor_storage_bytes_is_refused(tmp_path):
    sentinel = tmp_path / "payload-ran"
    storage_bytes = legacy_torch_file(MkdirPayload(sentinel))
    snapshot = nvidia_snapshot(make_generator())
    state_of(snapshot["G_ema"], "mapping")["_buffers"]["w_avg"] = TensorFromStorageBytes(storage_bytes)
    path = tmp_path / "g.pkl"
    write_pickle(snapshot, path)

    with pytest.raises(CheckpointError, match=r"refusing to load: the file references \w+\.mkdir"):
        read_checkpoint(path)
    assert not sentinel.exists()

    with pytest.raises(Exception):  # control: NVIDIA's _load_from_bytes (weights_only=False) runs it
        torch.load(io.BytesIO(storage_bytes), weights_only=False)
    assert sentinel.exists()


@pytest.mark.parametrize("name, legacy_format", [("ffhq.pt", True), ("stylegan_human_v2_1024.pth", False)])
def test_rosinality_files_in_torchs_legacy_format_and_as_pth(tmp_path, name, legacy_format):
    """Many 2020 conversions are in torch's pre-1.6 file format; StyleGAN-Human names its conversions .pth."""
    G = make_generator(5, init_shape=(4, 2))
    path = tmp_path / name
    write_rosinality_pt(G, path, legacy_format=legacy_format)
    assert path.read_bytes()[:2] != b"PK" if legacy_format else path.read_bytes()[:2] == b"PK"
    assert (images(load_generator(path)) - images(G)).abs().max().item() <= TOLERANCE["rosinality"]


def test_payload_in_a_rosinality_file_is_refused(tmp_path):
    sentinel = tmp_path / "payload-ran"
    G = make_generator()
    path = tmp_path / "g.pt"
    write_rosinality_pt(G, path)
    data = torch.load(path, weights_only=True)
    data["latent_avg"] = MkdirPayload(sentinel)
    torch.save(data, path)

    with pytest.raises(CheckpointError, match=r"refusing to load: the file references \w+\.mkdir"):
        read_checkpoint(path)
    assert not sentinel.exists()

    torch.load(path, weights_only=False)  # control: an unrestricted load runs it
    assert sentinel.exists()


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"\x80\x02Pstorage-0\n.")

    with pytest.raises(CheckpointError, match="persistent ids"):
        read_checkpoint(path)


@pytest.mark.parametrize("fmt", ["nvidia", "tf", "rosinality", "safetensors"])
def test_truncated_files_raise_checkpoint_error(tmp_path, fmt):
    G = make_generator()
    path = tmp_path / f"g{SUFFIX.get(fmt, '.safetensors')}"
    if fmt == "safetensors":
        save_generator(G, path)
    else:
        WRITERS[fmt](G, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(CheckpointError, match="truncated|corrupt") as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


def test_wrong_tensor_shapes_are_named(tmp_path):
    snapshot = nvidia_snapshot(make_generator())
    state_of(snapshot["G_ema"], "synthesis.b8.conv1")["_parameters"]["weight"] = torch.zeros([16, 15, 3, 3])
    path = tmp_path / "g.pkl"
    write_pickle(snapshot, path)

    with pytest.raises(CheckpointError, match=r"wrong shapes.*synthesis\.b8\.conv1\.weight: file \[16, 15, 3, 3\]"):
        load_generator(path)


def test_corrupt_safetensors_header_raises_checkpoint_error(tmp_path):
    path = tmp_path / "g.safetensors"
    save_generator(make_generator(), path)
    data = bytearray(path.read_bytes())
    data[9:40] = b"#" * 31  # the JSON header, after its 8-byte length and opening brace
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointError, match="corrupt or truncated .safetensors"):
        read_checkpoint(path)


def test_a_pickle_of_something_else_is_named(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))

    with pytest.raises(CheckpointError, match="holds a list, not NVIDIA's dict"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------------------ command line

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "insetgan_ops", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_convert_in_a_subprocess_then_info(tmp_path, capsys):
    G = make_generator(init_shape=(4, 2), conv_clamp=256, num_fp16_res=2)
    source, converted = tmp_path / "human.pkl", tmp_path / "human.safetensors"
    write_nvidia_pickle(G, source)

    convert = run_cli("convert", str(source), str(converted))
    assert convert.returncode == 0, convert.stderr
    assert f"wrote {converted}: 32x16 generator" in convert.stdout
    assert torch.equal(images(load_generator(converted)), images(G))

    for path, fmt in ((source, "NVIDIA PyTorch pickle (G_ema)"), (converted, "safetensors")):
        assert cli.main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        for line in (f"format:         {fmt}", "resolution:     32x16 (height x width)",
                     "aspect:         1:2 (width:height)", "num_ws:         8", "w_dim:          16",
                     "mapping layers: 2", "fp16 blocks:    16, 32", "conv_clamp:     256"):
            assert line in out


def test_cli_in_process_reports_errors_without_a_traceback(tmp_path, capsys):
    sentinel = tmp_path / "payload-ran"
    hostile = tmp_path / "hostile.pkl"
    write_pickle(nvidia_snapshot(make_generator(), training_set_kwargs=MkdirPayload(sentinel)), hostile)

    assert cli.main(["info", str(hostile)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {hostile}: refusing to load") and "Traceback" not in err
    assert not sentinel.exists()

    good = tmp_path / "g.pt"
    write_rosinality_pt(make_generator(), good)
    assert cli.main(["convert", str(good), str(tmp_path / "g.bin")]) == 1
    assert "must be a .safetensors file" in capsys.readouterr().err
    assert cli.main(["convert", str(good), str(tmp_path / "g.safetensors")]) == 0
    assert cli.main(["convert", str(good), str(tmp_path / "g.safetensors")]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert cli.main(["convert", str(good), str(tmp_path / "g.safetensors"), "--force"]) == 0
