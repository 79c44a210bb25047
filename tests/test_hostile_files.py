"""Hostile and malformed files are refused by every loader with a CheckpointError naming the file,
and absurd library inputs with a ValueError: no crash, no hang, no memory bomb, no garbage loaded,
no payload run.

Each case runs in a child process (:func:`tests.hostile_files.run_isolated`: 60 s, 2 GiB of address
space beyond the child's start), so a segfault, a hang or an allocation of terabytes fails that case
alone. A file case passes when the loader raised :class:`CheckpointError` naming the file, without
an allocation having failed on the way (refusing a memory bomb by running out of memory is not
refusing it) and without needing 1 GiB for a file of a few MB, and the payload some files carry
never ran. The files and the classes of hazard are described in :mod:`tests.hostile_files`.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from insetgan_ops.checkpoints import load_generator
from insetgan_ops.encoders import load_encoder
from insetgan_ops.face_parsers import load_face_parser, save_face_parser
from insetgan_ops.latent_images import latent_from_png, save_png_with_latent
from insetgan_ops.latents import GeneratorIdentity, Latent, load_latent
from insetgan_ops.lpips_loader import backbone_filename
from tests import hostile_files as hf
from tests.checkpoint_writers import write_nvidia_pickle
from tests.tiny_generator import tiny_generator

LOADERS = {"generator": load_generator, "latent": load_latent, "face_parser": load_face_parser,
           "lpips": hf.load_alexnet_lpips, "encoder": load_encoder, "directions": hf.load_tiny_directions,
           "png_latent": latent_from_png}


def case(case_id: str, loader: str, writer, match: str = ""):
    """One file case: ``writer(folder, sentinel)`` writes it, ``LOADERS[loader]`` must refuse it, the
    message must also match ``match`` (a regular expression, case-insensitive) when given."""
    return pytest.param(loader, writer, match, id=case_id)


FILE_CASES = [
    # 1. crashes: nesting that overflows the C stack
    case("crash-pkl-tuple-key-nested-1e6", "generator", hf.write_deep_tuple_key_pkl),
    case("crash-torch-zip-tuple-key-nested-1e6", "generator", hf.write_deep_tuple_key_torch_zip),
    case("crash-pkl-list-nested-1e6", "generator", hf.write_deep_list_pkl),
    case("crash-pkl-ordereddict-reduce-nested-2e4", "generator", hf.write_deep_reduce_pkl),
    # 2. memory bombs: a few bytes that claim gigabytes or more
    case("memory-pkl-memo-index-2e31", "generator", hf.write_memo_index_pkl),
    case("memory-pkl-binbytes8-claims-2e40", "generator", hf.write_binbytes8_pkl),
    case("memory-pkl-binunicode8-claims-2e40", "generator", hf.write_binunicode8_pkl),
    case("memory-torch-zip-stride-0-1e12-elements", "generator", hf.write_stride_zero_torch_zip),
    case("memory-torch-zip-size-exceeds-storage", "generator", hf.write_size_exceeds_storage_torch_zip),
    case("memory-pkl-size-exceeds-storage", "generator", hf.write_size_exceeds_storage_pkl),
    case("memory-torch-zip-deflate-bomb-3gib", "generator", hf.write_deflate_bomb_torch_zip),
    case("memory-tf-numpy-reconstruct-shape-1e6x1e6", "generator", hf.write_huge_numpy_reconstruct_tf_pkl),
    case("memory-tf-numpy-setstate-shape-1e6x1e6", "generator", hf.write_huge_numpy_setstate_tf_pkl),
    case("memory-safetensors-init-kwargs-channel-max-1e7", "generator", hf.write_channel_max_safetensors),
    case("memory-safetensors-header-shape-2e20x2e20", "generator", hf.write_absurd_shape_header_safetensors),
    case("memory-safetensors-config-img-resolution-2e20", "generator", hf.write_config_resolution_safetensors),
    case("memory-safetensors-config-channels-1e6", "generator", hf.write_config_channels_safetensors),
    case("memory-safetensors-config-mapping-layers-1e6", "generator", hf.write_config_mapping_layers_safetensors),
    case("memory-safetensors-config-z-dim-1e8", "generator", hf.write_config_z_dim_safetensors),
    case("memory-unet-face-parser-config-channels-1e6", "face_parser", hf.write_unet_channels_face_parser),
    # 3. hangs: exponential walks, huge exponents, files that block
    case("hang-pkl-module-dag-2e40-paths", "generator", hf.write_module_dag_pkl),
    case("hang-tf-component-dag-2e40-paths", "generator", hf.write_component_dag_tf_pkl),
    case("hang-pt-conv-index-1e11", "generator", hf.write_huge_conv_index_pt),
    case("hang-pt-noise-index-1e11", "generator", hf.write_huge_noise_index_pt),
    case("hang-safetensors-block-b1e14", "generator", hf.write_huge_block_safetensors),
    case("hang-safetensors-mapping-fc1e11", "generator", hf.write_huge_mapping_index_safetensors),
    *(case(f"hang-fifo-{loader.replace('_', '-')}", loader, hf.fifo_writer(loader)) for loader in hf.LOADER_FILE_NAMES),
    *(case(f"hang-directory-{loader.replace('_', '-')}", loader, hf.directory_writer(loader))
      for loader in hf.LOADER_FILE_NAMES),
    # 4. garbage that would load silently
    case("garbage-pkl-nan-weights", "generator", hf.write_nan_weights_pkl),
    case("garbage-pt-inf-weights", "generator", hf.write_inf_weights_pt),
    case("garbage-safetensors-nan-weights", "generator", hf.write_nan_weights_safetensors),
    case("garbage-bisenet-nan-weights", "face_parser", hf.write_nan_bisenet),
    case("garbage-unet-face-parser-nan-weights", "face_parser", hf.write_nan_unet_face_parser),
    case("garbage-lpips-alexnet-nan-weights", "lpips", hf.write_nan_lpips_backbone),
    case("garbage-safetensors-config-conv-clamp-nan", "generator", hf.write_conv_clamp_nan_safetensors),
    case("garbage-safetensors-init-kwargs-lr-multiplier-0", "generator", hf.write_lr_multiplier_zero_safetensors),
    case("garbage-pkl-conv-clamp-nan", "generator", hf.write_conv_clamp_nan_pkl),
    case("garbage-pkl-lr-multiplier-0", "generator", hf.write_lr_multiplier_zero_pkl),
    case("garbage-tf-structured-numpy-dtype", "generator", hf.write_structured_dtype_tf_pkl),
    case("garbage-latent-ws-1e30", "latent", hf.write_huge_latent),
    # 5. broken files that must get the pack's error, not a raw one
    case("weak-truncated-nvidia-pkl", "generator", hf.write_truncated_nvidia_pkl),
    case("weak-truncated-tf-pkl", "generator", hf.write_truncated_tf_pkl),
    case("weak-truncated-rosinality-pt", "generator", hf.write_truncated_rosinality_pt),
    case("weak-truncated-legacy-pt", "generator", hf.write_truncated_legacy_pt),
    case("weak-truncated-safetensors", "generator", hf.write_truncated_safetensors),
    case("weak-truncated-latent", "latent", hf.write_truncated_latent),
    case("weak-truncated-bisenet", "face_parser", hf.write_truncated_bisenet),
    case("weak-truncated-unet-face-parser", "face_parser", hf.write_truncated_unet_face_parser),
    case("weak-truncated-lpips-alexnet", "lpips", hf.write_truncated_lpips_backbone),
    case("weak-random-bytes", "generator", hf.write_random_bytes),
    case("weak-random-bytes-after-pickle-header", "generator", hf.write_random_bytes_after_pickle_header),
    case("weak-zip-not-torch", "generator", hf.write_zip_not_torch),
    case("weak-zip-not-torch-lpips", "lpips", hf.write_zip_not_torch_lpips),
    case("weak-pt-holding-a-list", "generator", hf.write_pt_holding_a_list),
    case("weak-pkl-os-system", "generator", hf.write_os_system_pkl),
    case("weak-torch-zip-os-system", "generator", hf.write_os_system_torch_zip),
    case("weak-legacy-pt-os-system", "generator", hf.write_os_system_legacy_pt),
    case("weak-bisenet-exec", "face_parser", hf.write_exec_bisenet),
    case("weak-lpips-alexnet-exec", "lpips", hf.write_exec_lpips_backbone),
    case("weak-pkl-torch-nn-module-global", "generator", hf.write_unknown_torch_global_pkl),
    case("weak-pkl-persistent-id", "generator", hf.write_persistent_id_pkl),
    case("weak-torch-zip-two-data-pkl", "generator", hf.write_two_data_pkl_torch_zip),
    case("weak-torch-zip-storage-member-short", "generator", hf.write_short_storage_torch_zip),
    case("weak-legacy-pt-storage-claims-2e40", "generator", hf.write_legacy_storage_claim_pt),
    case("weak-pt-whole-nn-module", "generator", hf.write_whole_module_pt, match="state_dict"),
    # found in review: hazards that slip past a scan counting only depth, and errors of the wrong type
    case("hang-pkl-shared-tuple-key-2e99-visits", "generator", hf.write_shared_tuple_key_pkl),
    case("crash-pkl-pop-after-mark-nesting-1e5", "generator", hf.write_pop_after_mark_nesting_pkl),
    case("memory-tf-direct-ndarray-call-5e8", "generator", hf.write_direct_ndarray_call_tf_pkl),
    case("memory-pkl-storage-bytes-rebuilt-1000x", "generator", hf.write_repeated_storage_bytes_pkl),
    case("weak-torch-zip-encrypted-data-pkl", "generator", hf.write_encrypted_data_pkl_torch_zip),
    case("weak-legacy-pt-int-storage-keys", "face_parser", hf.write_int_storage_key_legacy_pt),
    # StyleGAN3 (alias-free) pickles: configurations that would build absurd layers, and payloads
    case("memory-stylegan3-pkl-channel-base-2e40", "generator", hf.write_stylegan3_channel_base_pkl),
    case("memory-stylegan3-pkl-num-layers-1e7", "generator", hf.write_stylegan3_num_layers_pkl),
    case("memory-stylegan3-pkl-margin-1e9", "generator", hf.write_stylegan3_margin_pkl),
    case("memory-stylegan3-pkl-filter-size-1e8", "generator", hf.write_stylegan3_filter_size_pkl),
    case("garbage-stylegan3-pkl-nan-magnitude-ema", "generator", hf.write_stylegan3_nan_magnitude_pkl),
    case("weak-stylegan3-pkl-os-system", "generator", hf.write_stylegan3_os_system_pkl),
    # e4e / pSp encoder files: shapes that imply absurd models, key lists that make a count quadratic
    case("memory-e4e-style-width-2e16", "encoder", hf.write_encoder_style_width),
    case("hang-e4e-backbone-units-1e5", "encoder", hf.write_encoder_many_units),
    case("garbage-e4e-nan-latent-avg", "encoder", hf.write_encoder_nan_latent_avg),
    case("weak-e4e-opts-os-system", "encoder", hf.write_encoder_opts_os_system),
    # latent directions (InterFaceGAN .npy, encoder4editing .pt) and latents carried in PNGs
    case("weak-npy-directions-pickled-object", "directions", hf.write_pickled_npy_directions),
    case("memory-npy-directions-header-claims-2e40", "directions", hf.write_npy_header_claims_2e40),
    case("garbage-pt-directions-nan", "directions", hf.write_nan_directions_pt, match="NaN"),
    case("memory-png-latent-ztxt-inflates-200mb", "png_latent", hf.write_png_latent_ztxt_bomb),
    case("memory-png-latent-shape-1e9x1e9", "png_latent", hf.write_png_latent_shape_1e9),
]


def assert_within_budget(outcome: hf.Outcome) -> None:
    """No crash, no timeout, no failed allocation, less than 1 GiB of address space added."""
    assert not outcome.timed_out and not outcome.crashed, outcome.describe()
    report = outcome.report
    assert not report["allocation_failed"], f"an allocation failed on the way: {outcome.describe()}"
    assert report["peak_growth"] < hf.PEAK_GROWTH_LIMIT, f"needed too much memory: {outcome.describe()}"


@pytest.mark.parametrize("loader, writer, match", FILE_CASES)
def test_hostile_file_is_refused_cleanly(tmp_path, loader, writer, match):
    sentinel = tmp_path / "payload-ran"
    folder = tmp_path / "files"
    folder.mkdir()
    path = writer(folder, sentinel)

    outcome = hf.run_isolated(LOADERS[loader], str(path))
    print(outcome.describe())

    assert not sentinel.exists(), f"the file's payload ran ({outcome.describe()})"
    assert_within_budget(outcome)
    report = outcome.report
    assert report["outcome"] == "pack_error", f"expected a CheckpointError: {outcome.describe()}"
    assert path.name in report["message"], f"the message does not name the file: {outcome.describe()}"
    assert re.search(match, report["message"], re.IGNORECASE), f"expected /{match}/: {outcome.describe()}"


# ------------------------------------------------------------------------------------- controls

def good_generator(folder):
    """An NVIDIA snapshot of the tiny generator."""
    path = folder / "network-snapshot.pkl"
    write_nvidia_pickle(tiny_generator(0), path)
    return path


def good_bisenet(folder):
    """The random 19-class BiSeNet state dict the face-parser cases start from."""
    path = folder / "79999_iter.pth"
    torch.save(hf.bisenet_state_dict(), path)
    return path


def good_unet_face_parser(folder):
    """The pack's tiny U-Net face parser."""
    path = folder / "face_parser.safetensors"
    save_face_parser(hf.tiny_unet(), path)
    return path


