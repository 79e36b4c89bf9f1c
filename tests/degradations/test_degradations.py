"""Degradations: kernel properties and closed forms, MATLAB bicubic, the classic pipeline, JPEG, real-world."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdsr.degradations import classic, jpeg, kernels, realworld, resize


@pytest.mark.parametrize("sigma", [0.2, 1.0, 2.6, 4.0])
def test_isotropic_kernel_closed_form(sigma):
    k = kernels.isotropic_gaussian(sigma)[0].double()
    ax = np.arange(21) - 10
    ref = np.exp(-(ax[None] ** 2 + ax[:, None] ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(k.numpy(), ref / ref.sum(), rtol=1e-5, atol=1e-9)
    assert k.sum().item() == pytest.approx(1, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))


def test_anisotropic_kernel_orientation_and_standard_deviations():
    # lambda1 along theta (from +x towards +y, i.e. clockwise on screen), lambda1/lambda2 are standard deviations.
    ax = torch.arange(21.0) - 10

    def spread(k, direction):
        yy, xx = torch.meshgrid(ax, ax, indexing="ij")
        proj = xx * direction[0] + yy * direction[1]
        return (k * proj**2).sum().sqrt().item()

    k0 = kernels.anisotropic_gaussian(3.0, 1.0, 0.0)[0].double()
    assert spread(k0, (1, 0)) == pytest.approx(3.0, rel=0.01) and spread(k0, (0, 1)) == pytest.approx(1.0, rel=0.01)
    k90 = kernels.anisotropic_gaussian(3.0, 1.0, math.pi / 2)[0]
    torch.testing.assert_close(k90, k0.float().T, atol=1e-7, rtol=0)
    k45 = kernels.anisotropic_gaussian(3.0, 1.0, math.pi / 4)[0]
    assert k45[12, 12] > k45[12, 8]  # down-right (x=+2, y=+2) lies along theta=45 deg; (x=-2, y=+2) across it
    iso = kernels.anisotropic_gaussian(2.0, 2.0, 0.7)[0]
    torch.testing.assert_close(iso, kernels.isotropic_gaussian(2.0)[0], atol=1e-7, rtol=0)


def test_family_kernels_sum_to_one_and_reduce_to_gaussian():
    g = kernels.generalized_gaussian(2.0, 1.0, 0.3, 1.0)[0]
    torch.testing.assert_close(g, kernels.anisotropic_gaussian(2.0, 1.0, 0.3)[0], atol=1e-7, rtol=0)
    for k in (kernels.plateau(1.5, 1.0, 0.2, 1.3), kernels.generalized_gaussian(1.5, 1.0, 0.2, 2.0)):
        assert k.sum().item() == pytest.approx(1, abs=1e-6) and (k >= 0).all()


def test_sinc_kernel():
    k = kernels.sinc(math.pi / 2, size=11, pad_to=21)[0].double()
    assert k.shape == (21, 21) and k.sum().item() == pytest.approx(1, abs=1e-6)
    assert k[:5].abs().sum() == 0 and torch.allclose(k, k.T)
    # ratio of the value at distance 1 to the centre value: [w J1(w)/(2 pi)] / [w^2/(4 pi)] = 2 J1(w)/w
    w = math.pi / 2
    j1 = sum((-1) ** m * (w / 2) ** (2 * m + 1) / (math.factorial(m) * math.factorial(m + 1)) for m in range(20))
    assert (k[10, 11] / k[10, 10]).item() == pytest.approx(2 * j1 / w, rel=1e-6)


def _naive_imresize_1d(x: np.ndarray, scale: float, border: str) -> np.ndarray:
    """MATLAB's imresize along one axis, written out pixel by pixel in float64."""

    def cubic(t):
        a = abs(t)
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        if a <= 2:
            return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
        return 0.0

    n = len(x)
    out_len = math.ceil(n * scale)
    width = 4 / scale if scale < 1 else 4
    out = np.zeros(out_len)
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        weights, values = [], []
        for j in range(left, left + math.ceil(width) + 2):
            wgt = scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j)
            idx = j - 1
            if border == "replicate":
                idx = min(max(idx, 0), n - 1)
            else:
                while idx < 0 or idx >= n:
                    idx = -idx - 1 if idx < 0 else 2 * n - 1 - idx
            weights.append(wgt)
            values.append(x[idx])
        out[i - 1] = np.dot(weights, values) / sum(weights)
    return out


