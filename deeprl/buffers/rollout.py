"""On-policy rollout storage and GAE(lambda).

Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
Estimation": with TD errors

    delta_t = r_t + gamma * (1 - term_t) * V(s'_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

where ``s'_t`` is the observation the step reached *before* any autoreset. On truncation
(``done_t`` but not ``term_t``) the value of ``s'_t`` still counts, so a time limit bootstraps;
on termination it does not. Returns are ``A_t + V(s_t)``.

:meth:`RolloutBuffer.end_episodes` (on resuming with envs that restart their episodes) sets
``done`` on the last stored step, so the trace stops there and it bootstraps from V(s'_t).
"""

from __future__ import annotations

import torch

from deeprl.buffers.base import Buffer


def generalized_advantage_estimation(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a (T, N) rollout.

    Args:
        rewards, values, next_values: (T, N) float; ``next_values[t]`` = V(s'_t).
        terminated, truncated: (T, N) bool.
    Returns:
        advantages (T, N) and returns (T, N).
    """
    not_terminal = (~terminated).to(values.dtype)
    not_done = (~(terminated | truncated)).to(values.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values
    decay = gamma * gae_lambda * not_done
    advantages = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        advantages[t] = last
    return advantages, advantages + values


class RolloutBuffer(Buffer):
    """Fixed-size (num_steps, num_envs) storage of on-policy transitions on ``device``.

    Fields are allocated from the first :meth:`add`, so agents may store any extras
    (``log_prob``, ``value``, recurrent states...). ``data[key]`` has shape (T, N, ...).
    """

    def __init__(self, num_steps: int, num_envs: int, device: torch.device | str = "cpu") -> None:
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.data: dict[str, torch.Tensor] = {}
        self.pos = 0

    def add(self, transition: dict[str, torch.Tensor]) -> None:
        if self.pos >= self.num_steps:
            raise RuntimeError("rollout buffer is full: call reset() after the update")
        if not self.data:
            self.data = {
                k: torch.empty((self.num_steps, *v.shape), dtype=v.dtype, device=self.device)
                for k, v in transition.items()
            }
        for key, value in transition.items():
            self.data[key][self.pos] = value
        self.pos += 1

    @property
    def full(self) -> bool:
        return self.pos == self.num_steps

    def reset(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return self.pos * self.num_envs

    def end_episodes(self) -> None:
        """Mark the last added step truncated unless it terminated, so GAE bootstraps from its
        ``next_obs`` and does not join the next added step's episode. A no-op when empty."""
        if self.pos == 0:
            return
        last = self.pos - 1
        truncated = self.data["truncated"]
        truncated[last] = truncated[last] | ~self.data["terminated"][last]

    def state_dict(self) -> dict:
        return {"pos": self.pos, "data": {k: v[: self.pos].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        saved, self.pos = state["data"], int(state["pos"])
        self.data = {
            k: torch.empty((self.num_steps, *v.shape[1:]), dtype=v.dtype, device=self.device)
            for k, v in saved.items()
        }
        for key, value in saved.items():
            self.data[key][: self.pos] = value.to(self.device)
