"""Multi-Objective Decision Transformer (Ghanem, Ciblat and Ghogho 2023, "Multi-Objective
Decision Transformers for Offline Reinforcement Learning", arXiv 2308.16379): the Decision
Transformer of :mod:`deeprl.offline.dt`, also trained to predict states and returns, with
action-space-region tokens in the trajectory.

1. Multi-objective loss. Besides a_t (from s_t's token), the model predicts the next state
   s_{t+1} and the next return-to-go R_{t+1} = R_t - r_t from the last token of step t, so
   attention has to spread over all tokens instead of only serving the action:

       L = L_action + lambda_s * L_state + lambda_R * L_return,

   each a masked mean squared error over the window's real steps (states standardised, returns
   scaled by ``reward_scale``). L_return at the last step of an episode targets 0.
2. Action space regions. The behaviour policy's actions are not smooth, which makes states and
   returns hard to predict from them; a region token c_t = the region of a_t is added after the
   action, giving (R_t, s_t, a_t, c_t) per step, and the state and return heads read c_t's
   output. Acting is unchanged: a_t is still predicted from s_t's token, and the region of the
   taken action joins the history with it.

Each addition is switched by a key (``predict_states``, ``predict_returns``, ``region_tokens``)
for ablations; with all three off, MO-DT is DT.

Only the paper's abstract could be read from here, so the details are this library's choices
(keys where they are numbers or switches): the regions are ``regions`` k-means clusters of the
dataset's actions (mapped onto [-1, 1]^d; Lloyd's algorithm, 25 iterations from distinct dataset
actions on a fixed seed, fit once at the first update and saved with the weights); a region
token is a learned embedding of the cluster index plus the timestep embedding; the loss weights
default to lambda_s = lambda_R = 1 (the three objectives weighted equally); the state and return
heads are linear (as the Decision Transformer code's ``predict_state``/``predict_return``) and
read the action token's output when regions are off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deeprl.buffers.base import Buffer
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.offline.dt import DT, DTConfig, dt_action_loss, masked_mse

KMEANS_ITERATIONS = 25
KMEANS_SAMPLES = 100_000  # at most this many dataset actions are clustered
KMEANS_SEED = 0


@dataclass
class MODTConfig(DTConfig):
    """MO-DT hyperparameters (``agent=modt``): DT's plus the additions and their weights."""

    predict_states: bool = True  # state head and its loss
    predict_returns: bool = True  # return-to-go head and its loss
    region_tokens: bool = True  # an action-space-region token after each action
    regions: int = option(8, ge=1)  # k-means clusters of the dataset's actions
    state_loss_weight: float = option(1.0, ge=0)  # lambda_s
    return_loss_weight: float = option(1.0, ge=0)  # lambda_R


def modt_loss(
    pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor], mask: torch.Tensor,
    state_weight: float, return_weight: float,
) -> dict[str, torch.Tensor]:
    """MO-DT's terms over windows (``mask`` (B, K) bool: real steps): ``action_loss`` (pred and
    target ``action`` (B, K, d)), ``state_loss`` (``next_obs`` (B, K, obs_dim)) and
    ``return_loss`` (``next_rtg`` (B, K, 1)) where ``pred`` has them, and ``loss`` =
    action_loss + state_weight * state_loss + return_weight * return_loss."""
    terms = dt_action_loss(pred["action"], target["action"], mask)
    loss = terms["action_loss"]
    if "next_obs" in pred:
        terms["state_loss"] = masked_mse(pred["next_obs"], target["next_obs"], mask)
        loss = loss + state_weight * terms["state_loss"]
    if "next_rtg" in pred:
        terms["return_loss"] = masked_mse(pred["next_rtg"], target["next_rtg"], mask)
        loss = loss + return_weight * terms["return_loss"]
    return {"loss": loss, **terms}


def kmeans(points: torch.Tensor, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Centroids (clusters, d) of ``points`` (M, d) by Lloyd's algorithm from distinct points
    (a cluster left empty keeps its centroid; fewer points than clusters repeat some)."""
    pick = torch.randperm(len(points), generator=generator, device=points.device)
    centroids = points[pick[torch.arange(clusters, device=points.device) % len(points)]].clone()
    for _ in range(KMEANS_ITERATIONS):
        assign = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=clusters).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


class MODT(DT):
    """DT with state and return prediction heads and action-space-region tokens."""

    Config = MODTConfig
    name = "modt"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: MODTConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, config or MODTConfig(), total_steps)
        cfg, d = self.config, self.config.embed_dim
        self.state_head = nn.Linear(d, self.obs_dim) if cfg.predict_states else None
        self.return_head = nn.Linear(d, 1) if cfg.predict_returns else None
        if cfg.region_tokens:
            self.embed_region = nn.Embedding(cfg.regions, d)
            # Region centres in normalised action units; fitted from the dataset (flag below).
            self.register_buffer("region_centers", torch.zeros(cfg.regions, self.act_dim))
            self.register_buffer("regions_fitted", torch.tensor(False))
        self.to(self.device)
        self.optimizers["main"] = self.make_optimizer()  # over the new heads too

    def uses_next_obs(self) -> bool:
        return self.config.predict_states

    def prepare(self, buffer: Buffer) -> None:
        """DT's preparation, and the action regions: k-means of the dataset's actions."""
        super().prepare(buffer)
        if self.config.region_tokens and not bool(self.regions_fitted):
            actions = self._normalize_action(
                buffer.data["action"][: buffer.size].flatten(0, 1).unsqueeze(1)
            ).squeeze(1)
            generator = torch.Generator(actions.device).manual_seed(KMEANS_SEED)
            if len(actions) > KMEANS_SAMPLES:
                keep = torch.randperm(len(actions), generator=generator, device=actions.device)
                actions = actions[keep[:KMEANS_SAMPLES]]
            self.region_centers.copy_(kmeans(actions, self.config.regions, generator))
            self.regions_fitted.fill_(True)

    def region(self, action: torch.Tensor) -> torch.Tensor:
        """The region index (B, K) of actions (B, K, act_dim) in [-1, 1]: the nearest centre."""
        centers = self.region_centers.expand(action.shape[0], -1, -1)
        return torch.cdist(action, centers).argmin(-1)

    def step_tokens(self, window: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """R_t, s_t, a_t and, with region tokens, c_t = region(a_t)."""
        tokens = super().step_tokens(window)
        if self.config.region_tokens:
            tokens.append(self.embed_region(self.region(window["action"])))
        return tokens

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        hidden = self.hidden(batch)
        last = hidden[:, :, -1]  # the step's last token: c_t with regions, else a_t
        pred = {"action": self.predict_actions(hidden)}
        target = {"action": batch["action"]}
        if cfg.predict_states:
            pred["next_obs"], target["next_obs"] = self.state_head(last), batch["next_obs"]
        if cfg.predict_returns:
            pred["next_rtg"] = self.return_head(last)
            target["next_rtg"] = (batch["rtg"] - batch["reward"]).unsqueeze(-1)
        return modt_loss(pred, target, batch["mask"], cfg.state_loss_weight,
                         cfg.return_loss_weight)