@pytest.mark.parametrize("scale", [0.25, 0.5, 4.0, 2.0])
@pytest.mark.parametrize("border", ["replicate", "symmetric"])
def test_imresize_matches_pixel_by_pixel_matlab_algorithm(scale, border):
    rng = np.random.default_rng(0)
    image = rng.random((12, 16))
    ref = np.stack([_naive_imresize_1d(row, scale, border) for row in image])
    ref = np.stack([_naive_imresize_1d(col, scale, border) for col in ref.T]).T
    ours = resize.imresize(torch.from_numpy(image)[None, None].float(), scale, border)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_imresize_hand_values():
    # Interior weights of x1/4 antialiased bicubic: 0.25 * cubic(0.25 * d) at d = 0.5, 1.5, ... (16 taps).
    _, w = resize.contributions(64, 16, 0.25)
    assert w[8, 8].item() == pytest.approx(0.25 * (1.5 * 0.125**3 - 2.5 * 0.125**2 + 1), abs=1e-7)
    assert w[8, 8].item() == pytest.approx(0.2409668, abs=1e-6)
    assert (w[8] != 0).sum() == 16
    ramp = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 4, 32)
    up = resize.imresize(ramp, 4)[0, 0, 0]
    expected = (torch.arange(128.0) + 1) / 4 + 0.5 * (1 - 1 / 4) - 1  # cubic reproduces linear functions
    torch.testing.assert_close(up[8:-8], expected[8:-8], atol=1e-4, rtol=0)


def test_classic_degrade_shape_grid_and_determinism():
    hr = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    k = kernels.isotropic_gaussian(2.0)[0]
    lr = classic.degrade(hr, k, 4, noise=10, generator=torch.Generator().manual_seed(1))
    assert lr.shape == (2, 3, 8, 6)
    torch.testing.assert_close(lr * 255, (lr * 255).round(), atol=1e-4, rtol=0)
    again = classic.degrade(hr, k, 4, noise=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lr, again)
    other = classic.degrade(hr, k, 4, noise=10, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(lr, other)
    clean = classic.degrade(hr, k, 4)
    assert float((lr - clean).std()) == pytest.approx(10 / 255, rel=0.15)  # the stated level, in 0-255 units
    with pytest.raises(ValueError, match="divisible"):
        classic.degrade(hr[:, :, :30], k)


def test_classic_degrade_float64_agrees_with_float32():
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    k = kernels.anisotropic_gaussian(3.5, 1.5, 0.5)[0]
    lr32 = classic.blur(hr, k)
    lr64 = classic.blur(hr.double(), k.double())
    torch.testing.assert_close(lr32.double(), lr64, atol=1e-6, rtol=0)
    torch.testing.assert_close(resize.imresize(lr32, 0.25).double(), resize.imresize(lr64, 0.25), atol=1e-6, rtol=0)


def test_blur_reflect_padding_and_per_image_kernels():
    x = torch.rand(2, 3, 16, 16)
    pulse = torch.zeros(21, 21)
    pulse[10, 10] = 1
    torch.testing.assert_close(classic.blur(x, pulse), x)
    k = torch.stack([pulse, kernels.isotropic_gaussian(1.5)[0]])
    out = classic.blur(x, k)
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1:], classic.blur(x[1:], k[1]))
    ones = classic.blur(torch.ones(1, 1, 12, 12), kernels.isotropic_gaussian(3.0)[0])
    torch.testing.assert_close(ones, torch.ones_like(ones))  # reflect padding keeps constants constant


@pytest.mark.parametrize("per_image", [False, True])
def test_sampling_per_batch_or_per_image(per_image):
    sampling = classic.ClassicSampling(mode="aniso", per_image=per_image)
    k, params = classic.sample_kernels(sampling, 4, torch.Generator().manual_seed(0))
    assert k.shape == ((4 if per_image else 1), 21, 21)
    assert all(0.2 <= v.min() and v.max() < 4.0 for n, v in params.items() if n != "theta")
    assert 0 <= params["theta"].min() and params["theta"].max() < math.pi
    lr = classic.random_degrade(torch.rand(4, 3, 16, 16), sampling, generator=torch.Generator().manual_seed(0))
    assert lr.shape == (4, 3, 4, 4)


def test_sampling_ranges_iso():
    sampling = classic.ClassicSampling(per_image=True)
    _, params = classic.sample_kernels(sampling, 2000, torch.Generator().manual_seed(0))
    sigma = params["sigma"]
    assert 0.2 <= sigma.min() < 0.3 and 3.9 < sigma.max() < 4.0
    with pytest.raises(ValueError):
        classic.ClassicSampling(mode="gaussian")


def test_jpeg_quality_ordering_and_per_image_quality():
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(56.0), indexing="ij")
    img = (0.5 + 0.3 * torch.sin(x / 3)[None] * torch.cos(y / 5)[None]).expand(3, 40, 56).clone()
    img = (img + 0.05 * torch.rand(3, 40, 56, generator=g)).clamp(0, 1)[None]
    errors = [((jpeg.jpeg(img, q) - img) ** 2).mean().item() for q in (20, 50, 95)]
    assert errors[0] > errors[1] > errors[2] and -10 * math.log10(errors[2]) > 35
    batch = jpeg.jpeg(img.repeat(2, 1, 1, 1), torch.tensor([20.0, 95.0]))
    torch.testing.assert_close(batch[0], jpeg.jpeg(img, 20)[0])
    torch.testing.assert_close(batch[1], jpeg.jpeg(img, 95)[0])
    assert jpeg.jpeg(img, 100.0).isfinite().all()


