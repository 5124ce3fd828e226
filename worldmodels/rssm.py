"""DreamerV3's recurrent state-space model (RSSM) over any ``SequenceModel`` core, and its losses.

Hafner et al. 2023, "Mastering Diverse Domains through World Models" (DreamerV3; settings of the
2023 release of its configs). With h the deterministic and z the stochastic state:

    sequence model        h_t = f(h_{t-1}, z_{t-1}, a_{t-1})
    encoder (posterior)   z_t ~ q(z_t | h_t, x_t)
    dynamics (prior)      z^_t ~ p(z^_t | h_t)

z is 32 categorical latents of 32 classes, sampled as one-hot vectors with straight-through
gradients (Bengio et al. 2013); both distributions mix in 1% uniform probability ("unimix") so
no class has probability 0 and the KL stays finite. f is a ``deeprl.worldmodels.SequenceModel``
(``gru``: the paper's recurrence, ``mamba2``, ``transformer``) stepped on
x_t = SiLU(LayerNorm(W [z_{t-1}, a_{t-1}])), with h_t its output. The ``gru`` core is the
paper's: one ``NormGRUCell`` (LayerNorm inside the gates, update gate biased by -1).

Initial state (the configs' ``initial: learned``): h_0 = tanh(w) of a parameter w initialised to
zeros, z_0 the mode of the prior p(z | h_0) (one-hot argmax with straight-through gradients, so
w is trained through both). ``initial(n)`` returns it, and every step where ``is_first`` starts
from it: z_{t-1} is replaced by z_0, a_{t-1} by zeros, and the core restarts from its
``initial_state``. For ``gru`` the core's state is h itself, so w is the GRU's learned initial
state (``GRUModel(learned_initial=True)``); the other cores restart from their own (zero) state
and w only gives h_0 and z_0.

``observe`` loops over time with ``SequenceModel.step`` even for cores with a parallel
``forward``: the core's input at t + 1 contains the posterior sample z_t, which needs h_t and the
observation at t, so no core can take a whole window at once. The loop is ``obs_step`` applied L
times (same latents for the same sampling noise) with the work that does not feed the recurrence
taken out of it: the observation half W_x x_t of the posterior MLP's first layer
(``project_embed``) runs on the whole window before the loop, and the prior p(z_t | h_t) on all
h_t after it (as sheeprl's ``project_observations`` / ``prior_logits``).

Losses (section "World model learning"): prediction losses on decoder, reward and continue, and
the KL balancing of the dynamics and representation losses with free bits,

    L_dyn = max(1, KL[sg(q(z_t | h_t, x_t)) || p(z_t | h_t)])
    L_rep = max(1, KL[q(z_t | h_t, x_t) || sg(p(z_t | h_t))])
    L = L_pred + 0.5 L_dyn + 0.1 L_rep,

with the KL summed over the 32 latents before the clip, and sg the stop-gradient.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeprl.nets.distributions import categorical_sample
from deeprl.worldmodels.dreamer_parts import dreamer_mlp
from deeprl.worldmodels.sequence import GRUModel, make_sequence_model

__all__ = [
    "RSSM",
    "Observed",
    "RSSMState",
    "categorical_kl",
    "kl_balance_loss",
    "straight_through_sample",
    "unimix",
    "world_model_loss",
]


def unimix(logits: Tensor, mix: float = 0.01) -> Tensor:
    """Log-probabilities (..., K) of (1 - mix) softmax(logits) + mix / K over the last dim."""
    probs = torch.softmax(logits, -1)
    return torch.log((1.0 - mix) * probs + mix / logits.shape[-1])


def straight_through_sample(logits: Tensor, sample: bool = True) -> Tensor:
    """One-hot (..., K) drawn from softmax(logits) (its argmax when ``sample`` is False) whose
    gradient is that of the probabilities: one_hot + (probs - sg(probs))."""
    probs = torch.softmax(logits, -1)
    index = categorical_sample(logits) if sample else logits.argmax(-1)
    one_hot = F.one_hot(index, logits.shape[-1]).to(probs.dtype)
    # Bracketed so the forward value is exactly one-hot (probs - sg(probs) is exactly 0).
    return one_hot + (probs - probs.detach())


def categorical_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL[p || q] of categoricals (..., S, K), summed over the S latents -> (...)."""
    p_log, q_log = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def kl_balance_loss(post_logits: Tensor, prior_logits: Tensor, dyn_scale: float = 0.5,
                    rep_scale: float = 0.1, free_bits: float = 1.0) -> dict[str, Tensor]:
    """DreamerV3's KL balancing with free bits over (..., S, K) logits.

    Returns the weighted ``loss`` (scalar, mean over the leading dims), the clipped ``dyn``
    (trains the prior only) and ``rep`` (trains the posterior only) means, and the unclipped
    ``kl`` mean (for logging, no gradient).
    """
    dyn = categorical_kl(post_logits.detach(), prior_logits)
    rep = categorical_kl(post_logits, prior_logits.detach())
    # Below free_bits the clip stops the gradient: the model is not pushed to collapse the KL.
    dyn_clipped, rep_clipped = dyn.clamp(min=free_bits), rep.clamp(min=free_bits)
    return {
        "loss": (dyn_scale * dyn_clipped + rep_scale * rep_clipped).mean(),
        "dyn": dyn_clipped.mean(),
        "rep": rep_clipped.mean(),
        "kl": dyn.detach().mean(),
    }


