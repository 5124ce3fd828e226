"""Every key and value is checked before anything runs: a bad one exits with code 2 and one line
naming the key and what it allows; good ones, ``+`` groups and env backend options included,
still compose."""

import sys
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from deeprl.agent import Agent, register_agent
from deeprl.agents import PPOConfig
from deeprl.config import compose, make_config, option, validate
from deeprl.errors import UserError
from deeprl.train.cli import config_options, main


@dataclass
class ToyConfig:
    rate: float = option(0.5, gt=0, le=1)
    sizes: list[int] = option([8, 8], ge=1)
    mode: str = option("fast", choices=("fast", "slow"))


@register_agent
class Toy(Agent):
    """Registered as a user's own agent would be; composing needs no more than this."""

    Config = ToyConfig
    name = "toy_validation"


@pytest.fixture
def cli_main(capsys, monkeypatch):
    """Run ``deeprl.train.cli.main(args)`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", sys.argv[:])

    def call(*args: str):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def assert_one_line(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deeprl-train: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train.total_steps=0"], ["train.total_steps=0", ">= 1"]),
        (["agent.lr=-1"], ["agent.lr", "> 0"]),
        (["env.num_envs=abc"], ["env.num_envs='abc'", "int"]),
        (["env.num_envs=0"], ["env.num_envs=0", ">= 1"]),
        (["train.eval_episodes=0"], ["train.eval_episodes=0", ">= 1"]),
        (["train.eval_every=-1"], ["train.eval_every=-1", ">= 0"]),
        (["train.eval_envs=0"], ["train.eval_envs=0", ">= 1"]),
        (["seed=-1"], ["seed=-1", ">= 0"]),
        (["device=tpu"], ["device='tpu'", "auto|cpu|cuda"]),
        (["agent.gamma=1.5"], ["agent.gamma=1.5", "<= 1"]),
        (["agent.hidden_sizes=[64,0]"], ["agent.hidden_sizes[1]=0", ">= 1"]),
        (["agent.activation=tahn"], ["agent.activation='tahn'", "tanh"]),
        (["agent=dqn", "agent.torso=cnn"], ["agent.torso='cnn'", "nature_cnn"]),
        (["+agent.lrr=1"], ["unknown config key 'agent.lrr'", "Did you mean: lr?"]),
        (["+train.eval_epsiodes=3"], ["'train.eval_epsiodes'", "eval_episodes"]),
        (["+agent.critic.bins=3"], ["'agent.critic.bins'", "num_bins"]),
        (["env.backend=gymm"], ["env.backend='gymm'", "gym"]),
        (["+env.make_kwargs={max_episode_steps:100}"], ["'env.make_kwargs'", "backend torch"]),
        (["env=mujoco/hopper", "+env.warp_alow_cpu=true"],
         ["'env.warp_alow_cpu'", "warp_allow_cpu"]),
        (["env=mujoco/hopper", "env.warp_allow_cpu=true"], ["+env.warp_allow_cpu=true"]),
        (["env=gym", "env.id=CartPole-v1", "+env.workers=two"], ["env.workers='two'", "int"]),
        (["-m", "seed=0,-1"], ["seed=-1", ">= 0"]),
        (["-m", "agent.lr=1e-3,0"], ["agent.lr=0.0", "> 0"]),
        (["agent=toy_validation", "agent.rate=2"], ["agent.rate=2.0", "<= 1"]),
        (["agent=toy_validation", "agent.mode=fsat"], ["agent.mode='fsat'", "fast, slow"]),
    ],
)
def test_bad_value_is_one_line_and_exit_2(cli_main, args, fragments):
    code, _, err = cli_main(*args, "--cfg", "job")
    assert_one_line(code, err, *fragments)


@pytest.mark.parametrize(
    "args",
    [
        ["+experiment=classic_mini"],
        ["env=mujoco/hopper", "+env.warp_allow_cpu=true"],
        ["env=gym", "env.id=CartPole-v1", "+env.make_kwargs={max_episode_steps:100}"],
        ["env=atari", "env.game=Breakout", "env.frame_stack=2"],
        ["agent=dqn", "agent.max_grad_norm=10", "train.eval_every=0", "device=cuda:1"],
        ["agent=sac", "env=pendulum", "agent.critic.head=hl_gauss", "seed=3"],
    ],
)
def test_good_overrides_compose(cli_main, args):
    code, out, err = cli_main(*args, "--cfg", "job")
    assert code == 0 and "Traceback" not in err, err
    assert OmegaConf.create(out).train.total_steps > 0


def test_a_registered_agent_composes_with_its_defaults(cli_main):
    assert "toy_validation" in config_options("agent")
    code, out, err = cli_main("agent=toy_validation", "agent.sizes=[4]", "--cfg", "job")
    assert code == 0, err
    agent = OmegaConf.to_container(OmegaConf.create(out).agent)
    assert agent == {"name": "toy_validation", "rate": 0.5, "sizes": [4], "mode": "fast"}


def test_cli_refuses_before_claiming_a_run_dir(tmp_path):
    for args in (["train.total_steps=-5"], ["+nonsense_key=1"]):
        proc = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        assert_one_line(proc.returncode, proc.stderr, args[0].lstrip("+").split("=")[0])
        assert not (tmp_path / "run").exists()


def test_sweep_values_are_each_checked_and_a_good_sweep_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "seed=0,1", "train.total_steps=256", "train.eval_episodes=1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list(sweep.glob("*/eval.json"))) == 2


def test_python_api_checks_the_same_way():
    with pytest.raises(UserError, match=r"train.total_steps=-5 is out of range"):
        compose(["train.total_steps=-5"])
    cfg = OmegaConf.create({"seed": 0, "agent": {"name": "ppo", "lr": 1e-3},
                            "env": {"name": "cartpole", "num_envs": 2}})
    validate(cfg)
    cfg.agent.clip_coef = 0
    with pytest.raises(UserError, match=r"agent.clip_coef=0 is out of range: it must be > 0"):
        validate(cfg)
    cfg.agent.name = "ppx"
    with pytest.raises(UserError, match=r"agent.name='ppx'.*Did you mean: ppo"):
        validate(cfg)
    with pytest.raises(UserError, match=r"agent.critic.num_bins=1 is out of range"):
        make_config(PPOConfig, {"critic": {"num_bins": 1}})


def test_register_agent_refuses_what_cannot_be_an_agent():
    with pytest.raises(TypeError):
        register_agent(ToyConfig)
    with pytest.raises(ValueError, match="taken"):
        register_agent(type("Other", (Toy,), {"__module__": __name__}))
