"""Every shipped config composes, so a typo in a YAML file fails here and not in a user's sweep."""

import pytest
from hydra import compose, initialize_config_module

from deeprl.train.cli import config_options


@pytest.mark.parametrize("group", ["agent", "env", "experiment"])
def test_every_config_in_group_composes(group):
    with initialize_config_module("deeprl.configs", version_base=None):
        for name in config_options(group):
            prefix = "+" if group == "experiment" else ""
            cfg = compose("config", overrides=[f"{prefix}{group}={name}"],
                          return_hydra_config=True)
            assert cfg.train.total_steps > 0
            if group == "experiment":
                assert cfg.hydra.sweeper.params, name


def test_tuned_configs_name_an_existing_agent_and_env():
    agents, envs = config_options("agent"), config_options("env")
    for name in config_options("tuned"):
        agent, _, env = name.partition("_")
        assert agent in agents and env in envs, name
