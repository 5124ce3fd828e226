"""Agents (installed as ``deeprl.agents``): model-free ones, DreamerV3 and Drama, registered by
their config names (``agent=<name>``); :func:`deeprl.agent.agent_registry` lists them with any
user agents.
"""

if __name__ != "deeprl.agents":  # the folder agents/ is only ever the package deeprl.agents
    raise ImportError(f"import deeprl.agents, not {__name__!r}")

from deeprl.agent import register_agent
from deeprl.agents.dqn import DQN, DQNConfig
from deeprl.agents.drama import Drama, DramaConfig
from deeprl.agents.dreamer import Dreamer, DreamerConfig
from deeprl.agents.gbrl import GBRLA2C, GBRLPPO, GBRLA2CConfig, GBRLPPOConfig
from deeprl.agents.ppo import PPO, PPOConfig
from deeprl.agents.sac import SAC, SACConfig
from deeprl.offline import OFFLINE_AGENTS

for _agent in (PPO, SAC, DQN, Dreamer, Drama, GBRLPPO, GBRLA2C, *OFFLINE_AGENTS):
    register_agent(_agent)

__all__ = [
    "DQN", "DQNConfig", "Drama", "DramaConfig", "Dreamer", "DreamerConfig", "GBRLA2C",
    "GBRLA2CConfig", "GBRLPPO", "GBRLPPOConfig", "PPO", "PPOConfig", "SAC", "SACConfig",
]
