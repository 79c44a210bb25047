"""The Barbershop nodes run as ComfyUI runs them (inside torch.inference_mode()), one by one and as
the example workflows.

Models: the workflows name the demo face generator ``face.safetensors`` (64x64) and the demo face
parser ``face_parser.safetensors``. When both are shipped in insetgan_ops/demo/weights/ they are
used; otherwise a tiny random 64x64 generator and a small random demo parser are written under those
names into a temporary models folder ($INSETGAN_MODELS_DIR), so the workflow files run unchanged
(``test_which_models`` reports which). LPIPS is the real ``lpips`` code whose AlexNet backbone is
read from a torchvision-format file the tests write with random weights. The photo workflow and the
crop test use skimage's astronaut photograph (and the real MTCNN). Steps are cut to a few per
stage: the tests check behaviour, not image quality.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from skimage import data

from insetgan_ops import fs_compositor, save_generator
from insetgan_ops.demo import WEIGHTS_DIR as DEMO_WEIGHTS
from insetgan_ops.face_parsers import UNetConfig, UNetFaceParser, save_face_parser
from insetgan_ops.lpips_loader import backbone_filename
from tests.fake_comfy import FakeComfy, InterruptProcessingException
from tests.tiny_generator import tiny_generator
from tests.workflow_runner import RunContext, run_node as run, run_prompt, to_api_prompt

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("barbershop_*.json"))
USE_DEMO = all((DEMO_WEIGHTS / f).is_file() for f in ("face.safetensors", "face_parser.safetensors"))
SIZE = 64
FEW_STEPS = {"w_steps": 2, "fs_steps": 2, "steps": 2, "lender_steps": 2}
EMBED = dict(w_steps=2, fs_steps=2, learning_rate=0.01, mse_weight=1.0, lpips_weight=1.0, prior_weight=0.001,
             f_weight=0.1)
ALIGN = dict(appearance="", steps=2, lender_steps=2, learning_rate=0.01, style_weight=4e4, smooth=5)
COMPOSE = dict(mapping="hair: b", default_source="a", fill_labels="background, skin, neck, cloth",
               override_label="hair")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A models folder: LPIPS's AlexNet file (features only, random) and, without the shipped demo
    weights, a tiny face generator and a small demo parser under the demo file names."""
    root = tmp_path_factory.mktemp("models")
    (root / "lpips").mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = torchvision.models.alexnet().features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, root / "lpips" / backbone_filename("alex"))
        if not USE_DEMO:
            (root / "stylegan").mkdir()
            (root / "face_parsing").mkdir()
            save_generator(tiny_generator(0, img_resolution=SIZE), root / "stylegan" / "face.safetensors")
            parser = UNetFaceParser(UNetConfig(input_size=32, channels=(4, 8)))
            save_face_parser(parser, root / "face_parsing" / "face_parser.safetensors")
    (root / "stylegan").mkdir(exist_ok=True)
    save_generator(tiny_generator(5, img_resolution=SIZE), root / "stylegan" / "other-face.safetensors")
    return root


@pytest.fixture
def env(pack, models, monkeypatch, tmp_path):
    """ComfyUI absent; models as above; input and output in tmp_path; a fresh embedding cache."""
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(models))
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    fs_nodes = sys.modules[f"{pack.__name__}.nodes.barbershop_fs"]
    monkeypatch.setattr(fs_nodes, "EMBEDDINGS", sys.modules[f"{pack.__name__}.insetgan_ops.fs_cache"].EmbeddingCache())
    return tmp_path


@pytest.fixture
def embedded_images(pack, monkeypatch) -> list[int]:
    """Counts the images the library embeds (the cache's misses), batch by batch."""
    fs_cache = sys.modules[f"{pack.__name__}.insetgan_ops.fs_cache"]
    counts: list[int] = []
    real = fs_cache.embed

    def counting(G, images, *args, **kwargs):
        counts.append(images.shape[0])
        return real(G, images, *args, **kwargs)

    monkeypatch.setattr(fs_cache, "embed", counting)
    return counts


