"""ComfyUI custom node package: KDSR checkpoints in ComfyUI's model loader, and a node that upscales whole images.

Install it with ComfyUI-Manager / ``comfy node install`` (its pyproject.toml is the registry's), or copy this folder
into ComfyUI/custom_nodes/ (with kdsr installed in ComfyUI's Python: its requirements.txt), restart ComfyUI, put KDSR
checkpoints (official .pt/.pth or kdsr .safetensors) into models/upscale_models, load one with the built-in
"Load Upscale Model" node and upscale with "Upscale Image (KDSR, whole image)" (category image/upscaling). Not the
built-in "Upscale Image (using Model)": it cuts images into 512-px tiles that would each get their own degradation
estimate.
"""

import kdsr.integrations.spandrel  # noqa: F401  (registers KDSR with spandrel's MAIN_REGISTRY)
from kdsr.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
