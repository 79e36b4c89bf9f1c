"""Training losses: knowledge distillation on D', the supervised degradation head on D, VGG19 perceptual loss,
discriminator feature matching, local amplitude spectra, vanilla GAN loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdsr.errors import KDSRError
from kdsr.metrics.detail import subpixel_unevenness
from kdsr.models.vgg import VGG19Features

VGG19_HOWTO = (
    "download torchvision's ImageNet VGG19 weights (vgg19-dcbb9e9d.pth, e.g. torchvision.models.vgg19(weights="
    "'IMAGENET1K_V1') on a machine with torchvision, then torch.save(model.state_dict(), PATH)) and set gan.vgg_weights"
)


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between the discriminator's activations on the output and on the HR
    (detached): a perceptual loss whose features come from the discriminator being trained (pix2pixHD), so it
    needs no pretrained network."""
    return sum(F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake, real, strict=True)) / len(fake)


def spectrum_loss(sr: torch.Tensor, target: torch.Tensor, window: int = 16) -> torch.Tensor:
    """L1 distance between the local amplitude spectra of output and target: Hann-windowed ``window``-pixel tiles
    (half overlapping) of each colour channel, orthonormal 2-D FFT magnitudes. The magnitudes ignore where a
    pattern sits inside a tile, so the loss asks for texture of the target's frequencies and orientations without
    asking for it pixel-aligned (which L1 would blur), and it penalises energy the target does not have, such as a
    regular grid; it needs no pretrained network."""
    stride = window // 2
    hann = torch.hann_window(window, periodic=False, device=sr.device, dtype=torch.float32)
    taper = (hann[:, None] * hann[None, :]).reshape(1, 1, 1, window * window, 1)

    def amplitudes(image: torch.Tensor) -> torch.Tensor:
        b, c, h, w = image.shape
        tiles = F.unfold(image.float().reshape(b * c, 1, h, w), window, stride=stride)  # (B*C, win*win, L)
        tiles = tiles.reshape(b, c, 1, window * window, -1) * taper
        tiles = tiles.reshape(b, c, window, window, -1).permute(0, 1, 4, 2, 3)
        return torch.fft.rfft2(tiles, norm="ortho").abs()

    return F.l1_loss(amplitudes(sr), amplitudes(target.detach()))


def low_frequency_loss(sr: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    """L1 between the ``scale`` x ``scale`` block means of output and target: the output held to the target at the
    LR's resolution (its colours and coarse shading) and left free above it, where perceptual, GAN and teacher
    losses shape the detail. A GAN fine-tune drifts there (colour error 0.58 levels where the faithful model has
    0.29), and projecting its outputs back onto the LR gained 0.25-0.34 dB at equal detail (issue 37's pilots)."""
    return F.l1_loss(F.avg_pool2d(sr.float(), scale), F.avg_pool2d(target.float(), scale))


def subpixel_uniformity_loss(sr: torch.Tensor, scale: int, eps: float = 1e-6) -> torch.Tensor:
    """How unevenly the output's fine detail falls on the ``scale`` x ``scale`` sub-pixel positions of the upsampler:
    :func:`kdsr.metrics.detail.subpixel_unevenness` of the channel mean, averaged over the batch. A photo's detail
    does not depend on where a pixel sits within an LR pixel (about 0 up to sampling noise); a sub-pixel upsampler
    pushed by a discriminator can make it depend (a regular grid or cross-hatch that fine-tuning with GAN losses
    drew here). Scale-free: it measures the pattern, not the amount of detail."""
    return subpixel_unevenness(sr.float().mean(dim=1), scale, eps).mean()


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "kl", temperature: float = 0.15) -> torch.Tensor:
    """Distillation loss between the student's and the (detached) teacher's D' (B, 4C).

    ``kl`` is the official KL(softmax(D'_T / tau) || softmax(D'_S / tau)), summed over features and averaged over the
    batch, without a tau^2 factor; ``l1``/``l2`` are the paper's Table 5 alternatives (means over elements).
    """
    teacher = teacher.detach()
    if kind == "kl":
        log_p_student = F.log_softmax(student.float() / temperature, dim=1)
        p_teacher = F.softmax(teacher.float() / temperature, dim=1)
        return F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "l2":
        return F.mse_loss(student, teacher)
    raise ValueError(f"unknown KD loss {kind!r}")


