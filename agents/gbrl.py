"""Gradient-boosted-tree actor-critics: PPO and A2C on GBRL (Fuhrer et al., ICML 2025, "Gradient
Boosting Reinforcement Learning").

The policy parameters theta(s) (logits, or the Gaussian mean) and the value V(s) are the outputs
of an ensemble of decision trees grown by functional gradient descent (Friedman 2001):

    f_K(s) = b + sum_{k=1..K} eta_k h_k(s),   f = [theta, V]                  (GBRL, Sec. 3)

Each boosting step differentiates the usual actor-critic loss L with respect to the outputs f(s_i)
of one minibatch (torch autograd on a leaf tensor), and fits one new tree h_{K+1} to the
per-sample gradients g_i = n dL/df(s_i): splits maximise the cosine (or L2) score between the
gradients and the leaf means, the leaves hold the mean gradient, and the tree enters with
step -eta (separate learning rates for the policy and value outputs). With ``tree.shared`` one
ensemble outputs both theta and V (the tree structure is shared, the leaf values are not);
otherwise the actor and critic are two ensembles. Continuous actions keep a state-independent
log-std as a torch parameter trained by Adam.

The losses are PPO's (:func:`deeprl.agents.ppo.ppo_loss`, clipped surrogate, eq. 7 of Schulman
et al. 2017) over GAE(lambda) advantages from the shared rollout buffer. A2C (Mnih et al. 2016,
"Asynchronous Methods for Deep Reinforcement Learning") is the same loss taken once over the
whole rollout: there the ratio pi/pi_old is 1, so grad L_clip = -E[A_t grad log pi(a_t|s_t)],
the policy gradient, with L_V = 1/2 E[(V - R_t)^2].

Defaults follow the GBRL paper's setup as released (max depth 4, oblivious trees, 250 bins,
cosine split score, SGD policy lr 0.05 / value lr 0.005, 16 envs); rollout length, epochs and
minibatches are this library's choice. The trees live in the ``gbrl`` package
(``pip install "deeprl[gbrl]"``, CPU), imported only when an agent is built; they travel in state
dicts, checkpoints and agent files as one uint8 tensor of gbrl's own save format.
At the end of a run, :meth:`GBRLPPO.explain` writes SHAP attributions (Lundberg & Lee 2017, via
Linear TreeSHAP, Yu et al. 2023, computed by gbrl) of the policy and value on evaluation states.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deeprl.agent import Agent
from deeprl.agents.ppo import clipped_value_loss, ppo_loss, update_metrics
from deeprl.buffers.rollout import RolloutBuffer, generalized_advantage_estimation
from deeprl.config import option
from deeprl.envs.spec import Box, EnvSpec
from deeprl.errors import UserError
from deeprl.nets.distributions import (
    categorical_log_prob_entropy,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
)

if TYPE_CHECKING:
    from deeprl.envs.base import VectorEnv

GROW_POLICIES = ("oblivious", "greedy")
SPLIT_SCORES = ("cosine", "l2")
BIN_GENERATORS = ("quantile", "uniform")
LR_SCHEDULES = ("const", "linear")


@dataclass
class TreeConfig:
    """The tree ensemble (``agent.tree.*``): gbrl's tree structure and split options."""

    max_depth: int = option(4, ge=1)
    grow_policy: str = option("oblivious", choices=GROW_POLICIES)  # oblivious: one split a level
    n_bins: int = option(250, ge=2)  # split candidates per feature
    bin_generator: str = option("quantile", choices=BIN_GENERATORS)
    split_score: str = option("cosine", choices=SPLIT_SCORES)
    min_data_in_leaf: int = option(0, ge=0)
    shared: bool = True  # one ensemble outputs both the policy and the value
    control_variates: bool = False  # gbrl's variance reduction of the split scores


