"""Gymnasium MuJoCo v5 tasks on MuJoCo Warp: every copy of the simulator stepped together on the
GPU (MJWarp, Google DeepMind and NVIDIA 2025, "MuJoCo Warp: GPU-accelerated MuJoCo" through NVIDIA
Warp; tasks as in gymnasium v5, Towers et al. 2024).

Same tasks as ``deeprl.envs.suites.mujoco``, same protocol: the v5 model files, frame skips,
reset distributions, observations, rewards, terminations and time limits, so results transfer
between the two paths. Per env step and copy, with ``dt = frame_skip * timestep``:

    locomotion (HalfCheetah, Hopper, Walker2d, Ant, Swimmer, InvertedPendulum):
        reward = w_forward * (x_after - x_before) / dt + healthy_reward * is_healthy
                 - w_ctrl * ||a||^2 - w_contact * ||clip(cfrc_ext, -1, 1)||^2
        terminated = not is_healthy                 (tasks with a healthy range)
    InvertedDoublePendulum (tip (x, y) of the pole, joint velocities v1, v2):
        reward = 10 * [y > 1] - 0.01 x^2 - (y - 2)^2 - 1e-3 v1^2 - 5e-3 v2^2;  terminated = y <= 1
    Reacher:  reward = -||fingertip - target|| - ||a||^2
    Pusher:   reward = -0.5 ||object - tips_arm|| - ||object - goal|| - 0.1 ||a||^2

Humanoid and HumanoidStandup are not here: their models use MuJoCo's PGS solver, which MJWarp
does not implement. Differences from the CPU path, all of degree: MJWarp computes in float32 (CPU
MuJoCo in float64) and initial states are drawn by a torch generator, so a seed gives different
(equally distributed) initial states than gymnasium's. Observations, rewards and flags never
leave the device: MJWarp's arrays are shared with torch without copies, and on CUDA one env step
(``frame_skip`` physics steps) is replayed as a captured CUDA graph.

The ``warp`` extra needs ``mujoco>=3.13``, which metaworld 3.1.1's pin excludes: it lives in its
own virtual environment (docs/envs.md). MJWarp's kernels also run on Warp's CPU device, slowly;
``allow_cpu=True`` permits that for tests and debugging.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from deeprl.envs.base import StepResult, VectorEnv
from deeprl.envs.spec import Box, EnvSpec
from deeprl.errors import UserError


class WarpTask(ABC):
    """A gymnasium v5 task: its model file and how it reads the simulator.

    Subclasses implement the task's initial state, observation and reward over the batched torch
    views of a :class:`WarpMujocoVectorEnv` (``env.qpos`` (N, nq), ``env.qvel`` (N, nv),
    ``env.xpos`` (N, nbody, 3), ...). After a step those views hold what gymnasium's do after
    ``mj_step``: positions, velocities and contact forces of the new state, body positions of
    the last physics step's kinematics.
    """

    xml: str
    frame_skip: int
    max_episode_steps: int = 1000
    #: bodies the task reads by name; ``env.body[name]`` is the index into ``env.xpos``.
    bodies: tuple[str, ...] = ()
    #: whether the task reads the external contact forces (then computed after each step).
    uses_contact_forces: bool = False

    @abstractmethod
    def initial_state(
        self, env: WarpMujocoVectorEnv, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial (qpos (N, nq), qvel (N, nv)) of every world (gymnasium's ``reset_model``)."""

    @abstractmethod
    def observe(self, env: WarpMujocoVectorEnv) -> torch.Tensor:
        """Observations (N, obs_dim)."""

    def progress(self, env: WarpMujocoVectorEnv) -> torch.Tensor | None:
        """Position (N,) whose change per ``dt`` is rewarded; None for tasks without one."""
        return None

    @abstractmethod
    def reward(
        self,
        env: WarpMujocoVectorEnv,
        action: torch.Tensor,
        before: torch.Tensor | None,
        after: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward (N,), terminated (N,) bool) of the step from ``before`` to ``after``
        (:meth:`progress` before and after it)."""


def _uniform(env: WarpMujocoVectorEnv, generator, size: int, low: float, high: float):
    u = torch.rand(env.num_envs, size, device=env.device, generator=generator)
    return low + (high - low) * u


# Healthy-state predicates of the v5 locomotion tasks over (N, nq) positions, (N, nv) velocities.
HealthCheck = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _hopper_healthy(qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    state = torch.cat([qpos[:, 2:], qvel], dim=1)  # state_vector()[2:]
    z, angle = qpos[:, 1], qpos[:, 2]
    return ((state > -100.0) & (state < 100.0)).all(1) & (z > 0.7) & (angle.abs() < 0.2)


def _walker_healthy(qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    z, angle = qpos[:, 1], qpos[:, 2]
    return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def _ant_healthy(qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(qpos).all(1) & torch.isfinite(qvel).all(1)
    return finite & (qpos[:, 2] >= 0.2) & (qpos[:, 2] <= 1.0)


def _pendulum_upright(qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(qpos).all(1) & torch.isfinite(qvel).all(1)
    return finite & (qpos[:, 1].abs() <= 0.2)


@dataclass(frozen=True)
class Locomotion(WarpTask):
    """Forward-progress tasks (constructor defaults of their gymnasium v5 classes).

    Attributes:
        xml: model file among gymnasium's MuJoCo assets.
        frame_skip: physics steps per env step.
        reset_noise: scale of the noise added to the initial qpos (uniform) and qvel.
        qvel_noise: ``"uniform"`` (U(-s, s)) or ``"normal"`` (s * N(0, 1)) for qvel.
        skip_qpos: leading qpos entries left out of the observation (the x, y position).
        clip_qvel: observed velocities are clipped to +-this (Hopper, Walker2d).
        forward_weight: weight of the forward velocity in the reward.
        ctrl_weight: weight of the squared action.
        contact_weight: weight of the squared clipped external contact forces (Ant); > 0 also
            puts those forces of every body but the world in the observation.
        healthy_reward: reward per step while healthy.
        healthy: the task's healthy predicate; None for tasks that never terminate.
        x_body: body whose xpos measures forward progress (Ant's torso); None reads qpos[0].
    """

    xml: str
    frame_skip: int
    reset_noise: float
    qvel_noise: str
    skip_qpos: int
    clip_qvel: float | None = None
    forward_weight: float = 1.0
    ctrl_weight: float = 0.0
    contact_weight: float = 0.0
    healthy_reward: float = 0.0
    healthy: HealthCheck | None = None
    x_body: str | None = None

    @property
    def bodies(self) -> tuple[str, ...]:
        return () if self.x_body is None else (self.x_body,)

    @property
    def uses_contact_forces(self) -> bool:
        return self.contact_weight > 0

    def initial_state(self, env, generator):
        s = self.reset_noise
        qpos = env.init_qpos + _uniform(env, generator, env.nq, -s, s)
        if self.qvel_noise == "normal":
            qvel = s * torch.randn(env.num_envs, env.nv, device=env.device, generator=generator)
        else:
            qvel = _uniform(env, generator, env.nv, -s, s)
        return qpos, qvel

    def observe(self, env):
        velocity = env.qvel
        if self.clip_qvel is not None:
            velocity = velocity.clamp(-self.clip_qvel, self.clip_qvel)
        parts = [env.qpos[:, self.skip_qpos :], velocity]
        if self.uses_contact_forces:
            parts.append(env.cfrc_ext[:, 1:].clamp(-1.0, 1.0).flatten(1))
        return torch.cat(parts, dim=1)

    def progress(self, env):
        if self.x_body is None:
            return env.qpos[:, 0].clone()
        return env.xpos[:, env.body[self.x_body], 0].clone()

    def reward(self, env, action, before, after):
        reward = self.forward_weight * (after - before) / env.dt
        reward -= self.ctrl_weight * action.square().sum(1)
        if self.uses_contact_forces:
            reward -= self.contact_weight * env.cfrc_ext.clamp(-1.0, 1.0).square().sum((1, 2))
        if self.healthy is None:
            return reward, torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
        healthy = self.healthy(env.qpos, env.qvel)
        return reward + self.healthy_reward * healthy, ~healthy


@dataclass(frozen=True)
class InvertedDoublePendulum(WarpTask):
    """Balance two poles on a cart; the pole's tip is the model's first site."""

    xml: str = "inverted_double_pendulum.xml"
    frame_skip: int = 5
    reset_noise: float = 0.1
    healthy_reward: float = 10.0

    def initial_state(self, env, generator):
        s = self.reset_noise
        qpos = env.init_qpos + _uniform(env, generator, env.nq, -s, s)
        qvel = s * torch.randn(env.num_envs, env.nv, device=env.device, generator=generator)
        return qpos, qvel

    def observe(self, env):
        angles = env.qpos[:, 1:]
        return torch.cat(
            [
                env.qpos[:, :1],
                angles.sin(),
                angles.cos(),
                env.qvel.clamp(-10.0, 10.0),
                env.qfrc_constraint[:, :1].clamp(-10.0, 10.0),
            ],
            dim=1,
        )

    def reward(self, env, action, before, after):
        x, y = env.site_xpos[:, 0, 0], env.site_xpos[:, 0, 2]
        v1, v2 = env.qvel[:, 1], env.qvel[:, 2]
        terminated = y <= 1.0
        penalty = 0.01 * x.square() + (y - 2.0).square() + 1e-3 * v1.square() + 5e-3 * v2.square()
        return self.healthy_reward * ~terminated - penalty, terminated


@dataclass(frozen=True)
class Reacher(WarpTask):
    """Move a two-link arm's fingertip to a target drawn uniformly in a disk of radius 0.2."""

    xml: str = "reacher.xml"
    frame_skip: int = 2
    max_episode_steps: int = 50
    bodies: tuple[str, ...] = ("fingertip", "target")

    def initial_state(self, env, generator):
        qpos = env.init_qpos + _uniform(env, generator, env.nq, -0.1, 0.1)
        # gymnasium draws the goal by rejection from the square [-0.2, 0.2]^2 until it is inside
        # the disk of radius 0.2: the same distribution as this polar draw, without a loop.
        radius = 0.2 * _uniform(env, generator, 1, 0.0, 1.0).sqrt()
        angle = _uniform(env, generator, 1, 0.0, 2 * math.pi)
        qpos[:, -2:] = torch.cat([radius * angle.cos(), radius * angle.sin()], dim=1)
        qvel = _uniform(env, generator, env.nv, -0.005, 0.005)
        qvel[:, -2:] = 0.0
        return qpos, qvel

    def observe(self, env):
        theta = env.qpos[:, :2]
        to_target = env.xpos[:, env.body["fingertip"]] - env.xpos[:, env.body["target"]]
        return torch.cat(
            [theta.cos(), theta.sin(), env.qpos[:, 2:], env.qvel[:, :2], to_target[:, :2]], dim=1
        )

    def reward(self, env, action, before, after):
        to_target = env.xpos[:, env.body["fingertip"]] - env.xpos[:, env.body["target"]]
        reward = -to_target.norm(dim=1) - action.square().sum(1)
        return reward, torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)


