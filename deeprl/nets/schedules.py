"""Hyperparameter schedules over training steps (exploration rates, annealed coefficients)."""

from __future__ import annotations

import math


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` steps, then ``end``.

    Scalars in, scalar out: the value at step ``t`` (``end`` at once when ``duration`` <= 0).
    DQN's epsilon-greedy schedule (Mnih et al. 2015, "Human-level control through deep
    reinforcement learning", Methods: epsilon annealed linearly, then fixed), prioritized
    replay's importance-sampling exponent beta annealed to 1 (Schaul et al. 2016, "Prioritized
    Experience Replay", Sec. 3.4) and PPO's learning rate annealed to 0 (Schulman et al. 2017,
    "Proximal Policy Optimization Algorithms", Table 5: alpha annealed from 1 to 0).
    """
    if duration <= 0:
        return end
    w = min(t / duration, 1.0)
    # start (1 - w) + end w: exactly ``end`` once w = 1, and exactly PPO's (1 - t/T) lr for end 0.
    return start * (1.0 - w) + end * w


def cosine_schedule(start: float, duration: float, t: float) -> float:
    """``start`` decayed to 0 along half a cosine over ``duration`` steps, then 0:
    start (1 + cos(pi t / duration)) / 2 (Loshchilov & Hutter 2017, "SGDR", without restarts;
    the actor learning rate of IQL's and CORL's offline agents). ``start`` when ``duration`` <= 0.
    """
    if duration <= 0:
        return start
    w = min(t / duration, 1.0)
    return start * 0.5 * (1.0 + math.cos(math.pi * w))
