"""Windows of K steps with returns-to-go, for decision transformers (Chen et al. 2021, "Decision
Transformer: Reinforcement Learning via Sequence Modeling", Sec. 3).

A window ends at a stored step e of one env and holds the K steps e-K+1 .. e of e's episode.
Where the episode began less than K steps before e, the window is padded on the left: those
positions are zeros with ``mask`` False, which is also what an agent's token history looks like
during the first K steps of an evaluation episode, so training and acting see the same layout.
Ends are drawn uniformly over all stored steps, so every step is the newest (acted-on) step of
windows equally often (CORL's ``dt.py`` draws trajectories in proportion to their length, then a
start within the trajectory; that weights every step equally as well).

Per step, the return-to-go is the undiscounted sum of the rewards from that step to the end of
its episode as stored,

    R_t = sum_{u = t}^{T_end} r_u,

and ``timestep`` counts steps since the episode's first stored step. Both are derived once from
the buffer's rewards and episode starts, one scalar per stored step; observations, actions and
rewards are read from the dataset buffer at sample time (no second copy of the data). A buffer
that has wrapped around keeps only the tail of its oldest episode; that tail counts as an
episode starting at the oldest stored step.
"""

from __future__ import annotations

import torch

from deeprl.buffers.replay import ReplayBuffer
from deeprl.errors import UserError


class WindowSampler:
    """Windows of ``context`` steps from a :class:`ReplayBuffer` (the shared dataset buffer).

    Args:
        buffer: the dataset; it must not change while the sampler is used.
        context: K, the steps per window (>= 1).
    Attributes:
        rtg: (T, N) float32 return-to-go of every stored step (time slot, env).
        timestep: (T, N) int64 steps since the episode's first stored step.
        episode_returns: (E,) float64 return of every stored episode.
        longest: the most steps of any stored episode.
    Raises:
        UserError: the buffer is empty, or ``context`` is below 1.
    """

    def __init__(self, buffer: ReplayBuffer, context: int) -> None:
        if context < 1:
            raise UserError(f"context={context} must be at least 1 step")
        if buffer.size == 0:
            raise UserError("the dataset is empty: decision transformers need stored episodes")
        self.buffer = buffer
        self.context = context
        steps, envs = buffer.steps, buffer.num_envs
        device = buffer.device
        self.rtg = torch.zeros(steps, envs, dtype=torch.float32, device=device)
        self.timestep = torch.zeros(steps, envs, dtype=torch.long, device=device)
        order = (buffer.oldest + torch.arange(buffer.size, device=device)) % steps
        returns = []
        for env in range(envs):
            rtg, timestep, episode_returns = _episode_sums(
                buffer.data["reward"][order, env], buffer.data["is_first"][order, env]
            )
            self.rtg[order, env] = rtg.float()
            self.timestep[order, env] = timestep
            returns.append(episode_returns)
        self.episode_returns = torch.cat(returns)
        self.longest = int(self.timestep.max()) + 1

    def sample(
        self, batch_size: int, with_next_obs: bool = False
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` windows ending at uniformly drawn stored steps (torch's global RNG).

        Returns:
            ``obs`` (B, K, *obs_shape), ``action`` (B, K, *action_shape), ``reward`` (B, K),
            ``rtg`` (B, K) unscaled returns-to-go, ``timestep`` (B, K) int64, ``mask`` (B, K)
            bool (False: padding before the episode's start; padded entries are zero), and with
            ``with_next_obs`` ``next_obs`` (B, K, *obs_shape), the observation after each step.
        """
        buffer = self.buffer
        flat = torch.randint(buffer.size * buffer.num_envs, (batch_size,), device=buffer.device)
        end = (buffer.oldest + flat // buffer.num_envs) % buffer.steps
        return self.windows(end, flat % buffer.num_envs, with_next_obs)

    def windows(
        self, end: torch.Tensor, env: torch.Tensor, with_next_obs: bool = False
    ) -> dict[str, torch.Tensor]:
        """The windows ending at time slots ``end`` (B,) of envs ``env`` (B,); as :meth:`sample`."""
        buffer, k = self.buffer, self.context
        lag = torch.arange(k - 1, -1, -1, device=buffer.device)  # K-1 .. 0 steps before the end
        mask = lag <= self.timestep[end, env].unsqueeze(1)  # (B, K): inside the end's episode
        t = (end.unsqueeze(1) - lag) % buffer.steps
        env = env.unsqueeze(1).expand_as(t)
        data = buffer.data
        batch = {
            "obs": data["obs"][t, env],
            "action": data["action"][t, env],
            "reward": data["reward"][t, env],
            "rtg": self.rtg[t, env],
            "timestep": self.timestep[t, env],
        }
        if with_next_obs:
            batch["next_obs"] = buffer.next_frame(t.reshape(-1), env.reshape(-1)).view(
                *t.shape, *data["obs"].shape[2:]
            )
        for key, value in batch.items():
            keep = mask.view(*mask.shape, *([1] * (value.dim() - 2)))
            batch[key] = torch.where(keep, value, torch.zeros_like(value))
        batch["mask"] = mask
        return batch


def _episode_sums(
    reward: torch.Tensor, is_first: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns-to-go (L,) float64, steps since the episode start (L,) and episode returns (E,)
    of one env's stream of rewards (L,) in time order; ``is_first`` (L,) marks episode starts
    (the first step always starts one)."""
    length = len(reward)
    first = is_first.clone()
    first[0] = True
    starts = first.nonzero().flatten()  # (E,)
    episode = torch.cumsum(first.long(), 0) - 1  # (L,) episode index of each step
    timestep = torch.arange(length, device=reward.device) - starts[episode]
    # tail[i] = sum_{u >= i} r_u; an episode's R_t = tail[t] - tail[its next episode's start].
    tail = torch.cat([reward.double().flip(0).cumsum(0).flip(0), reward.new_zeros(1).double()])
    after = tail[torch.cat([starts[1:], starts.new_tensor([length])])]  # (E,)
    rtg = tail[:length] - after[episode]
    return rtg, timestep, rtg[starts]
