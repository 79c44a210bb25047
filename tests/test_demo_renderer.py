"""The procedural demo dataset: determinism per seed, value ranges, labels that match the colours,
boxes that frame the head and the feet, and one attribute space across the three views."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.demo import renderer
from insetgan_ops.demo.renderer import (
    BODY_SIZE, FACE_SIZE, HAIR_STYLES, SHOE_SIZE, draw_bodies, draw_faces, draw_shoes, render_bodies, render_faces,
    render_shoes, sample_attributes,
)

N = 24


@pytest.fixture(scope="module")
def faces():
    return render_faces(N, 3)


def test_same_seed_same_images_and_different_seeds_differ():
    for render in (render_bodies, render_faces, render_shoes):
        a, b, c = render(4, 11), render(4, 11), render(4, 12)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (render.__name__, key)
        assert (a["image"] - c["image"]).abs().mean() > 0.05, render.__name__


def test_a_generator_continues_the_stream():
    g = torch.Generator().manual_seed(5)
    first, second = render_faces(3, g)["image"], render_faces(3, g)["image"]
    assert not torch.equal(first, second)
    assert torch.equal(first, render_faces(3, 5)["image"])


def test_shapes_dtypes_and_ranges():
    bodies, faces, shoes = render_bodies(5, 0), render_faces(5, 0), render_shoes(5, 0)
    assert bodies["image"].shape == (5, 3, *BODY_SIZE) and BODY_SIZE == (128, 64)
    assert faces["image"].shape == (5, 3, *FACE_SIZE)
    assert shoes["image"].shape == (5, 3, *SHOE_SIZE)
    assert faces["labels"].shape == (5, *FACE_SIZE) and faces["labels"].dtype == torch.long
    assert bodies["face_box"].shape == bodies["shoe_box"].shape == (5, 4)
    for image in (bodies["image"], faces["image"], shoes["image"]):
        assert image.dtype == torch.float32 and image.isfinite().all()
        assert image.min() >= -1 and image.max() <= 1
        assert image.std() > 0.2  # not blank


def test_labels_are_the_rendered_subset_of_the_16_label_set(faces):
    labels = faces["labels"]
    assert set(labels.unique().tolist()) <= set(renderer.RENDERED_LABELS)
    for i in range(N):
        present = set(labels[i].unique().tolist())
        # Every face shows these; ears may hide under long hair.
        for label in (renderer.BACKGROUND, renderer.SKIN, renderer.NOSE, renderer.EYES, renderer.BROWS,
                      renderer.MOUTH, renderer.UPPER_LIP, renderer.LOWER_LIP, renderer.HAIR, renderer.NECK,
                      renderer.CLOTH):
            assert label in present, (i, label)


def test_label_regions_carry_their_colours(faces):
    """Pixels labelled skin / hair / cloth have the colour the attributes give them."""
    a = sample_attributes(N, 3)
    rgb = (faces["image"] + 1) / 2
    for label, colour, tolerance in ((renderer.SKIN, a.skin, 0.1), (renderer.HAIR, a.hair, 0.15),
                                     (renderer.CLOTH, a.top, 0.15)):
        for i in range(N):
            mask = faces["labels"][i] == label
            mean = rgb[i][:, mask].mean(dim=1)
            # Shading only darkens (hair strands also brighten a little): compare after the darkening.
            assert (mean - colour[i] * 0.9).abs().max() < tolerance, (label, i, mean, colour[i])
    # Brows (thin, so mixed with skin at their edges) are nearer the hair colour than the skin's.
    for i in range(N):
        if (a.hair[i] - a.skin[i]).norm() > 0.3:
            brows = rgb[i][:, faces["labels"][i] == renderer.BROWS].mean(dim=1)
            assert (brows - a.hair[i]).norm() < (brows - a.skin[i]).norm(), i


def test_face_is_aligned_with_eyes_at_a_fixed_height(faces):
    rows = torch.arange(FACE_SIZE[0], dtype=torch.float32) + 0.5
    eyes = (faces["labels"] == renderer.EYES).float()
    eye_row = (eyes.sum(2) * rows).sum(1) / eyes.sum((1, 2))
    assert (eye_row / FACE_SIZE[0] - renderer.FACE_EYE_HEIGHT).abs().max() < 0.02


def _paint_marked(attribute: str, colour: tuple[float, float, float], n: int = 16, seed: int = 9):
    """Bodies whose ``attribute`` colour is replaced by a colour no other part has."""
    a = sample_attributes(n, seed)
    for name in ("skin", "hair", "top", "bottom", "shoes", "lips", "iris", "bg_top", "bg_bottom"):
        # Keep every other colour away from pure magenta / pure blue.
        getattr(a, name)[:] = getattr(a, name).clamp(0.25, 0.75)
    getattr(a, attribute)[:] = torch.tensor(colour)
    return a


def _marked_pixels(image: torch.Tensor, colour: tuple[float, float, float]) -> torch.Tensor:
    """[n, H, W] bool: pixels whose colour is a (possibly shaded) version of pure ``colour``."""
    rgb = (image + 1) / 2
    on = torch.tensor(colour).bool()
    return (rgb[:, on] > 0.45).all(1) & (rgb[:, ~on] < 0.1).all(1)


def test_face_box_frames_the_head_inside_the_image():
    a = _paint_marked("hair", (0.0, 0.0, 1.0))
    bodies = draw_bodies(a)
    box = bodies["face_box"]
    h, w = BODY_SIZE
    assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all() and (box[:, 2] <= w).all() and (box[:, 3] <= h).all()
    side = box[:, 2] - box[:, 0]
    assert torch.allclose(side, box[:, 3] - box[:, 1])  # square, like the 64x64 face close-up
    assert (side > 20).all() and (side < FACE_SIZE[0] / 2).all()  # a small face on the canvas
    hair = _marked_pixels(bodies["image"], (0.0, 0.0, 1.0))
    ys = torch.arange(h).view(1, h, 1) + 0.5
    xs = torch.arange(w).view(1, 1, w) + 0.5
    inside = ((xs >= box[:, 0, None, None]) & (xs <= box[:, 2, None, None])
              & (ys >= box[:, 1, None, None]) & (ys <= box[:, 3, None, None]))
    assert hair.sum((1, 2)).min() > 5  # every head has visible hair ...
    assert not (hair & ~inside).any()  # ... and all of it lies in the face box
    # The box is centred on the face: its centre is skin, not hair or background.
    centre = (((box[:, 0] + box[:, 2]) / 2).long(), (box[:, 1] + 0.55 * side).long())
    rgb = (bodies["image"] + 1) / 2
    centre_colour = rgb[torch.arange(len(a)), :, centre[1], centre[0]]
    assert (centre_colour - a.skin).abs().max() < 0.2


def test_shoe_box_frames_the_shoes_inside_the_image():
    a = _paint_marked("shoes", (1.0, 0.0, 1.0))
    bodies = draw_bodies(a)
    box = bodies["shoe_box"]
    h, w = BODY_SIZE
    assert (box[:, 0] >= 0).all() and (box[:, 2] <= w).all() and (box[:, 3] <= h + 1e-4).all()
    aspect = (box[:, 3] - box[:, 1]) / (box[:, 2] - box[:, 0])
    assert torch.allclose(aspect, torch.full_like(aspect, SHOE_SIZE[0] / SHOE_SIZE[1]))
    shoes = _marked_pixels(bodies["image"], (1.0, 0.0, 1.0))
    ys = torch.arange(h).view(1, h, 1) + 0.5
    xs = torch.arange(w).view(1, 1, w) + 0.5
    inside = ((xs >= box[:, 0, None, None]) & (xs <= box[:, 2, None, None])
              & (ys >= box[:, 1, None, None]) & (ys <= box[:, 3, None, None]))
    assert shoes.sum((1, 2)).min() > 5
    assert not (shoes & ~inside).any()
    # The close-up shows the same shoes, larger.
    close_up = _marked_pixels(draw_shoes(a)["image"], (1.0, 0.0, 1.0))
    assert (close_up.sum((1, 2)) > 2 * shoes.sum((1, 2))).all()


def test_the_three_views_share_one_attribute_space():
    """The same seed draws the same person: hair colour on the body's head and on the close-up agree."""
    a = sample_attributes(8, 21)
    bodies, faces = render_bodies(8, 21), render_faces(8, 21)
    assert torch.equal(bodies["image"], draw_bodies(a)["image"])
    assert torch.equal(faces["image"], draw_faces(a)["image"])
    face_hair = ((faces["image"] + 1) / 2).permute(0, 2, 3, 1)[faces["labels"] == renderer.HAIR]
    counts = (faces["labels"] == renderer.HAIR).sum((1, 2)).tolist()
    for i, mean in enumerate(torch.stack([part.mean(0) for part in face_hair.split(counts)])):
        assert (mean - a.hair[i] * 0.9).abs().max() < 0.15
    # Every hair style and every garment occurs in a modest batch.
    many = sample_attributes(200, 0)
    assert set(many.hair_style.tolist()) == set(range(len(HAIR_STYLES)))
    assert set(many.lower.tolist()) == set(range(len(renderer.LOWER_GARMENTS)))
    assert set(many.sleeves.tolist()) == set(range(len(renderer.SLEEVES)))