def loaders(N):
    stylegan = run(N, "InsetGANLoadStyleGAN", model_name="face.safetensors", device="cpu")[0]
    parser = run(N, "InsetGANLoadFaceParser", model_name="face_parser.safetensors", device="cpu")[0]
    lpips = run(N, "InsetGANLoadLPIPS", backbone="alexnet-owt-7be5be79.pth", device="cpu")[0]
    return stylegan, parser, lpips


def face(N, stylegan, seed: int) -> torch.Tensor:
    latent = run(N, "InsetGANSampleLatent", stylegan=stylegan, seed=seed, batch_size=1, truncation_psi=0.7,
                 truncation_cutoff=0)[0]
    return run(N, "InsetGANSynthesize", stylegan=stylegan, latent=latent, noise_mode="const", noise_seed=0,
               strict=True)[0]


def box_mask(y0: int, y1: int, x0: int, x1: int, size: int = SIZE) -> torch.Tensor:
    """A MASK [1, size, size]: 1 in rows y0..y1-1, columns x0..x1-1."""
    mask = torch.zeros(1, size, size)
    mask[:, y0:y1, x0:x1] = 1
    return mask


def masks_map(N, label_set="barbershop-16", **masks):
    """A LABEL_MAP of ``label_set`` from {label: MASK} through Label Map from Masks."""
    slots = {"label_set": label_set}
    for i, (label, mask) in enumerate(masks.items(), start=1):
        slots[f"label_{i}"], slots[f"mask_{i}"] = label, mask
    for i in range(len(masks) + 1, 5):
        slots[f"label_{i}"] = "background"
    return run(N, "InsetGANLabelMapFromMasks", **slots)[0]


def hair_composite(N, stylegan, parser, lpips, images):
    """Embeds two faces, composes 'hair from b' from painted masks, aligns and blends them."""
    label_maps = [masks_map(N, hair=box_mask(0, 16, 12, 52), skin=box_mask(16, 56, 16, 48)),
                  masks_map(N, hair=box_mask(0, 30, 6, 58))]
    target = run(N, "InsetGANComposeTargetMask", labels_a=label_maps[0], labels_b=label_maps[1], **COMPOSE)[0]
    refs = [run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=im, **EMBED)[0] for im in images]
    alignment = run(N, "InsetGANBarbershopAlign", stylegan=stylegan, face_parser=parser, lpips=lpips, target=target,
                    reference_a=refs[0], reference_b=refs[1], **ALIGN)[0]
    composite, changed = run(N, "InsetGANBarbershopBlend", stylegan=stylegan, lpips=lpips, alignment=alignment,
                             steps=2, learning_rate=0.01, mse_weight=1.0)
    return run(N, "InsetGANFSSynthesize", stylegan=stylegan, fs_latent=composite)[0], changed


def test_which_models(env, models):
    stylegan_file = (DEMO_WEIGHTS if USE_DEMO else models / "stylegan") / "face.safetensors"
    print(f"\nBarbershop node tests use {'the shipped demo' if USE_DEMO else 'tiny random'} models: {stylegan_file}")
    assert stylegan_file.is_file()


def test_face_parsers_listed_without_the_generators(env, N):
    names = N["InsetGANLoadFaceParser"].INPUT_TYPES()["required"]["model_name"][0]
    assert "face_parser.safetensors" in names
    assert "face.safetensors" not in names and "canvas.safetensors" not in names


def test_segment_agrees_with_the_parser(env, N):
    stylegan, parser, _ = loaders(N)
    images = torch.cat([face(N, stylegan, 1), face(N, stylegan, 2)])
    label_map, preview, mask = run(N, "InsetGANSegment", face_parser=parser, image=images, labels="hair, skin")
    expected = parser.parse(images.permute(0, 3, 1, 2) * 2 - 1)
    assert torch.equal(label_map.labels, expected) and label_map.label_set == parser.label_set
    assert preview.shape == (2, SIZE, SIZE, 3) and torch.equal(preview, parser.label_set.colorize(expected))
    hair_or_skin = torch.isin(expected, torch.tensor(parser.label_set.indices(["hair", "skin"])))
    assert torch.equal(mask, hair_or_skin.float())
    lips, = run(N, "InsetGANLabelMapToMask", label_map=label_map, labels="upper_lip,lower_lip")
    assert torch.equal(lips, torch.isin(expected, torch.tensor([8, 9])).float())
    with pytest.raises(KeyError, match="'beard' is not in label set 'barbershop-16'; available: background, skin"):
        run(N, "InsetGANLabelMapToMask", label_map=label_map, labels="beard")


