"""Deepening a trained network keeps its outputs and leaves the new blocks trainable."""

import pytest
import torch

from kdsr.models import create_model
from kdsr.models.grow import block_positions, deepen
from tests.conftest import tiny_model


def test_block_positions_spread_old_blocks_evenly():
    assert block_positions(8, 24) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert block_positions(2, 5) == [0, 2]
    assert block_positions(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least the current depth"):
        block_positions(4, 3)


@pytest.mark.parametrize("teacher", [False, True])
def test_deepen_keeps_outputs(teacher):
    torch.manual_seed(0)
    model = create_model("kdsr-s", teacher=teacher, n_feats=8, n_blocks=2, n_resblocks=1).eval()
    for p in model.parameters():  # trained weights are not at init: make every block do something
        p.data.add_(0.05 * torch.randn_like(p))
    deeper = deepen(model, 5).eval()
    assert len(deeper.G.body[0].body) == 5 and deeper.config.n_blocks == 5
    lr = torch.rand(2, 3, 12, 10)
    args = (lr, torch.rand(2, 3, 48, 40)) if teacher else (lr,)
    with torch.no_grad():
        torch.testing.assert_close(deeper(*args), model(*args), rtol=0, atol=1e-6)
    # the old blocks are where block_positions says, the new ones are silent (conv1 zero)
    torch.testing.assert_close(deeper.G.body[0].body[2].conv1.weight, model.G.body[0].body[1].conv1.weight)
    assert deeper.G.body[0].body[1].conv1.weight.abs().sum() == 0


def test_inserted_blocks_learn():
    torch.manual_seed(0)
    deeper = deepen(create_model("kdsr-s", n_feats=8, n_blocks=1, n_resblocks=1), 2)
    deeper(torch.rand(1, 3, 8, 8)).mean().backward()
    assert deeper.G.body[0].body[1].conv1.weight.grad.abs().sum() > 0


def test_sensitise_scales_the_response_to_idr_departures_and_keeps_the_mean():
    """A sensitised generator at m + v (v orthogonal to the mean IDR m) computes what the original does at m + g v,
    and at m exactly what it did."""
    from kdsr.models.grow import sensitise

    model = tiny_model(encoder="energy")
    mean = torch.rand(8, generator=torch.Generator().manual_seed(1)) + 0.5
    step = torch.randn(8, generator=torch.Generator().manual_seed(2))
    step = step - step.dot(mean) / mean.dot(mean) * mean  # orthogonal to the mean
    lr = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    sensitised = sensitise(model, mean, 3.0)
    with torch.no_grad():
        torch.testing.assert_close(sensitised.G(lr, mean[None]), model.G(lr, mean[None]), rtol=0, atol=1e-6)
        torch.testing.assert_close(
            sensitised.G(lr, (mean + step)[None]), model.G(lr, (mean + 3 * step)[None]), rtol=0, atol=1e-5
        )
        assert (sensitised.G(lr, (mean + step)[None]) - model.G(lr, (mean + step)[None])).abs().max() > 1e-4
    assert torch.equal(sensitised.E_st.compress[0].weight, model.E_st.compress[0].weight)  # the encoder is untouched
    with pytest.raises(ValueError, match="gain"):
        sensitise(model, mean, 0)
