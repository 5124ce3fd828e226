"""Torch-native classic-control tasks with gymnasium's exact dynamics.

Each class reproduces the gymnasium environment named in its ``spec`` (constants, integrator,
order of clipping, termination, reward and initial-state distribution), batched over ``num_envs``
copies and computed in float32 (gymnasium computes in float64; one step agrees to ~1e-6).
``tests/test_classic_envs.py`` checks every one against gymnasium on random states.

A step is a few dozen tensor ops whatever ``num_envs`` is, so at small N its cost is the number of
ops: the physics is written with fused ops (``addcmul``, ``add(alpha=)``), and the envs whose
observation is not their state keep that state column-major (a transposed view of a
(state_dim, N) tensor) so every variable is a contiguous row.
"""

from __future__ import annotations

import math

import torch

from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.envs.torch_env import TorchVectorEnv

_FLOAT32_MAX = 3.4028234663852886e38


def _wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped into [-pi, pi) by whole turns; values already inside are returned exactly."""
    turns = torch.floor((angle + math.pi) * (0.5 / math.pi))
    return torch.add(angle, turns, alpha=-2 * math.pi)


class CartPole(TorchVectorEnv):
    """gymnasium ``CartPole-v1`` (Barto, Sutton & Anderson 1983), Euler integration, tau 0.02.

    State (x, x_dot, theta, theta_dot), also the observation, (N, 4); action (N,) long, 0 pushes
    left and 1 right; reward 1 per step; terminates when |x| > 2.4 or |theta| > 12 degrees;
    truncated at 500 steps. Initial state uniform in [-0.05, 0.05]^4.
    """

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masscart + masspole
    polemass_length = masspole * length
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    high = (x_threshold * 2, _FLOAT32_MAX, theta_threshold * 2, _FLOAT32_MAX)
    spec = EnvSpec(
        id="CartPole-v1",
        observation_space=Box((4,), tuple(-h for h in high), high),
        action_space=Discrete(2),
        max_episode_steps=500,
        metadata={"feature_names": ["cart position", "cart velocity", "pole angle",
                                    "pole angular velocity"]},
    )

    def __init__(self, num_envs: int, device: torch.device | str = "cpu") -> None:
        super().__init__(num_envs, device)
        # 0-dim constants on the device, made once: ops taking them need no scalar wrapping, and a
        # 0-dim float input lets `add(const, action_long, alpha=)` give float32 in one op.
        const = torch.tensor(
            (-self.force_mag / self.total_mass, self.length * 4.0 / 3.0), device=self.device
        )
        self._neg_force_per_mass, self._four_thirds_length = const.unbind()
        # |x| and |theta| bounds per state variable (velocities are unbounded).
        self._bounds = torch.tensor(
            (self.x_threshold, math.inf, self.theta_threshold, math.inf), device=self.device
        )

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.empty((n, 4), device=self.device).uniform_(
            -0.05, 0.05, generator=self.generator
        )

    def transition(self, state, action):
        _, x_dot, theta, theta_dot = state.unbind(1)  # x moves with x_dot only
        cos, sin = torch.cos(theta), torch.sin(theta)
        # gymnasium's temp = (force + m_p l theta_dot^2 sin) / M with force = +-10, divided out.
        temp = torch.add(
            self._neg_force_per_mass, action, alpha=2 * self.force_mag / self.total_mass
        )
        temp = torch.addcmul(
            temp, theta_dot.square(), sin, value=self.polemass_length / self.total_mass
        )
        # theta_acc = (g sin - cos temp) / (l (4/3 - m_p cos^2 / M))
        theta_acc = torch.addcmul(sin * self.gravity, cos, temp, value=-1.0) / torch.addcmul(
            self._four_thirds_length, cos, cos, value=-self.length * self.masspole / self.total_mass
        )
        x_acc = torch.addcmul(temp, theta_acc, cos, value=-self.polemass_length / self.total_mass)
        # Euler: every variable moves by tau times its derivative, in one op.
        derivative = torch.stack((x_dot, x_acc, theta_dot, theta_acc), 1)
        next_state = torch.add(state, derivative, alpha=self.tau)
        terminated = (next_state.abs() > self._bounds).any(1)
        return next_state, torch.ones_like(temp), terminated


class Acrobot(TorchVectorEnv):
    """gymnasium ``Acrobot-v1`` (Sutton 1996), with the dynamics of Sutton & Barto's book.

    Two links hang from a fixed pivot; torque -1, 0 or +1 (action 0, 1, 2, (N,) long) acts on the
    joint between them. State (theta1, theta2, dtheta1, dtheta2) (N, 4), integrated by one RK4
    step of dt 0.2 with the torque held constant (no torque noise); angles are then wrapped into
    [-pi, pi] and velocities clipped to 4 pi and 9 pi. Observation (cos theta1, sin theta1,
    cos theta2, sin theta2, dtheta1, dtheta2) (N, 6). Terminates when the free end rises above the
    pivot by one link length, -cos(theta1) - cos(theta1 + theta2) > 1; reward -1 per step and 0
    on the terminal one; truncated at 500 steps. Initial state uniform in [-0.1, 0.1]^4.
    """

    dt = 0.2
    link_length_1 = 1.0
    link_mass_1, link_mass_2 = 1.0, 1.0
    link_com_1, link_com_2 = 0.5, 0.5  # positions of the centres of mass along each link
    link_moi = 1.0  # moment of inertia of each link
    gravity = 9.8
    max_vel_1, max_vel_2 = 4 * math.pi, 9 * math.pi
    spec = EnvSpec(
        id="Acrobot-v1",
        observation_space=Box(
            (6,),
            (-1.0, -1.0, -1.0, -1.0, -max_vel_1, -max_vel_2),
            (1.0, 1.0, 1.0, 1.0, max_vel_1, max_vel_2),
        ),
        action_space=Discrete(3),
        max_episode_steps=500,
        metadata={"feature_names": ["cos(theta1)", "sin(theta1)", "cos(theta2)", "sin(theta2)",
                                    "theta1 velocity", "theta2 velocity"]},
    )

    # Coefficients of the book's equations, with d1 = _d1_0 + _d1_c cos(theta2) and
    # d2 = _d2_0 + _d2_c cos(theta2); m2 l1 lc2 also scales the Coriolis terms.
    _d1_0 = (
        link_mass_1 * link_com_1**2
        + link_mass_2 * (link_length_1**2 + link_com_2**2)
        + 2 * link_moi
    )
    _d1_c = 2 * link_mass_2 * link_length_1 * link_com_2
    _d2_0 = link_mass_2 * link_com_2**2 + link_moi
    _d2_c = link_mass_2 * link_length_1 * link_com_2
    _phi1_g = (link_mass_1 * link_com_1 + link_mass_2 * link_length_1) * gravity
    _phi2_g = link_mass_2 * link_com_2 * gravity

    def __init__(self, num_envs: int, device: torch.device | str = "cpu") -> None:
        super().__init__(num_envs, device)
        self._max_vel = torch.tensor(((self.max_vel_1,), (self.max_vel_2,)), device=self.device)

    def initial_state(self, n: int) -> torch.Tensor:
        rows = torch.empty((4, n), device=self.device).uniform_(-0.1, 0.1, generator=self.generator)
        return rows.T

    def _derivative(self, y: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
        """Time derivative (4, N) of states given as rows (theta1, theta2, dtheta1, dtheta2)."""
        theta1, theta2, dtheta1, dtheta2 = y.unbind(0)
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        d1 = cos2 * self._d1_c + self._d1_0
        d2 = cos2 * self._d2_c + self._d2_0
        # gymnasium's cos(a - pi/2) terms are sin(a).
        phi2 = torch.sin(theta1 + theta2) * self._phi2_g
        phi1 = torch.add(phi2, torch.sin(theta1), alpha=self._phi1_g)
        # - m2 l1 lc2 sin(theta2) (dtheta2^2 + 2 dtheta2 dtheta1)
        coriolis = dtheta2 * torch.add(dtheta2, dtheta1, alpha=2.0)
        phi1 = torch.addcmul(phi1, sin2, coriolis, value=-self._d2_c)
        ratio = d2 / d1
        numerator = torch.addcmul(torque, ratio, phi1).sub_(phi2)
        numerator = torch.addcmul(numerator, dtheta1.square(), sin2, value=-self._d2_c)
        ddtheta2 = numerator / (self._d2_0 - ratio * d2)
        ddtheta1 = torch.addcmul(phi1, d2, ddtheta2).div_(d1).neg_()
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), 0)

    def transition(self, state, action):
        torque = action - 1.0  # actions 0, 1, 2 apply torques -1, 0, +1
        y0 = state.T  # rows: contiguous when the state is column-major
        h = self.dt
        k1 = self._derivative(y0, torque)
        k2 = self._derivative(torch.add(y0, k1, alpha=h / 2), torque)
        k3 = self._derivative(torch.add(y0, k2, alpha=h / 2), torque)
        k4 = self._derivative(torch.add(y0, k3, alpha=h), torque)
        slope = torch.add(k1, k2 + k3, alpha=2.0).add_(k4)
        y1 = torch.add(y0, slope, alpha=h / 6)
        angles = _wrap_angle(y1[:2])
        velocities = torch.clamp(y1[2:], -self._max_vel, self._max_vel)
        next_state = torch.cat((angles, velocities), 0).T
        theta1, theta2 = angles.unbind(0)
        terminated = torch.cos(theta1) + torch.cos(theta1 + theta2) < -1.0
        reward = torch.where(terminated, 0.0, -1.0)
        return next_state, reward, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        theta1, theta2, dtheta1, dtheta2 = state.T.unbind(0)
        return torch.stack(
            (
                torch.cos(theta1),
                torch.sin(theta1),
                torch.cos(theta2),
                torch.sin(theta2),
                dtheta1,
                dtheta2,
            ),
            1,
        )


class MountainCar(TorchVectorEnv):
    """gymnasium ``MountainCar-v0`` (Moore 1990), discrete actions.

    State (position, velocity), also the observation, (N, 2); action (N,) long, 0 pushes left,
    1 not at all, 2 right. Velocity changes by (action - 1) 0.001 - 0.0025 cos(3 position) and is
    clipped to 0.07; position then moves by the velocity and is clipped to [-1.2, 0.6], stopping
    the car at the left wall. Terminates at position >= 0.5 with velocity >= 0; reward -1 per step;
    truncated at 200 steps. Initial position uniform in [-0.6, -0.4], velocity 0.
    """

    min_position, max_position, max_speed = -1.2, 0.6, 0.07
    goal_position, goal_velocity = 0.5, 0.0
    force, gravity = 0.001, 0.0025
    spec = EnvSpec(
        id="MountainCar-v0",
        observation_space=Box((2,), (min_position, -max_speed), (max_position, max_speed)),
        action_space=Discrete(3),
        max_episode_steps=200,
        metadata={"feature_names": ["position", "velocity"]},
    )

    def initial_state(self, n: int) -> torch.Tensor:
        state = torch.zeros((n, 2), device=self.device)
        state[:, 0].uniform_(-0.6, -0.4, generator=self.generator)
        return state

    def _move(
        self, position: torch.Tensor, velocity: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gravity, speed limit, position update and the left wall (``velocity`` is updated in
        place); returns the next state (N, 2) and ``terminated``."""
        velocity.add_(torch.cos(position * 3), alpha=-self.gravity)
        velocity.clamp_(-self.max_speed, self.max_speed)
        position = torch.add(position, velocity).clamp_(self.min_position, self.max_position)
        velocity.masked_fill_((position == self.min_position) & (velocity < 0), 0.0)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        return torch.stack((position, velocity), 1), terminated

    def transition(self, state, action):
        position, velocity = state.unbind(1)
        next_state, terminated = self._move(
            position, torch.add(velocity, action - 1, alpha=self.force)
        )
        return next_state, torch.full_like(velocity, -1.0), terminated