def world_model_loss(recon: dict[str, Tensor], reward: Tensor, cont: Tensor,
                     post_logits: Tensor, prior_logits: Tensor, dyn_scale: float = 0.5,
                     rep_scale: float = 0.1, free_bits: float = 1.0) -> dict[str, Tensor]:
    """Total world-model loss and its named terms (scalars).

    recon: {key: per-step decoder loss (B, L)}; reward, cont: per-step losses (B, L) of the
    reward and continue heads; post_logits, prior_logits: (B, L, S, K). The prediction terms are
    summed per step, then everything is averaged over (B, L), as the paper.
    """
    kl = kl_balance_loss(post_logits, prior_logits, dyn_scale, rep_scale, free_bits)
    pred = reward + cont + sum(recon.values())
    terms = {f"recon/{k}": v.mean() for k, v in recon.items()}
    terms.update(reward=reward.mean(), cont=cont.mean(), dyn=kl["dyn"], rep=kl["rep"],
                 kl=kl["kl"], loss=pred.mean() + kl["loss"])
    return terms


class RSSMState(NamedTuple):
    """RSSM state after a step: ``deter`` h_t (B, deter), ``stoch`` one-hot z_t (B, S, K),
    ``logits`` the unimixed log-probabilities z_t was drawn from (B, S, K), ``core`` the
    sequence model's state."""

    deter: Tensor
    stoch: Tensor
    logits: Tensor
    core: Any


class Observed(NamedTuple):
    """``RSSM.observe`` over a window: ``deter`` (B, L, deter), posterior ``stoch`` (B, L, S, K),
    ``post_logits`` and ``prior_logits`` (B, L, S, K) (unimixed), the ``last`` state (to
    continue from or to start imagination) and ``cores``, the core's state after each of the L
    steps (to start imagination from every step)."""

    deter: Tensor
    stoch: Tensor
    post_logits: Tensor
    prior_logits: Tensor
    last: RSSMState
    cores: tuple[Any, ...] = ()