def test_close_up_face_is_sharper_than_the_canvas_face():
    """The point of the face inset: the close-up has far more detail than the body's few face pixels."""
    a = sample_attributes(8, 4)
    faces, bodies = draw_faces(a), draw_bodies(a)

    # The face box is the close-up's frame, so the close-up's labels locate the face in both.
    inner_face = torch.isin(faces["labels"], torch.tensor([renderer.SKIN, renderer.NOSE, renderer.EYES,
                                                          renderer.BROWS, renderer.MOUTH, renderer.UPPER_LIP,
                                                          renderer.LOWER_LIP]))[:, :-1, :-1]

    def detail(image):  # mean gradient magnitude over the inner face
        dy = (image[..., 1:, :-1] - image[..., :-1, :-1]).abs().sum(1)
        dx = (image[..., :-1, 1:] - image[..., :-1, :-1]).abs().sum(1)
        return (dx + dy)[inner_face].mean()

    box = bodies["face_box"]
    crops = torch.cat([
        torch.nn.functional.interpolate(
            bodies["image"][i:i + 1, :, int(box[i, 1]):int(box[i, 3]) + 1, int(box[i, 0]):int(box[i, 2]) + 1],
            size=FACE_SIZE, mode="bilinear", align_corners=False) for i in range(len(a))])
    assert detail(faces["image"]) > 1.5 * detail(crops)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n must be at least 1"):
        render_faces(0, 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        render_bodies(2, 1.5)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        render_shoes(2, -1)