@dataclass
class GBRLA2CConfig:
    """GBRL A2C hyperparameters (``agent=gbrl_a2c``): one tree per rollout of
    ``num_envs x num_steps`` transitions."""

    num_envs: int = option(16, ge=1)
    num_steps: int = option(128, ge=1)  # env steps per env copy per rollout
    gamma: float = option(0.99, ge=0, le=1)
    gae_lambda: float = option(0.95, ge=0, le=1)
    norm_adv: bool = True  # advantage normalisation per minibatch
    ent_coef: float = option(0.0, ge=0)
    vf_coef: float = option(0.5, ge=0)
    policy_lr: float = option(0.05, gt=0)  # shrinkage of the policy outputs' trees
    value_lr: float = option(0.005, gt=0)  # shrinkage of the value output's trees
    lr_schedule: str = option("const", choices=LR_SCHEDULES)  # linear: down over the run
    # per-sample clip of the gradient norm the trees fit (None: no clip)
    policy_grad_clip: float | None = option(None, gt=0)
    value_grad_clip: float | None = option(None, gt=0)
    init_log_std: float = -2.0  # continuous actions (gbrl's GaussianActor default)
    log_std_lr: float = option(3e-4, gt=0)  # Adam on the log-std
    shap_states: int = option(256, ge=0)  # evaluation states explained at the end (0: none)
    tree: TreeConfig = field(default_factory=TreeConfig)


@dataclass
class GBRLPPOConfig(GBRLA2CConfig):
    """GBRL PPO hyperparameters (``agent=gbrl_ppo``): one tree per minibatch, so
    ``update_epochs x num_minibatches`` trees per rollout."""

    num_minibatches: int = option(4, ge=1)
    update_epochs: int = option(10, ge=1)
    clip_coef: float = option(0.2, gt=0)
    clip_vloss: bool = False
    target_kl: float | None = option(None, gt=0)  # stop the update's epochs past this KL