def test_label_map_from_masks_paints_over_a_base(env, N):
    hair, skin = box_mask(0, 20, 0, 64), box_mask(10, 50, 16, 48) * 0.8
    label_map, preview = run(N, "InsetGANLabelMapFromMasks", label_set="barbershop-16", label_1="hair", mask_1=hair,
                             label_2="skin", mask_2=skin, label_3="background", label_4="background")
    labels = label_map.labels[0]
    assert labels[5, 5] == 10 and labels[30, 30] == 1 and labels[60, 5] == 0
    assert labels[15, 30] == 10  # where they overlap the strongest mask wins (hair 1.0 over skin 0.8)
    assert preview.shape == (1, SIZE, SIZE, 3)
    hat = box_mask(0, 8, 0, 32, size=32)  # another size: resized to the base
    painted, _ = run(N, "InsetGANLabelMapFromMasks", label_set="celebamask-hq-19", base=label_map, label_1="hat",
                     mask_1=hat, label_2="background", label_3="background", label_4="background")
    assert painted.label_set == label_map.label_set  # a base's set wins
    assert (painted.labels[0, :16, :64] == 11).all()
    assert torch.equal(painted.labels[0, 16:], labels[16:])
    with pytest.raises(KeyError, match="'left_eye' is not in label set 'barbershop-16'"):
        run(N, "InsetGANLabelMapFromMasks", label_set="barbershop-16", label_1="left_eye", mask_1=hair,
            label_2="background", label_3="background", label_4="background")
    with pytest.raises(ValueError, match="two masks paint the same label"):
        run(N, "InsetGANLabelMapFromMasks", label_set="barbershop-16", label_1="hair", mask_1=hair, label_2="hair",
            mask_2=skin, label_3="background", label_4="background")


def test_compose_target_takes_mapped_labels_and_overrides(env, N):
    a = masks_map(N, hair=box_mask(0, 24, 8, 56), skin=box_mask(24, 56, 16, 48))
    b = masks_map(N, hair=box_mask(0, 12, 4, 60))
    target, label_map, preview = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, **COMPOSE)
    assert target.mapping == {"hair": 1} and target.default_source == 0 and len(target.sources) == 2
    assert torch.equal(label_map.labels[0], target.labels) and preview.shape == (1, SIZE, SIZE, 3)
    hair = target.labels == 10
    assert torch.equal(hair, b.labels[0] == 10)  # the hair is b's; a's longer hair left holes, now filled
    assert (target.labels[30:50, 20:44] == 1).all()  # a's face stays
    bun = box_mask(40, 64, 0, 8)
    overridden = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, override_mask=bun, **COMPOSE)[0]
    assert torch.equal(overridden.labels == 10, bun[0].bool())
    with pytest.raises(ValueError, match="'hair b' must read 'label: reference'"):
        run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, **{**COMPOSE, "mapping": "hair b"})
    with pytest.raises(ValueError, match="unknown reference 'c'; the connected references are a, b"):
        run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, **{**COMPOSE, "mapping": "hair: c"})
    with pytest.raises(KeyError, match="'mane' is not in label set"):
        run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, **{**COMPOSE, "mapping": "mane: b"})
    with pytest.raises(ValueError, match="nothing to composite"):
        run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, **{**COMPOSE, "mapping": "hair: a"})
    pair = masks_map(N, hair=torch.cat([box_mask(0, 9, 0, 9), box_mask(0, 5, 0, 5)]))
    with pytest.raises(ValueError, match="labels_b holds 2 label maps"):
        run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=pair, **COMPOSE)


