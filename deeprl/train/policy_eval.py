"""Policy evaluation: episodes of an agent's policy on a separate vector env.

Named apart from :mod:`deeprl.eval`, which holds the benchmark statistics (normalized scores,
aggregates, reports) computed from these evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from deeprl.agent import Agent, reward_observer
from deeprl.envs.base import VectorEnv
from deeprl.envs.spec import Box
from deeprl.eval.normalize import Affine

#: The trainer evaluates with seed ``cfg.seed + EVAL_SEED_OFFSET``, so evaluation episodes never
#: share reset seeds with training episodes; ``deeprl-eval`` uses the same default.
EVAL_SEED_OFFSET = 1_000_003


def evaluate_policy(
    agent: Agent,
    env: VectorEnv,
    episodes: int,
    seed: int,
    deterministic: bool = True,
    max_steps: int = 1_000_000,
    max_episode_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run ``episodes`` full episodes and report their returns.

    Each of the env's N copies contributes its first ceil(episodes / N) episodes, taken in env
    order, so short episodes are not over-represented and the result depends only on ``seed``.
    The evaluation keeps its own policy state for its N copies.

    Args:
        max_episode_steps: an episode still running after this many steps is counted with its
            return so far (and ``truncated`` in the report); that copy then sits out until its
            env episode ends, since a vector env resets copies only when they finish.
        progress: called after every step with the episodes counted so far and the steps
            taken (per copy), so a caller can report a long evaluation while it runs.
    Returns:
        ``{"return_mean", "return_std", "episodes", "returns", "lengths", "truncated"}`` and
        ``"success_rate"`` when the env reports ``info["success"]``.
    """
    n = env.num_envs
    per_env = math.ceil(episodes / n)
    returns: list[list[float]] = [[] for _ in range(n)]
    lengths: list[list[int]] = [[] for _ in range(n)]
    successes: list[list[float]] = [[] for _ in range(n)]
    space = env.spec.action_space
    bounds = space.bounds(env.device) if isinstance(space, Box) else None
    cut = counted = 0  # episodes cut at the cap / counted so far
    sitting_out = [False] * n
    if max_episode_steps is not None:
        running_return = torch.zeros(n, dtype=torch.float64, device=env.device)
        running_length = torch.zeros(n, dtype=torch.int64, device=env.device)
    obs = env.reset(seed=seed)
    state = agent.initial_state(n)
    is_first = torch.ones(n, dtype=torch.bool, device=env.device)
    observe = reward_observer(agent)
    was_training = agent.training
    agent.eval()
    try:
        for steps in range(1, max_steps + 1):
            with torch.inference_mode():
                action, _, state = agent.act(obs, state, is_first, deterministic=deterministic)
            if bounds is not None:
                action = action.clamp(*bounds)
            result = env.step(action)
            if observe is not None:
                with torch.inference_mode():
                    state = observe(state, result.reward)
            obs, is_first = result.obs, result.done
            if max_episode_steps is not None:
                running_return += result.reward
                running_length += 1
                over = (running_length >= max_episode_steps) & ~result.done
                if over.any():
                    for i in over.nonzero().flatten().tolist():
                        if not sitting_out[i] and len(returns[i]) < per_env:
                            returns[i].append(running_return[i].item())
                            lengths[i].append(max_episode_steps)
                            cut += 1
                            counted += 1
                        sitting_out[i] = True
                running_return.masked_fill_(result.done, 0.0)
                running_length.masked_fill_(result.done, 0)
            if result.done.any():
                done = result.done.cpu().tolist()
                ep_returns = result.episode_return.cpu().tolist()
                ep_lengths = result.episode_length.cpu().tolist()
                success = result.info.get("success")
                success = success.cpu().tolist() if success is not None else None
                for i in range(n):
                    if done[i] and sitting_out[i]:
                        sitting_out[i] = False
                    elif done[i] and len(returns[i]) < per_env:
                        counted += 1
                        returns[i].append(ep_returns[i])
                        lengths[i].append(int(ep_lengths[i]))
                        if success is not None:
                            successes[i].append(float(success[i]))
            if progress is not None:
                progress(min(episodes, counted), steps)
            if all(len(r) >= per_env for r in returns):
                break
        else:
            raise RuntimeError(
                f"evaluation did not finish {episodes} episodes in {max_steps} steps"
            )
    finally:
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
        "truncated": cut,
    }
    flat_success = [s for env_s in successes for s in env_s][:episodes]
    if flat_success:
        report["success_rate"] = sum(flat_success) / len(flat_success)
    return report


def add_normalized_score(report: dict, normalizer: Affine) -> None:
    """Add ``normalized_score`` and ``normalized_score_std`` (the dataset's score map, e.g.
    D4RL's) to an :func:`evaluate_policy` report, in place."""
    report["normalized_score"] = normalizer(report["return_mean"])
    report["normalized_score_std"] = report["return_std"] * abs(normalizer.slope)
