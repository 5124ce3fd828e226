"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via
Sequence Modeling"), with CORL's ``dt.py`` settings (Tarasov et al. 2023) and any sequence model
of :mod:`deeprl.worldmodels.sequence` as the backbone.

A trajectory is read as the token sequence (R_1, s_1, a_1, R_2, s_2, a_2, ...) with the
return-to-go R_t = sum_{u >= t} r_u (scaled by ``reward_scale``; :mod:`deeprl.offline.windows`).
Each token is a linear embedding of its value plus a learned embedding of the step's timestep t
(Sec. 3 of the paper); LayerNorm and dropout follow, then a causal sequence model over the last
K steps (3K tokens). The output at s_t's token predicts a_t (tanh head, actions mapped onto
[-1, 1]^d):

    L(theta) = sum_{b, t: mask} ||a_hat_{b,t} - a_{b,t}||^2 / (d * #mask)   (the paper's MSE)

over windows of K steps padded on the left at episode starts (``mask`` False there).

Acting (Algorithm 1): the policy state holds the last K steps of (R, s, a, t) and the current
target return; each step appends (R_target, s_t) and takes the predicted action, and
:meth:`DT.observe` lowers the target by the reward received, R_target <- R_target - r_t. The
forward pass at a step is the training forward pass over the window the state holds, so acting
and training run the same model on the same layout.

Backbones (``backbone``): ``transformer`` (pre-norm, RoPE), ``mamba2`` or ``gru``, built with
``embed_dim``/``n_layers`` (``n_heads`` is the transformer's). Each window runs with its real
tokens first (rolled left past its padding, outputs rolled back), so every backbone starts the
episode from its initial state and no real token reads the padding. A recurrent core also
re-reads the K-step window at every acting step (instead of carrying its state through the
episode) so it sees at test time exactly the context length it was trained on.

Defaults: CORL ``dt.py`` ``TrainConfig``: embed 128, 3 layers, 1 head, context K = 20, dropout
0.1, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 1e-4, grad-norm clip 0.25, linear warm-up
over 10k updates, batch 64, reward scale 0.001, timesteps up to 1000; states standardised with
the dataset's statistics. Differences: CORL's GPT blocks also apply dropout to attention weights
and residuals; the project's backbones have no dropout, so only the embeddings are dropped out.
The loss averages over real (unpadded) entries where CORL averages over all of them. The target
return defaults to the best episode return in the dataset (CORL takes per-task constants, e.g.
hopper 3600: set ``target_return``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from deeprl.agent import PolicyState, reset_policy_state
from deeprl.buffers.base import Buffer
from deeprl.config import option
from deeprl.datasets import OfflineDataset
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.offline.base import OfflineAgent
from deeprl.offline.windows import WindowSampler
from deeprl.worldmodels.sequence import SequenceModel, make_sequence_model

BACKBONES = ("transformer", "mamba2", "gru")


@dataclass
class DTConfig:
    """Decision Transformer hyperparameters (``agent=dt``); defaults: CORL ``dt.py``."""

    batch_size: int = option(64, ge=1)
    lr: float = option(1e-4, gt=0)
    weight_decay: float = option(1e-4, ge=0)
    warmup_steps: int = option(10_000, ge=0)  # linear learning-rate warm-up (updates)
    clip_grad: float = option(0.25, gt=0)  # gradient-norm clip
    embed_dim: int = option(128, ge=1)
    n_layers: int = option(3, ge=1)
    n_heads: int = option(1, ge=1)  # transformer backbone only
    context: int = option(20, ge=1)  # K, steps per window (3K tokens)
    dropout: float = option(0.1, ge=0, lt=1)  # on the token embeddings
    reward_scale: float = option(0.001, gt=0)  # returns-to-go are multiplied by this
    max_timestep: int = option(1000, ge=1)  # timestep embeddings; later steps share the last
    target_return: float | None = None  # acting target (env units); None: best dataset return
    backbone: str = option("transformer", choices=BACKBONES)
    normalize_obs: bool = True  # standardise states with the dataset's mean and std


def dt_action_loss(
    pred_action: torch.Tensor, action: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """{"action_loss": masked MSE}: predicted (B, K, d) vs dataset actions (B, K, d), averaged
    over the real entries of ``mask`` (B, K) bool."""
    return {"action_loss": masked_mse(pred_action, action, mask)}


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (pred - target)^2 (B, K, d) over the positions where ``mask`` (B, K) is True."""
    weight = mask.to(pred.dtype).unsqueeze(-1)
    return ((pred - target).square() * weight).sum() / (weight.sum() * pred.shape[-1]).clamp(min=1)


def make_backbone(kind: str, embed_dim: int, n_layers: int, n_heads: int) -> SequenceModel:
    """The sequence model ``kind`` at width ``embed_dim`` (Mamba-2 heads of up to 64 channels)."""
    if kind == "transformer":
        if embed_dim % n_heads or (embed_dim // n_heads) % 2:
            raise UserError(
                f"agent.embed_dim={embed_dim} must split into agent.n_heads={n_heads} heads of an "
                f"even size; change one of them"
            )
        return make_sequence_model(kind, d_model=embed_dim, n_layers=n_layers, n_heads=n_heads)
    if kind == "mamba2":
        return make_sequence_model(kind, d_model=embed_dim, n_layers=n_layers,
                                   headdim=math.gcd(64, 2 * embed_dim))
    return make_sequence_model(kind, d_model=embed_dim, n_layers=n_layers)


def _check_context(context: int, windows: WindowSampler) -> None:
    """Raises UserError when no episode of the dataset has ``context`` steps."""
    if context > windows.longest:
        raise UserError(
            f"agent.context={context} is longer than every episode of the dataset (the "
            f"longest has {windows.longest} steps); lower agent.context"
        )


class DT(OfflineAgent):
    """Decision Transformer over (return-to-go, state, action) tokens."""

    Config = DTConfig
    name = "dt"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: DTConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or self.Config()
        d = cfg.embed_dim
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(self.obs_dim, d)
        self.embed_action = nn.Linear(self.act_dim, d)
        self.embed_timestep = nn.Embedding(cfg.max_timestep, d)
        self.embed_norm = nn.LayerNorm(d)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.backbone = make_backbone(cfg.backbone, d, cfg.n_layers, cfg.n_heads)
        self.action_head = nn.Linear(d, self.act_dim)
        # The acting target in env units: the config's, or fitted from the dataset (NaN: not yet).
        target = math.nan if cfg.target_return is None else cfg.target_return
        self.register_buffer("target_return", torch.tensor(target, dtype=torch.float64))
        self.to(self.device)
        self.optimizers["main"] = self.make_optimizer()
        self._windows: WindowSampler | None = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over all parameters (CORL: betas (0.9, 0.999), weight decay on all of them)."""
        cfg = self.config
        return torch.optim.AdamW(
            self.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
            fused=True,
        )

    # ---- tokens and the forward pass ----------------------------------------------------------
    def step_tokens(self, window: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The embeddings (B, K, d) of each step's tokens in sequence order: R_t, s_t, a_t."""
        return [
            self.embed_return(window["rtg"].unsqueeze(-1)),
            self.embed_state(window["obs"]),
            self.embed_action(window["action"]),
        ]

    def hidden(self, window: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone outputs (B, K, P, d) at each step's P tokens for a window in model units:
        ``obs`` (B, K, obs_dim) normalised, ``action`` (B, K, act_dim) in [-1, 1], ``rtg`` (B, K)
        scaled, ``timestep`` (B, K) int64 and ``mask`` (B, K) bool, padded on the left."""
        time = self.embed_timestep(window["timestep"].clamp(max=self.config.max_timestep - 1))
        tokens = torch.stack([x + time for x in self.step_tokens(window)], dim=2)  # (B, K, P, d)
        batch, k, per_step, d = tokens.shape
        length = k * per_step
        x = self.embed_dropout(self.embed_norm(tokens.view(batch, length, d)))
        # Each window is rolled left so that its first real token comes first: every backbone
        # then starts the episode from its initial state with no reset inside the sequence (one
        # call for the whole batch; a GRU would otherwise be cut at every distinct padding
        # length), and the padding, now after the real tokens, is never read by them.
        padding = (k - window["mask"].sum(1, keepdim=True)) * per_step  # (B, 1) tokens
        position = torch.arange(length, device=x.device)
        read = ((position + padding) % length).unsqueeze(-1).expand(-1, -1, d)
        y, _ = self.backbone(x.gather(1, read))
        back = ((position - padding) % length).unsqueeze(-1).expand(-1, -1, d)
        return y.gather(1, back).view(batch, k, per_step, d)

    def predict_actions(self, hidden: torch.Tensor) -> torch.Tensor:
        """a_hat (B, K, act_dim) in [-1, 1] from the outputs at the state tokens."""
        return torch.tanh(self.action_head(hidden[:, :, 1]))

    # ---- training -----------------------------------------------------------------------------
    @classmethod
    def check_dataset(cls, config: DTConfig, dataset: OfflineDataset) -> None:
        """Refuse a context longer than every episode of ``dataset`` (before a run starts)."""
        _check_context(config.context, WindowSampler(dataset.buffer, config.context))

    def uses_next_obs(self) -> bool:
        """Whether the loss needs each step's next observation (MO-DT's state head)."""
        return False

    def prepare(self, buffer: Buffer) -> None:
        """Index ``buffer``'s windows and fit what comes from the dataset (the target return);
        once per dataset buffer.

        Raises:
            UserError: the context is longer than every episode of the dataset.
        """
        windows = WindowSampler(buffer, self.config.context)
        _check_context(self.config.context, windows)
        if torch.isnan(self.target_return):
            self.target_return.fill_(float(windows.episode_returns.max()))
        self._windows = windows

    def batch(self, buffer: Buffer, batch_size: int) -> dict[str, torch.Tensor]:
        """Windows (:meth:`WindowSampler.sample`) in model units: normalised ``obs`` (and
        ``next_obs``), ``action`` in [-1, 1], ``rtg`` scaled; ``reward`` scaled too."""
        if self._windows is None or self._windows.buffer is not buffer:
            self.prepare(buffer)
        window = self._windows.sample(batch_size, with_next_obs=self.uses_next_obs())
        mask = window["mask"]
        out = {
            "obs": self._normalize_window(window["obs"]),
            "action": self._normalize_action(window["action"]),
            "rtg": window["rtg"] * self.config.reward_scale,
            "reward": window["reward"].float() * self.config.reward_scale,
            "timestep": window["timestep"],
            "mask": mask,
        }
        if "next_obs" in window:
            out["next_obs"] = self._normalize_window(window["next_obs"])
        # Padding stays zero after the unit changes (normalising moves zeros).
        for key in ("obs", "action", "next_obs"):
            if key in out:
                out[key] = out[key] * mask.unsqueeze(-1)
        return out

    def _normalize_window(self, obs: torch.Tensor) -> torch.Tensor:
        batch, k = obs.shape[:2]
        return self.normalize_obs(obs.flatten(0, 1)).view(batch, k, self.obs_dim)

    def _normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        action = action.flatten(2).float()
        return ((action - self.action_bias) / self.action_scale).clamp(-1.0, 1.0)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The named loss terms of a batch, ``loss`` their weighted sum."""
        terms = dt_action_loss(
            self.predict_actions(self.hidden(batch)), batch["action"], batch["mask"]
        )
        return {"loss": terms["action_loss"], **terms}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        optimizer = self.optimizers["main"]
        # Linear warm-up from the update count, so a resumed run continues the schedule.
        warmup = min(1.0, (self.grad_steps + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * warmup
        terms = self.losses(batch)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = nn.utils.clip_grad_norm_(self.parameters(), cfg.clip_grad)
        optimizer.step()
        return {**{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm.detach(),
                "lr": torch.tensor(cfg.lr * warmup)}

    # ---- acting -------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> PolicyState:
        """An empty token history of K steps per env copy and the target return (env units)."""
        k, n, dev = self.config.context, num_envs, self.device
        target = torch.nan_to_num(self.target_return, nan=0.0).float()
        return {
            "obs": torch.zeros(n, k, self.obs_dim, device=dev),
            "action": torch.zeros(n, k, self.act_dim, device=dev),
            "rtg": torch.zeros(n, k, device=dev),
            "timestep": torch.zeros(n, k, dtype=torch.long, device=dev),
            "mask": torch.zeros(n, k, dtype=torch.bool, device=dev),
            "target": target.expand(n).clone(),
        }

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions (B, act_dim) in [-1, 1] at the first step of an episode (no history)."""
        state = self.initial_state(obs.shape[0])
        return self._push(self.normalize_obs(obs), state)[0]

    def _push(self, obs: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        """Append (R_target, obs) to the history, predict the action, store it."""
        def shift(x: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return torch.cat([x[:, 1:], new.unsqueeze(1).to(x.dtype)], dim=1)

        last = state["timestep"][:, -1]
        window = {
            "obs": shift(state["obs"], obs),
            "action": shift(state["action"], torch.zeros_like(state["action"][:, 0])),
            "rtg": shift(state["rtg"], state["target"] * self.config.reward_scale),
            "timestep": shift(state["timestep"], torch.where(state["mask"][:, -1], last + 1, 0)),
            "mask": shift(state["mask"], torch.ones_like(state["mask"][:, 0])),
        }
        action = self.predict_actions(self.hidden(window))[:, -1]
        window["action"][:, -1] = action
        return action, {**window, "target": state["target"]}

    def act(self, obs, state=None, is_first=None, deterministic=False):
        n = obs.shape[0]
        if state is None:
            state = self.initial_state(n)
        elif is_first is not None:
            state = reset_policy_state(state, self.initial_state(n), is_first)
        action, state = self._push(self.normalize_obs(obs), state)
        action = action * self.action_scale + self.action_bias
        return action.view(-1, *self.spec.action_space.shape), {}, state

    def observe(self, state: PolicyState, reward: torch.Tensor) -> PolicyState:
        """Lower each copy's target return by the reward (N,) its last action received."""
        return {**state, "target": state["target"] - reward.to(state["target"].dtype)}