def test_embed_caches_by_content_and_settings(env, N, embedded_images):
    stylegan, _, lpips = loaders(N)
    a, b, c = face(N, stylegan, 1), face(N, stylegan, 2), face(N, stylegan, 3)
    first, reconstruction = run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips,
                                image=torch.cat([a, b]), **EMBED)
    assert embedded_images == [2] and first.code.F.shape[0] == 2 and reconstruction.shape == (2, SIZE, SIZE, 3)
    again, _ = run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=torch.cat([a, c]), **EMBED)
    assert embedded_images == [2, 1]  # only c is new
    assert torch.equal(again.code.F[0], first.code.F[0]) and torch.equal(again.code.ws[0], first.code.ws[0])
    run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=a, **{**EMBED, "fs_steps": 3})
    assert embedded_images == [2, 1, 1]  # other settings: embedded again
    start, = run(N, "InsetGANSampleLatent", stylegan=stylegan, seed=4, batch_size=1, truncation_psi=1.0,
                 truncation_cutoff=0)
    started, _ = run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=a, **EMBED,
                     init_latent=start)
    assert embedded_images == [2, 1, 1, 1]  # another start: embedded again, from there
    assert (started.code.ws - start.ws).abs().mean() < (first.code.ws[:1] - start.ws).abs().mean()


def test_embed_and_align_reject_bad_input(env, N):
    stylegan, parser, lpips = loaders(N)
    with pytest.raises(ValueError, match=r"the image must be \[B, 3, 64, 64\].*got \[1, 3, 48, 64\]; crop the face"):
        run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=torch.rand(1, 48, 64, 3), **EMBED)
    images = [face(N, stylegan, 1), face(N, stylegan, 2)]
    refs = [run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=im, **EMBED)[0] for im in images]
    small = masks_map(N, hair=box_mask(0, 8, 0, 32, size=32))
    a = masks_map(N, skin=box_mask(16, 56, 16, 48))
    target = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=small, **COMPOSE)[0]
    kwargs = dict(stylegan=stylegan, face_parser=parser, lpips=lpips, target=target, **ALIGN)
    with pytest.raises(ValueError, match="labels_b is 32x32 but the image of reference_b is 64x64"):
        run(N, "InsetGANBarbershopAlign", reference_a=refs[0], reference_b=refs[1], **kwargs)
    target = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=masks_map(N, hair=box_mask(0, 9, 0, 9)),
                 **COMPOSE)[0]
    kwargs["target"] = target
    other = run(N, "InsetGANLoadStyleGAN", model_name="other-face.safetensors", device="cpu")[0]
    with pytest.raises(ValueError, match="reference_a was made with generator 'face.safetensors'"):
        run(N, "InsetGANBarbershopAlign", reference_a=refs[0], reference_b=refs[1], **{**kwargs, "stylegan": other})
    with pytest.raises(ValueError, match="fs_latent was made with generator 'face.safetensors'"):
        run(N, "InsetGANFSSynthesize", stylegan=other, fs_latent=refs[0])
    with pytest.raises(ValueError, match="target was composed from 2 label maps but 3 references"):
        run(N, "InsetGANBarbershopAlign", reference_a=refs[0], reference_b=refs[1], reference_c=refs[1], **kwargs)
    with pytest.raises(ValueError, match="unknown reference 'c'"):
        run(N, "InsetGANBarbershopAlign", reference_a=refs[0], reference_b=refs[1],
            **{**kwargs, "appearance": "hair: c"})


def test_a_target_of_19_labels_aligns_with_a_16_label_parser(env, N):
    """Review bug: the target was converted to the parser's labels but its mapping's names were not
    (KeyError: label 'left_eye' is not in label set 'barbershop-16')."""
    stylegan, parser, lpips = loaders(N)
    images = [face(N, stylegan, 1), face(N, stylegan, 2)]
    refs = [run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=im, **EMBED)[0] for im in images]
    a = masks_map(N, "celebamask-hq-19", skin=box_mask(16, 56, 16, 48), left_eye=box_mask(28, 32, 20, 28))
    b = masks_map(N, "celebamask-hq-19", skin=box_mask(16, 56, 16, 48), left_eye=box_mask(26, 34, 18, 30),
                  hair=box_mask(0, 20, 8, 56))
    target = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b,
                 **{**COMPOSE, "mapping": "hair: b, left_eye: b"})[0]
    alignment, preview = run(N, "InsetGANBarbershopAlign", stylegan=stylegan, face_parser=parser, lpips=lpips,
                             target=target, reference_a=refs[0], reference_b=refs[1], **ALIGN)
    eyes = parser.label_set.index("eyes")
    assert eyes in alignment.alignment.target.unique().tolist() and preview.shape == (1, SIZE, SIZE, 3)


