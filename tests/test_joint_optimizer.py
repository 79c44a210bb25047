"""The InsetGAN joint optimiser (insetgan_ops.joint_optimizer) on tiny random generators.

A 32x32 canvas generator and a 16x16 inset generator placed on a 16-pixel box; the inset starts
from another random face, so the naive paste has a clear seam for the optimisation to remove.
"""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.box_tracking import FixedBoxes
from insetgan_ops.joint_optimizer import (CanvasSpec, InsetSpec, Phase, RandomInit, default_schedule, optimize,
                                          resolve_init, standard_losses, stylegan_human_schedule)
from insetgan_ops.latents import sample
from insetgan_ops.seam_metrics import seam_error
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from tests.tiny_generator import tiny_generator

BOX = torch.tensor([8.0, 4.0, 24.0, 20.0])
SHORT = [Phase(2, "insets"), Phase(3, "canvas", redetect_every=2), Phase(2, "insets")]


@pytest.fixture(scope="module")
def G_canvas():
    return tiny_generator(1, img_resolution=32)


@pytest.fixture(scope="module")
def G_face():
    return tiny_generator(2, img_resolution=16)


def _specs(G_canvas, G_face, mode: str, boxes=None):
    canvas = CanvasSpec(G_canvas, init=RandomInit(seed=0), trainable=mode != "insets")
    face = InsetSpec("face", G_face, boxes or FixedBoxes(BOX), init=RandomInit(seed=5), trainable=mode != "canvas")
    return canvas, face


def _run(G_canvas, G_face, mode, steps=16, candidates=2, schedule=None, **kwargs):
    canvas, face = _specs(G_canvas, G_face, mode)
    schedule = schedule or default_schedule(canvas.trainable, face.trainable, steps)
    return optimize(canvas, [face], standard_losses(canvas, [face]), candidates=candidates, schedule=schedule,
                    **kwargs)


@torch.no_grad()
def _naive_seam(G_canvas, G_face, candidates=2):
    canvas = G_canvas.synthesis(resolve_init(G_canvas, RandomInit(seed=0), candidates).ws)
    face = G_face.synthesis(resolve_init(G_face, RandomInit(seed=5), candidates).ws)
    return seam_error(canvas, face, BOX.expand(candidates, 4))


@pytest.mark.parametrize("mode, steps", [("insets", 16), ("canvas", 16), ("joint", 27)])
def test_each_mode_lowers_the_losses_and_the_seam(G_canvas, G_face, mode, steps):
    result = _run(G_canvas, G_face, mode, steps)
    for term in ("coarse[face]", "border[face]", "total"):
        assert result.history[term][-1] < 0.8 * result.history[term][0], term
    seam = seam_error(result.canvas, result.insets["face"], result.boxes["face"])
    naive = _naive_seam(G_canvas, G_face)[result.ranking]
    assert (seam < 0.85 * naive).all(), (seam, naive)
    assert result.composite.shape == result.canvas.shape == (2, 3, 32, 32)
    assert result.insets["face"].shape == (2, 3, 16, 16)
    assert result.masks["face"].shape == (2, 1, 32, 32)
    assert len(result.history["total"]) == sum(p.steps for p in result.phases)


def test_frozen_sides_keep_their_latents(G_canvas, G_face):
    insets_only = _run(G_canvas, G_face, "insets", steps=6)
    start = resolve_init(G_canvas, RandomInit(seed=0), 2).ws
    assert torch.equal(insets_only.latents["canvas"].ws, start[insets_only.ranking])
    canvas_only = _run(G_canvas, G_face, "canvas", steps=6)
    start = resolve_init(G_face, RandomInit(seed=5), 2).ws
    assert torch.equal(canvas_only.latents["face"].ws, start[canvas_only.ranking])


