"""DreamerV3 world-model parts on hand-built tensors: KL balancing with free bits, unimix,
straight-through samples, RSSM stepping against observe (episode starts included), encoders,
decoders and heads."""

import math

import pytest
import torch
import torch.nn.functional as F

from deeprl.nets.functional import symlog
from deeprl.worldmodels import (
    RSSM,
    ContinueHead,
    ConvDecoder,
    ConvEncoder,
    GRUModel,
    MultiDecoder,
    MultiEncoder,
    NormGRUCell,
    ValueMLPHead,
    kl_balance_loss,
    straight_through_sample,
    unimix,
    world_model_loss,
)

CORES = {
    "gru": {},
    "mamba2": {"n_layers": 1, "d_state": 8, "headdim": 16, "chunk_size": 4},
    "transformer": {"n_layers": 1, "n_heads": 4},
}


def small_rssm(sequence: str = "gru") -> RSSM:
    return RSSM(action_dim=3, embed_dim=6, deter=32, stoch=4, classes=4, hidden=16,
                sequence=sequence, **CORES[sequence])


# --- losses ---------------------------------------------------------------------------------------

def test_kl_balance_identical_distributions_give_free_bits():
    logits = torch.randn(2, 5, 4, 4)
    out = kl_balance_loss(logits, logits.clone())
    assert out["loss"].item() == pytest.approx(1.0 * (0.5 + 0.1), abs=1e-7)
    assert out["dyn"].item() == out["rep"].item() == 1.0
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_kl_balance_values_and_stop_gradients():
    # One latent with probs (1/2, 1/2) against (1/4, 3/4): KL = 0.5 log 2 + 0.5 log(2/3)
    # per latent, summed over 8 latents -> above the free bits.
    post = torch.log(torch.tensor([0.5, 0.5])).expand(1, 8, 2).clone().requires_grad_()
    prior = torch.log(torch.tensor([0.25, 0.75])).expand(1, 8, 2).clone().requires_grad_()
    kl = 8 * (0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0))
    assert kl > 1.0
    out = kl_balance_loss(post, prior, dyn_scale=1.0, rep_scale=0.0)
    assert out["dyn"].item() == pytest.approx(kl, rel=1e-6)
    out["loss"].backward()
    assert post.grad.abs().max() == 0 and prior.grad.abs().max() > 0  # dynamics trains the prior
    post.grad, prior.grad = None, None
    kl_balance_loss(post, prior, dyn_scale=0.0, rep_scale=1.0)["loss"].backward()
    assert prior.grad.abs().max() == 0 and post.grad.abs().max() > 0  # representation: posterior


def test_kl_below_free_bits_has_no_gradient():
    post = torch.zeros(3, 4, 4, requires_grad=True)
    prior = (0.01 * torch.randn(3, 4, 4)).requires_grad_()
    kl_balance_loss(post, prior)["loss"].backward()
    assert post.grad.abs().max() == 0 and prior.grad.abs().max() == 0


def test_unimix_mixes_one_percent_uniform():
    logits = torch.tensor([[0.0, -1e9, -1e9, -1e9]])  # all mass on class 0
    probs = unimix(logits, 0.01).exp()
    assert torch.allclose(probs, torch.tensor([[0.99 + 0.0025, 0.0025, 0.0025, 0.0025]]))
    probs = unimix(torch.randn(5, 32, 32), 0.01).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(5, 32))
    assert probs.min() >= 0.01 / 32 - 1e-7


def test_straight_through_forward_one_hot_backward_probs():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 5, requires_grad=True)
    sample = straight_through_sample(logits)
    assert torch.equal(sample.detach().sum(-1), torch.ones(6, 4))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(6, 4, 5)
    (sample * weights).sum().backward()
    probe = logits.detach().clone().requires_grad_()
    (torch.softmax(probe, -1) * weights).sum().backward()
    assert torch.allclose(logits.grad, probe.grad)
    mode = straight_through_sample(logits, sample=False).detach()
    assert torch.equal(mode.argmax(-1), logits.argmax(-1))


def test_world_model_loss_sums_terms():
    post, prior = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    recon = {"image": torch.full((2, 3), 2.0), "state": torch.full((2, 3), 0.5)}
    out = world_model_loss(recon, torch.full((2, 3), 1.0), torch.full((2, 3), 0.25), post, prior)
    assert out["loss"].item() == pytest.approx(2.0 + 0.5 + 1.0 + 0.25 + 0.6)
    assert set(out) == {"recon/image", "recon/state", "reward", "cont", "dyn", "rep", "kl",
                        "loss"}


# --- RSSM -----------------------------------------------------------------------------------------

def window(batch: int = 2, length: int = 7):
    torch.manual_seed(1)
    embed = torch.randn(batch, length, 6)
    action = F.one_hot(torch.randint(0, 3, (batch, length)), 3).float()
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 4] = True  # row 0 crosses an episode start mid-window
    return embed, action, is_first