def test_composite_changes_only_the_edited_region_and_pastes_back(env, N, pack):
    stylegan, parser, lpips = loaders(N)
    images = [face(N, stylegan, 1), face(N, stylegan, 2)]
    composite, changed = hair_composite(N, stylegan, parser, lpips, images)
    assert composite.shape == (1, SIZE, SIZE, 3) and changed.shape == (1, SIZE, SIZE)
    assert changed[0, :30].sum() > 0 and changed[0, 40:].sum() == 0  # the hair area, not the chin
    pasted, = run(N, "InsetGANBarbershopPasteBack", composite=composite, original=images[0], changed=changed,
                  grow=2, soften=2)
    far = torch.nn.functional.max_pool2d(changed[None], 13, stride=1, padding=6)[0] == 0
    assert torch.equal(pasted[0][far[0]], images[0][0][far[0]])  # exact original away from the edit
    assert not torch.equal(pasted, images[0])

    # the uncropped photo: the face was cropped from a 100x120 picture at box (30, 20)-(94, 84)
    photo = torch.rand(1, 100, 120, 3)
    image_boxes = sys.modules[f"{pack.__name__}.nodes.inset_boxes"].ImageBoxes
    boxes = image_boxes(torch.tensor([[30.0, 20.0, 94.0, 84.0]]), 100, 120)
    photo[:, 20:84, 30:94] = images[0]
    into_photo, = run(N, "InsetGANBarbershopPasteBack", composite=composite, original=photo, changed=changed,
                      grow=2, soften=2, boxes=boxes)
    assert into_photo.shape == photo.shape
    outside = torch.ones(100, 120, dtype=torch.bool)
    outside[20:84, 30:94] = False
    assert torch.equal(into_photo[0][outside], photo[0][outside])
    torch.testing.assert_close(into_photo[:, 20:84, 30:94], pasted, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="give the boxes it was cropped with"):
        run(N, "InsetGANBarbershopPasteBack", composite=composite, original=photo, changed=changed, grow=2, soften=2)


def test_face_cropped_from_a_photo_goes_back_into_it(env, N):
    """Detect Faces -> Adjust Boxes -> Crop Boxes -> Barbershop -> Paste Back with the boxes, on a real
    photograph (skimage's astronaut) with the real MTCNN."""
    stylegan, parser, lpips = loaders(N)
    photo = torch.from_numpy(data.astronaut()).float()[None] / 255  # IMAGE [1, 512, 512, 3]
    detector = run(N, "InsetGANFaceDetector", min_face_size=40, threshold_pnet=0.6, threshold_rnet=0.7,
                   threshold_onet=0.7, device="cpu")[0]
    tight = run(N, "InsetGANDetectFaces", face_detector=detector, image=photo, policy="largest",
                min_confidence=0.9)[0]
    boxes = run(N, "InsetGANAdjustBoxes", boxes=tight, expand=1.8, shift_down=0.0, aspect="square",
                aspect_ratio=1.0, clamp="shift inside")[0]
    crop = run(N, "InsetGANCropBoxes", image=photo, boxes=boxes, width=1, height=1, size_from=stylegan)[0]
    assert crop.shape == (1, SIZE, SIZE, 3)
    composite, changed = hair_composite(N, stylegan, parser, lpips, [crop, face(N, stylegan, 2)])
    result, = run(N, "InsetGANBarbershopPasteBack", composite=composite, original=photo, changed=changed, grow=2,
                  soften=2, boxes=boxes)
    x0, y0, x1, y1 = boxes.boxes[0].tolist()
    outside = torch.ones(512, 512, dtype=torch.bool)
    outside[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = False
    assert torch.equal(result[0][outside], photo[0][outside])
    assert (result - photo).abs().amax() > 0.05  # the edit shows inside the box


def test_appearance_from_a_third_reference(env, N):
    stylegan, parser, lpips = loaders(N)
    refs = [run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=face(N, stylegan, seed),
                **EMBED)[0] for seed in (1, 2, 3)]
    a = masks_map(N, hair=box_mask(0, 16, 12, 52), skin=box_mask(16, 56, 16, 48))
    b = masks_map(N, hair=box_mask(0, 30, 6, 58))
    c = masks_map(N, hair=box_mask(0, 24, 0, 64))
    target = run(N, "InsetGANComposeTargetMask", labels_a=a, labels_b=b, labels_c=c, **COMPOSE)[0]
    kwargs = dict(stylegan=stylegan, face_parser=parser, lpips=lpips, target=target, reference_a=refs[0],
                  reference_b=refs[1], reference_c=refs[2])
    shaped_by_b = run(N, "InsetGANBarbershopAlign", **kwargs, **ALIGN)[0].alignment.regions
    assert list(shaped_by_b.target) == [1]
    looks_like_c = run(N, "InsetGANBarbershopAlign", **kwargs, **{**ALIGN, "appearance": "hair: c"})[0].alignment.regions
    assert list(looks_like_c.target) == [2]  # c lends the hair, in b's shape
    torch.testing.assert_close(looks_like_c.target[2], shaped_by_b.target[1])
    assert torch.equal(looks_like_c.own[2], looks_like_c.target[2] * (c.labels[0] == 10).float())