@dataclass(frozen=True)
class Pusher(WarpTask):
    """Push a cylinder to the goal at the origin with a 7-DoF arm."""

    xml: str = "pusher_v5.xml"
    frame_skip: int = 5
    max_episode_steps: int = 100
    bodies: tuple[str, ...] = ("tips_arm", "object", "goal")
    #: cylinder draws per world; gymnasium redraws until one lies > 0.17 from the goal (each
    #: does with probability ~0.62), so 32 leave a world without one with probability ~1e-13.
    candidates: int = 32

    def initial_state(self, env, generator):
        shape = (env.num_envs, self.candidates)
        x = -0.3 * torch.rand(shape, device=env.device, generator=generator)
        y = -0.2 + 0.4 * torch.rand(shape, device=env.device, generator=generator)
        first_far = (x.square() + y.square() > 0.17**2).to(torch.uint8).argmax(1, keepdim=True)
        qpos = env.init_qpos.expand(env.num_envs, -1).clone()
        qpos[:, -4:-2] = torch.cat([x.gather(1, first_far), y.gather(1, first_far)], dim=1)
        qpos[:, -2:] = 0.0
        qvel = _uniform(env, generator, env.nv, -0.005, 0.005)
        qvel[:, -4:] = 0.0
        return qpos, qvel

    def observe(self, env):
        com = [env.xpos[:, env.body[name]] for name in self.bodies]
        return torch.cat([env.qpos[:, :7], env.qvel[:, :7], *com], dim=1)

    def reward(self, env, action, before, after):
        tips, cylinder, goal = (env.xpos[:, env.body[name]] for name in self.bodies)
        reward = -0.5 * (cylinder - tips).norm(dim=1) - (cylinder - goal).norm(dim=1)
        reward -= 0.1 * action.square().sum(1)
        return reward, torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)


