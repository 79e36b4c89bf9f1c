from spandrel.architectures.KDSR import KDSR, KDSRArch

from .util import assert_loads_correctly, assert_size_requirements, seed_rngs


def test_load():
    assert_loads_correctly(
        KDSRArch(),
        lambda: KDSR(),
        lambda: KDSR(n_feats=32, n_blocks=8, n_resblocks=2),
        lambda: KDSR(n_feats=32, n_blocks=24, n_resblocks=2, energy=True),
        lambda: KDSR(n_feats=128, n_blocks=7, n_resblocks=4),
        lambda: KDSR(n_feats=16, n_blocks=2, n_resblocks=1, scale=2),
        lambda: KDSR(n_feats=16, n_blocks=2, n_resblocks=1, scale=3),
        lambda: KDSR(n_feats=16, n_blocks=2, n_resblocks=1, scale=8),
    )


def test_size_requirements():
    seed_rngs(0)
    model = KDSRArch().load(
        KDSR(n_feats=16, n_blocks=2, n_resblocks=1, energy=True).state_dict()
    )
    assert_size_requirements(model)
