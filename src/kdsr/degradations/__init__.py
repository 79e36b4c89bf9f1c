"""Degradations as batched tensor functions; every random draw comes from a caller-supplied ``torch.Generator``.

- :mod:`kdsr.degradations.kernels`: Gaussian, generalized Gaussian, plateau and sinc kernels.
- :mod:`kdsr.degradations.resize`: MATLAB-style bicubic ``imresize``.
- :mod:`kdsr.degradations.classic`: the paper's Eq. 1 as the official code applies it.
- :mod:`kdsr.degradations.jpeg`: batched (optionally differentiable) JPEG.
- :mod:`kdsr.degradations.realworld`: the Real-ESRGAN second-order pipeline of KDSR-GAN.
- :mod:`kdsr.degradations.mixture`: everyday inputs (clean, JPEG, blur + noise, camera-like) mixed with it.
- :mod:`kdsr.degradations.sharpen`: unsharp masking of HR targets (Real-ESRGAN's sharpened ground truth).
"""

from kdsr.degradations import classic, jpeg, kernels, mixture, realworld, resize, sharpen

__all__ = ["classic", "jpeg", "kernels", "mixture", "realworld", "resize", "sharpen"]