def test_candidates_are_ranked_and_independent_of_each_other(G_canvas, G_face):
    both = _run(G_canvas, G_face, "joint", schedule=SHORT)
    assert torch.all(both.final_loss[:-1] <= both.final_loss[1:])
    assert sorted(both.ranking.tolist()) == [0, 1]
    # Candidate 1 of the batch is the run that starts from seeds 1 and 6 on its own.
    canvas = CanvasSpec(G_canvas, init=RandomInit(seed=1))
    face = InsetSpec("face", G_face, FixedBoxes(BOX), init=RandomInit(seed=6))
    alone = optimize(canvas, [face], standard_losses(canvas, [face]), schedule=both.phases)
    k = both.ranking.tolist().index(1)
    torch.testing.assert_close(both.latents["face"].ws[k], alone.latents["face"].ws[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both.composite[k], alone.composite[0], atol=1e-3, rtol=1e-3)


def test_a_run_is_deterministic(G_canvas, G_face):
    a = _run(G_canvas, G_face, "joint", schedule=SHORT)
    b = _run(G_canvas, G_face, "joint", schedule=SHORT)
    assert torch.equal(a.composite, b.composite)
    assert a.history == b.history


def test_only_the_trained_generator_runs_backward(G_canvas, G_face):
    records = {"canvas": [], "face": []}
    hooks = [G.synthesis.register_forward_hook(lambda m, i, out, key=key: records[key].append(out.requires_grad))
             for key, G in (("canvas", G_canvas), ("face", G_face))]
    try:
        result = _run(G_canvas, G_face, "joint", schedule=SHORT)
    finally:
        for hook in hooks:
            hook.remove()
    canvas_steps = sum(p.steps for p in result.phases if p.train == "canvas")
    inset_steps = sum(p.steps for p in result.phases if p.train == "insets")
    assert sum(records["canvas"]) == canvas_steps
    assert sum(records["face"]) == inset_steps
    # Frozen sides are rendered once per phase (and for boxes, previews and results), not at every step.
    frozen_renders = len(records["canvas"]) - canvas_steps
    assert frozen_renders == 2 + 2 + 2  # inset phases; the first and the re-evaluated boxes; start and result
    assert all(p.grad is None and not p.requires_grad for G in (G_canvas, G_face) for p in G.parameters())


def test_cancelling_from_the_callback_stops_cleanly(G_canvas, G_face):
    class Cancelled(Exception):
        pass

    G_canvas_trainable = tiny_generator(1, img_resolution=32).requires_grad_(True)
    seen = []

    def on_step(step, total, preview, stage):
        seen.append((step, total))
        if step == 3:
            assert preview().shape == (2, 3, 32, 32)
            raise Cancelled

    with pytest.raises(Cancelled):
        _run(G_canvas_trainable, G_face, "joint", schedule=SHORT, on_step=on_step)
    assert [s for s, _ in seen] == [1, 2, 3]
    assert all(p.requires_grad and p.grad is None for p in G_canvas_trainable.parameters())


def test_boxes_are_re_evaluated_after_canvas_updates(G_canvas, G_face):
    calls = []

    def boxes(canvas, inset, previous):
        calls.append(previous is None)
        return BOX.expand(canvas.shape[0], 4) + (0.0 if previous is None else 0.5)

    canvas, face = _specs(G_canvas, G_face, "joint", boxes=boxes)
    schedule = [Phase(2, "insets"), Phase(6, "canvas", redetect_every=2), Phase(2, "insets"), Phase(2, "canvas")]
    result = optimize(canvas, [face], standard_losses(canvas, [face]), schedule=schedule)
    # Start, steps 2 and 4 of the first canvas phase, after it, after the second canvas phase.
    assert calls == [True, False, False, False, False]
    torch.testing.assert_close(result.boxes["face"], (BOX + 0.5)[None])


def test_several_insets_at_once(G_canvas, G_face):
    G_shoes = tiny_generator(3, img_resolution=16)
    canvas = CanvasSpec(G_canvas, init=RandomInit(seed=0))
    face = InsetSpec("face", G_face, FixedBoxes(BOX), init=RandomInit(seed=5))
    shoes = InsetSpec("shoes", G_shoes, FixedBoxes(torch.tensor([10.0, 22.0, 22.0, 32.0])), init="mean",
                      feather=2.0)
    result = optimize(canvas, [face, shoes], standard_losses(canvas, [face, shoes]), schedule=SHORT)
    assert set(result.latents) == {"canvas", "face", "shoes"}
    assert result.history["border[shoes]"][-1] < result.history["border[shoes]"][0]
    assert 0 < float(result.masks["shoes"][0, 0, 31, 16]) <= 1 and float(result.masks["face"][0, 0, 0, 0]) == 0


def test_a_given_latent_can_be_a_fixed_inset(G_canvas, G_face):
    given = sample(G_face, [9])
    canvas = CanvasSpec(G_canvas, init=RandomInit(seed=0))
    face = InsetSpec("face", G_face, FixedBoxes(BOX), init=given, trainable=False)
    result = optimize(canvas, [face], standard_losses(canvas, [face], preserve_insets=True), candidates=2,
                      schedule=default_schedule(True, False, 6))
    assert torch.equal(result.latents["face"].ws, given.ws.expand(2, -1, -1))


def test_bad_setups_are_refused(G_canvas, G_face):
    canvas, face = _specs(G_canvas, G_face, "joint")
    losses = standard_losses(canvas, [face])
    with pytest.raises(ValueError, match="nothing to optimise"):
        default_schedule(False, False)
    with pytest.raises(ValueError, match="distinct"):
        optimize(canvas, [face, face], losses)
    frozen_canvas = CanvasSpec(G_canvas, trainable=False)
    with pytest.raises(ValueError, match="nothing there is trainable"):
        optimize(frozen_canvas, [face], losses, schedule=[Phase(2, "canvas")])
    with pytest.raises(ValueError, match="one code"):
        resolve_init(G_face, sample(G_face, [1, 2]), 3)


def test_the_reference_schedule_has_675_steps():
    phases = stylegan_human_schedule()
    assert sum(p.steps for p in phases) == 675
    assert [p.train for p in phases[:3]] == ["insets", "canvas", "insets"]
    assert sum(p.steps for p in default_schedule(True, True, 675)) == 675


def _stylegan3(seed: int, img_resolution: int) -> StyleGAN3Generator:
    torch.manual_seed(seed)
    config = StyleGAN3Config(z_dim=16, w_dim=16, img_resolution=img_resolution, num_layers=6, margin_size=4,
                             channel_base=512, channel_max=16)
    return StyleGAN3Generator(config).eval().requires_grad_(False)


@pytest.mark.parametrize("role", ["inset", "canvas"])
def test_a_stylegan3_takes_either_role(G_canvas, G_face, role):
    """W+ is the same idea for StyleGAN3 (num_layers + 2 codes): as inset or canvas it is optimised alike."""
    canvas_G, face_G = (G_canvas, _stylegan3(3, 16)) if role == "inset" else (_stylegan3(4, 32), G_face)
    result = _run(canvas_G, face_G, "joint", 27)
    for term in ("coarse[face]", "border[face]"):
        assert result.history[term][-1] < 0.8 * result.history[term][0], term
    assert result.latents["face" if role == "inset" else "canvas"].ws.shape[1:] == (8, 16)  # 6 layers + 2
