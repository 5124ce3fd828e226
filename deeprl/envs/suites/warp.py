"""Gymnasium MuJoCo v5 tasks on MuJoCo Warp: every copy of the simulator stepped together on the
GPU (MJWarp, Google DeepMind and NVIDIA 2025, "MuJoCo Warp: GPU-accelerated MuJoCo" through NVIDIA
Warp; tasks as in gymnasium v5, Towers et al. 2024).

Same tasks as ``deeprl.envs.suites.mujoco``, same protocol: the v5 model files, frame skips,
reset noise, observations, rewards and healthy ranges, so results transfer between the two paths.
Per env step and copy, with ``dt = frame_skip * timestep``:

    x_velocity = (x_after - x_before) / dt        (qpos[0]; the torso's xpos for Ant)
    reward     = w_forward * x_velocity + healthy_reward * is_healthy
                 - w_ctrl * ||a||^2 - w_contact * ||clip(cfrc_ext, -1, 1)||^2
    terminated = not is_healthy                    (tasks with a healthy range)

Differences from the CPU path, all of degree: MJWarp computes in float32 (CPU MuJoCo in float64)
and its reset noise comes from a torch generator, so a seed gives different (equally valid)
initial states than gymnasium's. Observations, rewards and flags never leave the device: MJWarp's
arrays are shared with torch without copies, and on CUDA one env step (``frame_skip`` physics
steps) is replayed as a captured CUDA graph.

The ``warp`` extra needs ``mujoco>=3.13``, which metaworld 3.1.1's pin excludes: it lives in its
own virtual environment (docs/envs.md). MJWarp's kernels also run on Warp's CPU device, slowly;
``allow_cpu=True`` permits that for tests and debugging.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from deeprl.envs.base import StepResult, VectorEnv
from deeprl.envs.spec import Box, EnvSpec
from deeprl.errors import UserError

# Healthy-state predicates of the v5 tasks over (N, nq) positions and (N, nv) velocities.
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
class WarpTask:
    """One gymnasium v5 task's constants (defaults of its gymnasium constructor).

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
    x_body: int | None = None


#: The v5 tasks on the Warp backend (constants from gymnasium/envs/mujoco/*_v5.py).
TASKS: dict[str, WarpTask] = {
    "HalfCheetah-v5": WarpTask(
        "half_cheetah.xml", frame_skip=5, reset_noise=0.1, qvel_noise="normal", skip_qpos=1,
        ctrl_weight=0.1,
    ),
    "Hopper-v5": WarpTask(
        "hopper.xml", frame_skip=4, reset_noise=5e-3, qvel_noise="uniform", skip_qpos=1,
        clip_qvel=10.0, ctrl_weight=1e-3, healthy_reward=1.0, healthy=_hopper_healthy,
    ),
    "Walker2d-v5": WarpTask(
        "walker2d_v5.xml", frame_skip=4, reset_noise=5e-3, qvel_noise="uniform", skip_qpos=1,
        clip_qvel=10.0, ctrl_weight=1e-3, healthy_reward=1.0, healthy=_walker_healthy,
    ),
    "Ant-v5": WarpTask(
        "ant.xml", frame_skip=5, reset_noise=0.1, qvel_noise="normal", skip_qpos=2,
        ctrl_weight=0.5, contact_weight=5e-4, healthy_reward=1.0, healthy=_ant_healthy, x_body=1,
    ),
    "Swimmer-v5": WarpTask(
        "swimmer.xml", frame_skip=4, reset_noise=0.1, qvel_noise="uniform", skip_qpos=2,
        ctrl_weight=1e-4,
    ),
    # reward = 1 while upright, 0 on the step that tips it over (gymnasium: int(not terminated))
    "InvertedPendulum-v5": WarpTask(
        "inverted_pendulum.xml", frame_skip=2, reset_noise=0.01, qvel_noise="uniform",
        skip_qpos=0, forward_weight=0.0, healthy_reward=1.0, healthy=_pendulum_upright,
    ),
}  # fmt: skip

