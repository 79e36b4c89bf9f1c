"""KDSR for spandrel, the model loader of chaiNNer and ComfyUI (``pip install 'kdsr[spandrel]'``).

``import kdsr.integrations.spandrel`` adds a KDSR architecture to ``spandrel.MAIN_REGISTRY``; after it,
``spandrel.ModelLoader().load_from_file(path)`` recognises official KDSR student checkpoints (classic ``.pt``, GAN
``.pth`` with ``params_ema``) and kdsr's ``.safetensors`` by their keys, with every hyperparameter read off tensor
shapes. Teachers (they need the HR image) and other files are not claimed.

The descriptor's model runs what ``kdsr.Upscaler`` runs on a whole image: edge replication around the border, one
IDR from a bounded view of the image, the generator in tiles with blended overlaps, and the colour fix. The IDR is a
property of the whole image, so the descriptor says ``tiling=INTERNAL``: a host must hand over the whole image and
not cut it into tiles that would each get their own IDR. ``supports_half`` and ``supports_bfloat16``: on the bundled
models on a CPU, fp16 output differs from fp32 by at most 0.0024 (0.6 of an 8-bit level) and bf16 by at most 0.018
(``benchmarks/precision_bounds.py``; the README gives them per model).
"""

from __future__ import annotations

import torch
from spandrel import MAIN_REGISTRY, ArchRegistry, ArchSupport, ImageModelDescriptor, ModelTiling
from spandrel.util import KeyCondition, store_hyperparameters

from kdsr.checkpoint import infer_config
from kdsr.constants import BORDER_PAD, DEFAULT_IDR_VIEW, TILE_OVERLAP, TILE_PAD
from kdsr.errors import CheckpointError
from kdsr.inference.backends import TiledBackend
from kdsr.inference.tile_plan import count_tiles
from kdsr.inference.upscaler import run_pipeline, steered_idr
from kdsr.models import KDSRConfig, KDSRStudent

try:  # spandrel >= 0.4
    from spandrel import Architecture
except ImportError:  # pragma: no cover - older spandrel
    from spandrel.__helpers.model_descriptor import Architecture

#: LR tile size of the descriptor's own tiling (0 would run whole images at once)
TILE = 256
#: State-dict keys that carry ``tile`` and ``idr_view`` through a save and a load (absent from other checkpoints: the
#: defaults then)
TILE_KEY, IDR_VIEW_KEY = "kdsr_tile", "kdsr_idr_view"


@store_hyperparameters()
class KDSRUpscale(KDSRStudent):
    """A KDSR student whose ``forward`` is kdsr's inference pipeline, on (B, 3, H, W) tensors in [0, 1] in the model's
    dtype (same keys as the student, so spandrel loads its state dict as is). Its constructor arguments are
    ``model.hyperparameters``, as spandrel's architectures expose theirs."""

    hyperparameters: dict

    def __init__(self, *, config: KDSRConfig, tile: int = TILE, idr_view: int = DEFAULT_IDR_VIEW) -> None:
        super().__init__(config)
        self.tile, self.idr_view = tile, idr_view
        for key, value in ((TILE_KEY, tile), (IDR_VIEW_KEY, idr_view)):  # saved with the weights, read by the loader
            self.register_buffer(key, torch.tensor(value, dtype=torch.int64))

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        """Plain student weights (no settings keys) load as well, keeping this model's settings; weights saved from
        a :class:`KDSRUpscale` bring theirs."""
        for key in (TILE_KEY, IDR_VIEW_KEY):
            state_dict.setdefault(prefix + key, getattr(self, key))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.tile, self.idr_view = int(getattr(self, TILE_KEY)), int(getattr(self, IDR_VIEW_KEY))

    def tile_count(self, height: int, width: int) -> int:
        """The generator tiles :meth:`forward` runs for one ``height`` x ``width`` image (its border padding
        included): what a host's progress bar counts."""
        return count_tiles(height + 2 * BORDER_PAD, width + 2 * BORDER_PAD, self.tile, TILE_OVERLAP)

    def forward(self, lr: torch.Tensor, steerer=None, on_tile=None) -> torch.Tensor:  # type: ignore[override]
        """``steerer``: a :class:`~kdsr.readout.steering.Steerer` that moves each image's IDR (the ComfyUI node's
        dials), or None; ``on_tile``: called after each generator tile (a host's progress and interrupt check)."""
        backend = TiledBackend(self, lr.device, lr.dtype, self.tile, TILE_PAD, TILE_OVERLAP, self.idr_view, on_tile)
        idr = steered_idr(backend, steerer, lr)[0] if steerer is not None else None
        return run_pipeline(backend, lr, idr=idr).to(lr.dtype)


#: A KDSR student's state dict: the generator with its IDR-conditioned blocks and the LR-only encoder (a teacher has
#: ``E.*`` instead of ``E_st.*`` and is not claimed).
DETECT = KeyCondition.has_all(
    "G.head.0.weight", "G.body.0.body.0.da_conv1.kernel.0.weight", "E_st.E.0.weight", "E_st.compress.0.weight"
)


class KDSRArch(Architecture[KDSRUpscale]):
    def __init__(self) -> None:
        super().__init__(id="KDSR", name="KDSR", detect=DETECT)

    def load(self, state_dict) -> ImageModelDescriptor[KDSRUpscale]:
        try:
            config = infer_config(state_dict)
        except CheckpointError as e:
            raise ValueError(str(e)) from None
        if config.teacher:
            raise ValueError("a KDSR teacher needs the HR image; only students upscale")
        settings = {name: int(state_dict.get(key, default)) for name, key, default in
                    (("tile", TILE_KEY, TILE), ("idr_view", IDR_VIEW_KEY, DEFAULT_IDR_VIEW))}  # fmt: skip
        model = KDSRUpscale(config=config, **settings)
        model.load_state_dict(state_dict, strict=True)
        model.eval()
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{config.n_feats}nf", f"{config.n_blocks}nb", f"{config.n_resblocks}nr"],
            supports_half=True,
            supports_bfloat16=True,
            scale=config.scale,
            input_channels=3,
            output_channels=3,
            tiling=ModelTiling.INTERNAL,
        )


def register(registry: ArchRegistry = MAIN_REGISTRY) -> None:
    """Add KDSR to a spandrel registry (done for ``MAIN_REGISTRY`` on import; adding twice is harmless)."""
    registry.add(ArchSupport.from_architecture(KDSRArch()), ignore_duplicates=True)


register()
