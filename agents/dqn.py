"""Deep Q-Networks and their common extensions.

DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning"): an
epsilon-greedy policy over Q(s, .), trained on replayed transitions towards a target network Qbar,

    y = R^(n) + discount * Qbar(s', a*),   a* = argmax_a Qbar(s', a)
    L = E[ w * loss_head(Q(s, a), y) ]

with R^(n) and discount (gamma^k, 0 at terminations) from the replay buffer (n-step returns,
Hessel et al. 2018, "Rainbow"). Options:

* ``double``: a* = argmax_a Q(s', a) with the online network (van Hasselt et al. 2016, "Deep
  Reinforcement Learning with Double Q-learning").
* ``dueling``: Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, "Dueling
  Network Architectures for Deep Reinforcement Learning"), applied to the logits of every bin
  for categorical heads (as Rainbow does).
* ``prioritized``: proportional prioritized replay (Schaul et al. 2016) with importance weights w,
  beta annealed linearly to 1, new priorities |y - Q(s, a)| (or the cross entropy for C51).
* ``critic.head``: how Q is represented (:mod:`deeprl.nets.heads`); ``c51`` fits the projected
  distributional target of Bellemare et al. 2017 (Algorithm 1) instead of a scalar y.

Defaults are CleanRL's ``dqn.py`` (classic control): lr 2.5e-4, 10k replay, batch 128, 10k random
steps, one update every 10 env steps, hard target update (tau 1) every 500 steps, epsilon 1 ->
0.05 over half the run, 120x84 ReLU MLP. CleanRL ``dqn_atari.py`` uses the Nature CNN torso
(``torso: nature_cnn``, picked automatically for uint8 image observations; torsos are shared
with the other agents in :mod:`deeprl.nets.torso`), lr 1e-4, 1M replay, batch 32, 80k random
steps, an update every 4 steps, target update every 1000, epsilon -> 0.01 over 10% of the run
(``configs/tuned/dqn_atari.yaml``). Evaluation is greedy unless ``eval_epsilon`` > 0 (Mnih et
al. 2015 evaluate with epsilon 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deeprl.agent import Agent
from deeprl.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import C51Head, ValueHead, ValueHeadConfig, make_value_head
from deeprl.nets.mlp import mlp
from deeprl.nets.schedules import linear_schedule
from deeprl.nets.torso import TORSOS, make_torso, resolve_torso


@dataclass
class DQNConfig:
    """DQN hyperparameters (``agent=dqn``); defaults are CleanRL ``dqn.py`` (Mnih et al. 2015):
    120x84 ReLU MLP, lr 2.5e-4, 10k replay, batch 128, 10k random steps, an update every 10
    steps, hard target update every 500, epsilon 1 -> 0.05 over half the run. Extensions are
    off by default."""

    num_envs: int = option(1, ge=1)
    buffer_size: int = option(10_000, ge=1)
    lr: float = option(2.5e-4, gt=0)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(1.0, gt=0, le=1)  # 1: hard target update
    target_network_frequency: int = option(500, ge=1)
    batch_size: int = option(128, ge=1)
    start_e: float = option(1.0, ge=0, le=1)
    end_e: float = option(0.05, ge=0, le=1)
    exploration_fraction: float = option(0.5, ge=0, le=1)  # of the run, epsilon start -> end
    learning_starts: int = option(10_000, ge=0)
    train_frequency: int = option(10, ge=1)
    n_step: int = option(1, ge=1)
    double: bool = False  # Double DQN (van Hasselt et al. 2016)
    dueling: bool = False  # dueling heads (Wang et al. 2016)
    prioritized: bool = False  # proportional prioritized replay (Schaul et al. 2016)
    alpha: float = option(0.6, ge=0)  # prioritized replay exponents (Schaul et al. 2016)
    beta: float = option(0.4, ge=0, le=1)  # annealed linearly to 1 over the run
    max_grad_norm: float | None = option(None, gt=0)
    # deeprl.nets.torso; auto: nature_cnn for uint8 (C, H, W) images, else mlp
    torso: str = option("auto", choices=TORSOS)
    hidden_sizes: list[int] = option([120, 84], ge=1)  # the mlp torso's layers
    frame_stack: int | None = option(None, ge=1)  # None: spec.metadata["frame_stack"] (1 if unset)
    # Probability of a random action in evaluation (act(deterministic=True)); Atari protocols
    # evaluate epsilon-greedily so a policy that never acts (e.g. never fires) cannot stall.
    eval_epsilon: float = option(0.0, ge=0, le=1)
    # The Q-network's value head.
    critic: ValueHeadConfig = field(default_factory=lambda: ValueHeadConfig(loss="mse"))


class QNetwork(nn.Module):
    """Torso -> (B, num_actions, num_outputs) logits, optionally with a dueling split."""

    def __init__(
        self, torso: nn.Module, features: int, num_actions: int, num_outputs: int, dueling: bool
    ) -> None:
        super().__init__()
        self.torso = torso
        self.num_actions, self.num_outputs, self.dueling = num_actions, num_outputs, dueling
        self.advantage = nn.Linear(features, num_actions * num_outputs)
        self.state_value = nn.Linear(features, num_outputs) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.torso(obs)
        logits = self.advantage(h).view(-1, self.num_actions, self.num_outputs)
        if self.state_value is not None:
            v = self.state_value(h).unsqueeze(1)
            logits = v + logits - logits.mean(1, keepdim=True)
        return logits


class DQN(Agent):
    """DQN with Double, dueling, n-step, prioritized and distributional options (discrete actions).

    Example::

        from deeprl.agents import DQN
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=1)
        agent = DQN(env.spec, env.num_envs, config=DQN.Config(double=True, dueling=True))
    """

    Config = DQNConfig
    name = "dqn"
    counters = ("env_steps", "grad_steps")

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: DQNConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        if not spec.discrete:
            raise UserError(
                f"agent=dqn needs discrete actions but {spec.id} has continuous ones; "
                "use agent=sac or agent=ppo"
            )
        self.config = cfg = config or DQNConfig()
        self.total_steps = total_steps or 500_000  # CleanRL's default budget
        self.head: ValueHead = make_value_head(**vars(cfg.critic))
        self.torso_name = resolve_torso(cfg.torso, spec)
        self.q_network = self._make_q_network()
        self.target_network = self._make_q_network()
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.to(self.device)
        self.optimizers["q"] = torch.optim.Adam(
            self.q_network.parameters(), lr=cfg.lr, fused=True
        )

    def _make_q_network(self) -> QNetwork:
        cfg = self.config
        torso, features = make_torso(self.torso_name, self.spec.observation_space)
        if self.torso_name == "mlp":
            # The flat observation goes through hidden_sizes, the last one being the features.
            hidden = mlp(features, cfg.hidden_sizes[:-1], cfg.hidden_sizes[-1], activation="relu",
                         out_gain=2**0.5)
            torso, features = nn.Sequential(torso, hidden, nn.ReLU()), cfg.hidden_sizes[-1]
        n = self.spec.action_space.n
        return QNetwork(torso, features, n, self.head.num_outputs, cfg.dueling)

    # ---- acting -------------------------------------------------------------------------------
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) (B, num_actions)."""
        return self.head.value(self.q_network(obs))

    def epsilon(self, step: int) -> float:
        cfg = self.config
        duration = cfg.exploration_fraction * self.total_steps
        return linear_schedule(cfg.start_e, cfg.end_e, duration, step)

    def act(self, obs, state=None, is_first=None, deterministic=False):
        greedy = self.q_values(obs).argmax(-1)
        if deterministic and not self.config.eval_epsilon:
            return greedy, {}, state
        n = obs.shape[0]
        epsilon = self.config.eval_epsilon if deterministic else self.epsilon(self.env_steps)
        explore = torch.rand(n, device=obs.device) < epsilon
        random_action = torch.randint(self.spec.action_space.n, (n,), device=obs.device)
        return torch.where(explore, random_action, greedy), {}, state

    # ---- learning -----------------------------------------------------------------------------
    def make_buffer(self) -> ReplayBuffer:
        cfg = self.config
        frame_stack = cfg.frame_stack or self.spec.metadata.get("frame_stack", 1)
        args = (cfg.buffer_size, self.num_envs, self.device, cfg.n_step, cfg.gamma, frame_stack)
        if cfg.prioritized:
            return PrioritizedReplayBuffer(*args, alpha=cfg.alpha, beta=cfg.beta)
        return ReplayBuffer(*args)

    def update(self, buffer: ReplayBuffer, step: int) -> dict[str, float | torch.Tensor] | None:
        cfg = self.config
        previous, self.env_steps = self.env_steps, step
        if step <= cfg.learning_starts or len(buffer) < cfg.batch_size:
            return None
        if isinstance(buffer, PrioritizedReplayBuffer):
            buffer.beta = linear_schedule(cfg.beta, 1.0, self.total_steps, step)
        due = (step - cfg.learning_starts) // cfg.train_frequency
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(due - self.grad_steps):
            metrics = self.gradient_step(buffer)
        if step // cfg.target_network_frequency > previous // cfg.target_network_frequency:
            polyak_update(self.target_network, self.q_network, cfg.tau)
        if not metrics:
            return None
        return {**metrics, "epsilon": self.epsilon(step)}

    def td_loss(self, data: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss (B,) and the new priorities (B,) for a replayed batch."""
        logits = self.q_network(data["obs"])
        batch = torch.arange(logits.shape[0], device=logits.device)
        chosen = logits[batch, data["action"].long()]  # (B, num_outputs)
        with torch.no_grad():
            next_target_logits = self.target_network(data["next_obs"])
            next_target = self.head.value(next_target_logits)
            # a*: argmax of the online network (Double DQN) or of the target network.
            selector = self.q_values(data["next_obs"]) if self.config.double else next_target
            best = selector.argmax(-1)
            if isinstance(self.head, C51Head):
                target_probs = self.head.projected_target(
                    next_target_logits[batch, best], data["reward"], data["discount"]
                )
            else:
                target = data["reward"] + data["discount"] * next_target[batch, best]
        if isinstance(self.head, C51Head):
            loss = self.head.cross_entropy(chosen, target_probs)
            return loss, loss.detach()
        loss = self.head.loss(chosen, target)
        return loss, (self.head.value(chosen.detach()) - target).abs()

    def gradient_step(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        cfg = self.config
        data = buffer.sample(cfg.batch_size)
        loss, priorities = self.td_loss(data)
        if "weight" in data:
            loss = loss * data["weight"]
        loss = loss.mean()
        self.optimizers["q"].zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_network.parameters(), cfg.max_grad_norm)
        self.optimizers["q"].step()
        if isinstance(buffer, PrioritizedReplayBuffer):
            buffer.update_priorities(data["index"], priorities)
        self.grad_steps += 1
        return {"td_loss": loss.detach()}