class RSSM(nn.Module):
    """DreamerV3's RSSM with a ``SequenceModel`` core of width ``deter``.

    Args:
        action_dim: A, actions are one-hot (discrete) or vectors (continuous).
        embed_dim: E, the encoder's embedding size.
        deter: width of h (the core's d_model); 512 for size S.
        stoch, classes: S categorical latents of K classes (32 x 32).
        hidden: width of the prior/posterior MLPs; 512 for size S.
        sequence: ``make_sequence_model`` kind; ``sequence_kwargs`` go to it (``gru`` defaults
            to the paper's: one ``NormGRUCell`` layer from a learned initial state).
        unimix_ratio: uniform mixture in both distributions (0.01).

    ``action`` at step t is a_{t-1}, the action before observation t (the replay layout of the
    paper's code); where ``is_first`` the step starts from the learned initial state instead
    (see the module docstring).
    """

    def __init__(self, action_dim: int, embed_dim: int, deter: int = 512, stoch: int = 32,
                 classes: int = 32, hidden: int = 512, sequence: str = "gru",
                 unimix_ratio: float = 0.01, **sequence_kwargs: Any) -> None:
        super().__init__()
        self.stoch, self.classes, self.deter = stoch, classes, deter
        self.unimix_ratio = unimix_ratio
        if sequence == "gru":
            sequence_kwargs = {"n_layers": 1, "norm": True, "learned_initial": True,
                               **sequence_kwargs}
        self.core = make_sequence_model(sequence, d_model=deter, **sequence_kwargs)
        # A GRU's output is its state: h_0 is the last layer of its (learned) initial state.
        self.initial_deter = (None if isinstance(self.core, GRUModel)
                              else nn.Parameter(torch.zeros(deter)))
        self.core_in = nn.Sequential(nn.Linear(stoch * classes + action_dim, deter, bias=False),
                                     nn.LayerNorm(deter, eps=1e-3), nn.SiLU())
        self.prior_net = dreamer_mlp(deter, hidden, 1, stoch * classes)
        self.post_net = dreamer_mlp(deter + embed_dim, hidden, 1, stoch * classes)

    @property
    def feature_dim(self) -> int:
        """Size of ``features``: deter + S * K."""
        return self.deter + self.stoch * self.classes

    def features(self, deter: Tensor, stoch: Tensor) -> Tensor:
        """[h, flatten(z)] (..., deter + S * K), the input of decoder, heads and actor-critic."""
        return torch.cat([deter, stoch.flatten(-2)], -1)

    def _initial_latent(self, batch: int, core: Any = None) -> tuple[Tensor, Tensor, Tensor]:
        """h_0 (batch, deter), the prior's logits at h_0 and their mode z_0 (batch, S, K)."""
        if self.initial_deter is None:
            core = self.core.initial_state(batch) if core is None else core
            deter = core[-1]
        else:
            deter = torch.tanh(self.initial_deter).expand(batch, -1)
        logits = self._logits(self.prior_net, deter)
        return deter, logits, straight_through_sample(logits, sample=False)

    def initial(self, batch: int) -> RSSMState:
        """The learned initial state (h_0, z_0, the prior's logits at h_0) and the core's
        initial state, for ``batch`` rows."""
        core = self.core.initial_state(batch)
        deter, logits, stoch = self._initial_latent(batch, core)
        return RSSMState(deter, stoch, logits, core)

    def _logits(self, net: nn.Module, x: Tensor) -> Tensor:
        logits = net(x).unflatten(-1, (self.stoch, self.classes))
        return unimix(logits, self.unimix_ratio)

    def _advance(self, state: RSSMState, action: Tensor,
                 is_first: Tensor | None) -> tuple[Tensor, Any]:
        """h_t and the core state from z_{t-1}, a_{t-1}; rows where is_first start from z_0,
        a zero action and the core's initial state."""
        stoch = state.stoch
        if is_first is not None:
            first = is_first.view(-1, 1, 1)
            stoch = torch.where(first, self._initial_latent(1)[2], stoch)
            action = action * (~first[:, 0]).to(action.dtype)
        x = self.core_in(torch.cat([stoch.flatten(-2), action], -1))
        return self.core.step(x, state.core, is_first)

    def imagine_step(self, state: RSSMState, action: Tensor, sample: bool = True) -> RSSMState:
        """Prior step: state at t - 1 (B, ...), action a_{t-1} (B, A) -> state with z^_t drawn
        from p(z_t | h_t)."""
        deter, core = self._advance(state, action, None)
        logits = self._logits(self.prior_net, deter)
        return RSSMState(deter, straight_through_sample(logits, sample), logits, core)

    def project_embed(self, embed: Tensor) -> Tensor:
        """W_x x: the observation half of the posterior MLP's first layer on embeddings
        (..., E) -> (..., hidden); independent of h, so a window's runs as one matmul."""
        return F.linear(embed, self.post_net[0].weight[:, self.deter:])

    def posterior_step(self, state: RSSMState, action: Tensor, projected: Tensor,
                       is_first: Tensor | None, sample: bool = True) -> RSSMState:
        """``obs_step`` on a ``project_embed`` output (B, hidden), without the prior."""
        deter, core = self._advance(state, action, is_first)
        x = F.linear(deter, self.post_net[0].weight[:, : self.deter]) + projected
        for layer in islice(self.post_net, 1, None):
            x = layer(x)
        logits = unimix(x.unflatten(-1, (self.stoch, self.classes)), self.unimix_ratio)
        return RSSMState(deter, straight_through_sample(logits, sample), logits, core)

    def prior_logits(self, deter: Tensor) -> Tensor:
        """Unimixed log-probabilities of p(z_t | h_t): deter (..., deter) -> (..., S, K)."""
        return self._logits(self.prior_net, deter)

    def obs_step(self, state: RSSMState, action: Tensor, embed: Tensor, is_first: Tensor,
                 sample: bool = True) -> tuple[RSSMState, Tensor]:
        """Posterior step: state at t - 1, action a_{t-1} (B, A), embed of x_t (B, E), is_first
        (B,) bool -> (state with z_t drawn from q(z_t | h_t, x_t), prior logits (B, S, K))."""
        state = self.posterior_step(state, action, self.project_embed(embed), is_first, sample)
        return state, self.prior_logits(state.deter)

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor,
                state: RSSMState | None = None, sample: bool = True) -> Observed:
        """Posterior pass over a window: embed (B, L, E), action (B, L, A) with action[:, t] =
        a_{t-1}, is_first (B, L) bool, from ``state`` (None: ``initial``). A step loop (see
        the module docstring): equals ``obs_step`` L times with the same noise."""
        if state is None:
            state = self.initial(embed.shape[0])
        projected = self.project_embed(embed)
        steps = []
        for t in range(embed.shape[1]):
            state = self.posterior_step(state, action[:, t], projected[:, t], is_first[:, t],
                                        sample)
            steps.append(state)
        deter = torch.stack([s.deter for s in steps], 1)
        return Observed(deter, torch.stack([s.stoch for s in steps], 1),
                        torch.stack([s.logits for s in steps], 1), self.prior_logits(deter),
                        state, tuple(s.core for s in steps))
