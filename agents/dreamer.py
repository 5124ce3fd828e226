"""DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through World Models"; settings of
the 2023 release of its configs) on the shared parts: the RSSM and its losses
(:mod:`deeprl.worldmodels.rssm`), encoders, decoders and heads
(:mod:`deeprl.worldmodels.dreamer_parts`) and the imagination actor-critic
(:mod:`deeprl.imagination`).

World model, on replayed windows of B x L steps (allow crossing episodes; ``is_first`` resets the
RSSM), with h_t the deterministic and z_t the stochastic state:

    h_t = f(h_{t-1}, z_{t-1}, a_{t-1}),  z_t ~ q(z_t | h_t, x_t),  z^_t ~ p(z^_t | h_t)
    L_model = L_pred + 0.5 L_dyn + 0.1 L_rep,
    L_pred  = symlog MSE / image MSE of x_t + two-hot CE of r_t + BCE of c_t,
    L_dyn   = max(1, KL[sg(q) || p]),  L_rep = max(1, KL[q || sg(p)]),

with f DreamerV3's GRU cell (LayerNorm inside the gates, ``agent.sequence=gru``) or Mamba-2, and
every episode (and window) starting from the learned initial state h_0 = tanh(w), z_0 the mode of
p(z | h_0), trained by Adam (lr 1e-4, eps 1e-8, gradient norm clipped at 1000). Then imagination
starts from every posterior state (B * L starts, detached) and rolls the prior
``imagination.horizon`` steps with the actor; rewards are the reward head's value and continues
the continue head's probability at s_{t+1}, and
:class:`deeprl.imagination.ImaginationActorCritic` takes one step on

    R_t = r_t + gamma c_t ((1 - lambda) v(s_{t+1}) + lambda R_{t+1}),   R_H = v(s_H)
    L_actor  = -sum_t w_t [sg((R_t - v(s_t)) / S) log pi(a_t|s_t) + eta H[pi]]   (discrete)
              or -sum_t w_t (R_t - v(s_t)) / S  through the dynamics          (continuous)
    L_critic = two-hot CE to sg(R_t) + CE to the slow critic's value,
    S = max(1, EMA(P95(R)) - EMA(P5(R))).

Updates are due when replayed steps (B * L per update) reach ``train_ratio`` times the env steps
past ``learning_starts``; before that, actions are uniform random. Data-parallel over N ranks
(``train.world_size``, :mod:`deeprl.train.distributed`): each rank replays B / N windows of its
own replay, the gradients of each backward (world model, then actor-critic) are averaged over the
ranks and the return percentiles behind S are averaged before their EMA, so one update sees B
windows and the ranks stay identical.

Replay layout. The shared buffer stores rows (x_t, a_t, r_t, terminated_t, next_obs_t). Each row
is one model step on the observation that *follows* the action: input next_obs_t, previous
action a_t, reward target r_t, continue target 1 - terminated_t, reset where the row starts an
episode. So terminal observations (kept in the observation-only layout's side store) train the
continue head with c = 0; the first observation of an episode is seen only when acting, where it
is the (reset) step before the first action.

Policy state (acting): ``deter`` (N, deter), ``stoch`` (N, S, K), the sequence core's state
tensors ``core.<i>`` (env copies first) and ``action`` (N, A), the last action as the model reads
it (one-hot, or in [-1, 1]). The transformer core's KV cache grows with time and has no per-step
state to start imagination from, so agent=dreamer takes ``gru`` (default) or ``mamba2``.

CUDA only (refused on a CPU device): ``agent.compile=true`` runs ``train_step`` (both updates,
optimizer steps included) through ``torch.compile``; ``agent.precision=bf16`` runs the forward
passes of the world-model update and of the imagination rollout under bf16 autocast, while the
backward passes and the actor-critic's own losses stay in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

from deeprl.agent import Agent
from deeprl.buffers.replay import ReplayBuffer
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.imagination import ImaginationActorCritic, ImaginationConfig, imagine
from deeprl.worldmodels.dreamer_parts import (
    ContinueHead,
    MultiDecoder,
    MultiEncoder,
    ValueMLPHead,
)
from deeprl.worldmodels.openloop import VIDEO_CONTEXT, VIDEO_SEQUENCES, open_loop_video
from deeprl.worldmodels.rssm import RSSM, Observed, RSSMState, world_model_loss

#: Size presets (the 2023 configs' small/medium/large/xlarge; XS is this library's half of S,
#: not in the 2023 configs): GRU width ``deter``, prior/posterior MLP width ``hidden``, CNN
#: ``depth``, MLP ``units`` and ``layers``, latent ``stoch`` x ``classes``.
SIZES: dict[str, dict[str, int]] = {
    "XS": {"deter": 256, "hidden": 256, "depth": 16, "units": 256, "layers": 1},
    "S": {"deter": 512, "hidden": 512, "depth": 32, "units": 512, "layers": 2},
    "M": {"deter": 1024, "hidden": 640, "depth": 48, "units": 640, "layers": 3},
    "L": {"deter": 2048, "hidden": 768, "depth": 64, "units": 768, "layers": 4},
    "XL": {"deter": 4096, "hidden": 1024, "depth": 96, "units": 1024, "layers": 5},
}
for _preset in SIZES.values():
    _preset.update(stoch=32, classes=32)

# The transformer's KV cache has no per-step state to start imagination from or to keep per env
# copy, so it is not a choice here (validation refuses it before anything runs).
SEQUENCES = ("gru", "mamba2")
PRECISIONS = ("fp32", "bf16")
OBS_KEY = "obs"  # the single observation's key for the dict-based encoder and decoder


@dataclass
class DreamerImaginationConfig(ImaginationConfig):
    """DreamerV3's actor-critic; the widths left null take the size preset's ``units`` and
    ``layers`` (the 2023 configs size every MLP alike)."""

    actor_units: int | None = option(None, ge=1)
    actor_layers: int | None = option(None, ge=0)
    critic_units: int | None = option(None, ge=1)
    critic_layers: int | None = option(None, ge=0)


@dataclass
class DreamerConfig:
    """DreamerV3 hyperparameters (``agent=dreamer``); defaults are the 2023 configs (size S,
    batch 16 x 64, train ratio 512, model Adam 1e-4 / eps 1e-8 / clip 1000). The size keys left
    null take the ``size`` preset's value, the actor-critic's (``imagination.*_units``/``_layers``)
    too."""

    size: str = option("S", choices=tuple(SIZES))
    deter: int | None = option(None, ge=1)
    hidden: int | None = option(None, ge=1)
    depth: int | None = option(None, ge=1)
    units: int | None = option(None, ge=1)
    layers: int | None = option(None, ge=1)
    stoch: int | None = option(None, ge=1)
    classes: int | None = option(None, ge=2)
    sequence: str = option("gru", choices=SEQUENCES)  # the RSSM's deterministic core
    num_envs: int = option(1, ge=1)
    buffer_size: int = option(1_000_000, ge=1)
    train_ratio: float = option(512.0, gt=0)  # replayed steps per env step
    batch_size: int = option(16, ge=1)
    batch_length: int = option(64, ge=2)
    learning_starts: int = option(1024, ge=0)  # env steps of uniform random actions first
    world_model_lr: float = option(1e-4, gt=0)
    world_model_eps: float = option(1e-8, gt=0)
    world_model_clip: float = option(1000.0, gt=0)
    unimix: float = option(0.01, ge=0, lt=1)  # uniform mixture in the latent distributions
    dyn_scale: float = option(0.5, ge=0)
    rep_scale: float = option(0.1, ge=0)
    free_bits: float = option(1.0, ge=0)
    compile: bool = False  # CUDA only: torch.compile the update step
    precision: str = option("fp32", choices=PRECISIONS)  # CUDA only: bf16 autocast in updates
    imagination: DreamerImaginationConfig = field(default_factory=DreamerImaginationConfig)


class Dreamer(Agent):
    """DreamerV3 for discrete or continuous (Box) actions, vector or uint8 image observations.

    Example::

        from deeprl.agents import Dreamer, DreamerConfig
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=1)
        agent = Dreamer(env.spec, env.num_envs, config=DreamerConfig(size="XS"))
    """

    Config = DreamerConfig
    name = "dreamer"
    counters = ("env_steps", "grad_steps")
    # train.world_size > 1 (deeprl/train/distributed.py): each rank replays batch_size / ranks
    data_parallel = True

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: DreamerConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or DreamerConfig()
        # Data-parallel ranks each replay their share of the batch (the CLI checks that it
        # divides); updates_due counts whole batches, so the run makes a single process's updates.
        ranks = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank_batch_size = cfg.batch_size // ranks
        obs_shape = tuple(spec.observation_space.shape)
        if cfg.depth is not None and len(obs_shape) != 3:
            raise UserError(f"agent.depth={cfg.depth} sets the CNN width for image observations, "
                            f"but {spec.id} has vector observations {obs_shape}: remove "
                            f"agent.depth (agent.units sets the MLP width)")
        if (cfg.compile or cfg.precision != "fp32") and self.device.type != "cuda":
            raise UserError(f"agent.compile={str(cfg.compile).lower()} "
                            f"agent.precision={cfg.precision}: "
                            f"compiled and bf16 updates need a CUDA device, this run is on "
                            f"{self.device}; leave agent.compile=false agent.precision=fp32 "
                            f"or use device=cuda")
        size = {k: v if getattr(cfg, k) is None else getattr(cfg, k)
                for k, v in SIZES[cfg.size].items()}
        space = spec.action_space
        self.discrete = spec.discrete
        self.action_dim = space.n if self.discrete else math.prod(space.shape)
        shapes = {OBS_KEY: obs_shape}
        try:
            self.encoder = MultiEncoder(shapes, size["depth"], size["units"], size["layers"])
            self.rssm = RSSM(self.action_dim, self.encoder.out_dim, size["deter"], size["stoch"],
                             size["classes"], size["hidden"], cfg.sequence, cfg.unimix)
            feature_dim = self.rssm.feature_dim
            self.decoder = MultiDecoder(feature_dim, shapes, size["depth"], size["units"],
                                        size["layers"])
        except ValueError as exc:
            raise UserError(f"agent=dreamer on {spec.id}: {exc}") from None
        self.reward_head = ValueMLPHead(feature_dim, size["units"], size["layers"])
        self.cont_head = ContinueHead(feature_dim, size["units"], size["layers"])
        widths = {f"{part}_{key}": size[key] for part in ("actor", "critic")
                  for key in ("units", "layers")
                  if getattr(cfg.imagination, f"{part}_{key}") is None}
        self.actor_critic = ImaginationActorCritic(feature_dim, self.action_dim, self.discrete,
                                                   replace(cfg.imagination, **widths))
        if not self.discrete:
            low, high = space.bounds()
            self.register_buffer("action_scale", ((high - low) / 2).flatten())
            self.register_buffer("action_bias", ((high + low) / 2).flatten())
        # GRU states are (layers, batch, width); the other cores' tensors are batch first.
        self.core_batch_dim = 1 if cfg.sequence == "gru" else 0
        self.core_spec = pytree.tree_flatten(self.rssm.core.initial_state(1))[1]
        self.to(self.device)
        model = [self.encoder, self.rssm, self.decoder, self.reward_head, self.cont_head]
        self.model_params = [p for module in model for p in module.parameters()]
        self.optimizers["model"] = torch.optim.Adam(
            self.model_params, lr=cfg.world_model_lr, eps=cfg.world_model_eps
        )
        self.optimizers["actor_critic"] = self.actor_critic.optimizer
        # CUDA only: the whole update, both optimizer steps included (graph breaks run eagerly).
        self.compiled_train_step = torch.compile(self.train_step) if cfg.compile else None

    # ---- actions as the model reads them --------------------------------------------------------
    def model_action(self, action: torch.Tensor) -> torch.Tensor:
        """Env actions (..., ) indices or (..., *shape) -> one-hot or [-1, 1] vectors (..., A)."""
        if self.discrete:
            return F.one_hot(action.long(), self.action_dim).float()
        flat = action.reshape(*action.shape[: action.dim() - len(self.spec.action_space.shape)],
                              -1)
        return (flat.float() - self.action_bias) / self.action_scale

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actor outputs (N,) indices or (N, A) vectors in [-1, 1] -> env actions."""
        if self.discrete:
            return action
        scaled = action * self.action_scale + self.action_bias
        return scaled.view(-1, *self.spec.action_space.shape)

    # ---- policy state ---------------------------------------------------------------------------
    def _core_to_state(self, core) -> dict[str, torch.Tensor]:
        leaves = pytree.tree_flatten(core)[0]
        return {f"core.{i}": leaf.movedim(self.core_batch_dim, 0) for i, leaf in enumerate(leaves)}

    def _core_from_state(self, state: dict[str, torch.Tensor]):
        leaves = [state[f"core.{i}"].movedim(0, self.core_batch_dim).contiguous()
                  for i in range(self.core_spec.num_leaves)]
        return pytree.tree_unflatten(leaves, self.core_spec)

    def initial_state(self, num_envs: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # the learned initial state as data, without a graph
            start = self.rssm.initial(num_envs)
        return {
            "deter": start.deter,
            "stoch": start.stoch,
            **self._core_to_state(start.core),
            "action": torch.zeros(num_envs, self.action_dim, device=self.device),
        }

    def act(self, obs, state=None, is_first=None, deterministic=False):
        if is_first is None:
            is_first = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
        # The step restarts the rows where is_first (latent, core state and last action), so
        # the state needs no reset here. The previous logits are not read by a step, so the
        # state does not keep them; nor is the prior, so acting skips it.
        prev = RSSMState(state["deter"], state["stoch"], state["stoch"],
                         self._core_from_state(state))
        embed = self.rssm.project_embed(self.encoder({OBS_KEY: obs}))
        # The latent is sampled in both modes: the actor only ever trained on sampled latents
        # (an argmax of 32 categoricals is a state it never saw), and danijar/dreamerv3's eval
        # policy samples it too. ``deterministic`` takes the actor's mode.
        post = self.rssm.posterior_step(prev, state["action"], embed, is_first)
        action = self.actor_critic.actor(self.rssm.features(post.deter, post.stoch),
                                         sample=not deterministic)
        if not self.discrete:
            action = action.clamp(-1, 1)
        if not deterministic and self.env_steps < self.config.learning_starts:
            if self.discrete:
                action = torch.randint(self.action_dim, (obs.shape[0],), device=obs.device)
            else:
                action = torch.rand_like(action) * 2 - 1
        next_state = {
            "deter": post.deter,
            "stoch": post.stoch,
            **self._core_to_state(post.core),
            "action": F.one_hot(action, self.action_dim).float() if self.discrete else action,
        }
        return self.env_action(action), {}, next_state

    # ---- learning -------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """bf16 autocast of forward passes on CUDA with ``agent.precision=bf16``, else off."""
        return torch.autocast("cuda", torch.bfloat16, enabled=self.config.precision == "bf16")

    def eval_media(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """Image observations: ``open_loop``, the open-loop prediction of VIDEO_SEQUENCES
        replayed windows of ``batch_length`` steps after VIDEO_CONTEXT observed ones
        (:func:`deeprl.worldmodels.openloop.open_loop_video`). Its random draws come from a
        forked generator, so training is the same with or without it."""
        length = self.config.batch_length
        if len(self.spec.observation_space.shape) != 3 or buffer.size <= length:
            return {}
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            batch = buffer.sample_sequences(VIDEO_SEQUENCES, length, allow_cross_episode=True)
            video = open_loop_video(
                self.rssm, lambda x: self.encoder({OBS_KEY: x}),
                lambda features: self.decoder(features)[OBS_KEY], batch["next_obs"],
                self.model_action(batch["action"]), batch["is_first"],
                min(VIDEO_CONTEXT, length - 1),
            )
        return {"open_loop": video}

    def make_buffer(self) -> ReplayBuffer:
        cfg = self.config
        return ReplayBuffer(cfg.buffer_size, self.num_envs, self.device, store_next_obs=False)

    def updates_due(self, step: int) -> int:
        """Updates owed after ``step`` env steps: train_ratio * (step - learning_starts) / (B L)."""
        cfg = self.config
        replayed = cfg.batch_size * cfg.batch_length
        return int(max(0, step - cfg.learning_starts) * cfg.train_ratio / replayed)

    def update(self, buffer: ReplayBuffer, step: int) -> dict[str, torch.Tensor] | None:
        self.env_steps = step
        due = self.updates_due(step)
        if due <= self.grad_steps or buffer.size <= self.config.batch_length:
            return None
        metrics: dict[str, torch.Tensor] = {}
        train_step = self.compiled_train_step or self.train_step
        for _ in range(due - self.grad_steps):
            metrics = train_step(buffer.sample_sequences(
                self.rank_batch_size, self.config.batch_length, allow_cross_episode=True))
            self.grad_steps += 1
        return metrics

    def posterior(self, batch: dict[str, torch.Tensor]) -> Observed:
        """Posterior pass over a replayed window (the layout in the module docstring), with
        the core's state after every step (imagination starts from every step)."""
        embed = self.encoder({OBS_KEY: batch["next_obs"]})
        return self.rssm.observe(embed, self.model_action(batch["action"]), batch["is_first"])

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One world-model update, then one actor-critic update on imagined trajectories."""
        cfg = self.config
        with self.autocast():
            posterior = self.posterior(batch)
            post_logits, prior_logits = posterior.post_logits, posterior.prior_logits
            features = self.rssm.features(posterior.deter, posterior.stoch)
            recon = self.decoder.loss(self.decoder(features), {OBS_KEY: batch["next_obs"]})
            reward = self.reward_head.loss(self.reward_head(features), batch["reward"].float())
            cont = self.cont_head.loss(self.cont_head(features), ~batch["terminated"].bool())
            terms = world_model_loss(recon, reward, cont, post_logits, prior_logits,
                                     cfg.dyn_scale, cfg.rep_scale, cfg.free_bits)
        optimizer = self.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        model_norm = nn.utils.clip_grad_norm_(self.model_params, cfg.world_model_clip)
        optimizer.step()

        metrics = {
            "model_loss": terms["loss"].detach(),
            "reward_loss": terms["reward"].detach(),
            "cont_loss": terms["cont"].detach(),
            "dyn_loss": terms["dyn"].detach(),
            "rep_loss": terms["rep"].detach(),
            "kl": terms["kl"],
            # Latent entropies (summed over the S latents; logits are log-probabilities).
            "prior_entropy": -(prior_logits.exp() * prior_logits).sum((-2, -1)).mean().detach(),
            "post_entropy": -(post_logits.exp() * post_logits).sum((-2, -1)).mean().detach(),
            "model_grad_norm": model_norm.detach(),
        }
        metrics.update({f"{k.replace('/', '_')}_loss": v.detach()
                        for k, v in terms.items() if k.startswith("recon/")})
        metrics.update(self.imagination_step(posterior))
        return metrics

    def imagination_step(self, posterior: Observed) -> dict[str, torch.Tensor]:
        """Imagine ``imagination.horizon`` steps from every posterior state (L * B starts, time
        major) and update the actor-critic."""
        cores = [pytree.tree_flatten(core)[0] for core in posterior.cores]
        core = pytree.tree_unflatten(
            [torch.cat(leaves, self.core_batch_dim).detach()
             for leaves in zip(*cores, strict=True)],
            self.core_spec,
        )

        def starts(x: torch.Tensor) -> torch.Tensor:  # (B, L, ...) -> (L * B, ...)
            return x.detach().transpose(0, 1).flatten(0, 1)

        start = RSSMState(starts(posterior.deter), starts(posterior.stoch),
                          starts(posterior.post_logits), core)

        def step(state: RSSMState, action: torch.Tensor) -> RSSMState:
            if self.discrete:
                action = F.one_hot(action, self.action_dim).float()
            return self.rssm.imagine_step(state, action)

        def features(state: RSSMState) -> torch.Tensor:
            return self.rssm.features(state.deter, state.stoch)

        # REINFORCE (discrete) needs no graph through the model; dynamics backprop does.
        with torch.set_grad_enabled(not self.discrete), self.autocast():
            feats, actions = imagine(self.actor_critic.actor, start, step, features,
                                     self.config.imagination.horizon)
            rewards = self.reward_head.value(self.reward_head(feats[1:]))
            continues = torch.sigmoid(self.cont_head(feats))
        # The actor-critic's own forward passes and losses run in fp32 (no-ops without bf16).
        feats, rewards, continues = feats.float(), rewards.float(), continues.float()
        actions = actions if self.discrete else actions.float()
        return self.actor_critic.update(feats, actions, rewards, continues[1:], continues[0])