class MountainCarContinuous(MountainCar):
    """gymnasium ``MountainCarContinuous-v0`` (Moore 1990), continuous force.

    As :class:`MountainCar` but the action (N, 1) is a force clipped to [-1, 1] that adds
    0.0015 force to the velocity, the goal is position >= 0.45, the reward is 100 on reaching it
    minus 0.1 action^2 every step, and episodes are truncated at 999 steps. As in gymnasium, the
    action penalty uses the action as given, before clipping.
    """

    goal_position, power = 0.45, 0.0015
    spec = EnvSpec(
        id="MountainCarContinuous-v0",
        observation_space=MountainCar.spec.observation_space,
        action_space=Box.uniform((1,), -1.0, 1.0),
        max_episode_steps=999,
        metadata=MountainCar.spec.metadata,
    )

    def transition(self, state, action):
        position, velocity = state.unbind(1)
        action = action[:, 0]
        next_state, terminated = self._move(
            position, torch.add(velocity, action.clamp(-1.0, 1.0), alpha=self.power)
        )
        reward = torch.addcmul(terminated * 100.0, action, action, value=-0.1)
        return next_state, reward, terminated


class Pendulum(TorchVectorEnv):
    """gymnasium ``Pendulum-v1``: torque-limited swing-up (Doya 2000), OpenAI Gym's version.

    State (theta, theta_dot) (N, 2), theta 0 upright; action (N, 1) a torque clipped to [-2, 2].
    Semi-implicit Euler with dt 0.05, g 10, m 1, l 1: theta_dot += (3 g / (2 l) sin(theta)
    + 3 / (m l^2) torque) dt, clipped to 8, then theta += theta_dot dt. Reward
    -(normalized theta^2 + 0.1 theta_dot^2 + 0.001 torque^2) of the state before the step; never
    terminates; truncated at 200 steps. Observation (cos theta, sin theta, theta_dot) (N, 3).
    Initial theta uniform in [-pi, pi], theta_dot in [-1, 1].
    """

    max_speed, max_torque, dt, g, m, l = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    spec = EnvSpec(
        id="Pendulum-v1",
        observation_space=Box((3,), (-1.0, -1.0, -max_speed), (1.0, 1.0, max_speed)),
        action_space=Box.uniform((1,), -max_torque, max_torque),
        max_episode_steps=200,
        metadata={"feature_names": ["cos(theta)", "sin(theta)", "angular velocity"]},
    )

    def initial_state(self, n: int) -> torch.Tensor:
        rows = torch.empty((2, n), device=self.device)
        rows[0].uniform_(-math.pi, math.pi, generator=self.generator)
        rows[1].uniform_(-1.0, 1.0, generator=self.generator)
        return rows.T

    def transition(self, state, action):
        theta, theta_dot = state.T.unbind(0)
        torque = action[:, 0].clamp(-self.max_torque, self.max_torque)
        # Same mapping as gymnasium's angle_normalize: ((theta + pi) mod 2 pi) - pi.
        upright_error = torch.remainder(theta + math.pi, 2 * math.pi).sub_(math.pi)
        cost = torch.addcmul(upright_error.square(), theta_dot, theta_dot, value=0.1)
        cost = torch.addcmul(cost, torque, torque, value=0.001)
        next_theta_dot = torch.add(
            theta_dot, torch.sin(theta), alpha=3 * self.g / (2 * self.l) * self.dt
        )
        next_theta_dot.add_(torque, alpha=3.0 / (self.m * self.l**2) * self.dt)
        next_theta_dot.clamp_(-self.max_speed, self.max_speed)
        next_theta = torch.add(theta, next_theta_dot, alpha=self.dt)
        next_state = torch.stack((next_theta, next_theta_dot), 0).T
        return next_state, cost.neg_(), torch.zeros_like(theta, dtype=torch.bool)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        theta, theta_dot = state.T.unbind(0)
        return torch.stack((torch.cos(theta), torch.sin(theta), theta_dot), 1)
