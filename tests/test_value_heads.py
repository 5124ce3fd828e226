"""Value heads: target distributions, C51 projection, losses and the factory."""

from __future__ import annotations

import pytest
import torch

from deeprl.errors import UserError
from deeprl.nets.functional import symexp, symlog
from deeprl.nets.heads import (
    C51Head,
    HLGaussHead,
    categorical_projection,
    hl_gauss_target,
    make_value_head,
    two_hot_target,
)


def test_two_hot_sums_to_one_and_recovers_value_exactly():
    centers = torch.linspace(-5.0, 5.0, 11, dtype=torch.float64)
    values = torch.tensor([-5.0, -4.3, 0.0, 0.25, 3.999, 5.0], dtype=torch.float64)
    target = two_hot_target(values, centers)
    assert torch.allclose(target.sum(-1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose((target * centers).sum(-1), values, atol=1e-12)
    assert (target > 0).sum(-1).max() <= 2
    # -4.3 sits between -5 and -4: 0.3 on -5, 0.7 on -4.
    assert target[1, 0].item() == pytest.approx(0.3)
    assert target[1, 1].item() == pytest.approx(0.7)


def test_targets_clip_outside_the_support():
    centers = torch.linspace(-1.0, 1.0, 5)
    target = two_hot_target(torch.tensor([-7.0, 9.0]), centers)
    assert torch.equal(target, torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]]))
    edges = torch.linspace(-1.0, 1.0, 6)
    outside = hl_gauss_target(torch.tensor([-7.0, 9.0]), edges, sigma=0.3)
    at_edges = hl_gauss_target(torch.tensor([-1.0, 1.0]), edges, sigma=0.3)
    assert torch.allclose(outside, at_edges)


def test_hl_gauss_sums_to_one_and_recovers_value_inside():
    head = HLGaussHead(num_bins=101, v_min=-10.0, v_max=10.0, sigma_ratio=0.75)
    values = torch.linspace(-8.0, 8.0, 33)
    probs = hl_gauss_target(values, head.edges, head.sigma)
    assert torch.allclose(probs.sum(-1), torch.ones(33), atol=1e-5)
    assert torch.allclose((probs * head.centers).sum(-1), values, atol=1e-3)
    # sigma = 0.75 bin widths: the bin holding the target gets about 49% of the mass.
    assert probs[16].max().item() == pytest.approx(0.495, abs=0.01)


def test_c51_projection_hand_computed():
    support = torch.tensor([0.0, 1.0, 2.0])
    next_probs = torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    rewards = torch.tensor([0.5, 1.0])
    discounts = torch.tensor([0.5, 0.0])
    # Row 0: Tz = [0.5, 1.0, 1.5]; 0.5 splits 0.1/0.1 on atoms 0/1, 1.0 puts 0.3 on atom 1,
    # 1.5 splits 0.25/0.25 on atoms 1/2. Row 1 (terminal): all mass at r = 1.
    expected = torch.tensor([[0.1, 0.65, 0.25], [0.0, 1.0, 0.0]])
    target = categorical_projection(next_probs, rewards, discounts, support)
    assert torch.allclose(target, expected)


def test_c51_projection_clips_to_support():
    support = torch.tensor([-1.0, 0.0, 1.0])
    next_probs = torch.tensor([[0.5, 0.0, 0.5]])
    target = categorical_projection(next_probs, torch.tensor([5.0]), torch.tensor([0.9]), support)
    assert torch.allclose(target, torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("head", ["scalar", "hl_gauss", "two_hot", "c51"])
@pytest.mark.parametrize("use_symlog", [False, True])
def test_heads_fit_a_target(head, use_symlog):
    """A free logit vector trained on each head's loss converges to the target value."""
    torch.manual_seed(0)
    value_head = make_value_head(head, num_bins=41, v_min=-10.0, v_max=10.0, symlog=use_symlog)
    target = torch.tensor([3.3, -2.0])
    logits = torch.zeros(2, value_head.num_outputs, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.3)
    for _ in range(150):
        opt.zero_grad()
        loss = value_head.loss(logits, target)
        assert loss.shape == (2,)
        loss.mean().backward()
        opt.step()
    assert torch.allclose(value_head.value(logits), target, atol=0.1)


def test_c51_distributional_target_and_value():
    head = C51Head(num_bins=3, v_min=0.0, v_max=2.0)
    next_logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    target = head.projected_target(next_logits, torch.tensor([0.5]), torch.tensor([0.5]))
    assert torch.allclose(target, torch.tensor([[0.1, 0.65, 0.25]]))
    assert head.value(next_logits).item() == pytest.approx(1.3)
    assert head.cross_entropy(next_logits, target).shape == (1,)


def test_symlog_inverse():
    x = torch.tensor([-1000.0, -1.0, 0.0, 0.5, 1e4])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_huber_loss():
    head = make_value_head("scalar", loss="huber")
    loss = head.loss(torch.tensor([[0.0], [0.0]]), torch.tensor([0.5, 3.0]))
    assert torch.allclose(loss, torch.tensor([0.125, 2.5]))


def test_factory_errors():
    with pytest.raises(UserError, match="hl_gauss"):
        make_value_head("hl_gaus")
    with pytest.raises(UserError, match="num_bins"):
        make_value_head("two_hot", num_bin=3)
    with pytest.raises(UserError, match="v_min"):
        make_value_head("hl_gauss", v_min=1.0, v_max=-1.0)
    with pytest.raises(UserError, match="huber"):
        make_value_head("scalar", loss="l1")
