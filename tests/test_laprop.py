"""LaProp (deeprl.optim): updates against a hand computation, warm-up, checkpoints, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from deeprl.optim import LaProp


def test_laprop_matches_a_hand_computed_update():
    # lr 0.1, betas (0.5, 0.75), eps 0, warm-up 2 steps; gradients 2 then -1 on p = 1.
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LaProp([p], lr=0.1, betas=(0.5, 0.75), eps=0.0, warmup=2)
    # Step 1: eta = 0.1 * 1/2 = 0.05; v = 0.25 * 4 = 1, v_hat = 1 / (1 - 0.75) = 4;
    # m = 0.5 * 0.05 * 2 / 2 = 0.025; e = 0.5 * 0.05 = 0.025; p = 1 - (0.05 / 0.025) * 0.025.
    p.grad = torch.tensor([2.0])
    opt.step()
    assert p.item() == pytest.approx(0.95, abs=1e-7)
    # Step 2: eta = 0.1; v = 0.75 * 1 + 0.25 * 1 = 1, v_hat = 1 / (1 - 0.5625) = 2.2857...;
    # m = 0.5 * 0.025 + 0.5 * 0.1 * (-1) / sqrt(v_hat); e = 0.5 * 0.025 + 0.5 * 0.1 = 0.0625.
    p.grad = torch.tensor([-1.0])
    opt.step()
    m = 0.5 * 0.025 + 0.5 * 0.1 * (-1) / math.sqrt(1 / 0.4375)
    assert p.item() == pytest.approx(0.95 - (0.1 / 0.0625) * m, abs=1e-7)


def test_laprop_constant_lr_first_step_is_lr_times_sign():
    # Without warm-up the first step is lr * g / |g| (+ eps), Adam-like, per coordinate.
    p = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    opt = LaProp([p], lr=0.01, eps=0.0)
    p.grad = torch.tensor([3.0, -0.5])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.01, 0.01]))


def test_laprop_state_round_trips_and_continues_identically():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = LaProp(net.parameters(), lr=1e-2, warmup=5)
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(net.state_dict())
    opt_copy = LaProp(twin.parameters(), lr=1e-2, warmup=5)
    # A deep copy, as a checkpoint file gives: state_dict() hands out the live tensors.
    opt_copy.load_state_dict(copy.deepcopy(opt.state_dict()))
    for model, optimizer in ((net, opt), (twin, opt_copy)):
        optimizer.zero_grad()
        model(x).square().sum().backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), twin.parameters(),
                                                 strict=True))


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"betas": (1.0, 0.9)}, {"warmup": -1}])
def test_laprop_bad_arguments_are_one_line(kwargs):
    with pytest.raises(ValueError, match="LaProp"):
        LaProp([torch.nn.Parameter(torch.zeros(1))], **kwargs)
