"""AnatPaste augmentation: invariants, not the RNG's draw order."""

import pytest
import torch

from anatpaste.paste import AnatPaste
from anatpaste.paste.anatpaste import colour_jitter, gaussian_blur


def _batch(b: int = 16, size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    img = torch.rand(b, 1, size, size, generator=g) * 0.5 + 0.25
    lung = torch.zeros(b, 1, size, size, dtype=torch.bool)
    lung[..., size // 5 : 4 * size // 5, size // 8 : size // 2 - 4] = True
    lung[..., size // 5 : 4 * size // 5, size // 2 + 4 : 7 * size // 8] = True
    return img, lung


def test_paste_never_touches_pixels_outside_the_lung():
    img, lung = _batch()
    for seed in range(5):
        out = AnatPaste()(img, lung, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out[~lung], img[~lung])


def test_paste_changes_every_image_inside_the_lung():
    img, lung = _batch()
    out = AnatPaste()(img, lung, generator=torch.Generator().manual_seed(0))
    changed = ((out - img).abs() > 1e-4).flatten(1).sum(1)
    assert (changed > 0).all()


def test_paste_output_is_a_convex_blend_of_patch_and_image():
    img, lung = _batch()
    out = AnatPaste()(img, lung, generator=torch.Generator().manual_seed(1))
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.min() >= 0 and out.max() <= 1


def test_same_seed_same_output_different_seed_different_output():
    img, lung = _batch()
    p = AnatPaste()
    a = p(img, lung, generator=torch.Generator().manual_seed(5))
    b = p(img, lung, generator=torch.Generator().manual_seed(5))
    c = p(img, lung, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_drawn_parameters_follow_the_published_ranges():
    _, lung = _batch(b=2000, size=64)
    d = AnatPaste().draw(lung, torch.Generator().manual_seed(0))
    area = d.patch_hw.prod(1) / (64 * 64)
    assert area.min() >= 0.02 * 0.9 and area.max() <= 0.15 * 1.1
    assert 0.45 < d.ellipse.float().mean() < 0.55
    assert d.opacity.min() >= 150 / 255 - 1e-6 and d.opacity.max() <= 1
    assert d.brightness.min() >= 0.9 and d.brightness.max() <= 1.1
    assert d.blur_sigma.max() <= 14 * 64 / 256 + 1e-6
    ty, tx = d.target_yx[:, 0].long(), d.target_yx[:, 1].long()
    assert lung[torch.arange(2000), 0, ty, tx].all(), "every paste is centred on a lung pixel"


def test_no_dark_halo_when_pasting_a_bright_patch_of_a_flat_image():
    # A flat image: any value below the flat level next to the paste would be the original's black halo.
    img = torch.full((8, 1, 128, 128), 0.6)
    lung = torch.ones(8, 1, 128, 128, dtype=torch.bool)
    p = AnatPaste(jitter=0.0)
    out = p(img, lung, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out, img, atol=1e-5)


def test_opacity_bounds_the_blend_weight():
    # Patch source = constant 1, image = 0 → output equals alpha; alpha ≤ max opacity.
    b, s = 32, 64
    img = torch.zeros(b, 1, s, s)
    img[..., :, : s // 2] = 1.0  # left half bright (a source), right half dark (the lung)
    lung = torch.zeros(b, 1, s, s, dtype=torch.bool)
    lung[..., :, s // 2 :] = True
    p = AnatPaste(opacity=(0.6, 0.6), jitter=0.0, max_blur_at_256=0.0)
    out = p(img, lung, generator=torch.Generator().manual_seed(4))
    assert out[lung].max() <= 0.6 + 1e-5


def test_paste_centre_is_a_uniformly_drawn_lung_pixel():
    # Two lung regions of 1 : 3 area: a uniform draw over lung pixels lands in the larger one 3 times in 4.
    lung = torch.zeros(4000, 1, 32, 32, dtype=torch.bool)
    lung[..., 4:12, 2:10] = True  # 64 px
    lung[..., 16:28, 12:28] = True  # 192 px
    yx = AnatPaste().draw(lung, generator=torch.Generator().manual_seed(0)).target_yx.long()
    inside = lung[torch.arange(4000), 0, yx[:, 0], yx[:, 1]]
    assert inside.all()
    in_large = (yx[:, 0] >= 16).float().mean().item()
    assert abs(in_large - 0.75) < 0.03  # 4.4 standard errors
    single = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
    single[:, 0, 7, 30] = True
    assert AnatPaste().draw(single).target_yx.tolist() == [[7.0, 30.0]] * 3


def test_empty_lung_mask_is_identity():
    img, _ = _batch(b=4)
    out = AnatPaste()(img, torch.zeros_like(img, dtype=torch.bool), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, img)


def test_gaussian_blur_preserves_mass_and_zero_sigma_is_identity():
    x = torch.zeros(3, 1, 65, 65)
    x[:, :, 32, 32] = 1.0
    y = gaussian_blur(x, torch.tensor([0.0, 2.0, 5.0]), max_sigma=5.0)
    assert torch.allclose(y[0], x[0])
    assert torch.allclose(y.sum((1, 2, 3)), torch.ones(3), atol=1e-4)
    assert y[2, 0, 32, 32] < y[1, 0, 32, 32] < 1


@pytest.mark.parametrize(
    ("bad", "named"),
    [({"area": (0.2, 0.1)}, "area"), ({"jitter": 1.5}, "jitter"), ({"opacity": (0.0, 1.0)}, "opacity")],
)
def test_invalid_settings_are_rejected_with_the_bad_value_named(bad, named):
    with pytest.raises(ValueError, match=named):
        AnatPaste(**bad)


def test_default_paste_draws_and_outputs_what_it_did_before_the_halo_option():
    # Checksums of this seed's output taken before ``halo`` existed: the default recipe did not move.
    img, lung = _batch()
    out = AnatPaste()(img, lung, generator=torch.Generator().manual_seed(0))
    assert out.double().sum().item() == pytest.approx(73610.38374589384, rel=1e-9)
    assert (out - img).abs().double().sum().item() == pytest.approx(733.926293566823, rel=1e-6)


def test_halo_option_darkens_a_ring_around_the_patch_that_the_default_leaves_alone():
    # A flat image and a patch of it (no jitter): only black blended in from outside the patch can change it.
    b, s, level = 8, 128, 0.6
    img = torch.full((b, 1, s, s), level)
    lung = torch.ones(b, 1, s, s, dtype=torch.bool)
    draw = AnatPaste(jitter=0.0).draw(lung, torch.Generator().manual_seed(2))
    draw.blur_sigma = torch.linspace(4.0, 7.0, b)  # wider than the original's 5 px margin at 128 px
    clean = AnatPaste(jitter=0.0).apply(img, lung, draw)
    halo = AnatPaste(jitter=0.0, halo=True).apply(img, lung, draw)
    assert torch.allclose(clean, img, atol=1e-5), "the default never blends black in"
    ys, xs = torch.arange(s).view(1, s, 1), torch.arange(s).view(1, 1, s)
    top = (draw.target_yx[:, 0] - torch.floor(draw.patch_hw[:, 0] / 2)).view(b, 1, 1)
    left = (draw.target_yx[:, 1] - torch.floor(draw.patch_hw[:, 1] / 2)).view(b, 1, 1)
    rows = (ys >= top) & (ys < top + draw.patch_hw[:, 0].view(b, 1, 1))
    in_patch = rows & (xs >= left) & (xs < left + draw.patch_hw[:, 1].view(b, 1, 1))
    dark = (halo < level - 0.02)[:, 0]
    assert dark.flatten(1).any(1).all(), "every paste has its dark halo"
    assert not (dark & in_patch).any(), "the halo lies outside the patch"
    assert (halo <= img + 1e-6).all()


def test_halo_paste_still_never_touches_pixels_outside_the_lung():
    img, lung = _batch()
    out = AnatPaste(halo=True)(img, lung, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[~lung], img[~lung])
    assert not torch.equal(out, AnatPaste()(img, lung, generator=torch.Generator().manual_seed(0)))


def test_colour_jitter_scales_whole_images_within_its_amplitude():
    img, _ = _batch(b=64)
    out = colour_jitter(img, 0.1, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    ratio = out.mean((1, 2, 3)) / img.mean((1, 2, 3))  # contrast keeps the mean, brightness scales it
    assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    assert (ratio - 1).abs().max() > 0.05, "the draw spans the amplitude"
    assert torch.equal(colour_jitter(img, 0.0), img)
