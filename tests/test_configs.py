"""Every shipped config composes and validates, so a typo in a YAML file or a default outside
its own range fails here and not in a user's sweep."""

import dataclasses
from importlib import resources

import pytest
import yaml

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
    agents, envs, tuned = config_options("agent"), config_options("env"), config_options("tuned")
    for name in tuned:
        # the longest agent name before "_" (agent names may hold "_": gbrl_ppo_cartpole)
        agent = max((a for a in agents if name.startswith(f"{a}_")), key=len, default="")
        env = name[len(agent) + 1:]
        # <agent>_<suite>.yaml: the shared file of a suite with one env config per task
        suite = any(t.startswith(f"{name}/") for t in tuned)
        assert agent in agents and (env in envs or suite), name
        if env in envs and "/" not in env:  # (the mujoco tasks: the next test)
            cfg = compose([f"agent={agent}", f"env={env}"], return_hydra_config=True)
            assert cfg.hydra.runtime.choices.tuned == name


def test_every_mujoco_task_applies_its_suite_settings():
    """env=mujoco/<task> resolves to tuned/<agent>_mujoco/<task>.yaml, which includes the suite's
    file; a task added to configs/env/mujoco/ without one would silently run generic defaults."""
    tuned = resources.files("deeprl.configs") / "tuned"
    tasks = [e.removeprefix("mujoco/") for e in config_options("env") if e.startswith("mujoco/")]
    assert len(tasks) == 11
    for agent in ("ppo", "sac"):
        for task in tasks:
            path = tuned / f"{agent}_mujoco" / f"{task}.yaml"
            assert yaml.safe_load(path.read_text())["defaults"] == [f"/tuned/{agent}_mujoco"]
    ppo = compose(["agent=ppo", "env=mujoco/swimmer"], return_hydra_config=True)
    assert ppo.hydra.runtime.choices.tuned == "ppo_mujoco/swimmer"
    assert (ppo.agent.num_envs, ppo.agent.num_steps, ppo.agent.num_minibatches) == (1, 2048, 32)
    assert ppo.agent.normalize_obs and ppo.agent.normalize_reward and ppo.agent.ent_coef == 0
    assert compose(["agent=sac", "env=mujoco/swimmer"]).train.total_steps == 1_000_000


def test_suite_settings_reach_the_experiments():
    cfg = compose(["+experiment=atari100k", "agent=dqn"])
    agent = cfg.agent
    assert (agent.torso, agent.learning_starts, agent.buffer_size) == ("nature_cnn", 1600, 100_000)
    assert agent.n_step == 10 and agent.double and agent.dueling and agent.eval_epsilon == 0.001
    assert (cfg.env.size, cfg.env.grayscale, cfg.env.frame_stack) == (84, True, 4)
    assert compose(["+experiment=atari100k", "agent=dqn", "~tuned"]).agent.buffer_size == 10_000
    ppo = compose(["+experiment=atari100k", "agent=ppo"]).agent
    assert (ppo.torso, ppo.num_envs, ppo.clip_coef) == ("nature_cnn", 8, 0.1)
    # mujoco_1m sweeps env over the tasks: each job composes with its env=mujoco/<task>.
    sweep = compose(["+experiment=mujoco_1m"], return_hydra_config=True).hydra.sweeper.params
    for env in sweep.env.split(","):
        cfg = compose(["+experiment=mujoco_1m", "agent=sac", f"env={env}"])
        assert cfg.train.total_steps == 1_000_000 and cfg.agent.buffer_size == 1_000_000
        assert (cfg.agent.torso, cfg.agent.learning_starts) == ("auto", 5000)


def test_atari_and_dmc_suite_settings():
    dqn = compose(["agent=dqn", "env=atari", "env.game=Breakout"]).agent
    assert (dqn.lr, dqn.buffer_size, dqn.batch_size) == (1e-4, 10**6, 32)
    assert dqn.learning_starts == 80_000 and dqn.torso == "nature_cnn"
    assert (dqn.train_frequency, dqn.target_network_frequency, dqn.end_e) == (4, 1000, 0.01)
    assert dqn.exploration_fraction == 0.1 and dqn.eval_epsilon == 0.05
    assert dqn.frame_stack is None  # the env's stack (spec.metadata["frame_stack"])
    sac = compose(["agent=sac", "env=dmc", "env.task=cheetah-run", "env.pixels=true"])
    assert (sac.agent.image_pad, sac.agent.buffer_size) == (4, 100_000)
    assert sac.train.total_steps == 500_000


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


def test_dreamer_suite_settings():
    """DreamerV3's 2023 settings reach each suite (configs/tuned/dreamer_*.yaml)."""
    atari = compose(["+experiment=atari100k", "agent=dreamer"], return_hydra_config=True)
    assert atari.hydra.runtime.choices.tuned == "dreamer_atari100k"
    assert (atari.agent.size, atari.agent.train_ratio) == ("S", 1024)
    assert atari.env.protocol == "atari100k" and atari.train.total_steps == 100_000
    for env, steps in (("cartpole", 30_000), ("pendulum", 20_000)):
        cfg = compose(["agent=dreamer", f"env={env}"])
        agent = cfg.agent
        assert (agent.size, agent.batch_length, agent.train_ratio) == ("XS", 32, 32)
        assert agent.learning_starts == 1024
        assert (cfg.train.total_steps, cfg.train.eval_every) == (steps, 3000)
    assert compose(["agent=dreamer", "env=cartpole", "~tuned"]).agent.size == "S"


@pytest.mark.parametrize(("experiment", "pixels", "tasks", "steps"),
                         [("dmc_proprio", False, 18, 500_000), ("dmc_vision", True, 20, 1_000_000)])
def test_dmc_experiments_sweep_dreamers_task_lists(experiment, pixels, tasks, steps):
    from deeprl.envs.suites.dmc import check_task

    cfg = compose([f"+experiment={experiment}", "agent=dreamer"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.tuned == "dreamer_dmc"
    assert (cfg.agent.size, cfg.agent.train_ratio) == ("S", 512)
    assert cfg.env.pixels is pixels and cfg.train.total_steps == steps
    sweep = cfg.hydra.sweeper.params
    assert sweep.seed == "range(5)"
    names = sweep["env.task"].split(",")
    assert len(set(names)) == tasks
    for task in names:
        check_task(task)  # every swept name is a dm_control task
    # each job composes with its task
    job = compose([f"+experiment={experiment}", "agent=dreamer", f"env.task={names[-1]}"])
    assert job.env.name == f"dmc-{names[-1]}"
