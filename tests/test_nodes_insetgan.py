"""The InsetGAN nodes (boxes, losses, joint optimisation, projection) run as ComfyUI runs them, inside
torch.inference_mode(), one by one and as the example workflows.

Generators: the workflows name the demo generators canvas/face/shoes.safetensors. Every test but
one writes tiny random generators under those file names (and their aspects) into a temporary
models folder ($INSETGAN_MODELS_DIR), which ComfyUI-style lookup searches before the pack's own
demo weights, so the workflow files run unchanged and fast. ``test_face_refinement_on_the_demo_generators``
runs a workflow on the trained demo weights in insetgan_ops/demo/weights/ and is skipped while they
are absent.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from skimage import data

from insetgan_ops import save_generator
from insetgan_ops.demo import WEIGHTS_DIR as DEMO_WEIGHTS
from insetgan_ops.lpips_loader import load_lpips
from tests.fake_comfy import FakeComfy, InterruptProcessingException
from tests.tiny_generator import tiny_generator
from tests.workflow_runner import RunContext, run_node as run, run_prompt, to_api_prompt

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {name: ROOT / "example_workflows" / f"insetgan_{name}.json"
             for name in ("face_refinement", "body_for_face", "face_body_montage", "face_and_shoes")}
DEMO_FILES = ("canvas.safetensors", "face.safetensors", "shoes.safetensors")


def astronaut(size: int = 256) -> torch.Tensor:
    """skimage's astronaut photograph as an IMAGE [1, size, size, 3]; the face spans about x 90..134,
    y 31..86 (brows to chin) at 256 pixels."""
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return image.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def _folders(pack, monkeypatch, tmp_path):
    """Models, input and output folders in tmp_path, ComfyUI absent."""
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    (tmp_path / "models" / "stylegan").mkdir(parents=True)
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    return tmp_path


@pytest.fixture
def env(pack, monkeypatch, tmp_path):
    """Tiny generators: canvas 32x16 (height x width, a full body's 2:1), face 16x16, shoes 8x16 and
    other-face (16x16, other weights)."""
    root = _folders(pack, monkeypatch, tmp_path)
    tiny = {"canvas": tiny_generator(0, img_resolution=32, init_shape=(4, 2)),
            "face": tiny_generator(1, img_resolution=16),
            "shoes": tiny_generator(2, img_resolution=8, init_shape=(4, 8)),
            "other-face": tiny_generator(3, img_resolution=16)}
    for name, G in tiny.items():
        save_generator(G, root / "models" / "stylegan" / f"{name}.safetensors")
    return root


@pytest.fixture
def boxes_module(pack):
    return sys.modules[f"{pack.__name__}.nodes.inset_boxes"]


def load(N, name):
    return run(N, "InsetGANLoadStyleGAN", model_name=name, device="cpu")[0]


def image_of(N, model, seed=0, batch=1):
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=seed, batch_size=batch, truncation_psi=0.7,
                  truncation_cutoff=0)
    image, = run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="const", noise_seed=0,
                 strict=True)
    return latent, image


def manual_box(N, image, left, top, right, bottom):
    return run(N, "InsetGANManualBox", image=image, left=left, top=top, right=right, bottom=bottom)


# ---------------------------------------------------------------- boxes


def test_manual_box_adjust_mask_and_draw(env, N):
    image = torch.rand(2, 40, 20, 3)
    boxes, mask = manual_box(N, image, 0.25, 0.25, 0.75, 0.75)
    assert (boxes.height, boxes.width) == (40, 20) and boxes.boxes.tolist() == [[5.0, 10.0, 15.0, 30.0]] * 2
    assert mask.shape == (2, 40, 20) and mask.sum(dim=(1, 2)).tolist() == [200.0, 200.0]

    def adjust(expand=1.0, shift_down=0.0, aspect="keep", aspect_ratio=1.0, clamp="none", **extra):
        return run(N, "InsetGANAdjustBoxes", boxes=boxes, expand=expand, shift_down=shift_down, aspect=aspect,
                   aspect_ratio=aspect_ratio, clamp=clamp, **extra)

    assert adjust(aspect="square")[0].boxes[0].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert adjust(expand=2.0, aspect="square")[0].boxes[0].tolist() == [-10.0, 0.0, 30.0, 40.0]
    inside, inside_mask = adjust(expand=2.0, aspect="square", clamp="shift inside")
    assert inside.boxes[0].tolist() == [0.0, 10.0, 20.0, 30.0] and inside_mask[0].sum() == 400  # shrunk to fit
    assert adjust(expand=2.0, clamp="cut to image")[0].boxes[0].tolist() == [0.0, 0.0, 20.0, 40.0]
    shoes = load(N, "shoes.safetensors")
    wide, _ = adjust(aspect="inset generator", inset_generator=shoes)  # the shoes' 2:1 (width:height)
    assert wide.boxes[0].tolist() == [-10.0, 10.0, 30.0, 30.0]
    assert adjust(aspect="ratio", aspect_ratio=1.0)[0].boxes[0].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert adjust(shift_down=0.5)[0].boxes[0].tolist() == [5.0, 20.0, 15.0, 40.0]
    with pytest.raises(ValueError, match="needs the inset generator"):
        adjust(aspect="inset generator")
    feathered, = run(N, "InsetGANBoxesToMask", boxes=boxes, feather=2.0)
    assert feathered[0, 20, 10] == 1 and 0 < feathered[0, 10, 10] < 1 and feathered[0, 5, 10] == 0
    drawn, = run(N, "InsetGANDrawBoxes", image=image, boxes=boxes, thickness=1)
    red = torch.tensor([1.0, 0.15, 0.1])
    assert torch.allclose(drawn[0, 10, 5], red) and torch.allclose(drawn[1, 29, 14], red)
    assert torch.equal(drawn[0, 20, 10], image[0, 20, 10]) and torch.equal(drawn[0, 0, 0], image[0, 0, 0])


def test_mask_to_boxes_crop_and_paste(env, N):
    mask = torch.zeros(1, 30, 40)
    mask[0, 6:14, 10:26] = 1.0  # a shoe-like 2:1 region from some segmentation
    boxes, = run(N, "InsetGANMaskToBoxes", mask=mask, threshold=0.5)
    assert boxes.boxes.tolist() == [[10.0, 6.0, 26.0, 14.0]] and (boxes.height, boxes.width) == (30, 40)
    with pytest.raises(ValueError, match="no pixel above 0.5"):
        run(N, "InsetGANMaskToBoxes", mask=torch.zeros(1, 30, 40), threshold=0.5)
    canvas = torch.rand(1, 30, 40, 3)
    cropped, = run(N, "InsetGANCropBoxes", image=canvas, boxes=boxes, width=16, height=8)
    torch.testing.assert_close(cropped, canvas[:, 6:14, 10:26])  # integer box at its own size: exact pixels
    shoes = load(N, "shoes.safetensors")
    sized, = run(N, "InsetGANCropBoxes", image=canvas, boxes=boxes, width=1, height=1, size_from=shoes)
    assert sized.shape[1:3] == (shoes.generator.img_height, shoes.generator.img_width)
    inset = torch.rand(1, 8, 16, 3)
    pasted, alpha = run(N, "InsetGANPasteInset", canvas=canvas, inset=inset, boxes=boxes, feather=0.0)
    torch.testing.assert_close(pasted[:, 6:14, 10:26], inset)
    assert torch.equal(pasted[:, :6], canvas[:, :6]) and torch.equal(alpha, mask)
    with pytest.raises(ValueError, match="made on a 30x40 image .* canvas is 20x40"):
        run(N, "InsetGANPasteInset", canvas=canvas[:, :20], inset=inset, boxes=boxes, feather=0.0)
    with pytest.raises(ValueError, match="3 insets for 1 canvases"):
        run(N, "InsetGANPasteInset", canvas=canvas, inset=inset.expand(3, -1, -1, -1), boxes=boxes, feather=0.0)


def test_refine_boxes_by_content_finds_a_moved_inset(env, N):
    g = torch.Generator().manual_seed(0)
    canvas = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(48, 48), mode="bilinear").permute(0, 2, 3, 1)
    inset = canvas[:, 20:36, 14:30]  # the content at box (14, 20, 30, 36)
    start, _ = manual_box(N, canvas, 18 / 48, 17 / 48, 34 / 48, 33 / 48)  # 4 px right, 3 px up
    refined, mask = run(N, "InsetGANRefineBoxesByContent", image=canvas, inset=inset, boxes=start, resolution=16,
                        steps=20)
    assert (refined.boxes[0] - torch.tensor([14.0, 20.0, 30.0, 36.0])).abs().max() < 1.0
    assert mask.shape == (1, 48, 48)


def test_detect_faces_on_a_photo(env, N):
    detector, = run(N, "InsetGANFaceDetector", min_face_size=20, threshold_pnet=0.6, threshold_rnet=0.7,
                    threshold_onet=0.7, device="cpu")
    photo = astronaut()
    boxes, mask = run(N, "InsetGANDetectFaces", face_detector=detector, image=photo, policy="largest",
                      min_confidence=0.9)
    x0, y0, x1, y1 = boxes.boxes[0].tolist()
    assert abs(x0 - 90.5) < 3 and abs(y0 - 31) < 3 and abs(x1 - 134) < 3 and abs(y1 - 86) < 3
    assert mask.shape == (1, 256, 256) and mask[0, 60, 110] == 1 and mask[0, 10, 10] == 0
    blank = torch.full((1, 256, 256, 3), 0.5)
    with pytest.raises(ValueError, match="no face found in image 0"):
        run(N, "InsetGANDetectFaces", face_detector=detector, image=blank, policy="largest", min_confidence=0.9)
    both = torch.cat([photo, blank])
    previous, _ = manual_box(N, both, 0.1, 0.1, 0.5, 0.5)
    found, _ = run(N, "InsetGANDetectFaces", face_detector=detector, image=both, policy="most_central",
                   min_confidence=0.9, fallback=previous)
    torch.testing.assert_close(found.boxes[1], torch.tensor([25.6, 25.6, 128.0, 128.0]))
    torch.testing.assert_close(found.boxes[0], boxes.boxes[0])


def test_align_faces_and_paste_them_back(env, N):
    """Two faces in one photo (the portrait beside its mirror image), aligned, edited, pasted back."""
    detector, = run(N, "InsetGANFaceDetector", min_face_size=20, threshold_pnet=0.6, threshold_rnet=0.7,
                    threshold_onet=0.7, device="cpu")
    photo = astronaut()
    pair = torch.cat([photo, photo.flip(2)], dim=2)  # [1, 256, 512, 3]
    faces, alignment, inside = run(N, "InsetGANAlignFaces", face_detector=detector, image=pair, faces="all",
                                   min_confidence=0.9, width=64, height=128, border="blur")
    assert faces.shape == (2, 128, 64, 3) and inside.shape == (2, 128, 64)
    assert 0 <= float(faces.min()) and float(faces.max()) <= 1 and len(alignment) == 2
    edited = 1 - faces
    image, mask = run(N, "InsetGANPasteAlignedBack", image=pair, result=edited, alignment=alignment, grow=0,
                      soften=-1)
    assert image.shape == pair.shape and mask.shape == (1, 256, 512)
    untouched = mask[0] == 0
    assert torch.equal(image[0][untouched], pair[0][untouched])  # bit for bit
    assert mask[0, :, :256].max() == 1 and mask[0, :, 256:].max() == 1
    region = torch.zeros(1, 128, 64)
    region[:, 50:80, 10:54] = 1
    _, small = run(N, "InsetGANPasteAlignedBack", image=pair, result=edited, alignment=alignment, grow=0, soften=0,
                   mask=region)
    assert 0 < float(small.sum()) < 0.5 * float(mask.sum())
    with pytest.raises(ValueError, match="not those the faces were aligned on"):
        run(N, "InsetGANPasteAlignedBack", image=photo, result=edited, alignment=alignment, grow=0, soften=0)


# ---------------------------------------------------------------- losses


def chain_of_losses(N):
    losses, = run(N, "InsetGANCoarseLoss", inset="face", l1_weight=500.0, lpips_weight=0.0, resolution=8, name="")
    losses, = run(N, "InsetGANBorderLoss", inset="face", width=2, l1_weight=2500.0, lpips_weight=0.0, name="",
                  losses=losses)
    losses, = run(N, "InsetGANRegularizerLoss", generator="face", w_weight=15000.0, delta_weight=15000.0, name="",
                  losses=losses)
    return losses


def test_loss_nodes_chain_into_one_set(env, N):
    losses = chain_of_losses(N)
    assert list(losses.names) == ["coarse[face]", "border[face]", "reg[face]"]
    more, = run(N, "InsetGANBodyPreservationLoss", l1_weight=9000.0, lpips_weight=0.0, margin=1.0, feather=1.0,
                name="body", losses=losses)
    more, = run(N, "InsetGANFacePreservationLoss", inset="face", l1_weight=5000.0, lpips_weight=0.0, margin=2,
                name="keep face", losses=more)
    assert list(more.names)[3:] == ["body", "keep face"] and len(losses) == 3  # sets are immutable
    with pytest.raises(ValueError, match="appear twice"):
        run(N, "InsetGANRegularizerLoss", generator="face", w_weight=1.0, delta_weight=1.0, name="", losses=losses)
    with pytest.raises(ValueError, match="no LPIPS model"):
        run(N, "InsetGANCoarseLoss", inset="face", l1_weight=1.0, lpips_weight=0.05, resolution=8, name="")


def test_load_lpips_reads_models_lpips_or_names_the_missing_file(env, N, pack, monkeypatch):
    lpips_loader = sys.modules[f"{pack.__name__}.insetgan_ops.lpips_loader"]
    monkeypatch.setenv("TORCH_HOME", str(env / "torch_home"))
    listed = lambda: N["InsetGANLoadLPIPS"].INPUT_TYPES()["required"]["backbone"][0]  # noqa: E731
    assert listed() == []  # the frontend shows a template's backbone as a missing model
    with pytest.raises(FileNotFoundError) as missing:
        run(N, "InsetGANLoadLPIPS", backbone="alexnet-owt-7be5be79.pth", device="cpu")
    message = str(missing.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(env / "models" / "lpips") in message
    assert "models/lpips/alexnet-owt-7be5be79.pth" in message
    # The backbone file torchvision would download, in its real format (random weights, features only).
    folder = env / "models" / "lpips"
    folder.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    torch.save(features, folder / lpips_loader.backbone_filename("alex"))
    assert listed() == ["alexnet-owt-7be5be79.pth"]
    model, = run(N, "InsetGANLoadLPIPS", backbone="alexnet-owt-7be5be79.pth", device="cpu")
    torch.testing.assert_close(model.net.slice1[0].weight, features["features.0.weight"])
    assert not any(p.is_inference() for p in model.parameters())  # usable in the optimisers' backward passes
    losses, = run(N, "InsetGANCoarseLoss", inset="face", l1_weight=1.0, lpips_weight=0.05, resolution=32, name="",
                  lpips=model)
    assert next(iter(losses)).lpips is model
    fake = FakeComfy(str(env / "comfy")).install(monkeypatch)  # inside ComfyUI: models/lpips via folder_paths
    sys.modules[f"{pack.__name__}.nodes.comfy_runtime"].register_model_folders()
    with pytest.raises(FileNotFoundError, match=str(env / "comfy" / "models" / "lpips")):
        run(N, "InsetGANLoadLPIPS", backbone="alexnet-owt-7be5be79.pth", device="cpu")
    assert ("get_folder_paths", "lpips") in fake.calls


# ---------------------------------------------------------------- joint optimisation


def face_setup(N, candidates=1, trainable=True, tracker="fixed"):
    """Canvas latents, the canvas images and a face inset chain on them."""
    canvas = load(N, "canvas.safetensors")
    face = load(N, "face.safetensors")
    canvas_latent, canvas_image = image_of(N, canvas, seed=4, batch=candidates)
    boxes, _ = manual_box(N, canvas_image, 0.28, 0.06, 0.72, 0.28)
    if tracker == "fixed":
        source, = run(N, "InsetGANFixedBoxTracker", boxes=boxes)
    else:
        source, = run(N, "InsetGANContentBoxTracker", boxes=boxes, max_shift=0.2, max_scale=1.25, resolution=8)
    insets, = run(N, "InsetGANInset", stylegan=face, box_tracker=source, name="face", trainable=trainable,
                  learning_rate=0.05, feather=1.0)
    return canvas, face, canvas_latent, canvas_image, boxes, insets


def optimize(N, canvas, insets, losses, mode, steps=6, candidates=1, canvas_latent=None, seed=0):
    return run(N, "InsetGANJointOptimize", canvas=canvas, insets=insets, losses=losses, mode=mode, steps=steps,
               canvas_learning_rate=0.05, seed=seed, truncation_psi=0.7, candidates=candidates,
               canvas_latent=canvas_latent)


def test_insets_only_refines_the_face_on_a_fixed_body(env, N):
    canvas, face, canvas_latent, canvas_image, boxes, insets = face_setup(N, candidates=2)
    composite, canvas_out, inset_image, mask, plot, latent_out, result = optimize(
        N, canvas, insets, chain_of_losses(N), "insets only", steps=8, candidates=2, canvas_latent=canvas_latent)
    order = result.result.ranking.tolist()
    assert sorted(order) == [0, 1]
    torch.testing.assert_close(canvas_out, canvas_image[order])  # the body did not change
    torch.testing.assert_close(latent_out.ws, canvas_latent.ws[order])
    assert latent_out.generator == canvas.identity  # labelled with the file, usable downstream
    H, W = canvas_image.shape[1:3]
    h, w = face.generator.img_height, face.generator.img_width
    assert composite.shape == (2, H, W, 3) and inset_image.shape == (2, h, w, 3) and mask.shape == (2, H, W)
    box = boxes.boxes[0].round().int().tolist()
    assert mask[0, (box[1] + box[3]) // 2, (box[0] + box[2]) // 2] == 1 and mask[0, H - 1, 0] == 0
    assert plot.shape[0] == 1 and plot.shape[3] == 3 and plot.std() > 0
    history = result.result.history
    assert len(history["total"]) == 8 and history["total"][-1] < history["total"][0]
    face_image, face_latent, face_mask, face_boxes = run(N, "InsetGANInsetResult", result=result, name="face")
    assert torch.equal(face_image, inset_image)
    torch.testing.assert_close(face_mask, mask)  # one inset: the combined mask is its alpha
    assert face_latent.generator == face.identity and not torch.equal(face_latent.ws[0], face.generator.w_avg.expand(
        face_latent.ws.shape[1], -1))
    assert torch.equal(face_boxes.boxes, boxes.boxes)
    with pytest.raises(ValueError, match="no inset named 'shoes'"):
        run(N, "InsetGANInsetResult", result=result, name="shoes")


def test_canvas_only_keeps_a_given_face_and_joint_moves_both(env, N):
    canvas, face, _, _, boxes, _ = face_setup(N)
    face_latent, face_image = image_of(N, face, seed=9)
    tracker, = run(N, "InsetGANContentBoxTracker", boxes=boxes, max_shift=0.2, max_scale=1.25, resolution=8)
    fixed, = run(N, "InsetGANInset", stylegan=face, box_tracker=tracker, name="face", trainable=True,
                 learning_rate=0.05, feather=0.0, latent=face_latent)
    losses, = run(N, "InsetGANRegularizerLoss", generator="canvas", w_weight=100.0, delta_weight=100.0, name="",
                  losses=chain_of_losses(N))
    _, canvas_out, inset_image, _, _, latent_out, result = optimize(N, canvas, fixed, losses, "canvas only", steps=4,
                                                                    seed=3)
    torch.testing.assert_close(inset_image, face_image)  # canvas only: the face stays as given
    start = run(N, "InsetGANSampleLatent", stylegan=canvas, seed=3, batch_size=1, truncation_psi=0.7,
                truncation_cutoff=0)[0]
    assert not torch.allclose(latent_out.ws, start.ws)  # the seeded random body was optimised
    assert len(result.result.history["total"]) == 4
    _, _, joint_insets, _, _, joint_latent, joint = optimize(N, canvas, fixed, losses, "joint", steps=27, seed=3)
    assert not torch.allclose(joint_insets, face_image) and not torch.allclose(joint_latent.ws, start.ws)
    assert {p.train for p in joint.result.phases} == {"canvas", "insets"}


def test_progress_previews_and_cancel(env, N, monkeypatch):
    canvas, face, canvas_latent, _, _, insets = face_setup(N)
    losses = chain_of_losses(N)
    fake = FakeComfy(str(env)).install(monkeypatch)
    G = face.generator
    grads_before = [p.requires_grad for p in G.parameters()]
    optimize(N, canvas, insets, losses, "insets only", steps=50, canvas_latent=canvas_latent)
    updates = [c for c in fake.calls if c[0] == "update_absolute"]
    assert [c[1] for c in updates] == list(range(1, 51)) and all(c[2] == 50 for c in updates)
    previews = [c for c in updates if c[3] is not None]
    assert [c[1] for c in previews] == list(range(2, 51, 2))  # 25 previews per run
    size = (canvas.generator.img_width, canvas.generator.img_height)
    assert all(c[3][0] == "JPEG" and c[3][1].size == size for c in previews)
    fake.calls.clear()
    fake.interrupted = True
    with pytest.raises(InterruptProcessingException):
        optimize(N, canvas, insets, losses, "insets only", steps=30, canvas_latent=canvas_latent)
    assert [p.requires_grad for p in G.parameters()] == grads_before
    composite = optimize(N, canvas, insets, losses, "insets only", steps=2, canvas_latent=canvas_latent)[0]
    assert torch.isfinite(composite).all()  # runs again after a cancel


def test_setup_errors_name_the_problem(env, N):
    canvas, face, canvas_latent, canvas_image, boxes, insets = face_setup(N)
    losses = chain_of_losses(N)
    shoes_losses, = run(N, "InsetGANBorderLoss", inset="shoes", width=2, l1_weight=1.0, lpips_weight=0.0, name="",
                        losses=losses)
    unknown = r"'border\[shoes\]' refers to 'shoes'.*\['canvas', 'face'\]; make the term refer to one of them"
    with pytest.raises(ValueError, match=unknown):
        optimize(N, canvas, insets, shoes_losses, "joint")
    small, _ = manual_box(N, canvas_image[:, :8], 0.1, 0.1, 0.5, 0.5)
    tracker, = run(N, "InsetGANFixedBoxTracker", boxes=small)
    misplaced, = run(N, "InsetGANInset", stylegan=face, box_tracker=tracker, name="face", trainable=True,
                     learning_rate=0.02, feather=0.0)
    with pytest.raises(ValueError, match="boxes were made on a 8x"):
        optimize(N, canvas, misplaced, losses, "joint")
    _, three = image_of(N, canvas, batch=3)
    three_boxes, _ = manual_box(N, three, 0.28, 0.06, 0.72, 0.28)
    tracker, = run(N, "InsetGANFixedBoxTracker", boxes=three_boxes)
    per_image, = run(N, "InsetGANInset", stylegan=face, box_tracker=tracker, name="face", trainable=True,
                     learning_rate=0.02, feather=0.0)
    with pytest.raises(ValueError, match="3 boxes for 2 candidates"):
        optimize(N, canvas, per_image, losses, "joint", candidates=2)
    source, = run(N, "InsetGANFixedBoxTracker", boxes=boxes)
    kwargs = dict(stylegan=face, box_tracker=source, trainable=True, learning_rate=0.02, feather=0.0)
    with pytest.raises(ValueError, match="other than 'canvas'"):
        run(N, "InsetGANInset", name="canvas", **kwargs)
    with pytest.raises(ValueError, match="two insets are named 'face'"):
        run(N, "InsetGANInset", name="face", insets=insets, **kwargs)
    other_face = load(N, "other-face.safetensors")
    face_latent, _ = image_of(N, face)
    with pytest.raises(ValueError, match="made for generator 'face.safetensors'"):
        run(N, "InsetGANInset", name="face", latent=face_latent, **{**kwargs, "stylegan": other_face})
    with pytest.raises(ValueError, match="made for generator 'face.safetensors'"):
        optimize(N, canvas, insets, losses, "joint", canvas_latent=face_latent)
    frozen, = run(N, "InsetGANInset", name="face", **{**kwargs, "trainable": False})
    with pytest.raises(ValueError, match="nothing to optimise"):
        optimize(N, canvas, frozen, losses, "insets only")
    # Parts on different devices are refused before anything runs ('meta' stands in for a GPU here).
    elsewhere = dataclasses.replace(face, generator=copy.deepcopy(face.generator).to("meta"))
    apart, = run(N, "InsetGANInset", name="face", **{**kwargs, "stylegan": elsewhere})
    with pytest.raises(ValueError, match="canvas generator is on cpu but the inset generator 'face' is on meta; load both"):
        optimize(N, canvas, apart, losses, "joint")
    lpips_model = load_lpips("alex", allow_untrained_backbone=True).to("meta")
    with_lpips, = run(N, "InsetGANCoarseLoss", inset="face", l1_weight=1.0, lpips_weight=0.05, resolution=32,
                      name="", lpips=lpips_model)
    with pytest.raises(ValueError, match="LPIPS model on meta but the generators are on cpu"):
        optimize(N, canvas, insets, with_lpips, "joint")


def test_project_image_reproduces_a_generated_face(env, N):
    face = load(N, "face.safetensors")
    _, target = image_of(N, face, seed=2)
    latent, image, plot = run(N, "InsetGANProjectImage", stylegan=face, image=target, steps=40, learning_rate=0.1,
                              perceptual_weight=1.0, prior_weight=1e-3)
    assert latent.generator == face.identity and latent.ws.shape[0] == 1
    assert image.shape == target.shape and plot.shape[-1] == 3
    start, = run(N, "InsetGANMeanLatent", stylegan=face, batch_size=1)
    mean_image, = run(N, "InsetGANSynthesize", stylegan=face, latent=start, noise_mode="const", noise_seed=0,
                      strict=True)
    assert (image - target).abs().mean() < 0.5 * (mean_image - target).abs().mean()
    half = torch.zeros(1, *target.shape[1:3])
    half[:, :, : target.shape[2] // 2] = 1  # fit the left half only
    lpips_model = load_lpips("alex", allow_untrained_backbone=True)
    settings = dict(stylegan=face, image=target, steps=5, learning_rate=0.1, perceptual_weight=1.0, prior_weight=1e-3,
                    init_latent=start)
    plain = run(N, "InsetGANProjectImage", **settings)[0]
    masked = run(N, "InsetGANProjectImage", **settings, mask=half)[0]
    perceptual = run(N, "InsetGANProjectImage", **settings, mask=half, lpips=lpips_model)[0]
    assert not torch.allclose(plain.ws, masked.ws) and not torch.allclose(masked.ws, perceptual.ws)
    elsewhere, _ = image_of(N, face, seed=5)
    assert not torch.allclose(run(N, "InsetGANProjectImage", **{**settings, "init_latent": elsewhere})[0].ws, plain.ws)
    with pytest.raises(ValueError, match="crop the target to the generator's aspect"):
        run(N, "InsetGANProjectImage", stylegan=face, image=target[:, :, : target.shape[2] // 2], steps=1,
            learning_rate=0.1, perceptual_weight=1.0, prior_weight=1e-3)


# ---------------------------------------------------------------- example workflows


def prompt_of(N, name, steps):
    """The API prompt of an example workflow, with the optimisation nodes' steps cut to ``steps``."""
    prompt = to_api_prompt(json.loads(WORKFLOWS[name].read_text()), N)
    for node in prompt.values():
        if node["class_type"] in ("InsetGANJointOptimize", "InsetGANProjectImage"):
            node["inputs"]["steps"] = steps
    return prompt


def node_id(N, name, class_type):
    return next(k for k, v in prompt_of(N, name, 1).items() if v["class_type"] == class_type)


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_example_workflow_end_to_end(env, N, name):
    ctx = RunContext(env / "input", env / "output")
    results = run_prompt(prompt_of(N, name, 3), N, ctx)
    optimized = results[node_id(N, name, "InsetGANJointOptimize")]
    composite, canvas, insets, mask, plot, latent, result = optimized
    G = load(N, "canvas.safetensors").generator
    assert composite.shape[1:] == (G.img_height, G.img_width, 3) and torch.isfinite(composite).all()
    assert mask.shape == composite.shape[:3] and mask.amax() == 1
    saved = sorted((env / "output" / "InsetGAN").glob("*.png"))
    assert len(saved) == composite.shape[0]
    assert np.abs(np.asarray(Image.open(saved[0]), dtype=np.float32) - composite[0].numpy() * 255).max() <= 1.0
    assert all(shown[0].ndim == 4 for shown in ctx.ui.values())
    names = set(result.result.insets)
    assert names == ({"face", "shoes"} if name == "face_and_shoes" else {"face"})
    if name == "body_for_face":  # the photo's face was found, cropped, projected and kept fixed
        face = load(N, "face.safetensors")
        projected = results[node_id(N, name, "InsetGANProjectImage")][0]
        assert projected.generator == face.identity
        torch.testing.assert_close(result.latent("face").ws, projected.ws.expand(composite.shape[0], -1, -1))
        alignment = results[node_id(N, name, "InsetGANAlignFaces")][1]
        # the example astronaut photo (512 pixels): her FFHQ quad's top left corner
        assert len(alignment) == 1 and (alignment.matrices[0, :, 2] - torch.tensor([146.8, 18.4])).abs().max() < 6


@pytest.mark.skipif(not all((DEMO_WEIGHTS / f).is_file() for f in DEMO_FILES),
                    reason="the trained demo weights are not in insetgan_ops/demo/weights/")
def test_face_refinement_on_the_demo_generators(pack, monkeypatch, tmp_path, N):
    root = _folders(pack, monkeypatch, tmp_path)  # no stand-ins: the pack's demo weights are found
    ctx = RunContext(root / "input", root / "output")
    results = run_prompt(prompt_of(N, "face_refinement", 2), N, ctx)
    composite, canvas, _, _, _, _, result = results[node_id(N, "face_refinement", "InsetGANJointOptimize")]
    assert composite.shape == (2, 128, 64, 3) and torch.isfinite(composite).all()
    G = load(N, "canvas.safetensors").generator
    assert (G.img_height, G.img_width) == (128, 64)
    assert result.result.history["total"][-1] < result.result.history["total"][0]


def test_face_tracker_falls_back_or_explains_a_missing_face(env, N):
    canvas, face, canvas_latent, canvas_image, boxes, _ = face_setup(N)
    detector, = run(N, "InsetGANFaceDetector", min_face_size=12, threshold_pnet=0.6, threshold_rnet=0.7,
                    threshold_onet=0.7, device="cpu")
    settings = dict(face_detector=detector, expansion=1.8, shift_down=0.05, min_confidence=0.9, policy="largest")
    losses = chain_of_losses(N)
    blind, = run(N, "InsetGANFaceBoxTracker", **settings)
    insets, = run(N, "InsetGANInset", stylegan=face, box_tracker=blind, name="face", trainable=True,
                  learning_rate=0.02, feather=0.0)
    with pytest.raises(ValueError, match="no face found in image 0.*pass the previous box as fallback"):
        optimize(N, canvas, insets, losses, "joint", canvas_latent=canvas_latent)
    guided, = run(N, "InsetGANFaceBoxTracker", **settings, fallback=boxes)
    insets, = run(N, "InsetGANInset", stylegan=face, box_tracker=guided, name="face", trainable=True,
                  learning_rate=0.02, feather=0.0)
    result = optimize(N, canvas, insets, losses, "canvas only", steps=4, canvas_latent=canvas_latent)[-1]
    torch.testing.assert_close(result.result.boxes["face"], boxes.boxes)  # no face drawn: the fallback box held


def test_adjust_boxes_and_the_face_tracker_shift_alike(env, N, pack):
    """Review bug: Adjust Boxes shifted by the expanded box's height, the face tracker by the tight
    face's, so the same shift_down knob moved the box by different amounts."""
    _, image = image_of(N, load(N, "canvas.safetensors"))
    tight, _ = manual_box(N, image, 0.25, 0.125, 0.5, 0.25)  # 8 x 4 pixels on the 32 x 16 canvas
    adjusted, _ = run(N, "InsetGANAdjustBoxes", boxes=tight, expand=1.8, shift_down=0.25, aspect="keep",
                      aspect_ratio=1.0, clamp="none")
    boxes = sys.modules[f"{pack.__name__}.insetgan_ops.boxes"]
    expected = boxes.shift_down(boxes.expand(tight.boxes, 1.8), 0.25, heights_of=tight.boxes)
    torch.testing.assert_close(adjusted.boxes, expected)
    height = float(tight.boxes[0, 3] - tight.boxes[0, 1])
    centre = float(tight.boxes[0, 1] + tight.boxes[0, 3]) / 2
    assert float(adjusted.boxes[0, 1]) == pytest.approx(centre - 0.9 * height + 0.25 * height)


def test_pivotal_tuning_makes_a_tuned_copy_that_reproduces_the_image(env, N):
    face = load(N, "face.safetensors")
    _, target = image_of(N, face, seed=2)
    pivot, projected, _ = run(N, "InsetGANProjectImage", stylegan=face, image=target, steps=10, learning_rate=0.1,
                              perceptual_weight=1.0, prior_weight=1e-3)
    tuned, latent, image, plot = run(N, "InsetGANPivotalTuning", stylegan=face, image=target, latent=pivot, steps=30,
                                     learning_rate=2e-3, locality_weight=0.1, locality_alpha=3.0)
    assert tuned.generator is not face.generator and tuned.name == f"{face.name} (PTI)"
    assert latent.generator == tuned.identity and torch.equal(latent.ws, pivot.ws)
    assert (image - target).square().mean() < 0.7 * (projected - target).square().mean()
    again, = run(N, "InsetGANSynthesize", stylegan=tuned, latent=latent, noise_mode="const", noise_seed=0, strict=True)
    torch.testing.assert_close(again, image)
    assert plot.shape[-1] == 3
    with pytest.raises(ValueError, match="made for generator"):  # the parent's latent is not the tuned copy's
        run(N, "InsetGANSynthesize", stylegan=tuned, latent=pivot, noise_mode="const", noise_seed=0, strict=True)
    run(N, "InsetGANSaveStyleGAN", stylegan=tuned, filename_prefix="InsetGAN/tuned")
    saved = env / "output" / "InsetGAN" / "tuned_00001.safetensors"
    shutil.copy(saved, env / "models" / "stylegan" / "tuned.safetensors")
    reloaded = load(N, "tuned.safetensors")
    assert reloaded.identity.fingerprint == tuned.identity.fingerprint  # the same weights, so its latents work
    image_back, = run(N, "InsetGANSynthesize", stylegan=reloaded, latent=latent, noise_mode="const", noise_seed=0,
                      strict=False)
    torch.testing.assert_close(image_back, image)


def test_project_image_names_an_lpips_model_on_another_device(env, N):
    face = load(N, "face.safetensors")
    _, target = image_of(N, face)
    elsewhere = torch.nn.Linear(1, 1, device="meta")
    with pytest.raises(ValueError, match="perceptual model \\(LPIPS\\) is on meta but the generator on cpu"):
        run(N, "InsetGANProjectImage", stylegan=face, image=target, steps=1, learning_rate=0.1, perceptual_weight=1.0,
            prior_weight=1e-3, lpips=elsewhere)