def good_lpips_backbone(folder):
    """The AlexNet features the LPIPS cases start from, under torchvision's file name."""
    path = folder / backbone_filename("alex")
    torch.save(hf.alexnet_state_dict(), path)
    return path


def good_stylegan3(folder):
    """The StyleGAN3 snapshot the StyleGAN3 cases start from, unchanged."""
    return hf._stylegan3_pickle(folder, lambda G: None)


def good_directions(folder):
    """An InterFaceGAN boundary for the tiny generator, as np.save writes it."""
    path = folder / hf.LOADER_FILE_NAMES["directions"]
    np.save(path, np.linspace(-1, 1, 32)[None])
    return path


def good_png_latent(folder):
    """A PNG saved with the tiny generator's mean latent."""
    path = folder / hf.LOADER_FILE_NAMES["png_latent"]
    G = tiny_generator(0)
    latent = Latent(G.w_avg.detach().expand(1, G.num_ws, G.w_dim).clone(), GeneratorIdentity.of(G))
    save_png_with_latent(np.zeros((4, 4, 3), np.uint8), latent, path)
    return path


@pytest.mark.parametrize("loader, writer", [("generator", good_generator), ("generator", good_stylegan3),
                                            ("latent", hf.latent_file),
                                            ("face_parser", good_bisenet), ("face_parser", good_unet_face_parser),
                                            ("lpips", good_lpips_backbone), ("encoder", hf.encoder_file),
                                            ("directions", good_directions), ("png_latent", good_png_latent)],
                         ids=["nvidia-pkl", "stylegan3-pkl", "latent", "bisenet", "unet-face-parser", "lpips-alexnet",
                              "e4e", "interfacegan-npy", "png-latent"])