@contextlib.contextmanager
def _quiet_stdout():
    """Silence gbrl's C++ and Python prints on load/save (file descriptor 1, not only
    ``sys.stdout``), which would interleave with the trainer's progress lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            with contextlib.redirect_stdout(null):
                yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _gbrl_actor_critic():
    try:
        from gbrl.models import ActorCritic
    except ImportError:
        raise UserError(
            'tree agents need the gbrl package, which is not installed: pip install "deeprl[gbrl]"'
        ) from None
    return ActorCritic


def pack_files(files: dict[str, bytes]) -> torch.Tensor:
    """Files as one uint8 tensor: a JSON line of (name, size) pairs, then the contents."""
    header = json.dumps([[name, len(data)] for name, data in files.items()]).encode() + b"\n"
    blob = header + b"".join(files.values())
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8)


def unpack_files(tensor: torch.Tensor) -> dict[str, bytes]:
    """The inverse of :func:`pack_files`."""
    blob = tensor.cpu().numpy().tobytes()
    end = blob.index(b"\n")
    files, pos = {}, end + 1
    for name, size in json.loads(blob[:end]):
        files[name] = blob[pos : pos + size]
        pos += size
    return files


class TreeActorCritic(nn.Module):
    """gbrl's ``ActorCritic`` ensemble as a module: ``forward`` gives (theta (B, P), V (B,)) for
    features (B, F) on the CPU, :meth:`step` grows one tree from the last differentiable call,
    and the trees are the module's extra state (a uint8 tensor), so ``state_dict`` and
    ``load_state_dict`` carry them without pickle.

    Args:
        input_dim: F, the flat feature count.
        policy_dim: P, the policy outputs (logits or Gaussian means).
        tree: structure and split options.
        policy_lr, value_lr: the trees' learning rates.
        schedule_steps: with a linear schedule, the boosting steps it spans (None: constant).
    """

    def __init__(
        self,
        input_dim: int,
        policy_dim: int,
        tree: TreeConfig,
        policy_lr: float,
        value_lr: float,
        schedule_steps: int | None = None,
    ) -> None:
        super().__init__()
        ActorCritic = _gbrl_actor_critic()  # noqa: N806 (a class)
        self.shared = tree.shared
        # Output slices: shared trees hold [theta, V] in one output vector; separate ensembles
        # index their own outputs from 0.
        value_start = policy_dim if self.shared else 0
        schedule = {} if schedule_steps is None else {"scheduler": "linear", "T": schedule_steps}
        self.model = ActorCritic(
            tree_struct={
                "max_depth": tree.max_depth,
                "grow_policy": tree.grow_policy,
                "n_bins": tree.n_bins,
                "min_data_in_leaf": tree.min_data_in_leaf,
            },
            input_dim=input_dim,
            output_dim=policy_dim + 1,
            policy_optimizer={"algo": "SGD", "lr": policy_lr, "start_idx": 0,
                              "stop_idx": policy_dim, **schedule},
            value_optimizer={"algo": "SGD", "lr": value_lr, "start_idx": value_start,
                             "stop_idx": value_start + 1, **schedule},
            shared_tree_struct=tree.shared,
            params={
                "split_score_func": tree.split_score,
                "generator_type": tree.bin_generator.capitalize(),
                "control_variates": tree.control_variates,
            },
        )

    def forward(
        self, features: torch.Tensor, requires_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy outputs (B, P) and values (B,); with ``requires_grad`` both are leaf tensors
        whose gradients :meth:`step` fits the next tree to."""
        theta, value = self.model(features, requires_grad=requires_grad)
        # a separate actor with one output (P = 1) answers (B,): theta stays (B, P)
        return theta.view(len(features), -1), value.view(-1)

    def policy(self, features: torch.Tensor) -> torch.Tensor:
        """Policy outputs (B, P) alone: separate ensembles then skip the critic's trees."""
        return self.model.predict_policy(features, requires_grad=False).view(len(features), -1)

    def step(self, features: torch.Tensor, policy_clip: float | None, value_clip: float | None):
        """Grow one tree (one per ensemble) from the gradients of the last ``forward`` with
        ``requires_grad`` on ``features``."""
        self.model.step(features, policy_grad_clip=policy_clip, value_grad_clip=value_clip)

    def num_trees(self) -> int:
        count = self.model.learner.get_num_trees()
        return count if isinstance(count, int) else max(count)

    def shap(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values (B, F, P + 1) and base values (B, P + 1) of [theta, V] at ``features``
        (B, F): base + phi.sum(1) equals the ensemble's output."""
        learner = self.model.learner
        x = features.detach().cpu().numpy()
        if self.shared:
            return learner.shap(x, return_base=True)
        parts = [learner.shap(x, model_idx=i, return_base=True) for i in (0, 1)]
        return (np.concatenate([p[0] for p in parts], axis=-1),
                np.concatenate([p[1] for p in parts], axis=-1))

    # ---- the trees as a tensor in state dicts -------------------------------------------------
    def get_extra_state(self) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp, _quiet_stdout():
            self.model.save_learner(os.path.join(tmp, "trees"))
            files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
        return pack_files(files)

    def set_extra_state(self, state: torch.Tensor) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in unpack_files(state).items():
                Path(tmp, name).write_bytes(data)
            with _quiet_stdout():
                self.model = type(self.model).load_learner(os.path.join(tmp, "trees"), "cpu")


class GBRLA2C(Agent):
    """A2C with a gradient-boosted-tree actor-critic, discrete (categorical) or continuous
    (diagonal Gaussian) actions; one boosting step per rollout.

    Example::

        from deeprl.agents import GBRLA2C
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=16)
        agent = GBRLA2C(env.spec, env.num_envs)
    """

    Config = GBRLA2CConfig
    name = "gbrl_a2c"
    counters = ("updates_done",)

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: GBRLA2CConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or self.Config()
        self.batch_size = cfg.num_steps * num_envs
        epochs, minibatches = self._update_shape()
        if self.batch_size % minibatches:
            raise UserError(
                f"{self.name}: num_steps * num_envs = {self.batch_size} is not divisible by "
                f"num_minibatches = {minibatches}"
            )
        self.minibatch_size = self.batch_size // minibatches
        self.num_updates = max(1, (total_steps or self.batch_size) // self.batch_size)
        self.input_dim = math.prod(spec.observation_space.shape)
        if spec.discrete:
            self.act_dim = spec.action_space.n
        else:
            self.act_dim = math.prod(spec.action_space.shape)
            self.log_std = nn.Parameter(torch.full((self.act_dim,), cfg.init_log_std))
        schedule = self.num_updates * epochs * minibatches if cfg.lr_schedule == "linear" else None
        self.trees = TreeActorCritic(
            self.input_dim, self.act_dim, cfg.tree, cfg.policy_lr, cfg.value_lr, schedule
        )
        self.to(self.device)
        if not spec.discrete:
            self.optimizer = torch.optim.Adam([self.log_std], lr=cfg.log_std_lr)
            self.optimizers["log_std"] = self.optimizer

    def _update_shape(self) -> tuple[int, int]:
        """(epochs, minibatches) of one update: A2C takes one step over the whole rollout."""
        return 1, 1

    # ---- acting -------------------------------------------------------------------------------
    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B, *obs_shape) as the trees read them: float32 (B, F) on the CPU."""
        return obs.reshape(obs.shape[0], -1).to("cpu", torch.float32).contiguous()

    def _distribution(self, theta: torch.Tensor, actions: torch.Tensor):
        """Log-prob and entropy (B,) of ``actions`` under the policy with outputs ``theta``."""
        if self.spec.discrete:
            return categorical_log_prob_entropy(theta, actions)
        log_prob = gaussian_log_prob(actions.flatten(1), theta, self.log_std)
        return log_prob, gaussian_entropy(self.log_std).expand(theta.shape[0])

    def act(self, obs, state=None, is_first=None, deterministic=False):
        theta = self.trees.policy(self._features(obs)).to(self.device)
        if self.spec.discrete:
            action = theta.argmax(-1) if deterministic else categorical_sample(theta)
        else:
            if not deterministic:
                theta = theta + torch.randn_like(theta) * self.log_std.exp()
            action = theta.view(-1, *self.spec.action_space.shape)
        return action, {}, state

    # ---- learning -----------------------------------------------------------------------------
    def make_buffer(self) -> RolloutBuffer:
        return RolloutBuffer(self.config.num_steps, self.num_envs, self.device)

    def update(self, buffer: RolloutBuffer, step: int) -> dict[str, float] | None:
        if not buffer.full:
            return None
        cfg = self.config
        data = buffer.data
        epochs, _ = self._update_shape()
        clip_coef = getattr(cfg, "clip_coef", 1.0)  # A2C: the ratio is 1, no clip binds
        clip_vloss = getattr(cfg, "clip_vloss", False)
        target_kl = getattr(cfg, "target_kl", None)
        x = self._features(data["obs"].flatten(0, 1))
        actions = data["action"].flatten(0, 1)
        rewards = data["reward"]
        with torch.no_grad():
            theta, values = self.trees(x)
            old_log_prob, _ = self._distribution(theta.to(self.device), actions)
            old_values = values.to(self.device)
            _, next_values = self.trees(self._features(data["next_obs"].flatten(0, 1)))
            advantages, returns = generalized_advantage_estimation(
                rewards,
                old_values.view_as(rewards),
                next_values.to(self.device).view_as(rewards),
                data["terminated"],
                data["truncated"],
                cfg.gamma,
                cfg.gae_lambda,
            )
        advantages, returns = advantages.flatten(), returns.flatten()

        for _epoch in range(epochs):
            order = torch.randperm(self.batch_size, device=self.device)
            for start in range(0, self.batch_size, self.minibatch_size):
                idx = order[start : start + self.minibatch_size]
                features = x[idx.cpu()]
                theta, value = self.trees(features, requires_grad=True)
                new_log_prob, entropy = self._distribution(theta.to(self.device), actions[idx])
                value = value.to(self.device)
                adv = advantages[idx]
                if cfg.norm_adv and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                if clip_vloss:
                    value_loss = clipped_value_loss(value, old_values[idx], returns[idx], clip_coef)
                else:
                    value_loss = 0.5 * (value - returns[idx]).square()
                loss, stats = ppo_loss(
                    new_log_prob, old_log_prob[idx], adv, entropy, value_loss,
                    clip_coef, cfg.ent_coef, cfg.vf_coef,
                    diagnostics=start + self.minibatch_size == self.batch_size,
                )
                if not self.spec.discrete:
                    self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.trees.step(features, cfg.policy_grad_clip, cfg.value_grad_clip)
                if not self.spec.discrete:
                    self.optimizer.step()
            if target_kl is not None and stats["approx_kl"] > target_kl:
                break

        self.updates_done += 1
        buffer.reset()
        metrics = update_metrics(stats, returns, old_values)
        metrics["trees"] = float(self.trees.num_trees())
        return metrics

    def model_size(self) -> str:
        """The trees (and the log-std's parameters), not the parameters alone (0 for trees)."""
        trees = f"{self.trees.num_trees():,} trees"
        return trees if self.spec.discrete else f"{trees} + a {self.act_dim}-dim log-std"

    # ---- interpretability ---------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        """One name per flat observation feature: the env spec's ``feature_names`` metadata
        when it has them, else ``obs[i]``."""
        names = self.spec.metadata.get("feature_names")
        if names is not None and len(names) == self.input_dim:
            return [str(n) for n in names]
        return [f"obs[{i}]" for i in range(self.input_dim)]

    def output_names(self) -> list[str]:
        """Names of the ensemble's outputs [theta, V]."""
        kind = "logit" if self.spec.discrete else "mean"
        return [f"policy_{kind}[{i}]" for i in range(self.act_dim)] + ["value"]

    def shap(self, obs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values (B, F, P + 1) and base values (B, P + 1) of [theta, V] at observations
        (B, *obs_shape); base + phi.sum(1) is the trees' output."""
        return self.trees.shap(self._features(obs))

    @torch.no_grad()
    def explain(self, env: VectorEnv, seed: int, out_dir: Path) -> list[Path]:
        """SHAP attributions on ``shap_states`` states of the deterministic policy's episodes
        on ``env`` (reset with ``seed``): ``shap.csv``, the mean |SHAP| of every feature for
        each output, the policy (summed over its outputs) and the value, and ``shap.png``, a bar
        plot of the policy and value columns."""
        count = self.config.shap_states
        if count == 0:
            return []
        space = env.spec.action_space
        bounds = space.bounds(env.device) if isinstance(space, Box) else None
        states, obs = [], env.reset(seed=seed)
        while sum(len(s) for s in states) < count:
            states.append(obs.cpu())
            action, _, _ = self.act(obs, deterministic=True)
            # clipped as the evaluation clips it, so these are the evaluated episodes' states
            obs = env.step(action if bounds is None else action.clamp(*bounds)).obs
        x = torch.cat(states)[:count]
        phi, _ = self.shap(x)
        mean_abs = np.abs(phi).mean(0)  # (F, P + 1)
        policy = np.abs(phi[..., :-1]).sum(-1).mean(0)
        value = mean_abs[:, -1]
        names = self.feature_names()
        out_dir = Path(out_dir)
        table = out_dir / "shap.csv"
        with table.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["feature", "policy", "value", *self.output_names()[:-1]])
            for i, name in enumerate(names):
                writer.writerow([name, f"{policy[i]:.6g}", f"{value[i]:.6g}",
                                 *(f"{v:.6g}" for v in mean_abs[i, :-1])])
        plot = out_dir / "shap.png"
        _bar_plot(names, policy, value, plot, f"{self.name} on {self.spec.id}: {len(x)} states")
        return [table, plot]


def _bar_plot(names: list[str], policy: np.ndarray, value: np.ndarray, path: Path, title: str):
    """Horizontal bars of mean |SHAP| per feature (at most the top 20 by policy), policy beside
    value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(policy)[::-1][:20][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.35 * len(order) + 1.5), sharey=True)
    labels = [names[i] for i in order]
    for ax, values, label in ((axes[0], policy, "policy"), (axes[1], value, "value")):
        ax.barh(labels, values[order])
        ax.set_xlabel(f"mean |SHAP| ({label})")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class GBRLPPO(GBRLA2C):
    """PPO with a gradient-boosted-tree actor-critic: ``update_epochs x num_minibatches``
    boosting steps per rollout, each fitting one tree to the clipped surrogate's gradients.

    Example::

        from deeprl.agents import GBRLPPO
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=16)
        agent = GBRLPPO(env.spec, env.num_envs)
    """

    Config = GBRLPPOConfig
    name = "gbrl_ppo"

    def _update_shape(self) -> tuple[int, int]:
        return self.config.update_epochs, self.config.num_minibatches


__all__ = [
    "GBRLA2C", "GBRLA2CConfig", "GBRLPPO", "GBRLPPOConfig", "TreeActorCritic", "TreeConfig",
    "pack_files", "unpack_files",
]

