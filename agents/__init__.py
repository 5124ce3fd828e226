"""Model-free agents (installed as ``deeprl.agents``).

``AGENTS`` maps config names (``agent=<name>``) to classes.
"""

if __name__ != "deeprl.agents":  # the folder agents/ is only ever the package deeprl.agents
    raise ImportError(f"import deeprl.agents, not {__name__!r}")

from deeprl.agents.ppo import PPO, PPOConfig

AGENTS = {
    "ppo": PPO,
}

__all__ = ["AGENTS", "PPO", "PPOConfig"]
