from __future__ import annotations

import re

from typing_extensions import override

from spandrel.util import KeyCondition

from ...__helpers.model_descriptor import (
    Architecture,
    ImageModelDescriptor,
    ModelTiling,
    StateDict,
)
from .__arch.kdsr import KDSR


def _count(state_dict: StateDict, pattern: str) -> int:
    return len({m.group(1) for key in state_dict if (m := re.fullmatch(pattern, key))})


class KDSRArch(Architecture[KDSR]):
    def __init__(self) -> None:
        super().__init__(
            id="KDSR",
            detect=KeyCondition.has_all(
                "G.head.0.weight",
                "G.body.0.body.0.da_conv1.kernel.0.weight",
                "G.body.0.body.0.conv1.weight",
                "G.body.1.weight",
                "G.tail.1.weight",
                "E_st.E.0.weight",
                "E_st.mlp.0.weight",
                "E_st.compress.0.weight",
            ),
        )

    @override
    def load(self, state_dict: StateDict) -> ImageModelDescriptor[KDSR]:
        n_feats = state_dict["G.head.0.weight"].shape[0]
        n_blocks = _count(state_dict, r"G\.body\.0\.body\.(\d+)\.conv1\.weight")
        n_resblocks = _count(state_dict, r"E_st\.E\.(\d+)\.body\.0\.weight")
        upsamplers = _count(state_dict, r"G\.tail\.0\.(\d+)\.weight")
        first = state_dict["G.tail.0.0.weight"].shape[0]
        scale = 3 if first == 9 * n_feats else 2**upsamplers
        energy = "E_st.energy" in state_dict

        model = KDSR(
            n_feats=n_feats,
            n_blocks=n_blocks,
            n_resblocks=n_resblocks,
            scale=scale,
            energy=energy,
        )

        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[
                f"{n_feats}nf",
                f"{n_blocks}nb",
                f"{n_resblocks}nr",
                *(["energy"] if energy else []),
            ],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=3,
            output_channels=3,
            tiling=ModelTiling.INTERNAL,  # the degradation is estimated from the whole image
        )


__all__ = ["KDSR", "KDSRArch"]
