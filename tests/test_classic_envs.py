"""Torch-native classic-control envs against gymnasium 1.x, plus the TorchVectorEnv contract.

The dynamics are checked one step at a time from many random states (set in both
implementations), so every branch (clipping, walls, angle wrapping, termination) is exercised
without relying on long trajectories staying in sync.
"""

from __future__ import annotations

import dataclasses
import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deeprl.envs import TORCH_ENVS, make_env
from deeprl.envs.classic import Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum
from deeprl.envs.spec import Box, Discrete

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]
N_STATES = 256


def _uniform(rng: np.random.Generator, low, high, n: int) -> np.ndarray:
    return rng.uniform(low, high, (n, len(low)))


# name -> (gymnasium id, random states (n, state_dim), random actions (n,) or (n, 1)).
# States cover the whole region an episode can visit, and actions go beyond the action box where
# gymnasium clips them.
CASES = {
    "cartpole": (
        "CartPole-v1",
        lambda rng, n: _uniform(rng, [-2.4, -3, -0.21, -3], [2.4, 3, 0.21, 3], n),
        lambda rng, n: rng.integers(0, 2, n),
    ),
    "acrobot": (
        "Acrobot-v1",
        lambda rng, n: _uniform(
            rng,
            [-math.pi, -math.pi, -4 * math.pi, -9 * math.pi],
            [math.pi, math.pi, 4 * math.pi, 9 * math.pi],
            n,
        ),
        lambda rng, n: rng.integers(0, 3, n),
    ),
    "mountaincar": (
        "MountainCar-v0",
        lambda rng, n: _uniform(rng, [-1.2, -0.07], [0.6, 0.07], n),
        lambda rng, n: rng.integers(0, 3, n),
    ),
    "mountaincar_continuous": (
        "MountainCarContinuous-v0",
        lambda rng, n: _uniform(rng, [-1.2, -0.07], [0.6, 0.07], n),
        lambda rng, n: rng.uniform(-1.5, 1.5, (n, 1)).astype(np.float32),
    ),
    "pendulum": (
        "Pendulum-v1",
        lambda rng, n: _uniform(rng, [-3 * math.pi, -8], [3 * math.pi, 8], n),
        lambda rng, n: rng.uniform(-3, 3, (n, 1)).astype(np.float32),
    ),
}


