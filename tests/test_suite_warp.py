"""MuJoCo Warp backend against gymnasium's CPU MuJoCo, on the real simulators.

MJWarp needs ``mujoco>=3.13``, which the main environment's metaworld pin excludes, so these tests
run in the second environment (``.venv/warp``) that tests/test_warp_venv.py sets up. There is no
GPU in CI: the env runs MJWarp's kernels on Warp's CPU device (``allow_cpu=True``), the same
kernels compiled for the host.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp", reason="runs in .venv/warp (tests/test_warp_venv.py)")

import gymnasium  # noqa: E402

from conftest import random_rollout, run_cli  # noqa: E402
from deeprl.envs.suites import make_suite_env  # noqa: E402
from deeprl.envs.suites.warp import TASKS, WarpMujocoVectorEnv  # noqa: E402
from deeprl.errors import UserError  # noqa: E402

# Ant's first physics steps touch the ground, where MJWarp's contact frames (fixed axes) differ
# from CPU MuJoCo's (rotated with the capsule): with pyramidal friction cones the two simulators
# part at the first contact, so Ant is compared on its first, contact-free step only.
COMPARED_STEPS = {task: 1 if task == "Ant-v5" else 10 for task in TASKS}


def make(task: str, num_envs: int) -> WarpMujocoVectorEnv:
    return WarpMujocoVectorEnv(task, num_envs, "cpu", allow_cpu=True)


@pytest.mark.parametrize("task", list(TASKS))
def test_same_observations_rewards_and_terminations_as_gymnasium(task):
    envs = [gymnasium.make(task) for _ in range(3)]
    first = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    warp = make(task, 3)
    qpos = np.stack([e.unwrapped.data.qpos for e in envs])
    qvel = np.stack([e.unwrapped.data.qvel for e in envs])
    obs = warp.set_state(torch.tensor(qpos), torch.tensor(qvel))
    np.testing.assert_allclose(obs.numpy(), first, atol=1e-6)

    rng = np.random.default_rng(0)
    low, high = envs[0].action_space.low, envs[0].action_space.high
    for _ in range(COMPARED_STEPS[task]):
        action = rng.uniform(low, high, (3, len(low))).astype(np.float32)
        result = warp.step(torch.from_numpy(action))
        steps = [e.step(a) for e, a in zip(envs, action, strict=True)]
        expected_obs = np.stack([s[0] for s in steps])
        # float32 (MJWarp) vs float64 (MuJoCo): ~1e-3 after 10 steps on velocities of ~10
        np.testing.assert_allclose(result.next_obs.numpy(), expected_obs, rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(result.reward.numpy(), [s[1] for s in steps], atol=1e-3)
        np.testing.assert_array_equal(result.terminated.numpy(), [s[2] for s in steps])
        if result.done.any():
            break


@pytest.mark.parametrize("task", list(TASKS))
def test_spec_matches_gymnasium_and_observations(task):
    reference = gymnasium.make(task)
    env = make(task, 2)
    spec = env.spec
    assert spec.observation_space.shape == reference.observation_space.shape
    low, high = spec.action_space.bounds()
    np.testing.assert_array_equal(low.numpy(), reference.action_space.low)
    np.testing.assert_array_equal(high.numpy(), reference.action_space.high)
    assert spec.max_episode_steps == reference.spec.max_episode_steps
    obs, results = random_rollout(env, seed=0, steps=3)
    assert obs.shape == (4, 2, *spec.observation_space.shape) and obs.dtype == torch.float32
    assert results[0].reward.shape == (2,) and results[0].terminated.dtype == torch.bool


def test_seed_reproduces_and_reset_noise_follows_the_task():
    task = TASKS["Walker2d-v5"]
    first, _ = random_rollout(make("Walker2d-v5", 4), seed=3, steps=20)
    again, _ = random_rollout(make("Walker2d-v5", 4), seed=3, steps=20)
    other, _ = random_rollout(make("Walker2d-v5", 4), seed=4, steps=20)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first[0], other[0])
    init_qpos = gymnasium.make("Walker2d-v5").unwrapped.init_qpos[1:]
    offset = first[0, :, : len(init_qpos)].numpy() - init_qpos
    assert np.abs(offset).max() <= task.reset_noise + 1e-6
    assert np.abs(offset).max() > task.reset_noise / 2  # noise is drawn per copy and entry


def test_autoreset_episode_statistics_and_time_limit():
    env = make("InvertedPendulum-v5", 2)
    env.reset(seed=0)
    push = torch.full((2, 1), 3.0)  # the actuator's upper bound: the pole tips over
    result, steps = env.step(push), 1
    while not result.done.all() and steps < 100:
        result, steps = env.step(push), steps + 1
    assert result.terminated.all() and not result.truncated.any()
    assert (result.next_obs[:, 1].abs() > 0.2).all()  # the tipped pole, before the reset
    assert (result.obs.abs() <= 0.01 + 1e-6).all()  # the next episode's noisy upright start
    assert (result.episode_length == steps).all()
    assert torch.equal(result.episode_return, (result.episode_length - 1).float())  # 0 on the last
    assert (env.elapsed == 0).all()

    for task, limit in [("InvertedPendulum-v5", 1000), ("Reacher-v5", 50), ("Pusher-v5", 100)]:
        env = make(task, 2)
        env.reset(seed=1)
        env.elapsed.fill_(limit - 1)
        result = env.step(torch.zeros(2, *env.spec.action_space.shape))
        assert result.truncated.all() and not result.terminated.any()
        assert (result.episode_length == limit).all()


def test_goal_and_object_draws_follow_gymnasium():
    # Reacher: goal uniform in the disk of radius 0.2 (mean radius 2/3 * 0.2);
    # Pusher: cylinder uniform in [-0.3, 0] x [-0.2, 0.2], farther than 0.17 from the goal.
    reacher = make("Reacher-v5", 2000)
    reacher.reset(seed=0)
    radius = reacher.qpos[:, -2:].norm(dim=1)
    assert radius.max() < 0.2 and abs(radius.mean().item() - 0.2 * 2 / 3) < 0.005
    pusher = make("Pusher-v5", 2000)
    pusher.reset(seed=0)
    cylinder = pusher.qpos[:, -4:-2]
    assert (cylinder.norm(dim=1) > 0.17).all() and (pusher.qpos[:, -2:] == 0).all()
    assert cylinder[:, 0].min() >= -0.3 and cylinder[:, 0].max() <= 0.0
    assert cylinder[:, 1].abs().max() <= 0.2


def test_state_dict_continues_the_same_trajectory():
    env = make("Hopper-v5", 3)
    random_rollout(env, seed=0, steps=5)
    state = env.state_dict()
    actions = [env.sample_actions(torch.Generator().manual_seed(i)) for i in range(5)]
    expected = [env.step(a).obs for a in actions]
    env.load_state_dict(state)
    for action, obs in zip(actions, expected, strict=True):
        torch.testing.assert_close(env.step(action).obs, obs)


def test_cpu_only_machines_get_a_clear_message():
    with pytest.raises(UserError, match=r"NVIDIA GPU; got device=cpu .* Use device=cuda"):
        make_suite_env("mujoco", 1, "cpu", task="Hopper-v5", vectorization="warp")
    with pytest.raises(UserError, match="'Humanoid-v5' is not available with env.vectorization"):
        make_suite_env("mujoco", 1, "cpu", task="Humanoid-v5", vectorization="warp")
    with pytest.raises(UserError, match="do not render"):
        make_suite_env("mujoco", 1, "cpu", task="Hopper-v5", vectorization="warp", pixels=True)


def test_cli_on_a_cpu_machine_exits_with_one_line(tmp_path):
    result = run_cli("env=mujoco/hopper", "env.vectorization=warp", "train.total_steps=1000",
                     cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Use device=cuda" in result.stderr and "Traceback" not in result.stderr


def test_missing_extra_names_the_pip_install():
    # This environment has no metaworld (its mujoco pin conflicts with mujoco-warp's).
    with pytest.raises(UserError, match=r'pip install "deeprl\[metaworld\]"'):
        make_suite_env("metaworld", 1, task="reach-v3")


def test_sac_trains_through_the_cli_on_warps_cpu_device(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "agent=sac", "env=mujoco/invertedpendulum", "env.vectorization=warp",
        "+env.warp_allow_cpu=true", "seed=0", "agent.learning_starts=500", "agent.batch_size=64",
        "agent.hidden_sizes=[64,64]", "train.total_steps=1500", "train.eval_every=0",
        "train.eval_episodes=2", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["episodes"] == 2 and evaluation["return_mean"] >= 1.0
    assert (run_dir / "checkpoints" / "last.pt").exists()