def test_good_files_load_in_the_harness(tmp_path, loader, writer):
    """The base material of the cases loads within the children's limits: the refusals are real."""
    outcome = hf.run_isolated(LOADERS[loader], str(writer(tmp_path)))

    assert_within_budget(outcome)
    assert outcome.report["outcome"] == "returned" and outcome.report["finite"], outcome.describe()


def test_the_harness_reports_crashes_hangs_and_failed_allocations():
    crash = hf.run_isolated(hf.abort_call)
    assert crash.crashed and "SIGABRT" in crash.describe()

    hang = hf.run_isolated(hf.sleep_call, 30, timeout=1)
    assert hang.timed_out and "timeout" in hang.describe()

    allocation = hf.run_isolated(hf.allocate_call)
    assert allocation.report["outcome"] == "value_error" and allocation.report["allocation_failed"]


@pytest.mark.parametrize("via", ["os.system", "exec"])
def test_the_payloads_run_under_a_plain_unpickler(tmp_path, via):
    """Control: the payloads the files carry do run when nothing stops them."""
    sentinel = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(hf.Payload(sentinel, via)))
    assert sentinel.exists()
    sentinel.unlink()
    pickle.loads(b"\x80\x02" + hf.payload_opcodes(sentinel) + b".")
    assert sentinel.exists()


