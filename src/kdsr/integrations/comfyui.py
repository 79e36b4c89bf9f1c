"""A ComfyUI node that upscales with kdsr's whole-image pipeline.

ComfyUI's built-in "Upscale Image (using Model)" node cuts every image into 512-px tiles and runs the model on each
tile alone, whatever the model's ``tiling`` says, so each tile would get its own degradation estimate (IDR) and the
seams would show where two estimates differ. "Upscale Image (KDSR, whole image)" hands the model the whole image
instead: one IDR from a bounded view of it, then kdsr's own tiles with blended overlaps, as ``kdsr upscale`` does.
It takes the ``UPSCALE_MODEL`` of ComfyUI's "Load Upscale Model" node (spandrel, with
:mod:`kdsr.integrations.spandrel` registered) and ComfyUI's ``IMAGE`` tensors, (B, H, W, C) floats in [0, 1].
"""

from __future__ import annotations

import torch

from kdsr.integrations.spandrel import KDSRUpscale


def _device(model: torch.nn.Module) -> torch.device:
    """ComfyUI's device for models when running inside ComfyUI, else where the model is."""
    try:
        import comfy.model_management as management  # ComfyUI's own module
    except ImportError:
        return next(model.parameters()).device
    return management.get_torch_device()


class KDSRUpscaleImage:
    """ComfyUI node: (upscale_model, image) -> image, each image of the batch upscaled whole."""

    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = "Upscale with a KDSR model: one degradation estimate per image, kdsr's own blended tiles."

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # noqa: N802 - ComfyUI's name
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model, image: torch.Tensor) -> tuple[torch.Tensor]:
        model = upscale_model.model
        if not isinstance(model, KDSRUpscale):
            raise ValueError(
                "Upscale Image (KDSR, whole image) needs a KDSR model; use ComfyUI's Upscale Image (using Model) "
                "for others"
            )
        device = _device(model)
        model.to(device).eval()
        dtype = next(model.parameters()).dtype
        outputs = []
        with torch.no_grad():
            for frame in image:  # one image at a time: each gets its own IDR
                lr = frame[..., :3].movedim(-1, 0)[None].to(device, dtype)
                outputs.append(model(lr)[0].movedim(0, -1).float().clamp(0, 1).cpu())
        return (torch.stack(outputs),)


NODE_CLASS_MAPPINGS = {"KDSRUpscaleImage": KDSRUpscaleImage}
NODE_DISPLAY_NAME_MAPPINGS = {"KDSRUpscaleImage": "Upscale Image (KDSR, whole image)"}
