"""A ComfyUI node that upscales with kdsr's whole-image pipeline.

ComfyUI's built-in "Upscale Image (using Model)" node cuts every image into 512-px tiles and runs the model on each
tile alone, whatever the model's ``tiling`` says, so each tile would get its own degradation estimate (IDR) and the
seams would show where two estimates differ. "Upscale Image (KDSR, whole image)" hands the model the whole image
instead: one IDR from a bounded view of it, then kdsr's own tiles with blended overlaps, as ``kdsr upscale`` does.
It takes the ``UPSCALE_MODEL`` of ComfyUI's "Load Upscale Model" node (spandrel, with
:mod:`kdsr.integrations.spandrel` registered) and ComfyUI's ``IMAGE`` tensors, (B, H, W, C) floats in [0, 1].
"""

from __future__ import annotations

import copy

import torch

from kdsr.bundled import bundled_models
from kdsr.detail import DETAIL_DECIMALS
from kdsr.integrations.spandrel import KDSRUpscale
from kdsr.readout.steering import MAX_DENOISE, Steerer, Steering


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
        estimated = "-1: as estimated"
        return {
            "required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)},
            "optional": {
                "detail": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                     "tooltip": "0: faithful, 1: kdsr-real-x4-gan's detail; between: a blend of the "
                                                "two models' weights (kdsr-real-x4 only)"}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": MAX_DENOISE, "step": 0.05,
                                      "tooltip": "1: as estimated, 0: keep noise and JPEG, 2: stronger"}),
                "noise": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 50.0, "step": 0.5,
                                    "tooltip": f"noise level on the 0-255 scale ({estimated})"}),
                "jpeg_quality": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 100.0, "step": 1.0,
                                           "tooltip": f"JPEG quality ({estimated})"}),
                "blur": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 6.0, "step": 0.1,
                                   "tooltip": f"blur sigma in HR pixels ({estimated})"}),
            },
        }  # fmt: skip

    def upscale(
        self,
        upscale_model,
        image: torch.Tensor,
        denoise: float = 1.0,
        noise: float = -1.0,
        jpeg_quality: float = -1.0,
        blur: float = -1.0,
        detail: float = 0.0,
    ) -> tuple[torch.Tensor]:
        model = upscale_model.model
        if not isinstance(model, KDSRUpscale):
            raise ValueError(
                "Upscale Image (KDSR, whole image) needs a KDSR model; use ComfyUI's Upscale Image (using Model) "
                "for others"
            )
        assume = {key: value for key, value in (("noise", noise), ("jpeg", jpeg_quality), ("blur", blur)) if value >= 0}
        steering = Steering.from_options(assume, denoise)
        steerer = Steerer.for_model(_bundled_twin(model), steering) if steering.active else None  # the loaded twin's
        if detail > 0:
            model = self._with_detail(model, detail)
        device = _device(model)
        model.to(device).eval()
        dtype = next(model.parameters()).dtype
        on_tile = _host_progress(model.tile_count(*image.shape[1:3]) * len(image))
        outputs = []
        try:
            with torch.no_grad():
                for frame in image:  # one image at a time: each gets its own IDR
                    lr = frame[..., :3].movedim(-1, 0)[None].to(device, dtype)
                    outputs.append(model(lr, steerer, on_tile)[0].movedim(0, -1).float().clamp(0, 1).cpu())
        finally:
            model.to(_offload_device(model))  # as ComfyUI's own upscale node: the model leaves the GPU after the run
        return (torch.stack(outputs),)

    def _with_detail(self, model: KDSRUpscale, detail: float) -> KDSRUpscale:
        """A copy of ``model`` with the weights of ``kdsr upscale --detail``'s blend (:mod:`kdsr.detail`), kept
        for the next run with the same model and detail."""
        from kdsr.checkpoint import load_model
        from kdsr.detail import with_detail

        key = (id(model), round(detail, DETAIL_DECIMALS))
        if getattr(self, "_blend_key", None) != key:
            blended = copy.deepcopy(model)
            blended.load_state_dict(load_model(with_detail(_bundled_twin(model), detail)).state_dict())
            self._blend_key, self._blend = key, blended
        return self._blend


def _offload_device(model: torch.nn.Module) -> torch.device:
    """ComfyUI's device for idle models when running inside ComfyUI, else where the model is."""
    try:
        import comfy.model_management as management
    except ImportError:
        return next(model.parameters()).device
    return management.unet_offload_device()


def _host_progress(total: int):
    """A per-tile callback for ComfyUI: its progress bar advances and a user's interrupt stops the run between
    tiles (ComfyUI's InterruptProcessingException); None outside ComfyUI."""
    try:
        import comfy.model_management as management
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(total)

    def on_tile() -> None:
        management.throw_exception_if_processing_interrupted()
        bar.update(1)

    return on_tile


def _bundled_twin(model: torch.nn.Module) -> str:
    """The bundled model whose weights ``model`` has (spandrel hands over the weights, not the file's estimator and
    IDR map, which steering needs); a clear error for any other model."""
    from safetensors import safe_open

    key = "G.body.0.body.0.da_conv1.kernel.0.weight"
    mine = model.state_dict()[key].detach().float().cpu()
    for name, path in bundled_models().items():
        with safe_open(str(path), framework="pt") as f:
            if key in f.keys() and f.get_tensor(key).shape == mine.shape and torch.equal(f.get_tensor(key), mine):
                return name
    raise ValueError("detail / denoise / noise / jpeg_quality / blur need a bundled kdsr model (its partner, "
                     "estimator and IDR map); for other files use `kdsr upscale --assume`")  # fmt: skip


NODE_CLASS_MAPPINGS = {"KDSRUpscaleImage": KDSRUpscaleImage}
NODE_DISPLAY_NAME_MAPPINGS = {"KDSRUpscaleImage": "Upscale Image (KDSR, whole image)"}
