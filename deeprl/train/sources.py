"""Where the trainer's data comes from: an env stepped by a collector, or a fixed dataset.

Both advance one unit per loop iteration and count their progress in the unit that
``train.total_steps``, ``train.eval_every`` and friends use: env steps online, gradient updates
offline. The agent sees only ``source.buffer``.
"""

from __future__ import annotations

from typing import Any

from deeprl.agent import Agent
from deeprl.buffers.base import Buffer
from deeprl.datasets import OfflineDataset
from deeprl.envs.base import VectorEnv
from deeprl.train.collector import Collector


class OnlineSource:
    """Collects batched env steps with the agent's policy into the agent's buffer.

    Progress: env steps over all copies. The buffer is part of the run's state (``persistent``).
    """

    persistent = True

    def __init__(self, env: VectorEnv, agent: Agent, seed: int) -> None:
        self.env = env
        self.buffer = agent.make_buffer()
        self.collector = Collector(env, agent, seed=seed)
        self.seed = seed

    @property
    def steps(self) -> int:
        return self.collector.steps

    def advance(self) -> int:
        self.buffer.add(self.collector.step())
        return self.collector.steps

    def pop_stats(self) -> dict[str, float]:
        return self.collector.pop_episode_stats()

    def state_dict(self) -> dict[str, Any]:
        return {"collector": self.collector.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the collection. An env that cannot restore its state starts fresh episodes
        (seeded by the run's seed and step, so a resume is reproducible), and the episodes the
        buffer holds are closed there, so no n-step return, frame stack, sequence or GAE
        estimate joins the stored episode to the new one."""
        if not self.collector.load_state_dict(state["collector"]):
            self.collector.reset(seed=self.seed + self.collector.steps)
            self.buffer.end_episodes()

    def close(self) -> None:
        self.env.close()


class OfflineSource:
    """Serves a read-only dataset; each advance is one gradient update of the agent.

    Progress: gradient updates. The dataset is loaded again on resume, never checkpointed.
    """

    persistent = False

    def __init__(self, dataset: OfflineDataset) -> None:
        self.dataset = dataset
        self.buffer: Buffer = dataset.buffer
        self.steps = 0

    def advance(self) -> int:
        self.steps += 1
        return self.steps

    def pop_stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])

    def close(self) -> None:
        pass