def test_progress_shows_previews_and_cancel_stops(env, N, monkeypatch):
    stylegan, _, lpips = loaders(N)
    image = face(N, stylegan, 1)
    fake = FakeComfy(str(env)).install(monkeypatch)
    run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=image, **EMBED)
    updates = [c for c in fake.calls if c[0] == "update_absolute"]
    assert ("ProgressBar", 4) in fake.calls and [u[1] for u in updates] == [1, 2, 3, 4]
    assert all(u[3][0] == "JPEG" and u[3][1].size == (SIZE, SIZE) for u in updates)
    fake.interrupted = True
    with pytest.raises(InterruptProcessingException):
        run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=face(N, stylegan, 2), **EMBED)


def test_the_embed_node_computes_what_the_library_computes(env, N, pack):
    """The same image gives the same codes from a workflow and from a script, although ComfyUI's
    IMAGE, seen as [B, C, H, W], is laid out channels-last."""
    stylegan, _, lpips = loaders(N)
    image = face(N, stylegan, 6)
    fs_latent, _ = run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=image, **EMBED)
    library = sys.modules[f"{pack.__name__}.insetgan_ops.fs_compositor"]
    settings = library.EmbedSettings(w_steps=EMBED["w_steps"], fs_steps=EMBED["fs_steps"], lr=EMBED["learning_rate"],
                                     mse_weight=EMBED["mse_weight"], lpips_weight=EMBED["lpips_weight"],
                                     prior_weight=EMBED["prior_weight"], f_weight=EMBED["f_weight"])
    scripted = library.embed(stylegan.generator, image.permute(0, 3, 1, 2).contiguous() * 2 - 1, lpips, settings)
    assert torch.equal(fs_latent.code.F, scripted.F) and torch.equal(fs_latent.code.ws, scripted.ws)


def test_the_embed_bar_advances_evenly_over_a_batch(env, N, monkeypatch):
    """A batch is embedded in one run: one bar, each step once, to the library's total."""
    stylegan, _, lpips = loaders(N)
    images = torch.cat([face(N, stylegan, seed) for seed in (3, 4, 5)])
    fake = FakeComfy(str(env)).install(monkeypatch)
    run(N, "InsetGANBarbershopEmbed", stylegan=stylegan, lpips=lpips, image=images, **EMBED)
    bars = [c for c in fake.calls if c[0] == "ProgressBar"]
    updates = [c[1:3] for c in fake.calls if c[0] == "update_absolute"]
    total = EMBED["w_steps"] + EMBED["fs_steps"]
    assert bars == [("ProgressBar", total)] and updates == [(step, total) for step in range(1, total + 1)]