@pytest.mark.parametrize("sequence", ["gru", "mamba2", "transformer"])
def test_obs_step_matches_observe_across_episode_start(sequence):
    torch.manual_seed(0)
    rssm = small_rssm(sequence)
    embed, action, is_first = window()
    torch.manual_seed(5)
    out = rssm.observe(embed, action, is_first)
    torch.manual_seed(5)
    state = rssm.initial(2)
    for t in range(embed.shape[1]):
        state, prior = rssm.obs_step(state, action[:, t], embed[:, t], is_first[:, t])
        torch.testing.assert_close(state.deter, out.deter[:, t])
        assert torch.equal(state.stoch, out.stoch[:, t])
        torch.testing.assert_close(state.logits, out.post_logits[:, t])
        torch.testing.assert_close(prior, out.prior_logits[:, t])
    # The episode starting at step 4 of row 0 ignores everything before it, its first action
    # included: the same as a fresh window starting there (the mode, so no sampling noise).
    full = rssm.observe(embed, action, is_first, sample=False)
    other_action = action[:1, 4:].clone()
    other_action[:, 0] = torch.randn(3)
    fresh = rssm.observe(embed[:1, 4:], other_action, is_first[:1, 4:], sample=False)
    torch.testing.assert_close(full.deter[:1, 4:], fresh.deter)
    torch.testing.assert_close(full.post_logits[:1, 4:], fresh.post_logits)


@pytest.mark.parametrize("sequence", ["gru", "mamba2", "transformer"])
def test_core_parallel_pass_reproduces_observe(sequence):
    """Given the posterior samples, the core's parallel forward over the window (resets
    included) gives the deterministic states of the step loop."""
    torch.manual_seed(0)
    rssm = small_rssm(sequence)
    embed, action, is_first = window()
    out = rssm.observe(embed, action, is_first)
    prev = torch.cat([torch.zeros_like(out.stoch[:, :1]), out.stoch[:, :-1]], 1)
    prev = torch.where(is_first[..., None, None], rssm.initial(1).stoch.unsqueeze(1), prev)
    keep = (~is_first).float().unsqueeze(-1)
    x = rssm.core_in(torch.cat([prev.flatten(-2), action * keep], -1))
    deter, _ = rssm.core(x, None, is_first)
    torch.testing.assert_close(deter, out.deter, rtol=1e-4, atol=1e-5)


def test_norm_gru_cell_equations_on_hand_built_weights():
    cell = NormGRUCell(input_size=2, hidden_size=2)
    with torch.no_grad():
        cell.linear.weight.copy_(torch.arange(24.0).view(6, 4) / 10 - 1)
        cell.norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0, 1.5, 1.0]))
        cell.norm.bias.copy_(torch.tensor([0.1, 0.0, -0.2, 0.3, 0.0, 0.5]))
    h, x = torch.tensor([[0.5, -0.25]]), torch.tensor([[1.0, 2.0]])
    z = torch.cat([h, x], -1) @ cell.linear.weight.T  # no bias
    mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
    z = (z - mean) / torch.sqrt(var + 1e-3) * cell.norm.weight + cell.norm.bias
    reset, cand, update = z[:, :2], z[:, 2:4], z[:, 4:]
    cand = torch.tanh(torch.sigmoid(reset) * cand)
    update = torch.sigmoid(update - 1)
    torch.testing.assert_close(cell(x, h), update * cand + (1 - update) * h)
    assert cell.linear.bias is None


def test_default_core_is_the_papers_norm_gru_from_a_learned_state():
    rssm = small_rssm()
    assert isinstance(rssm.core, GRUModel) and rssm.core.norm and rssm.core.n_layers == 1
    assert not hasattr(rssm.core, "gru")  # no nn.GRU inside
    with torch.no_grad():
        rssm.core.initial.normal_()
    start = rssm.initial(3)
    deter0 = torch.tanh(rssm.core.initial[-1])
    torch.testing.assert_close(start.deter, deter0.expand(3, -1))
    torch.testing.assert_close(start.core, deter0.expand(1, 3, -1))
    prior = rssm._logits(rssm.prior_net, deter0)
    assert torch.equal(start.stoch[0], F.one_hot(prior.argmax(-1), 4).float())  # the mode


@pytest.mark.parametrize("sequence", ["gru", "mamba2"])
def test_is_first_restarts_from_the_learned_initial_state(sequence):
    torch.manual_seed(0)
    rssm = small_rssm(sequence)
    learned = rssm.core.initial if sequence == "gru" else rssm.initial_deter
    with torch.no_grad():
        learned.normal_()
    embed, action, _ = window()
    # From any state, a step marked is_first equals a step from initial() with a zero action.
    stale = rssm.observe(embed, action, torch.zeros(2, 7, dtype=torch.bool), sample=False).last
    restarted, prior = rssm.obs_step(stale, action[:, 0], embed[:, 0],
                                     torch.ones(2, dtype=torch.bool), sample=False)
    fresh, fresh_prior = rssm.obs_step(rssm.initial(2), torch.zeros_like(action[:, 0]),
                                       embed[:, 0], torch.zeros(2, dtype=torch.bool),
                                       sample=False)
    torch.testing.assert_close(restarted.deter, fresh.deter)
    torch.testing.assert_close(restarted.logits, fresh.logits)
    torch.testing.assert_close(prior, fresh_prior)
    # The initial state is learned: the world-model loss reaches its parameter.
    out = rssm.observe(embed, action, torch.ones(2, 7, dtype=torch.bool))
    kl_balance_loss(out.post_logits, out.prior_logits, free_bits=0.0)["loss"].backward()
    assert learned.grad.abs().max() > 0


