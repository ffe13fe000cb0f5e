"""gencourse.nets: the time-conditioned networks shared by diffusion and flow matching."""
import math

import pytest
import torch

from gencourse import diffusion, flow_matching, nets


def test_denoisers_keep_the_shape():
    time = torch.rand(3)
    y = torch.tensor([0, 5, 10])
    assert nets.MLPDenoiser(2)(torch.randn(3, 2), time).shape == (3, 2)
    assert nets.MLPDenoiser(64, num_classes=10)(torch.randn(3, 1, 8, 8), time, y).shape == (3, 1, 8, 8)
    for size in (8, 28):
        net = nets.SmallUNet(1, base=8, num_classes=10)
        assert net(torch.randn(3, 1, size, size), time, y).shape == (3, 1, size, size)
    assert nets.LocalConvNet(1, width=4, depth=1)(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)


def test_timestep_embedding_matches_the_formula():
    time = torch.tensor([0.0, 0.25, 1.0])
    for dim, max_period, scale in ((16, 10_000.0, 1000.0), (8, 1000.0, 100.0)):
        emb = nets.timestep_embedding(time, dim, max_period, scale)
        half = dim // 2
        for i, tau in enumerate(time.tolist()):
            for k in range(half):
                angle = scale * tau * max_period ** (-k / half)
                assert emb[i, k].item() == pytest.approx(math.cos(angle), abs=1e-4)
                assert emb[i, half + k].item() == pytest.approx(math.sin(angle), abs=1e-4)


def test_corrections_start_at_zero():
    """The output layers start at zero: an untrained network adds nothing to the denoiser it corrects."""
    x, time = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert nets.MLPDenoiser(64)(x, time).abs().max() == 0
    assert nets.SmallUNet(1, base=8)(x, time).abs().max() == 0
    assert nets.LocalConvNet(1, width=4)(x, time).abs().max() == 0


def test_labels_change_the_output_and_no_label_is_the_default():
    torch.manual_seed(0)
    net = nets.MLPDenoiser(4, 8, 1, num_classes=3)
    torch.nn.init.normal_(net.out.weight)
    x, time = torch.randn(2, 4), torch.rand(2)
    assert torch.equal(net(x, time), net(x, time, torch.tensor([3, 3])))
    assert not torch.allclose(net(x, time, torch.tensor([0, 0])), net(x, time, torch.tensor([1, 1])))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="hidden"):
        nets.MLPDenoiser(4, hidden=0)
    with pytest.raises(ValueError, match="width"):
        nets.LocalConvNet(1, width=0)


def test_both_families_use_the_shared_networks():
    assert diffusion.MLPDenoiser is nets.MLPDenoiser and diffusion.SmallUNet is nets.SmallUNet
    assert flow_matching.MLPDenoiser is nets.MLPDenoiser and flow_matching.LocalConvNet is nets.LocalConvNet
    assert isinstance(flow_matching.DigitsFlowMatching().net, nets.MLPDenoiser)
    assert diffusion.train_annealed is flow_matching.train_annealed