#: The v5 tasks on the Warp backend (constants from gymnasium/envs/mujoco/*_v5.py).
TASKS: dict[str, WarpTask] = {
    "HalfCheetah-v5": Locomotion(
        "half_cheetah.xml", frame_skip=5, reset_noise=0.1, qvel_noise="normal", skip_qpos=1,
        ctrl_weight=0.1,
    ),
    "Hopper-v5": Locomotion(
        "hopper.xml", frame_skip=4, reset_noise=5e-3, qvel_noise="uniform", skip_qpos=1,
        clip_qvel=10.0, ctrl_weight=1e-3, healthy_reward=1.0, healthy=_hopper_healthy,
    ),
    "Walker2d-v5": Locomotion(
        "walker2d_v5.xml", frame_skip=4, reset_noise=5e-3, qvel_noise="uniform", skip_qpos=1,
        clip_qvel=10.0, ctrl_weight=1e-3, healthy_reward=1.0, healthy=_walker_healthy,
    ),
    "Ant-v5": Locomotion(
        "ant.xml", frame_skip=5, reset_noise=0.1, qvel_noise="normal", skip_qpos=2,
        ctrl_weight=0.5, contact_weight=5e-4, healthy_reward=1.0, healthy=_ant_healthy,
        x_body="torso",
    ),
    "Swimmer-v5": Locomotion(
        "swimmer.xml", frame_skip=4, reset_noise=0.1, qvel_noise="uniform", skip_qpos=2,
        ctrl_weight=1e-4,
    ),
    # reward = 1 while upright, 0 on the step that tips it over (gymnasium: int(not terminated))
    "InvertedPendulum-v5": Locomotion(
        "inverted_pendulum.xml", frame_skip=2, reset_noise=0.01, qvel_noise="uniform",
        skip_qpos=0, forward_weight=0.0, healthy_reward=1.0, healthy=_pendulum_upright,
    ),
    "InvertedDoublePendulum-v5": InvertedDoublePendulum(),
    "Reacher-v5": Reacher(),
    "Pusher-v5": Pusher(),
}  # fmt: skip