def _random_batch(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 states and actions; mountain cars get some at the left wall moving left."""
    _, states, actions = CASES[name]
    rng = np.random.default_rng(seed)
    state = states(rng, N_STATES).astype(np.float32)
    if name.startswith("mountaincar"):
        state[:16] = (-1.2, -0.01)
    return state, actions(rng, N_STATES)


def _gym_step(gym_id: str, states: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """Step gymnasium's env once from each state; returns obs, reward, terminated, state."""
    env = gym.make(gym_id).unwrapped
    env.reset(seed=0)
    out = {"obs": [], "reward": [], "terminated": [], "state": []}
    for state, action in zip(states, actions, strict=True):
        env.state = state.astype(np.float64)
        env.steps_beyond_terminated = None  # CartPole's reward counts steps past termination
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not truncated
        for key, value in zip(out, (obs, reward, terminated, env.state), strict=True):
            out[key].append(np.asarray(value, dtype=np.float64))
    return {key: np.array(value) for key, value in out.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_one_step_matches_gymnasium(name):
    gym_id = CASES[name][0]
    states, actions = _random_batch(name)
    env = TORCH_ENVS[name](N_STATES)
    next_state, reward, terminated = env.transition(
        torch.from_numpy(states), torch.from_numpy(actions)
    )
    obs = env.observe(next_state)
    expected = _gym_step(gym_id, states, actions)

    assert obs.dtype == reward.dtype == torch.float32 and terminated.dtype == torch.bool
    assert obs.shape == (N_STATES, *env.spec.observation_space.shape)
    # float32 here, float64 in gymnasium: one step agrees to ~1e-6. Acrobot's RK4 combines terms
    # of size ~1e3 (velocity products) into accelerations of size ~10, so float32 rounding
    # reaches ~1e-4 there; test_acrobot_equations_in_float64 shows it is rounding only.
    tol = 1e-4 if name == "acrobot" else 1e-5
    np.testing.assert_allclose(obs.numpy(), expected["obs"], rtol=tol, atol=tol)
    np.testing.assert_allclose(reward.numpy(), expected["reward"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(terminated.numpy(), expected["terminated"])
    if name != "pendulum":  # Pendulum never terminates; the others must exercise termination
        assert 0 < terminated.sum() < N_STATES


def test_acrobot_equations_in_float64():
    """Fed float64 states, the same code matches gymnasium's float64 state to ~1e-7 (the float32
    velocity bounds are the remaining difference), so its 1e-4 float32 tolerance is rounding."""
    states, actions = _random_batch("acrobot")
    next_state, _, _ = Acrobot(N_STATES).transition(
        torch.from_numpy(states.astype(np.float64)), torch.from_numpy(actions)
    )
    expected = _gym_step("Acrobot-v1", states, actions)["state"]
    np.testing.assert_allclose(next_state.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_spec_matches_gymnasium(name):
    env = make_env(name, num_envs=2)
    gym_env = gym.make(CASES[name][0])
    spec = env.spec
    assert spec.id == gym_env.spec.id
    assert spec.max_episode_steps == gym_env.spec.max_episode_steps
    gym_obs = gym_env.observation_space
    assert spec.observation_space.shape == gym_obs.shape
    f32_max = np.finfo(np.float32).max  # CartPole's infinite velocity bounds are kept finite
    low, high = (b.numpy() for b in spec.observation_space.bounds())
    np.testing.assert_allclose(low, np.maximum(gym_obs.low, -f32_max), rtol=1e-6)
    np.testing.assert_allclose(high, np.minimum(gym_obs.high, f32_max), rtol=1e-6)
    if isinstance(gym_env.action_space, gym.spaces.Discrete):
        assert spec.action_space == Discrete(int(gym_env.action_space.n))
    else:
        assert isinstance(spec.action_space, Box)
        assert spec.action_space.shape == gym_env.action_space.shape
        assert spec.action_space.low == tuple(gym_env.action_space.low.astype(float))
        assert spec.action_space.high == tuple(gym_env.action_space.high.astype(float))


# name -> bounds of the initial state (state_dim low, state_dim high) as in gymnasium's reset.
INITIAL = {
    "cartpole": ([-0.05] * 4, [0.05] * 4),
    "acrobot": ([-0.1] * 4, [0.1] * 4),
    "mountaincar": ([-0.6, 0.0], [-0.4, 0.0]),
    "mountaincar_continuous": ([-0.6, 0.0], [-0.4, 0.0]),
    "pendulum": ([-math.pi, -1.0], [math.pi, 1.0]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_initial_states_fill_gymnasium_bounds(name, device):
    env = make_env(name, num_envs=4096, device=device)
    obs = env.reset(seed=1)
    state = env.state.cpu()
    low, high = (torch.tensor(b) for b in INITIAL[name])  # float32, as the draws
    assert ((state >= low) & (state <= high)).all()
    width = high - low
    # Uniform over the whole box: extremes near both ends and the mean near the centre.
    assert ((state.amin(0) - low) <= 0.01 * width).all()
    assert ((high - state.amax(0)) <= 0.01 * width).all()
    assert ((state.mean(0) - (low + high) / 2).abs() <= 0.05 * width + 1e-9).all()
    assert torch.equal(obs, env.observe(env.state))
    obs_low, obs_high = env.spec.observation_space.bounds(device)
    assert ((obs >= obs_low) & (obs <= obs_high)).all()


class _Tally:
    """The bookkeeping a TorchVectorEnv must do, redone independently on the test side."""

    def __init__(self, n: int) -> None:
        self.length = np.zeros(n, dtype=np.int64)
        self.ret = np.zeros(n, dtype=np.float64)

    def update(self, reward: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.length += 1
        self.ret += reward
        finished = np.where(done, self.length, 0), np.where(done, self.ret, 0.0)
        self.length[done] = 0
        self.ret[done] = 0.0
        return finished


def _short(cls: type, limit: int) -> type:
    """``cls`` with a time limit of ``limit`` steps, so truncation comes quickly."""
    return type(
        f"Short{cls.__name__}",
        (cls,),
        {"spec": dataclasses.replace(cls.spec, max_episode_steps=limit)},
    )


@pytest.mark.parametrize("sparse_reset", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_autoreset_truncation_and_episode_stats(name, device, sparse_reset):
    limit, n = 25, 64
    env = _short(TORCH_ENVS[name], limit)(n, device=device)
    # The dense path (draw N fresh states, select with where) is the accelerator one; run it on
    # the CPU too.
    env._sparse_reset = sparse_reset
    obs = env.reset(seed=3)
    tally = _Tally(n)
    gen = torch.Generator(device).manual_seed(0)
    saw = {"terminated": False, "truncated": False}
    for _ in range(60):
        action = env.sample_actions(gen)
        expected_next, expected_reward, expected_term = env.transition(env.state, action)
        elapsed_before = env.elapsed.clone()
        result = env.step(action)
        term, trunc = result.terminated, result.truncated
        assert torch.equal(result.next_obs, env.observe(expected_next))
        assert torch.equal(result.reward, expected_reward)
        assert torch.equal(term, expected_term)
        assert not (term & trunc).any()
        assert torch.equal(trunc, (elapsed_before + 1 == limit) & ~term)
        done = result.done
        length, ret = tally.update(result.reward.double().cpu().numpy(), done.cpu().numpy())
        np.testing.assert_array_equal(result.episode_length.cpu().numpy(), length)
        np.testing.assert_allclose(result.episode_return.cpu().numpy(), ret, rtol=1e-5, atol=1e-4)
        # Finished copies restart: counters zeroed, a fresh initial state; others carry on.
        assert (env.elapsed[done] == 0).all() and (env.running_return[done] == 0).all()
        assert torch.equal(result.obs[~done], result.next_obs[~done])
        assert torch.equal(result.obs, env.observe(env.state))
        low, high = (torch.tensor(b, device=device) for b in INITIAL[name])
        assert ((env.state[done] >= low) & (env.state[done] <= high)).all()
        assert (result.obs[done] != result.next_obs[done]).any(-1).all()
        saw["terminated"] |= bool(term.any())
        saw["truncated"] |= bool(trunc.any())
        obs = result.obs
    # Random actions end CartPole early; the others run into the time limit only.
    assert saw["truncated"] and saw["terminated"] == (name == "cartpole")
    assert obs.shape == (n, *env.spec.observation_space.shape)


@pytest.mark.parametrize(
    ("cls", "action"), [(Pendulum, [0.0]), (MountainCar, 1), (MountainCarContinuous, [0.0])]
)
def test_truncates_at_gymnasium_time_limit(cls, action):
    """With no push these never reach a terminal state, so the real limit must cut them."""
    env = cls(2)
    env.reset(seed=0)
    action = torch.tensor([action, action])
    limit = env.spec.max_episode_steps
    total = torch.zeros(2, dtype=torch.float64)
    for t in range(1, limit + 1):
        before = env.state
        result = env.step(action)
        total += result.reward.double()
        assert not result.terminated.any()
        assert torch.equal(result.truncated, torch.full((2,), t == limit))
    expected_final = env.observe(env.transition(before, action)[0])
    assert torch.equal(result.next_obs, expected_final)  # the pre-reset observation
    assert torch.equal(result.episode_length, torch.full((2,), limit))
    torch.testing.assert_close(result.episode_return.double(), total, rtol=1e-5, atol=1e-3)
    assert (env.elapsed == 0).all() and (env.running_return == 0).all()


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_trajectory_and_state_dict_round_trip(name):
    def run(env, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        return [env.step(env.sample_actions(gen)) for _ in range(steps)]

    a, b = make_env(name, 16), make_env(name, 16)
    obs = a.reset(seed=7)
    assert torch.equal(obs, b.reset(seed=7))
    assert not torch.equal(obs, make_env(name, 16).reset(seed=8))
    for ra, rb in zip(run(a, 30, 0), run(b, 30, 0), strict=True):
        for field in dataclasses.fields(ra):
            if field.name != "info":
                assert torch.equal(getattr(ra, field.name), getattr(rb, field.name))

    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)  # through a checkpoint file, as the trainer does
    buffer.seek(0)
    saved = torch.load(buffer)
    c = make_env(name, 16)
    c.load_state_dict(saved)
    for ra, rc in zip(run(a, 60, 1), run(c, 60, 1), strict=True):
        assert torch.equal(ra.obs, rc.obs) and torch.equal(ra.next_obs, rc.next_obs)
        assert torch.equal(ra.reward, rc.reward) and torch.equal(ra.done, rc.done)
        assert torch.equal(ra.episode_return, rc.episode_return)
    # Stepping c must not have changed the dict it was loaded from.
    buffer.seek(0)
    reloaded = torch.load(buffer)
    assert all(torch.equal(saved[k], reloaded[k]) for k in saved)


class _HostReads(TorchDispatchMode):
    """Counts ops that make the host wait for the device (a value read back, a data-dependent
    shape)."""

    SYNCING = {"_local_scalar_dense", "nonzero", "item", "masked_select", "unique"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ in self.SYNCING
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(CASES))
def test_accelerator_path_never_syncs(name):
    def host_reads(sparse_reset: bool) -> int:
        env = _short(TORCH_ENVS[name], 3)(8)
        env._sparse_reset = sparse_reset
        env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        actions = [env.sample_actions(gen) for _ in range(10)]
        with _HostReads() as reads:
            for action in actions:
                env.step(action)
        return reads.count

    assert host_reads(sparse_reset=False) == 0  # the path taken on CUDA
    assert host_reads(sparse_reset=True) > 0  # the CPU path reads `done`: the check can fail


def test_registry_names():
    assert {
        "cartpole": CartPole,
        "acrobot": Acrobot,
        "mountaincar": MountainCar,
        "mountaincar_continuous": MountainCarContinuous,
        "pendulum": Pendulum,
    }.items() <= TORCH_ENVS.items()