def _prompt(N, path: Path) -> dict:
    """The workflow's API prompt with every optimisation cut to a few steps."""
    prompt = to_api_prompt(json.loads(path.read_text()), N)
    for node in prompt.values():
        if node["class_type"].startswith("InsetGANBarbershop"):
            node["inputs"].update({k: v for k, v in FEW_STEPS.items() if k in node["inputs"]})
    return prompt


def test_workflow_reproduces_and_reembeds_only_the_changed_image(env, N, pack, monkeypatch, embedded_images):
    path = ROOT / "example_workflows" / "barbershop_hair_transfer.json"
    prompt = _prompt(N, path)
    ctx = RunContext(env / "input", env / "output")
    first = run_prompt(prompt, N, ctx)
    assert embedded_images == [1, 1]
    fs_nodes = sys.modules[f"{pack.__name__}.nodes.barbershop_fs"]
    monkeypatch.setattr(fs_nodes, "EMBEDDINGS", type(fs_nodes.EMBEDDINGS)())
    second = run_prompt(prompt, N, ctx)
    assert embedded_images == [1, 1, 1, 1]
    save = next(n for n, spec in prompt.items() if spec["class_type"] == "SaveImage")
    assert torch.equal(ctx.ui[save][0], ctx.ui[save][1])  # bit-identical from scratch
    sample_b = next(n for n, spec in prompt.items()
                    if spec["class_type"] == "InsetGANSampleLatent" and spec["inputs"]["seed"] != 11)
    prompt[sample_b]["inputs"]["seed"] += 1
    third = run_prompt(prompt, N, ctx)
    assert embedded_images == [1, 1, 1, 1, 1]  # image b only
    embed_a, embed_b = (n for n, spec in prompt.items() if spec["class_type"] == "InsetGANBarbershopEmbed")
    assert torch.equal(third[embed_a][1], first[embed_a][1])
    assert not torch.equal(third[embed_b][1], second[embed_b][1])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_stores_the_default_schedule(N, path):
    """A user who opens an example gets the library's schedule, not one from an older version; an
    Embed that starts from an encoder's latent gets the library's encoder-start schedule."""
    from insetgan_ops.fs_compositor import ENCODER_START_EMBED

    prompt = to_api_prompt(json.loads(path.read_text()), N)
    checked = 0
    for node in prompt.values():
        if node["class_type"] not in ("InsetGANBarbershopEmbed", "InsetGANBarbershopAlign", "InsetGANBarbershopBlend"):
            continue
        required = N[node["class_type"]].INPUT_TYPES()["required"]
        encoder_start = {"w_steps": ENCODER_START_EMBED.w_steps, "fs_steps": ENCODER_START_EMBED.fs_steps} \
            if "init_latent" in node["inputs"] else {}
        for name, value in node["inputs"].items():
            spec = required.get(name)
            if spec is not None and isinstance(spec[0], str) and spec[0] in ("INT", "FLOAT") and name != "seed":
                assert value == encoder_start.get(name, spec[1]["default"]), f"{node['class_type']}.{name}"
                checked += 1
    assert checked >= 15


SETTINGS_NODES = {"EmbedSettings": "InsetGANBarbershopEmbed", "AlignSettings": "InsetGANBarbershopAlign",
                  "BlendSettings": "InsetGANBarbershopBlend"}


def test_readme_settings_and_node_inputs_agree(N):
    """One place for each default: the library's settings; the README's table and the nodes' inputs
    show the same values (the workflow files are checked against the node inputs above)."""
    rows = re.findall(r"^\| `(\w+Settings)` \| `(\w+)` \| ([^|]+) \|", (ROOT / "README.md").read_text(), re.M)
    shown = {(cls, field) for cls, field, _ in rows}
    for cls, field, value in rows:
        default = getattr(getattr(fs_compositor, cls)(), field)
        assert float(value) == default, (cls, field)
        node_input = "learning_rate" if field == "lr" else field
        assert N[SETTINGS_NODES[cls]].INPUT_TYPES()["required"][node_input][1]["default"] == default, (cls, field)
    for cls, node in SETTINGS_NODES.items():
        for name, spec in N[node].INPUT_TYPES()["required"].items():
            if spec[0] in ("INT", "FLOAT"):
                assert (cls, "lr" if name == "learning_rate" else name) in shown, f"{cls}.{name} missing in the README"