def test_jpeg_close_to_libjpeg():
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((64, 64, 3)).astype(np.float32), (0, 0), 2)
    img = np.clip((base - base.min()) / (base.max() - base.min()) * 255, 0, 255).astype(np.uint8)
    _, enc = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])  # cv2 takes BGR
    ref = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255
    ours = jpeg.jpeg(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, 50)[0].permute(1, 2, 0).numpy()

    def db(a, b):
        return -10 * np.log10(((a - b) ** 2).mean())

    # Not bit-exact (transposed luma table, box chroma filters) but the same codec: close outputs, same distortion.
    assert db(ours, ref) > 30
    assert abs(db(ours, img / 255) - db(ref, img / 255)) < 1.5


def test_differentiable_jpeg_passes_gradients():
    img = torch.rand(1, 3, 16, 16, requires_grad=True)
    jpeg.jpeg(img, 60, differentiable=True).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_realworld_pipeline_is_reproducible_and_on_8bit_grid():
    hr = torch.rand(3, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    a = realworld.degrade(hr, generator=torch.Generator().manual_seed(7))
    b = realworld.degrade(hr, generator=torch.Generator().manual_seed(7))
    c = realworld.degrade(hr, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 3, 16, 12) and torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a * 255, (a * 255).round(), atol=1e-4, rtol=0)


def test_realworld_kernels():
    k1, k2, k3 = realworld.sample_kernels(16, realworld.RealWorldConfig(), torch.Generator().manual_seed(0))
    for k in (k1, k2, k3):
        assert k.shape == (16, 21, 21)
        torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(16), atol=1e-5, rtol=0)


def test_realworld_noise_functions():
    x = torch.full((2, 3, 32, 32), 0.5)
    g = torch.Generator().manual_seed(0)
    noisy = realworld.add_gaussian_noise(x, torch.tensor([10.0, 10.0]), torch.tensor([0.0, 1.0]), g)
    assert noisy[0].std().item() == pytest.approx(10 / 255, rel=0.1)
    assert torch.equal(noisy[1, 0], noisy[1, 1])  # grey noise: same field on every channel
    assert not torch.equal(noisy[0, 0], noisy[0, 1])
    ramp = torch.linspace(0.1, 0.9, 32 * 32).view(1, 1, 32, 32).expand(2, 3, 32, 32)  # 205 grey levels -> v = 256
    poisson = realworld.add_poisson_noise(ramp, torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), g)
    expected_std = (ramp * 256).sqrt().mean() / 256  # shot noise of a Poisson(v x) / v sample
    assert (poisson - ramp)[0].std().item() == pytest.approx(expected_std.item(), rel=0.15)
    assert torch.equal(poisson[1, 0] - ramp[1, 0], poisson[1, 2] - ramp[1, 2])


def test_realworld_config_validation():
    with pytest.raises(ValueError):
        realworld.RealWorldConfig(resize_prob=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        realworld.RealWorldConfig(sinc_prob=1.5)
    with pytest.raises(ValueError):
        realworld.RealWorldConfig(noise_range=(30.0, 1.0))


def test_unsharp_mask_matches_an_independent_reference():
    """Real-ESRGAN's USMSharp written again with scipy (mirror = torch's reflect padding)."""
    from scipy import ndimage

    from kdsr.degradations.sharpen import opencv_sigma, unsharp_mask

    assert opencv_sigma(51) == pytest.approx(8.0)
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 60, 70, generator=g, dtype=torch.float64)
    images[:, :, :, 35:] *= 0.3  # an edge, where the mask switches on
    ax = np.arange(51) - 25
    k1 = np.exp(-(ax**2) / (2 * 8.0**2))
    kernel = np.outer(k1, k1) / np.outer(k1, k1).sum()

    def blur(a):
        return ndimage.correlate(a, kernel, mode="mirror")

    expected = np.empty(images.shape)
    for index in np.ndindex(images.shape[:2]):
        x = images[index].numpy()
        residual = x - blur(x)
        soft = blur((np.abs(residual) * 255 > 10).astype(np.float64))
        expected[index] = soft * np.clip(x + 0.5 * residual, 0, 1) + (1 - soft) * x
    out = unsharp_mask(images)
    assert out.dtype == images.dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-6)  # a float32 kernel
    flat = torch.full((1, 3, 30, 30), 0.4)
    assert torch.equal(unsharp_mask(flat), flat)  # nothing to sharpen
