"""Agents (installed as ``deeprl.agents``): model-free ones and DreamerV3, registered by
their config names (``agent=<name>``); :func:`deeprl.agent.agent_registry` lists them with any
user agents.
"""

if __name__ != "deeprl.agents":  # the folder agents/ is only ever the package deeprl.agents
    raise ImportError(f"import deeprl.agents, not {__name__!r}")

from deeprl.agent import register_agent
from deeprl.agents.dqn import DQN, DQNConfig
from deeprl.agents.dreamer import Dreamer, DreamerConfig
from deeprl.agents.ppo import PPO, PPOConfig
from deeprl.agents.sac import SAC, SACConfig

for _agent in (PPO, SAC, DQN, Dreamer):
    register_agent(_agent)

__all__ = ["DQN", "DQNConfig", "Dreamer", "DreamerConfig", "PPO", "PPOConfig", "SAC", "SACConfig"]
