"""Model-free agents (installed as ``deeprl.agents``).

``AGENTS`` maps config names (``agent=<name>``) to classes.
"""

if __name__ != "deeprl.agents":  # the folder agents/ is only ever the package deeprl.agents
    raise ImportError(f"import deeprl.agents, not {__name__!r}")

from deeprl.agents.dqn import DQN, DQNConfig
from deeprl.agents.ppo import PPO, PPOConfig
from deeprl.agents.sac import SAC, SACConfig

AGENTS = {
    "ppo": PPO,
    "sac": SAC,
    "dqn": DQN,
}

__all__ = ["AGENTS", "DQN", "DQNConfig", "PPO", "PPOConfig", "SAC", "SACConfig"]