def group_contrast_loss(features: torch.Tensor, group: int, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) with consecutive groups of ``group`` rows as classes: each
    row's positives are the others of its group (same degradation, other images), its negatives the rest of the
    batch (other degradations), so the features learn the degradation and not the content (as DASR's degradation
    encoder). The batch mean is removed before the cosine similarities, so a shared offset costs nothing."""
    b = features.shape[0]
    z = F.normalize(features.float() - features.float().mean(dim=0, keepdim=True), dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(b, dtype=torch.bool, device=features.device)
    labels = torch.arange(b, device=features.device) // group
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    return -(log_prob * positives).sum(dim=1).div(positives.sum(dim=1).clamp(min=1)).mean()


#: Scales that bring the degradation labels' blur sigma, noise level and JPEG strength (100 - quality) to about [0, 1].
_LABEL_SCALES = (3.0, 20.0, 70.0)


class DegradationHead(nn.Module):
    """A linear read-out of the IDR ``d`` (B, C): logits of the mixture's cases and its blur sigma, noise level and
    JPEG strength (scaled to about [0, 1]). Trained next to the network so that ``d`` has to carry the degradation;
    the encoders trained by the paper's losses alone do not (README, "Inside the IDR")."""

    def __init__(self, idr_channels: int, cases: int) -> None:
        super().__init__()
        self.cases = cases
        # Each IDR feature standardised over the batch first: the trained encoders' D varies by under 2% between
        # inputs (kdsr-real-x4: batch std 0.006 against values of 0.38), so a plain linear read-out starts blind and
        # passes the encoder almost no gradient; standardising scales both up by 1/std.
        self.norm = nn.BatchNorm1d(idr_channels, eps=1e-8, affine=False)  # eps 1e-5 would damp a variance of 4e-5
        self.linear = nn.Linear(idr_channels, cases + len(_LABEL_SCALES))

    def forward(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(self.norm(d.float()))
        return out[:, : self.cases], out[:, self.cases :]


def degradation_head_loss(head: DegradationHead, d: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the case plus mean squared error on the scaled blur, noise and JPEG strength where they are
    known (``labels`` as :func:`kdsr.degradations.mixture.degrade_with_labels`; NaN columns are left out)."""
    logits, values = head(d)
    labels = labels.to(d.device)
    target = torch.stack([labels[:, 1], labels[:, 2], 100 - labels[:, 3]], dim=1) / labels.new_tensor(_LABEL_SCALES)
    known = torch.isfinite(target)
    loss = F.cross_entropy(logits, labels[:, 0].long())
    if known.any():
        loss = loss + F.mse_loss(values[known], target[known])
    return loss


def load_vgg19(path: str | Path, layers: tuple[str, ...]) -> VGG19Features:
    """VGG19 features with weights from a torchvision state dict file (.pth or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise KDSRError(f"VGG19 weights not found at '{path}': {VGG19_HOWTO}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KDSRError(f"{path}: cannot read VGG19 weights ({type(e).__name__})") from None
    vgg = VGG19Features(layers)
    wanted = vgg.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise KDSRError(f"{path}: not VGG19 weights (missing {missing[0]}): {VGG19_HOWTO}")
    vgg.load_state_dict({k: state[k] for k in wanted})
    return vgg.eval()


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 features (before ReLU) of output and target."""

    def __init__(self, vgg: VGG19Features, weights: dict[str, float]) -> None:
        super().__init__()
        self.vgg, self.weights = vgg, weights

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out_features = self.vgg(output)
        with torch.no_grad():
            target_features = self.vgg(target.detach())
        return sum(w * F.l1_loss(out_features[k], target_features[k]) for k, w in self.weights.items())


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss: BCE with logits against an all-ones (real) or all-zeros map."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