def task_names() -> list[str]:
    """The MuJoCo v5 tasks the Warp backend implements."""
    return list(TASKS)


def _import_warp():
    try:
        import warp

        # Warp prints a banner and a line per kernel module it loads (hundreds for MJWarp).
        warp.config.quiet = True
        if hasattr(warp, "LOG_WARNING"):
            warp.config.log_level = warp.LOG_WARNING
        import mujoco
        import mujoco_warp
    except ModuleNotFoundError as e:
        raise UserError(
            f"env.vectorization=warp needs {e.name!r}: pip install \"deeprl[warp]\" (in a virtual "
            f"environment without deeprl[metaworld] or deeprl[dmc], whose mujoco pin conflicts; "
            f"see docs/envs.md)"
        ) from e
    return mujoco, mujoco_warp, warp


def _warp_device(device: torch.device, allow_cpu: bool) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    if device.type == "cpu" and allow_cpu:
        return "cpu"
    raise UserError(
        f"env.vectorization=warp runs MuJoCo on an NVIDIA GPU; got device={device} (CUDA "
        f"available: {torch.cuda.is_available()}). Use device=cuda, or env.vectorization=sync "
        f"(or envpool) for the CPU simulator."
    )


class WarpMujocoVectorEnv(VectorEnv):
    """``num_envs`` copies of a gymnasium MuJoCo v5 task in one MJWarp ``Data`` (one world each).

    Observations (N, obs_dim) float32, actions (N, act_dim) within the actuators' ``ctrlrange``,
    the task's time limit (truncation). Episodes reset in the same step, like every
    :class:`VectorEnv`.

    Args:
        task: a key of :data:`TASKS`.
        num_envs: copies (MJWarp worlds).
        device: a CUDA device; ``"cpu"`` only with ``allow_cpu``.
        allow_cpu: run MJWarp's kernels on Warp's CPU device (slow; tests and debugging).
        nconmax: contacts allocated per world (MJWarp's default guess if None); raise it if
            MJWarp reports a contact overflow.
        njmax: constraint rows allocated per world (MJWarp's default if None).
    """

    def __init__(
        self,
        task: str,
        num_envs: int,
        device: torch.device | str = "cuda",
        allow_cpu: bool = False,
        nconmax: int | None = None,
        njmax: int | None = None,
    ) -> None:
        if task not in TASKS:
            raise UserError(
                f"task {task!r} is not available with env.vectorization=warp (Humanoid and "
                f"HumanoidStandup use MuJoCo's PGS solver, which MuJoCo Warp lacks). Warp tasks: "
                f"{', '.join(TASKS)}; every MuJoCo task runs with env.vectorization=sync|async."
            )
        mujoco, mjw, wp = _import_warp()
        self.device = torch.device(device)
        self.warp_device = _warp_device(self.device, allow_cpu)
        self.num_envs = num_envs
        self.task = TASKS[task]
        self._mjw, self._wp = mjw, wp
        assets = importlib.resources.files("gymnasium") / "envs" / "mujoco" / "assets"
        model = mujoco.MjModel.from_xml_path(str(assets / self.task.xml))
        self.dt = self.task.frame_skip * model.opt.timestep
        self.nq, self.nv = model.nq, model.nv
        self.body = {name: model.body(name).id for name in self.task.bodies}
        with wp.ScopedDevice(self.warp_device):
            self.model = mjw.put_model(model)
            self.data = mjw.make_data(model, nworld=num_envs, nconmax=nconmax, njmax=njmax)
        # torch views of MJWarp's arrays (no copies): writing them changes the simulation.
        self.qpos = wp.to_torch(self.data.qpos)  # (N, nq)
        self.qvel = wp.to_torch(self.data.qvel)  # (N, nv)
        self.ctrl = wp.to_torch(self.data.ctrl)  # (N, nu)
        self.xpos = wp.to_torch(self.data.xpos)  # (N, nbody, 3)
        self.site_xpos = wp.to_torch(self.data.site_xpos)  # (N, nsite, 3)
        self.cfrc_ext = wp.to_torch(self.data.cfrc_ext)  # (N, nbody, 6)
        self.qfrc_constraint = wp.to_torch(self.data.qfrc_constraint)  # (N, nv)
        self.init_qpos = torch.as_tensor(model.qpos0, dtype=torch.float32, device=self.device)

        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(0)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.running_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self.progress = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._graph = None
        self._compile()
        low, high = model.actuator_ctrlrange.T
        self.spec = EnvSpec(
            id=task,
            observation_space=Box.uniform(tuple(self.reset().shape[1:]), -math.inf, math.inf),
            action_space=Box((model.nu,), tuple(low.tolist()), tuple(high.tolist())),
            max_episode_steps=self.task.max_episode_steps,
            metadata={"suite": "mujoco", "task": task, "pixels": False, "backend": "warp"},
        )
        self._limit = self.task.max_episode_steps

    # ---- physics ----------------------------------------------------------------------------
    def _simulate(self) -> None:
        """One env step of every world: ``frame_skip`` MuJoCo steps, then the external contact
        forces (gymnasium calls mj_rnePostConstraint after mj_step for the same reason)."""
        for _ in range(self.task.frame_skip):
            self._mjw.step(self.model, self.data)
        if self.task.uses_contact_forces:
            self._mjw.rne_postconstraint(self.model, self.data)

    def _compile(self) -> None:
        """Build MJWarp's kernels now (one eager step and reset) rather than in the first
        :meth:`step`, then capture the env step as a CUDA graph where there is one."""
        wp = self._wp
        with self._on_device():
            self._simulate()
            self._mjw.reset_data(self.model, self.data)
        if self.device.type == "cuda":
            # Captured on Warp's own stream (torch's default stream is CUDA's legacy stream,
            # which cannot capture) and replayed on torch's stream in step().
            wp.synchronize_device(self.warp_device)
            try:
                with wp.ScopedDevice(self.warp_device), wp.ScopedCapture() as capture:
                    self._simulate()
                self._graph = capture.graph
            except RuntimeError as e:  # e.g. a driver too old for MJWarp's conditional nodes
                warnings.warn(
                    f"MuJoCo Warp: CUDA graph capture failed ({e}); stepping without a graph "
                    f"(slower)",
                    stacklevel=3,
                )

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """Run Warp on this env's device and, on CUDA, on torch's current stream, so Warp's
        kernels and torch's ops on the shared arrays run in order without synchronising."""
        with contextlib.ExitStack() as scope:
            scope.enter_context(self._wp.ScopedDevice(self.warp_device))
            if self.device.type == "cuda":
                scope.enter_context(self._wp.ScopedStream(self._wp.stream_from_torch(self.device)))
            yield

    def _restart(self, mask: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Put the worlds where ``mask`` is True in ``state`` (qpos, qvel), as gymnasium's reset
        does: MuJoCo's reset of their data, the state, then kinematics (its mj_forward) so body
        positions match the state. Drawn for every world and kept where masked, so a reset never
        waits on the host."""
        qpos, qvel = state
        column = mask.unsqueeze(1)
        with self._on_device():
            self._mjw.reset_data(self.model, self.data, reset=self._wp.from_torch(mask))
            self.qpos.copy_(torch.where(column, qpos, self.qpos))
            self.qvel.copy_(torch.where(column, qvel, self.qvel))
            # Kinematics of the other worlds too: their post-step body positions were read
            # already, and their next step recomputes them first.
            self._mjw.kinematics(self.model, self.data)
        # After gymnasium's reset no contact force is computed yet (mj_forward leaves cfrc_ext
        # at zero), and InvertedDoublePendulum, the one task observing qfrc_constraint, starts
        # with no constraint active.
        self.cfrc_ext.masked_fill_(mask.view(-1, 1, 1), 0.0)
        self.qfrc_constraint.masked_fill_(column, 0.0)
        progress = self.task.progress(self)
        if progress is not None:
            self.progress = torch.where(mask, progress, self.progress)
        self.elapsed.masked_fill_(mask, 0)
        self.running_return.masked_fill_(mask, 0.0)

    # ---- VectorEnv ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self.generator.manual_seed(seed)
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._restart(every, self.task.initial_state(self, self.generator))
        return self.task.observe(self)

    def step(self, action: torch.Tensor) -> StepResult:
        action = action.to(self.device, torch.float32)
        self.ctrl.copy_(action)
        with self._on_device():
            if self._graph is not None:
                self._wp.capture_launch(self._graph)
            else:
                self._simulate()
        after = self.task.progress(self)
        reward, terminated = self.task.reward(self, action, self.progress, after)
        if after is not None:
            self.progress = after
        self.elapsed += 1
        self.running_return += reward
        done = terminated | (self.elapsed >= self._limit)
        episode_return = self.running_return * done
        episode_length = self.elapsed * done
        next_obs = self.task.observe(self)
        obs = next_obs
        # On the CPU only when a world finished (no device to keep busy); on CUDA always.
        if self._graph is not None or done.any():
            self._restart(done, self.task.initial_state(self, self.generator))
            obs = torch.where(done.unsqueeze(1), self.task.observe(self), next_obs)
        return StepResult(
            obs=obs,
            next_obs=next_obs,
            reward=reward,
            terminated=terminated,
            truncated=done & ~terminated,
            episode_return=episode_return,
            episode_length=episode_length,
            info={},
        )

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
        """Restart every world in the given state (N, nq), (N, nv), like gymnasium's
        ``set_state`` after a reset; returns the observations. For comparisons with CPU MuJoCo."""
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._restart(every, (qpos.to(self.device), qvel.to(self.device)))
        return self.task.observe(self)

    def state_dict(self) -> dict:
        return {
            "qpos": self.qpos.clone(),
            "qvel": self.qvel.clone(),
            "qacc_warmstart": self._wp.to_torch(self.data.qacc_warmstart).clone(),
            "progress": self.progress.clone(),
            "elapsed": self.elapsed.clone(),
            "running_return": self.running_return.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.set_state(state["qpos"], state["qvel"])
        self._wp.to_torch(self.data.qacc_warmstart).copy_(state["qacc_warmstart"])
        self.progress = state["progress"].to(self.device, copy=True)
        self.elapsed = state["elapsed"].to(self.device, copy=True)
        self.running_return = state["running_return"].to(self.device, copy=True)
        self.generator.set_state(state["generator"].cpu())