def test_the_hand_written_pickles_build_what_they_claim(tmp_path):
    """Control: at harmless depths the hand-written opcodes unpickle to the structures they claim, the
    payload placed after the hazard is reached, and the spliced snapshots are generator files that load."""
    sentinel = tmp_path / "payload-ran"
    key, = (k for k in pickle.loads(hf.deep_tuple_key_dict(sentinel, depth=3)) if k != "later")
    assert key == (((None,),),) and sentinel.exists()
    assert pickle.loads(b"\x80\x02" + hf.deep_list_opcodes(3) + b".") == [[[]]]
    assert pickle.loads(b"\x80\x02" + hf.deep_reduce_opcodes(2) + b".") == {"c": {"c": {}}}
    for write in (hf.write_deep_list_pkl, hf.write_deep_reduce_pkl):
        assert load_generator(write(tmp_path, sentinel, depth=3)).img_resolution == 16


# ------------------------------------------------------------------------------------- library inputs

def call_case(case_id: str, call, accepted_result, match: str):
    """``call()`` must raise ValueError with a message matching ``match``; where ``accepted_result`` is
    ``(low, high)``, returning finite values within it (the documented capped behaviour) passes too."""
    return pytest.param(call, accepted_result, match, id=case_id)


INPUT_CASES = [
    call_case("crop-box-far-outside-the-image", hf.crop_far_outside_call, None, r"box|outside"),
    call_case("crop-box-1e7-pixels-supersampling", hf.crop_supersampling_call, (-1, 1), r"box|sampl|size"),
    call_case("box-mask-feather-1e12", hf.box_mask_feather_call, (0, 1), r"feather"),
    call_case("paste-feather-1e12", hf.paste_feather_call, (-1, 1), r"feather"),
    call_case("dilate-radius-1e6", hf.dilate_radius_call, (1, 1), r"radius"),
    call_case("feather-radius-1e6", hf.feather_radius_call, (0, 1), r"radius"),
    call_case("detect-batch-of-0-images", hf.detect_empty_batch_call, None, r"empty|no image|batch|B >= 1"),
    call_case("select-batch-of-0-images", hf.select_empty_batch_call, None, r"empty|no image|batch|B >= 1"),
    # Finding no face in a 1x1 image is a correct answer: boxes would make min/max leave (0, 0).
    call_case("detect-1x1-images", hf.detect_one_pixel_call, (0, 0), r"small|size|pixel"),
    call_case("select-1x1-images", hf.select_one_pixel_call, None, r"face|small|size|pixel"),
    call_case("project-nan-target", hf.project_nan_target_call, None, r"nan|finite"),
    call_case("project-lr-inf", hf.project_lr_inf_call, None, r"\blr\b|learning rate"),
    call_case("project-steps-0", hf.project_steps_zero_call, None, r"steps"),
    call_case("project-steps-negative", hf.project_steps_negative_call, None, r"steps"),
]


@pytest.mark.parametrize("call, accepted_result, match", INPUT_CASES)
def test_absurd_library_input_raises_value_error(call, accepted_result, match):
    outcome = hf.run_isolated(call)
    print(outcome.describe())

    assert_within_budget(outcome)
    report = outcome.report
    if report["outcome"] == "returned" and accepted_result is not None:
        low, high = accepted_result
        assert report["finite"], f"returned non-finite values: {outcome.describe()}"
        assert report["min"] is None or low - 1e-5 <= report["min"] <= report["max"] <= high + 1e-5, \
            f"returned values outside [{low}, {high}]: {outcome.describe()}"
    else:
        assert report["outcome"] in ("value_error", "pack_error"), f"expected a ValueError: {outcome.describe()}"
        assert re.search(match, report["message"], re.IGNORECASE), f"expected /{match}/: {outcome.describe()}"
