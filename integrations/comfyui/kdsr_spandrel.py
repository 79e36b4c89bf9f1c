"""ComfyUI custom node file: teaches ComfyUI's model loader (spandrel) to read KDSR checkpoints.

Copy this file into ComfyUI/custom_nodes/ (with kdsr installed in ComfyUI's Python: pip install 'kdsr[spandrel]'),
restart ComfyUI, put KDSR checkpoints (official .pt/.pth or kdsr .safetensors) into models/upscale_models, and use
the usual "Load Upscale Model" + "Upscale Image (using Model)" nodes. Give the whole image: KDSR estimates one
degradation representation per image and tiles internally.
"""

import kdsr.integrations.spandrel  # noqa: F401  (registers KDSR with spandrel's MAIN_REGISTRY)

NODE_CLASS_MAPPINGS: dict = {}  # no new nodes: the built-in upscale-model nodes now load KDSR
