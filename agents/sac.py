"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor"; automatic entropy tuning from Haarnoja et al.
2018, "Soft Actor-Critic Algorithms and Applications").

With twin critics Q_1, Q_2, their Polyak-averaged targets Qbar_1, Qbar_2, the squashed Gaussian
policy a = tanh(u) (scaled to the action box), u ~ N(mu(s), sigma(s)) and temperature alpha:

    y       = R^(n) + discount * (min_i Qbar_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
    L_Q     = sum_i E[ loss_head(Q_i(s, a), y) ]
    L_pi    = E[ alpha log pi(a~|s) - min_i Q_i(s, a~) ],  a~ ~ pi(.|s) (reparameterised)
    L_alpha = E[ -alpha (log pi(a~|s) + Hbar) ],  target entropy Hbar = -|A|
    log pi(a|s) = log N(u; mu, sigma) - sum_j log(1 - tanh(u_j)^2)   (tanh squashing, Appendix C)

``R^(n)`` and ``discount`` (gamma^k, 0 at terminations) come from the replay buffer
(:mod:`deeprl.buffers.replay`), so ``n_step > 1`` gives n-step targets; the critic's output and
loss come from its value head (:mod:`deeprl.nets.heads`: ``scalar`` is SAC's squared error).

Hyperparameters and details follow CleanRL's ``sac_continuous_action.py``: 256x256 ReLU MLPs,
Adam with lr 1e-3 (critics, temperature) and 3e-4 (actor), batch 256, tau 0.005, gamma 0.99,
5000 random steps before learning, actor and temperature updated ``policy_frequency`` = 2 times
every second gradient step (delayed as in TD3), log-std squashed into [-5, 2].

Pixel observations (uint8 (C, H, W); ``torso: auto`` or ``drq``) go through the encoder of SAC-AE
and DrQ (Yarats et al. 2021, "Improving Sample Efficiency in Model-Free Reinforcement Learning
from Images"; Kostrikov et al. 2021, "Image Augmentation Is All You Need"), with the same weight
sharing: four 3x3 convolutions on frames scaled to [0, 1] whose output phi(s) feeds both critics
through one Linear -> LayerNorm -> tanh projection, and the actor through a projection of its
own. Only L_Q trains the convolutions: the actor reads phi(s) detached, so L_pi and L_alpha train
its projection and MLP. The target critics have their own copy of the encoder and projection,
Polyak-averaged with the Q-networks. ``image_pad`` > 0 replays randomly shifted frames (DrQ's
augmentation, pad 4: a fresh shift of s and of s' in every batch). Vector observations are
flattened (phi = identity), which is exactly the state-based SAC above.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from deeprl.agent import Agent
from deeprl.buffers.replay import ReplayBuffer
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.nets.cnn import random_shift
from deeprl.nets.critics import QNetwork
from deeprl.nets.distributions import squashed_gaussian, squashed_gaussian_median
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig, make_value_head
from deeprl.nets.mlp import mlp
from deeprl.nets.torso import TORSOS, is_pixels, make_encoder, make_projection, resolve_torso

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class SACConfig:
    """SAC hyperparameters (``agent=sac``); defaults are CleanRL ``sac_continuous_action.py``
    (Haarnoja et al. 2018, automatic entropy tuning): 256x256 ReLU MLPs, lr 1e-3 (critics,
    temperature) / 3e-4 (actor), batch 256, tau 0.005, 5000 random steps, delayed actor updates
    (policy_frequency 2)."""

    num_envs: int = option(1, ge=1)
    buffer_size: int = option(1_000_000, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)  # Polyak averaging rate of the target critics
    batch_size: int = option(256, ge=1)
    learning_starts: int = option(5000, ge=0)  # env steps of uniform random actions first
    policy_lr: float = option(3e-4, gt=0)
    q_lr: float = option(1e-3, gt=0)  # also the temperature's learning rate
    policy_frequency: int = option(2, ge=1)  # gradient steps per (delayed) actor update
    target_network_frequency: int = option(1, ge=1)
    utd_ratio: float = option(1.0, gt=0)  # gradient steps per env step
    n_step: int = option(1, ge=1)
    alpha: float = option(0.2, gt=0)  # initial (or fixed, without autotune) temperature
    autotune: bool = True
    # deeprl.nets.torso; auto: drq (the SAC-AE / DrQ encoder) for uint8 (C, H, W) images, else mlp
    torso: str = option("auto", choices=TORSOS)
    hidden_sizes: list[int] = option([256, 256], ge=1)  # the actor's and critics' MLP layers
    # Pixel observations: random-shift augmentation by up to this many pixels (DrQ: 4; 0: off).
    image_pad: int = option(0, ge=0)
    frame_stack: int | None = option(None, ge=1)  # None: spec.metadata["frame_stack"] (1 if unset)
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)  # the critics' value head


def soft_q_target(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
) -> torch.Tensor:
    """y = r + discount * (min(Qbar_1, Qbar_2)(s', a') - alpha log pi(a'|s')); all (B,)."""
    return rewards + discounts * (torch.minimum(next_q1, next_q2) - alpha * next_log_prob)


def sac_actor_loss(
    log_prob: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor, alpha: torch.Tensor | float
) -> torch.Tensor:
    """E[alpha log pi(a~|s) - min(Q_1, Q_2)(s, a~)] over (B,) inputs."""
    return (alpha * log_prob - torch.minimum(q1, q2)).mean()


def sac_alpha_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """E[-alpha (log pi + target_entropy)] with log pi detached (CleanRL's form)."""
    return (-log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


class SAC(Agent):
    """SAC for continuous (Box) actions.

    Example::

        from deeprl.agents import SAC
        from deeprl.envs import make_env
        env = make_env("pendulum", num_envs=1)
        agent = SAC(env.spec, env.num_envs)
    """

    Config = SACConfig
    name = "sac"
    counters = ("env_steps", "grad_steps")

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: SACConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        if spec.discrete:
            raise UserError(
                f"agent=sac needs continuous actions but {spec.id} has discrete ones; "
                "use agent=dqn or agent=ppo"
            )
        self.config = cfg = config or SACConfig()
        self.head = make_value_head(**vars(cfg.critic))
        torso = resolve_torso(cfg.torso, spec, pixel_default="drq")
        self.augment = cfg.image_pad > 0 and is_pixels(spec.observation_space)
        # phi(s), trained by the critics only; each reader projects it (identities for mlp).
        self.encoder, width = make_encoder(torso, spec.observation_space)
        self.critic_projection, obs_dim = make_projection(torso, width)
        actor_projection, _ = make_projection(torso, width)
        act_dim = math.prod(spec.action_space.shape)
        self.actor = mlp(obs_dim, cfg.hidden_sizes, 2 * act_dim, activation="relu")
        if not isinstance(actor_projection, nn.Identity):
            self.actor = nn.Sequential(actor_projection, self.actor)
        self.qf1 = QNetwork(obs_dim, act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.qf2 = QNetwork(obs_dim, act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.qf1_target = QNetwork(obs_dim, act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.qf2_target = QNetwork(obs_dim, act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.qf1_target.load_state_dict(self.qf1.state_dict())
        self.qf2_target.load_state_dict(self.qf2.state_dict())
        self.encoder_target = copy.deepcopy(self.encoder)
        self.critic_projection_target = copy.deepcopy(self.critic_projection)
        critic = [self.encoder, self.critic_projection, self.qf1, self.qf2]
        targets = [self.encoder_target, self.critic_projection_target, self.qf1_target,
                   self.qf2_target]
        # What Polyak averaging updates: the pairs with weights.
        self.target_pairs = [(t, s) for t, s in zip(targets, critic, strict=True)
                             if any(True for _ in s.parameters())]
        low, high = spec.action_space.bounds()
        self.register_buffer("action_scale", ((high - low) / 2).flatten())
        self.register_buffer("action_bias", ((high + low) / 2).flatten())
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.alpha)))
        self.target_entropy = -float(act_dim)
        self.to(self.device)
        q_params = [p for module in critic for p in module.parameters()]
        self.optimizers["q"] = torch.optim.Adam(q_params, lr=cfg.q_lr, fused=True)
        self.optimizers["actor"] = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.policy_lr, fused=True
        )
        if cfg.autotune:
            self.optimizers["alpha"] = torch.optim.Adam(
                [self.log_alpha], lr=cfg.q_lr, fused=True
            )

    # ---- acting -------------------------------------------------------------------------------
    def policy(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled action (B, act_dim), its log-prob (B,), and the deterministic action, from the
        encoder's output phi(s)."""
        mean, raw = self.actor(features).chunk(2, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1)
        action, log_prob = squashed_gaussian(mean, log_std, self.action_scale, self.action_bias)
        return action, log_prob, squashed_gaussian_median(mean, self.action_scale, self.action_bias)

    def act(self, obs, state=None, is_first=None, deterministic=False):
        sampled, _, mean_action = self.policy(self.encoder(obs))
        if deterministic:
            action = mean_action
        else:
            # Uniform random actions until learning starts (CleanRL).
            uniform = torch.rand_like(sampled) * 2 - 1
            random_action = uniform * self.action_scale + self.action_bias
            action = random_action if self.env_steps < self.config.learning_starts else sampled
        return action.view(-1, *self.spec.action_space.shape), {}, state

    # ---- learning -----------------------------------------------------------------------------
    def make_buffer(self) -> ReplayBuffer:
        cfg = self.config
        frame_stack = cfg.frame_stack or self.spec.metadata.get("frame_stack", 1)
        # Pixels: the observation-only layout stores each frame once, half the memory.
        return ReplayBuffer(
            cfg.buffer_size, self.num_envs, self.device, cfg.n_step, cfg.gamma, frame_stack,
            store_next_obs=not is_pixels(self.spec.observation_space),
        )

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def update(self, buffer: ReplayBuffer, step: int) -> dict[str, torch.Tensor] | None:
        cfg = self.config
        self.env_steps = step
        due = int(max(0, step - cfg.learning_starts) * cfg.utd_ratio)
        if due <= self.grad_steps or len(buffer) < cfg.batch_size:
            return None
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(due - self.grad_steps):
            metrics.update(self.gradient_step(buffer))
        return metrics

    def gradient_step(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """One critic update (and, every ``policy_frequency`` steps, actor/temperature updates)."""
        cfg = self.config
        data = buffer.sample(cfg.batch_size)
        obs, next_obs = data["obs"], data["next_obs"]
        if self.augment:
            obs, next_obs = random_shift(obs, cfg.image_pad), random_shift(next_obs, cfg.image_pad)
        actions = data["action"].flatten(1)
        with torch.no_grad():
            next_action, next_log_prob, _ = self.policy(self.encoder(next_obs))
            next_features = self.critic_projection_target(self.encoder_target(next_obs))
            target = soft_q_target(
                data["reward"],
                data["discount"],
                self.head.value(self.qf1_target(next_features, next_action)),
                self.head.value(self.qf2_target(next_features, next_action)),
                next_log_prob,
                self.alpha,
            )
        features = self.critic_projection(self.encoder(obs))
        q1_logits, q2_logits = self.qf1(features, actions), self.qf2(features, actions)
        q_loss = self.head.loss(q1_logits, target).mean() + self.head.loss(q2_logits, target).mean()
        self.optimizers["q"].zero_grad(set_to_none=True)
        q_loss.backward()
        self.optimizers["q"].step()
        self.grad_steps += 1
        stats = {
            "q_loss": q_loss.detach() / 2,
            "q1_value": self.head.value(q1_logits.detach()).mean(),
            "alpha": self.alpha,
        }

        if self.grad_steps % cfg.policy_frequency == 0:
            # phi(s) from the encoder just updated, detached: the actor does not train it.
            with torch.no_grad():
                encoded = self.encoder(obs)
                features = self.critic_projection(encoded)
            for _ in range(cfg.policy_frequency):
                action, log_prob, _ = self.policy(encoded)
                q1 = self.head.value(self.qf1(features, action))
                q2 = self.head.value(self.qf2(features, action))
                actor_loss = sac_actor_loss(log_prob, q1, q2, self.alpha)
                self.optimizers["actor"].zero_grad(set_to_none=True)
                actor_loss.backward()
                self.optimizers["actor"].step()
                stats["actor_loss"] = actor_loss.detach()
                if cfg.autotune:
                    alpha_loss = sac_alpha_loss(self.log_alpha, log_prob, self.target_entropy)
                    self.optimizers["alpha"].zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.optimizers["alpha"].step()
                    stats["alpha_loss"] = alpha_loss.detach()
        if self.grad_steps % cfg.target_network_frequency == 0:
            for target_net, net in self.target_pairs:
                polyak_update(target_net, net, cfg.tau)
        return stats
