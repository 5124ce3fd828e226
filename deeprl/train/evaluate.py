"""Policy evaluation on a separate vector env."""

from __future__ import annotations

import math

import torch

from deeprl.agent import Agent
from deeprl.envs.base import VectorEnv
from deeprl.envs.spec import Box


def evaluate(
    agent: Agent,
    env: VectorEnv,
    episodes: int,
    seed: int,
    deterministic: bool = True,
    max_steps: int = 1_000_000,
) -> dict:
    """Run ``episodes`` full episodes and report their returns.

    Each of the env's N copies contributes its first ceil(episodes / N) episodes, taken in env
    order, so short episodes are not over-represented and the result depends only on ``seed``.

    Returns:
        ``{"return_mean", "return_std", "episodes", "returns", "lengths"}`` and
        ``"success_rate"`` when the env reports ``info["success"]``.
    """
    n = env.num_envs
    per_env = math.ceil(episodes / n)
    returns: list[list[float]] = [[] for _ in range(n)]
    lengths: list[list[int]] = [[] for _ in range(n)]
    successes: list[list[float]] = [[] for _ in range(n)]
    space = env.spec.action_space
    bounds = space.bounds(env.device) if isinstance(space, Box) else None
    obs = env.reset(seed=seed)
    was_training = agent.training
    agent.eval()
    for _ in range(max_steps):
        with torch.inference_mode():
            action, _ = agent.act(obs, deterministic=deterministic)
        if bounds is not None:
            action = action.clamp(*bounds)
        result = env.step(action)
        obs = result.obs
        if not result.done.any():
            continue
        done = result.done.cpu().tolist()
        ep_returns = result.episode_return.cpu().tolist()
        ep_lengths = result.episode_length.cpu().tolist()
        success = result.info.get("success")
        success = success.cpu().tolist() if success is not None else None
        for i in range(n):
            if done[i] and len(returns[i]) < per_env:
                returns[i].append(ep_returns[i])
                lengths[i].append(int(ep_lengths[i]))
                if success is not None:
                    successes[i].append(float(success[i]))
        if all(len(r) >= per_env for r in returns):
            break
    else:
        raise RuntimeError(f"evaluation did not finish {episodes} episodes in {max_steps} steps")
    agent.train(was_training)
    flat_returns = [r for env_returns in returns for r in env_returns][:episodes]
    flat_lengths = [x for env_lengths in lengths for x in env_lengths][:episodes]
    values = torch.tensor(flat_returns, dtype=torch.float64)
    report = {
        "return_mean": values.mean().item(),
        "return_std": values.std(unbiased=False).item(),
        "episodes": len(flat_returns),
        "returns": flat_returns,
        "lengths": flat_lengths,
    }
    flat_success = [s for env_s in successes for s in env_s][:episodes]
    if flat_success:
        report["success_rate"] = sum(flat_success) / len(flat_success)
    return report