def test_observe_continues_from_last_state():
    torch.manual_seed(0)
    rssm = small_rssm()
    embed, action, is_first = window()
    whole = rssm.observe(embed, action, is_first, sample=False)
    head = rssm.observe(embed[:, :3], action[:, :3], is_first[:, :3], sample=False)
    tail = rssm.observe(embed[:, 3:], action[:, 3:], is_first[:, 3:], head.last, sample=False)
    torch.testing.assert_close(torch.cat([head.deter, tail.deter], 1), whole.deter)


def test_unknown_core_is_refused():
    with pytest.raises(ValueError, match="unknown sequence model 'lstm'"):
        RSSM(action_dim=3, embed_dim=6, sequence="lstm")


def test_imagine_step_uses_prior_and_gradients_flow():
    torch.manual_seed(0)
    rssm = small_rssm()
    embed, action, is_first = window()
    out = rssm.observe(embed, action, is_first)
    state = rssm.imagine_step(out.last, action[:, -1])
    assert state.deter.shape == (2, 32) and state.stoch.shape == (2, 4, 4)
    torch.testing.assert_close(state.logits, rssm._logits(rssm.prior_net, state.deter))
    assert rssm.features(state.deter, state.stoch).shape == (2, rssm.feature_dim)
    rssm.features(state.deter, state.stoch).sum().backward()
    assert rssm.post_net[-1].weight.grad.abs().max() > 0  # through the straight-through samples


# --- encoders, decoders, heads --------------------------------------------------------------------

def test_conv_encoder_decoder_shapes_and_scaling():
    enc = ConvEncoder(3, image_size=16, depth=4)
    assert [m.out_channels for m in enc.convs if isinstance(m, torch.nn.Conv2d)] == [4, 8]
    image = torch.randint(0, 256, (2, 5, 3, 16, 16), dtype=torch.uint8)
    assert enc(image).shape == (2, 5, enc.out_dim) and enc.out_dim == 8 * 4 * 4
    dec = ConvDecoder(10, 3, image_size=16, depth=4)
    pred = dec(torch.randn(2, 5, 10))
    assert pred.shape == (2, 5, 3, 16, 16)
    exact = image.float() / 255 - 0.5
    assert torch.equal(dec.loss(exact, image), torch.zeros(2, 5))


def test_multi_encoder_decoder_mixed_observations():
    shapes = {"image": (3, 8, 8), "state": (4,)}
    enc = MultiEncoder(shapes, depth=2, units=8, layers=1)
    obs = {"image": torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8),
           "state": torch.randn(2, 3, 4) * 100}
    assert enc(obs).shape == (2, 3, enc.out_dim) and enc.out_dim == 2 * 4 * 4 + 8
    dec = MultiDecoder(5, shapes, depth=2, units=8, layers=1)
    pred = dec(torch.randn(2, 3, 5))
    assert pred["image"].shape == (2, 3, 3, 8, 8) and pred["state"].shape == (2, 3, 4)
    pred["state"] = symlog(obs["state"])  # the vector decoder regresses symlog targets
    losses = dec.loss(pred, obs)
    assert torch.equal(losses["state"], torch.zeros(2, 3)) and losses["image"].shape == (2, 3)
    with pytest.raises(ValueError, match="images"):
        MultiEncoder({"grid": (2, 2)})
    with pytest.raises(ValueError, match="square"):
        MultiEncoder({"image": (3, 8, 16)})


def test_reward_head_two_hot_and_continue_head():
    head = ValueMLPHead(6, units=8, layers=1)
    assert head.head.num_outputs == 255 and head.head.symlog
    logits = head(torch.randn(4, 6))
    assert torch.equal(logits, torch.zeros(4, 255))  # zero-initialised output layer
    assert torch.allclose(head.value(logits), torch.zeros(4), atol=1e-5)
    target = torch.tensor([0.0, 1.0, -30.0, 1000.0])
    assert head.loss(logits, target).shape == (4,)
    cont = ContinueHead(6, units=8, layers=1)
    logit = cont(torch.randn(4, 6))
    assert logit.shape == (4,)
    torch.testing.assert_close(cont.loss(torch.zeros(2), torch.tensor([1.0, 0.0])),
                               torch.full((2,), math.log(2.0)))