MAX_EPISODE_STEPS = 1000


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
    1000-step time limit (truncation). Episodes reset in the same step, like every
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
                f"task {task!r} is not available with env.vectorization=warp. Warp tasks: "
                f"{', '.join(TASKS)}; the other MuJoCo tasks run with "
                f"env.vectorization=sync|async|envpool."
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
        with wp.ScopedDevice(self.warp_device):
            self.model = mjw.put_model(model)
            self.data = mjw.make_data(model, nworld=num_envs, nconmax=nconmax, njmax=njmax)
        # torch views of MJWarp's arrays (no copies): writing them changes the simulation.
        self.qpos = wp.to_torch(self.data.qpos)  # (N, nq)
        self.qvel = wp.to_torch(self.data.qvel)  # (N, nv)
        self.ctrl = wp.to_torch(self.data.ctrl)  # (N, nu)
        self.xpos = wp.to_torch(self.data.xpos)  # (N, nbody, 3)
        self.cfrc_ext = wp.to_torch(self.data.cfrc_ext)  # (N, nbody, 6)
        self.init_qpos = torch.as_tensor(model.qpos0, dtype=torch.float32, device=self.device)

        low, high = model.actuator_ctrlrange.T
        obs_dim = model.nq - self.task.skip_qpos + model.nv
        if self.task.contact_weight > 0:
            obs_dim += (model.nbody - 1) * 6
        self.spec = EnvSpec(
            id=task,
            observation_space=Box.uniform((obs_dim,), float("-inf"), float("inf")),
            action_space=Box((model.nu,), tuple(low.tolist()), tuple(high.tolist())),
            max_episode_steps=MAX_EPISODE_STEPS,
            metadata={"suite": "mujoco", "task": task, "pixels": False, "backend": "warp"},
        )
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(0)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.running_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self.x_before = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._graph = None
        self._compile()

    # ---- physics ----------------------------------------------------------------------------
    def _simulate(self) -> None:
        """One env step of every world: ``frame_skip`` MuJoCo steps, then the external contact
        forces (gymnasium calls mj_rnePostConstraint after mj_step for the same reason)."""
        for _ in range(self.task.frame_skip):
            self._mjw.step(self.model, self.data)
        if self.task.contact_weight > 0:
            self._mjw.rne_postconstraint(self.model, self.data)

    def _compile(self) -> None:
        """Build MJWarp's kernels now (one eager step and reset) rather than in the first
        :meth:`step`, then capture the env step as a CUDA graph where there is one."""
        wp = self._wp
        with self._on_device():
            self._simulate()
            self._mjw.reset_data(self.model, self.data, reset=self._warp_mask(self.elapsed == 0))
        if self.device.type == "cuda":
            # Captured on Warp's own stream (torch's default stream is CUDA's legacy stream,
            # which cannot capture) and replayed on torch's stream in step().
            wp.synchronize_device(self.warp_device)
            with wp.ScopedDevice(self.warp_device), wp.ScopedCapture() as capture:
                self._simulate()
            self._graph = capture.graph
        self.reset()

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """Run Warp on this env's device and, on CUDA, on torch's current stream, so Warp's
        kernels and torch's ops on the shared arrays run in order without synchronising."""
        with contextlib.ExitStack() as scope:
            scope.enter_context(self._wp.ScopedDevice(self.warp_device))
            if self.device.type == "cuda":
                scope.enter_context(self._wp.ScopedStream(self._wp.stream_from_torch(self.device)))
            yield

    def _warp_mask(self, mask: torch.Tensor):
        return self._wp.from_torch(mask.contiguous(), dtype=self._wp.bool)

    def _x_position(self) -> torch.Tensor:
        if self.task.x_body is None:
            return self.qpos[:, 0].clone()
        return self.xpos[:, self.task.x_body, 0].clone()

    def _observe(self) -> torch.Tensor:
        velocity = self.qvel
        if self.task.clip_qvel is not None:
            velocity = velocity.clamp(-self.task.clip_qvel, self.task.clip_qvel)
        parts = [self.qpos[:, self.task.skip_qpos :], velocity]
        if self.task.contact_weight > 0:
            parts.append(self.cfrc_ext[:, 1:].clamp(-1.0, 1.0).flatten(1))
        return torch.cat(parts, dim=1)

    def _reset_worlds(self, mask: torch.Tensor) -> None:
        """Restart the worlds where ``mask`` is True: MuJoCo's reset, then the task's noisy
        initial state (gymnasium's ``reset_model``), drawn for every world and kept where masked
        so the draw never waits on the host."""
        if self.device.type == "cpu" and not mask.any():
            return  # on the CPU, skip the draw and the kernel launch when no world finished
        n, scale = self.num_envs, self.task.reset_noise
        nq, nv = self.qpos.shape[1], self.qvel.shape[1]
        qpos = self.init_qpos + scale * (
            2 * torch.rand(n, nq, device=self.device, generator=self.generator) - 1
        )
        if self.task.qvel_noise == "normal":
            qvel = scale * torch.randn(n, nv, device=self.device, generator=self.generator)
        else:
            qvel = scale * (2 * torch.rand(n, nv, device=self.device, generator=self.generator) - 1)
        with self._on_device():
            self._mjw.reset_data(self.model, self.data, reset=self._warp_mask(mask))
        column = mask.unsqueeze(1)
        self.qpos.copy_(torch.where(column, qpos, self.qpos))
        self.qvel.copy_(torch.where(column, qvel, self.qvel))
        # gymnasium's reset leaves cfrc_ext at zero (mj_resetData; mj_forward does not fill it)
        self.cfrc_ext.masked_fill_(mask.view(-1, 1, 1), 0.0)
        # after gymnasium's mj_forward, the torso's xpos is its qpos (a free joint)
        self.x_before = torch.where(mask, self.qpos[:, 0], self.x_before)
        self.elapsed.masked_fill_(mask, 0)
        self.running_return.masked_fill_(mask, 0.0)

    # ---- VectorEnv ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self.generator.manual_seed(seed)
        self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe()

    def step(self, action: torch.Tensor) -> StepResult:
        action = action.to(self.device, torch.float32)
        self.ctrl.copy_(action)
        with self._on_device():
            if self._graph is not None:
                self._wp.capture_launch(self._graph)
            else:
                self._simulate()
        task = self.task
        x_after = self._x_position()
        reward = task.forward_weight * (x_after - self.x_before) / self.dt
        reward -= task.ctrl_weight * action.square().sum(1)
        if task.contact_weight > 0:
            reward -= task.contact_weight * self.cfrc_ext.clamp(-1.0, 1.0).square().sum((1, 2))
        if task.healthy is not None:
            healthy = task.healthy(self.qpos, self.qvel)
            reward += task.healthy_reward * healthy
            terminated = ~healthy
        else:
            terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.x_before = x_after
        self.elapsed += 1
        self.running_return += reward
        done = terminated | (self.elapsed >= MAX_EPISODE_STEPS)
        episode_return = self.running_return * done
        episode_length = self.elapsed * done
        next_obs = self._observe()
        self._reset_worlds(done)
        return StepResult(
            obs=self._observe(),
            next_obs=next_obs,
            reward=reward,
            terminated=terminated,
            truncated=done & ~terminated,
            episode_return=episode_return,
            episode_length=episode_length,
            info={},
        )

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
        """Put every world in the given state (N, nq), (N, nv), as gymnasium's ``set_state``
        after a reset; returns the observations. For comparisons with the CPU simulator."""
        self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self.qpos.copy_(qpos)
        self.qvel.copy_(qvel)
        self.x_before = self.qpos[:, 0].clone()
        return self._observe()

    def state_dict(self) -> dict:
        return {
            "qpos": self.qpos.clone(),
            "qvel": self.qvel.clone(),
            "qacc_warmstart": self._wp.to_torch(self.data.qacc_warmstart).clone(),
            "x_before": self.x_before.clone(),
            "elapsed": self.elapsed.clone(),
            "running_return": self.running_return.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self.qpos.copy_(state["qpos"])
        self.qvel.copy_(state["qvel"])
        self._wp.to_torch(self.data.qacc_warmstart).copy_(state["qacc_warmstart"])
        self.x_before = state["x_before"].to(self.device, copy=True)
        self.elapsed = state["elapsed"].to(self.device, copy=True)
        self.running_return = state["running_return"].to(self.device, copy=True)
        self.generator.set_state(state["generator"].cpu())
