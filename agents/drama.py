"""Drama (Wang et al., ICLR 2025, "Drama: Mamba-Enabled Model-Based Reinforcement Learning Is
Sample and Parameter Efficient"; settings of realwenlongwang/drama config_files/train.yaml) on
the shared parts: the world model :class:`deeprl.worldmodels.drama.DramaWorldModel` (Mamba-2
over [z, a], equations and loss there), the imagination actor-critic of DreamerV3
(:mod:`deeprl.imagination`, with Drama's options), LaProp (:mod:`deeprl.optim`) and dynamic
frequency-based sampling (:class:`deeprl.buffers.samplers.DFSSampler`). Data-parallel over N
ranks (``train.world_size``, :mod:`deeprl.train.distributed`) as agent=dreamer: each rank replays
B / N windows and imagine_batch / N contexts of its own replay.

Loop per env step (Atari100k defaults): uniform random actions for the first
``learning_starts`` = 1032 steps; afterwards ``updates_per_step`` = 1 update per env step, each

1. a world-model step on B x L = 16 x 128 replayed steps (windows may cross episodes):
   L = L_rec + L_rew + L_term + L_dyn + 0.1 L_rep, LaProp lr 4e-5 / eps 1e-20 / warm-up 1000,
   gradient norm clipped at 1000;
2. an actor-critic step on imagination: ``imagine_batch`` = 1024 replayed contexts of
   ``imagine_context`` = 8 real steps run through the sequence model in one parallel pass, then
   ``imagination.horizon`` = 16 imagined steps in its step mode from the cached state. Rewards
   are the reward head's values and continues the termination head's 1 - P(end) at s_{t+1};
   :class:`deeprl.imagination.ImaginationActorCritic` takes one step with gamma 0.985, lambda
   0.95, entropy 3e-4, percentile return scale, REINFORCE, the critic's value loss to the
   lambda-returns of both the online and the slow critic (EMA 0.98), actor 3 x 256 and critic
   3 x 512 RMSNorm-SiLU MLPs, a running normaliser on the actor's input, one LaProp (4e-5,
   eps 1e-20, warm-up 1000) and one gradient clip at 100 over both.

Replay: each row is (o_t, a_t, r_t, terminated_t); the world model reads o_t, a_t and predicts
r_t and terminated_t from h_t. ``sampler=dfs`` draws world-model windows with P ~ exp(-c / 10)
and imagination contexts by Drama's score; ``sampler=uniform`` is the ablation.

Acting (differs from DreamerV3, which acts on the posterior of the current frame): as Drama
(inherited from STORM), the policy acts on the model's *prior* for z_t given the past. The
policy state holds the last ``context`` = 16 real (frame, action) pairs of each env copy
(``frames`` (N, 16, *obs), ``actions`` (N, 16, A) one-hot, ``valid`` (N, 16) bool, newest
last); ``act`` encodes them, runs the sequence model over them (restarting at the first valid
pair), samples z_t from the prior of the last output h_{t-1} and feeds [z_t, h_{t-1}] to the
actor, then appends (o_t, a_t). The current frame o_t enters the context only after this step's
action, as in Drama. On the first step of an episode (an empty context) the action is uniform
random, also when acting deterministically, as Drama does. BatchNorm in the image encoder uses
its running statistics when acting, so ``act`` changes no agent state.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deeprl.agent import Agent, reset_policy_state
from deeprl.buffers.replay import ReplayBuffer
from deeprl.buffers.samplers import DFSSampler, UniformSampler
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.imagination import ImaginationActorCritic, ImaginationConfig, imagine
from deeprl.nets.normalize import mean_over_ranks
from deeprl.optim import LaProp
from deeprl.worldmodels.drama import DramaState, DramaWorldModel
from deeprl.worldmodels.mamba import KernelUnavailableError
from deeprl.worldmodels.openloop import VIDEO_CONTEXT, VIDEO_SEQUENCES, video_grid
from deeprl.worldmodels.sequence import SEQUENCE_MODELS


@dataclass
class DramaImaginationConfig(ImaginationConfig):
    """Drama's actor-critic (train.yaml ``Models.Agent.AC``): DreamerV3's with these defaults."""

    horizon: int = option(16, ge=1)
    gamma: float = option(0.985, gt=0, le=1)
    actor_units: int = option(256, ge=1)
    actor_layers: int = option(3, ge=0)
    critic_units: int = option(512, ge=1)
    critic_layers: int = option(3, ge=0)
    norm: str = option("rms", choices=("layer", "rms"))
    unimix: float = option(0.0, ge=0, lt=1)  # train.yaml Unimix_ratio 0
    slow_critic_target: str = option("return", choices=("value", "return"))
    optimizer: str = option("laprop", choices=("adam", "laprop"))
    actor_lr: float = option(4e-5, gt=0)
    critic_lr: float = option(4e-5, gt=0)
    eps: float = option(1e-20, gt=0)
    warmup: int = option(1000, ge=0)
    joint_clip: bool = True
    obs_norm: bool = True


@dataclass
class DramaConfig:
    """Drama hyperparameters (``agent=drama``); defaults are the paper's Atari100k settings
    (train.yaml), the vector preset is ``configs/tuned/drama_cartpole.yaml``. ``n_layers``,
    ``d_state``, ``expand``, ``headdim`` and ``backend`` configure the Mamba cores (the GRU
    and transformer comparisons take ``n_layers`` only)."""

    sequence: str = option("mamba2", choices=tuple(SEQUENCE_MODELS))
    d_model: int = option(512, ge=1)
    n_layers: int = option(2, ge=1)
    d_state: int = option(16, ge=1)
    expand: int = option(2, ge=1)
    headdim: int = option(64, ge=1)
    backend: str = option("auto", choices=("auto", "torch", "cuda"))  # cuda: mamba-ssm kernels
    stoch: int = option(32, ge=1)
    classes: int = option(32, ge=2)
    unimix: float = option(0.01, ge=0, lt=1)
    depth: int = option(16, ge=1)  # image CNN
    mults: list[int] = option([1, 2, 3, 4, 4], ge=1)
    kernel: int = option(5, ge=1)
    units: int = option(256, ge=1)  # vector encoder/decoder MLP
    layers: int = option(2, ge=0)
    head_units: int = option(256, ge=1)  # reward and termination heads
    head_layers: int = option(1, ge=0)
    num_envs: int = option(1, ge=1)
    buffer_size: int = option(100_000, ge=1)  # steps per env copy
    learning_starts: int = option(1032, ge=0)  # env steps of uniform random actions first
    updates_per_step: float = option(1.0, gt=0)  # world-model + actor-critic updates per env step
    batch_size: int = option(16, ge=1)
    batch_length: int = option(128, ge=2)
    imagine_batch: int = option(1024, ge=1)
    imagine_context: int = option(8, ge=1)
    context: int = option(16, ge=1)  # real (frame, action) pairs the policy acts from
    world_model_lr: float = option(4e-5, gt=0)
    world_model_eps: float = option(1e-20, gt=0)
    world_model_warmup: int = option(1000, ge=0)
    world_model_clip: float = option(1000.0, gt=0)
    dyn_scale: float = option(1.0, ge=0)
    rep_scale: float = option(0.1, ge=0)
    free_bits: float = option(1.0, ge=0)
    sampler: str = option("dfs", choices=("dfs", "uniform"))
    dfs_tau: float = option(10.0, gt=0)
    dfs_imagine_tau: float = option(10.0, gt=0)
    imagination: DramaImaginationConfig = option(DramaImaginationConfig())


class Drama(Agent):
    """Drama for discrete actions and uint8 image or vector observations.

    Example::

        from deeprl.agents import Drama, DramaConfig
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=1)
        agent = Drama(env.spec, 1, config=DramaConfig(d_model=64, imagine_batch=64))
    """

    Config = DramaConfig
    name = "drama"
    counters = ("env_steps", "grad_steps")
    # train.world_size > 1 (deeprl/train/distributed.py): each rank replays batch_size / ranks
    # windows and imagine_batch / ranks contexts
    data_parallel = True

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: DramaConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or DramaConfig()
        if not spec.discrete:
            raise UserError(f"agent=drama takes discrete actions (Drama is defined for Atari); "
                            f"{spec.id} has continuous ones: use agent=dreamer")
        for key in ("batch_length", "imagine_context"):
            if getattr(cfg, key) > cfg.buffer_size:
                raise UserError(f"agent.{key}={getattr(cfg, key)} is longer than the replay "
                                f"holds (agent.buffer_size={cfg.buffer_size}); lower it or "
                                f"raise agent.buffer_size")
        # Data-parallel ranks each replay their share of the batches (the CLI checks that it
        # divides); updates_due counts env steps, so the run makes a single process's updates.
        ranks = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank_batch_size = cfg.batch_size // ranks
        self.rank_imagine_batch = cfg.imagine_batch // ranks
        self.num_actions = spec.action_space.n
        kwargs = {"n_layers": cfg.n_layers}
        if cfg.sequence in ("mamba", "mamba2"):
            kwargs.update(d_state=cfg.d_state, expand=cfg.expand, backend=cfg.backend)
        if cfg.sequence == "mamba2":
            kwargs["headdim"] = cfg.headdim
        try:
            self.world_model = DramaWorldModel(
                tuple(spec.observation_space.shape), self.num_actions, cfg.stoch, cfg.classes,
                cfg.d_model, cfg.sequence, kwargs, cfg.depth, tuple(cfg.mults), cfg.kernel,
                cfg.units, cfg.layers, cfg.head_units, cfg.head_layers, cfg.unimix,
            )
        except (ValueError, KernelUnavailableError) as exc:
            raise UserError(f"agent=drama on {spec.id}: {exc}") from None
        self.actor_critic = ImaginationActorCritic(self.world_model.feature_dim,
                                                   self.num_actions, True, cfg.imagination)
        self.to(self.device)
        self.optimizers["model"] = LaProp(self.world_model.parameters(), lr=cfg.world_model_lr,
                                          eps=cfg.world_model_eps,
                                          warmup=cfg.world_model_warmup)
        self.optimizers["actor_critic"] = self.actor_critic.optimizer

    def one_hot(self, action: torch.Tensor) -> torch.Tensor:
        """Action indices (...) -> one-hot floats (..., A)."""
        return F.one_hot(action.long(), self.num_actions).float()

    # ---- acting ---------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> dict[str, torch.Tensor]:
        space, c = self.spec.observation_space, self.config.context
        return {
            "frames": torch.zeros(num_envs, c, *space.shape, dtype=space.dtype,
                                  device=self.device),
            "actions": torch.zeros(num_envs, c, self.num_actions, device=self.device),
            "valid": torch.zeros(num_envs, c, dtype=torch.bool, device=self.device),
        }

    def context_features(self, state: dict[str, torch.Tensor], sample: bool) -> torch.Tensor:
        """[z_t, h_{t-1}] (N, F): the prior sample after each copy's context (rows with an
        empty context give meaningless features)."""
        wm, valid = self.world_model, state["valid"]
        # The first valid pair restarts the sequence model: the empty slots before it drop out.
        first = valid & ~F.pad(valid[:, :-1], (1, 0))
        training = wm.encoder.training
        wm.encoder.train(False)  # BatchNorm's running statistics: acting changes no state
        try:
            z, _ = wm.encode(state["frames"], sample)
        finally:
            wm.encoder.train(training)
        h, _ = wm.observe(z, state["actions"], first)
        z_next, _ = wm.prior(h[:, -1], sample)
        return wm.features(z_next, h[:, -1])

    def act(self, obs, state=None, is_first=None, deterministic=False):
        n = obs.shape[0]
        if is_first is not None:
            state = reset_policy_state(state, self.initial_state(n), is_first)
        random = torch.randint(self.num_actions, (n,), device=obs.device)
        warmup = not deterministic and self.env_steps < self.config.learning_starts
        if warmup or not state["valid"].any():
            action = random
        else:
            features = self.context_features(state, sample=not deterministic)
            action = self.actor_critic.actor(features, sample=not deterministic)
            action = torch.where(state["valid"][:, -1], action, random)
        next_state = {
            "frames": torch.cat([state["frames"][:, 1:], obs.unsqueeze(1)], 1),
            "actions": torch.cat([state["actions"][:, 1:], self.one_hot(action)[:, None]], 1),
            "valid": F.pad(state["valid"][:, 1:], (0, 1), value=True),
        }
        return action, {}, next_state

    # ---- learning -------------------------------------------------------------------------------
    def eval_media(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """Image observations: ``open_loop``, the open-loop prediction
        (:meth:`DramaWorldModel.open_loop`) of VIDEO_SEQUENCES replayed windows of
        ``batch_length`` steps after VIDEO_CONTEXT observed ones. The windows are drawn
        uniformly from a forked generator and read past the sampler, so training (the RNG,
        DFS's visit counts) is the same with or without the video."""
        length = self.config.batch_length
        if len(self.spec.observation_space.shape) != 3 or buffer.size <= length:
            return {}
        uniform = UniformSampler()
        uniform.bind(buffer)  # draws starts only: the buffer keeps its own sampler
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            start, env, _ = uniform.sample(VIDEO_SEQUENCES, length)
            batch = buffer.read_sequences(start, env, length, allow_cross_episode=True)
            frames = self.world_model.open_loop(batch["obs"], self.one_hot(batch["action"]),
                                                batch["is_first"], min(VIDEO_CONTEXT, length - 1))
        return {"open_loop": video_grid(batch["obs"], frames.float())}

    def make_buffer(self) -> ReplayBuffer:
        cfg = self.config
        sampler = (DFSSampler(cfg.dfs_tau, cfg.dfs_imagine_tau, cfg.imagine_batch / cfg.batch_size)
                   if cfg.sampler == "dfs" else UniformSampler())
        return ReplayBuffer(cfg.buffer_size, self.num_envs, self.device, store_next_obs=False,
                            sampler=sampler)

    def updates_due(self, step: int) -> int:
        """Updates owed after ``step`` env steps: updates_per_step * (step - learning_starts)."""
        cfg = self.config
        return int(max(0, step - cfg.learning_starts) * cfg.updates_per_step)

    def update(self, buffer: ReplayBuffer, step: int) -> dict[str, torch.Tensor] | None:
        self.env_steps = step
        due = self.updates_due(step)
        needed = max(self.config.batch_length, self.config.imagine_context)
        if due <= self.grad_steps or buffer.size < needed:
            return None
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(due - self.grad_steps):
            metrics = self.train_step(buffer)
            self.grad_steps += 1
        return metrics

    def train_step(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """One world-model update, then one actor-critic update on imagined trajectories."""
        cfg = self.config
        batch = buffer.sample_sequences(self.rank_batch_size, cfg.batch_length,
                                        allow_cross_episode=True)
        terms = self.world_model.loss(batch["obs"], self.one_hot(batch["action"]),
                                      batch["reward"], batch["terminated"], batch["is_first"],
                                      cfg.dyn_scale, cfg.rep_scale, cfg.free_bits)
        optimizer = self.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        norm = nn.utils.clip_grad_norm_(self.world_model.parameters(), cfg.world_model_clip)
        optimizer.step()
        names = {"loss": "model_loss", "recon": "recon_loss", "reward": "reward_loss",
                 "termination": "termination_loss", "dyn": "dyn_loss", "rep": "rep_loss",
                 "kl": "kl"}
        metrics = {names[k]: v.detach() for k, v in terms.items()}
        metrics["model_grad_norm"] = norm.detach()

        imagining = (buffer.sampler.imagination() if isinstance(buffer.sampler, DFSSampler)
                     else nullcontext())
        with imagining:
            context = buffer.sample_sequences(self.rank_imagine_batch, cfg.imagine_context,
                                              allow_cross_episode=True)
        metrics.update(self.imagination_step(context))
        # Data-parallel ranks: the image CNNs' BatchNorms saw their rank's windows; the ranks
        # keep the mean of their running statistics (normalising batches per rank, as DDP
        # without SyncBatchNorm).
        for module in self.world_model.modules():
            if isinstance(module, nn.BatchNorm2d):
                mean_over_ranks(module.running_mean)
                mean_over_ranks(module.running_var)
        return metrics

    def imagine(self, context: dict[str, torch.Tensor]):
        """Imagined trajectories from replayed contexts (B, C, ...): features (H + 1, B, F),
        actions (H, B), rewards and continues (H, B) of the steps s_t -> s_{t+1}, and the
        start states' continues (B,). Discrete actions (REINFORCE): no graph needed."""
        wm = self.world_model
        start = wm.imagine_start(context["obs"], self.one_hot(context["action"]),
                                 context["is_first"])

        def step(state: DramaState, action: torch.Tensor) -> DramaState:
            return wm.imagine_step(state, self.one_hot(action))

        def features(state: DramaState) -> torch.Tensor:
            return wm.features(state.z, state.h)

        feats, actions = imagine(self.actor_critic.actor, start, step, features,
                                 self.config.imagination.horizon)
        h = feats[1:, :, wm.latent_dim:]
        return feats, actions, wm.reward(h), wm.continue_prob(h), wm.continue_prob(start.h)

    def imagination_step(self, context: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Imagine from the contexts and update the actor-critic."""
        with torch.no_grad():
            feats, actions, rewards, continues, start = self.imagine(context)
        return self.actor_critic.update(feats, actions, rewards, continues, start)

