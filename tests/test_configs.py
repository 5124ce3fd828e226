"""Every shipped config composes and validates, so a typo in a YAML file or a default outside
its own range fails here and not in a user's sweep."""

import dataclasses

import pytest

from deeprl.agent import agent_registry
from deeprl.config import check_options, compose
from deeprl.nets.heads import HEADS, ValueHeadConfig
from deeprl.nets.mlp import ACTIVATIONS
from deeprl.train.cli import config_options


@pytest.mark.parametrize("group", ["agent", "env", "experiment"])
def test_every_config_in_group_composes(group):
    for name in config_options(group):
        prefix = "+" if group == "experiment" else ""
        cfg = compose([f"{prefix}{group}={name}"], return_hydra_config=True)
        assert cfg.train.total_steps > 0
        if group == "experiment":
            assert cfg.hydra.sweeper.params, name


def test_tuned_configs_name_an_existing_agent_and_env():
    agents, envs = config_options("agent"), config_options("env")
    for name in config_options("tuned"):
        agent, _, env = name.partition("_")
        assert agent in agents and env in envs, name


def test_agent_group_is_the_config_dataclass():
    for name, cls in agent_registry().items():
        cfg = compose([f"agent={name}", "~tuned"])
        assert dict(cfg.agent) == {"name": name, **dataclasses.asdict(cls.Config())}


def test_tuned_and_experiment_configs_apply():
    assert compose(["env=pendulum"]).agent.gamma == 0.95  # configs/tuned/ppo_pendulum.yaml
    assert compose(["env=pendulum", "~tuned"]).agent.gamma == 0.99
    cfg = compose(["agent=dqn", "+experiment=classic_mini", "agent.critic.head=c51"])
    assert cfg.agent.critic.v_max == 110.0 and cfg.agent.critic.head == "c51"
    assert cfg.train.total_steps == 30000


def test_defaults_lie_in_their_declared_ranges():
    for name, cls in agent_registry().items():
        check_options(cls.Config, dataclasses.asdict(cls.Config()), f"agent={name}:")


def test_choices_match_what_the_code_builds():
    head = next(f for f in dataclasses.fields(ValueHeadConfig) if f.name == "head")
    assert set(head.metadata["choices"]) == set(HEADS)
    activation = next(f for f in dataclasses.fields(agent_registry()["ppo"].Config)
                      if f.name == "activation")
    assert set(activation.metadata["choices"]) == set(ACTIVATIONS)
