"""The offline agents' losses on hand-built tensors against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from deeprl.config import make_config
from deeprl.nets.heads import ValueHeadConfig, make_value_head
from deeprl.nets.schedules import cosine_schedule
from deeprl.offline.bc import bc_loss
from deeprl.offline.cql import cql_conservative_loss
from deeprl.offline.fdvl import FDVLConfig, dvl_q_loss, fdvl_value_loss
from deeprl.offline.iql import awr_actor_loss, expectile_loss
from deeprl.offline.recoil import recoil_q_loss
from deeprl.offline.td3_bc import td3_bc_actor_loss, td3_target
from deeprl.offline.xql import gumbel_loss

E = math.e


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_bc_loss_is_the_mean_squared_error():
    assert bc_loss(t([0.5, -0.5]), t([0.0, 0.0]))["loss"].item() == pytest.approx(0.25)


def test_td3_bc_normalises_q_by_its_mean_magnitude():
    q = t(1.0, -3.0).requires_grad_()
    terms = td3_bc_actor_loss(q, t([0.5], [0.0]), t([0.0], [0.0]), alpha=2.5)
    # lambda = 2.5 / mean(|1|, |-3|) = 1.25; -lambda mean(Q) = 1.25; BC = (0.25 + 0) / 2
    assert terms["lambda"].item() == pytest.approx(1.25)
    assert terms["q_term"].item() == pytest.approx(1.25)
    assert terms["bc"].item() == pytest.approx(0.125)
    assert terms["loss"].item() == pytest.approx(1.375)
    terms["loss"].backward()  # lambda is a constant: dL/dQ_i = -lambda / B
    assert q.grad.tolist() == pytest.approx([-0.625, -0.625])
    target = td3_target(t(1.0, 1.0), t(1.0, 0.0), t(2.0, 5.0), t(3.0, 1.0), gamma=0.9)
    assert target.tolist() == pytest.approx([2.8, 1.0])


def test_iql_expectile_and_awr_losses():
    # |0.7 - 0| 2^2 and |0.7 - 1| (-1)^2, averaged
    assert expectile_loss(t(2.0, -1.0), 0.7)["loss"].item() == pytest.approx((2.8 + 0.3) / 2)
    terms = awr_actor_loss(t(-1.0, -2.0), t(0.0, 1.0), beta=3.0)
    assert terms["loss"].item() == pytest.approx((1.0 + 2 * E**3) / 2, rel=1e-5)
    clipped = awr_actor_loss(t(-1.0, -2.0), t(0.0, 2.0), beta=3.0)  # e^6 > 100: clipped
    assert clipped["loss"].item() == pytest.approx((1.0 + 200.0) / 2)
    assert clipped["weight"].item() == pytest.approx(50.5)


def test_cosine_actor_learning_rate():
    # start (1 + cos(pi t / T)) / 2, then 0; a run without a budget keeps the start
    assert [cosine_schedule(3.0, 100, t) for t in (0, 50, 100, 150)] == pytest.approx(
        [3.0, 1.5, 0.0, 0.0]
    )
    assert cosine_schedule(3.0, 0, 10) == 3.0


def test_cql_logsumexp_term():
    q_data, zeros = t(1.0), torch.zeros(1, 2)
    q_cur, log_pi_cur = torch.ones(1, 2), -torch.ones(1, 2)
    # importance sampled, d = 1: [Q_rand - log 0.5] x2, [Q_next - log pi] x2, [Q_cur - log pi] x2
    terms = cql_conservative_loss(q_data, zeros, q_cur, log_pi_cur, zeros, zeros, action_dim=1)
    ood = math.log(2 + 2 + 1 + 1 + E**2 + E**2)
    assert terms["ood"].item() == pytest.approx(ood)
    assert terms["loss"].item() == pytest.approx(ood - 1.0)
    tempered = cql_conservative_loss(q_data, zeros, q_cur, log_pi_cur, zeros, zeros, 1, temp=2.0)
    expected = 2 * math.log(2 * math.sqrt(2) + 2 + 2 * E)
    assert tempered["ood"].item() == pytest.approx(expected)
    # without importance sampling the data's Q joins the plain Q values
    plain = cql_conservative_loss(q_data, zeros, q_cur, log_pi_cur, zeros, zeros, 1,
                                  importance_sample=False)
    assert plain["ood"].item() == pytest.approx(math.log(4 + 3 * E))


def test_xql_gumbel_loss_is_rescaled_and_clipped():
    # z = (0, 1), m = 1: e^(z-1) - z/e - 1/e = (0, 1 - 2/e) = e^-1 (e^z - z - 1)
    terms = gumbel_loss(t(0.0, 1.0), beta=1.0)
    assert terms["z_max"].item() == pytest.approx(1.0)
    assert terms["loss"].item() == pytest.approx((1 - 2 / E) / 2)
    # z = (-3, -2): m = max(-2, -1) = -1, so the loss is e (e^z - z - 1)
    low = gumbel_loss(t(-6.0, -4.0), beta=2.0)
    assert low["loss"].item() == pytest.approx((E**-2 + 2 * E + E**-1 + E) / 2, rel=1e-5)
    # z clipped at 2: (e^(2-2) - 2 e^-2 - e^-2) for diff 10
    clipped = gumbel_loss(t(10.0), beta=1.0, max_clip=2.0)
    assert clipped["loss"].item() == pytest.approx(1 - 3 * E**-2, rel=1e-5)
    # the gradient in diff is e^-m (e^z - 1) / (beta B) with m detached
    diff = t(0.0, 1.0).requires_grad_()
    gumbel_loss(diff, beta=1.0)["loss"].backward()
    assert diff.grad.tolist() == pytest.approx([0.0, (E - 1) / E / 2])


def test_gumbel_loss_rescales_by_a_second_set_without_averaging_it():
    # ReCOIL: z = (0,) on the suboptimal half, (3, 10) on the expert half clipped at 2: m = 2,
    # the loss averages the suboptimal half only: e^(0-2) - 0 - e^-2 = 0
    terms = gumbel_loss(t(0.0), beta=1.0, max_clip=2.0, rescale_only=t(3.0, 10.0))
    assert terms["z_max"].item() == pytest.approx(2.0)
    assert terms["loss"].item() == pytest.approx(0.0, abs=1e-7)
    # z = (1,), m = 2: e^-1 - e^-2 - e^-2, and the gradient e^-2 (e^1 - 1)
    diff = t(1.0).requires_grad_()
    terms = gumbel_loss(diff, beta=1.0, rescale_only=t(2.0, -5.0))
    assert terms["loss"].item() == pytest.approx(E**-1 - 2 * E**-2, rel=1e-6)
    terms["loss"].backward()
    assert diff.grad.item() == pytest.approx(E**-2 * (E - 1), rel=1e-6)


def test_fdvl_value_losses_match_the_official_code():
    diff = t(2.0, -1.0, -6.0)
    # chi-square: 0.5 max(x + x^2/4, 0) - 0.5 x = (1.5 - 1, 0 + 0.5, 1.5 + 3)
    chi = fdvl_value_loss(diff, "chi_square", temp=0.5)["loss"].item()
    assert chi == pytest.approx((0.5 + 0.5 + 4.5) / 3)
    # total variation: 0.5 max(x, 0) - 0.5 x = (0, 0.5, 3)
    tv = fdvl_value_loss(diff, "total_variation", temp=0.5)["loss"].item()
    assert tv == pytest.approx(3.5 / 3)
    # chi-square with lambda = 1 (the locomotion default): max(x + x^2/4, 0)
    assert fdvl_value_loss(diff, "chi_square", temp=1.0)["loss"].item() == pytest.approx(2.0)
    rkl = fdvl_value_loss(diff, "reverse_kl", temp=2.0, max_clip=5.0)["loss"]
    assert rkl.item() == pytest.approx(gumbel_loss(diff, 2.0, 5.0)["loss"].item())
    with pytest.raises(ValueError, match="unknown f-divergence"):
        fdvl_value_loss(diff, "kl", temp=1.0)


def test_fdvl_q_loss_follows_agent_critic_loss():
    q1, q2, target = t([0.0], [30.0]), t([0.0], [0.0]), t(1.0, 0.0)  # errors (-1, 30), (-1, 0)

    def q_loss(critic: dict, **kwargs) -> float:
        head = make_value_head(**vars(make_config(ValueHeadConfig, critic)))
        return dvl_q_loss(q1, q2, target, head, **kwargs)["loss"].item()

    # the default is critic.py's: Huber with delta 20, 0.5 x^2 inside, 20 (|x| - 10) outside
    assert FDVLConfig().critic.loss == "huber"
    assert q_loss({"loss": "huber"}) == pytest.approx((0.5 + 400.0) / 2 + (0.5 + 0.0) / 2)
    assert q_loss({"loss": "huber"}, huber_delta=1.0) == pytest.approx((0.5 + 29.5) / 2 + 0.25)
    # agent.critic.loss=mse: the squared error
    assert q_loss({"loss": "mse"}) == pytest.approx((1.0 + 900.0) / 2 + (1.0 + 0.0) / 2)


def test_recoil_q_loss():
    terms = recoil_q_loss(t(200.0, 198.0), t(0.0, 1.0), next_v=t(10.0, 5.0), mask=t(1.0, 0.0),
                          gamma=0.9)
    # expert: 0.5 (Q - 200)^2 = (0, 2); suboptimal targets: -2 + 0.9 * 10 = 7 and
    # -2 + 0.9 * (-200) = -182 after a termination
    assert terms["expert"].item() == pytest.approx(1.0)
    assert terms["suboptimal"].item() == pytest.approx((0.5 * 49 + 0.5 * 183**2) / 2)
    assert terms["loss"].item() == pytest.approx(1.0 + (24.5 + 0.5 * 183**2) / 2)
