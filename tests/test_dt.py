"""Decision transformers (agent=dt, agent=modt): window sampling on a hand-built dataset,
acting from the token history against one forward pass over the same history, the losses on
hand-built tensors, tiny CLI runs (DT, MO-DT, the Mamba-2 backbone), bad input, a SIGTERM-resume
and a slow learning test on a generated Pendulum expert dataset."""

from __future__ import annotations

import json

import pytest
import torch
from offline_toys import ToyPendulumConfig, load_toy_pendulum

import deeprl
from conftest import interrupt_run, read_jsonl, run_cli
from deeprl.agent import agent_registry, make_agent
from deeprl.buffers.replay import ReplayBuffer
from deeprl.config import make_config
from deeprl.errors import UserError
from deeprl.offline.dt import masked_mse
from deeprl.offline.modt import kmeans, modt_loss
from deeprl.offline.windows import WindowSampler

TINY = {"embed_dim": 16, "n_layers": 1, "context": 4, "batch_size": 8, "warmup_steps": 10}
TINY_CLI = [f"agent.{k}={v}" for k, v in TINY.items()]


def hand_built_buffer(store_next_obs: bool = True, capacity: int = 20) -> ReplayBuffer:
    """Two envs; obs = 10 * env + step, action = -obs, reward = step + 1 (step: index in the
    stream), next_obs = obs + 1 (the next step's obs) or obs + 0.5 where an episode ends. Env 0:
    episodes of 3 (terminated), 4 (truncated) and 2 (cut by the data's end) steps; env 1: one
    episode of 9 steps."""
    length = 9
    step = torch.arange(length, dtype=torch.float32)
    obs = torch.stack([step, 10 + step], 1)  # (L, N)
    terminated = torch.zeros(length, 2, dtype=torch.bool)
    truncated = torch.zeros(length, 2, dtype=torch.bool)
    terminated[2, 0] = True
    truncated[6, 0] = True
    buffer = ReplayBuffer(capacity, 2, store_next_obs=store_next_obs)
    buffer.extend({
        "obs": obs.unsqueeze(-1), "action": -obs.unsqueeze(-1),
        "reward": (step + 1).unsqueeze(1).expand(length, 2),
        "next_obs": torch.where(terminated | truncated, obs + 0.5, obs + 1).unsqueeze(-1),
        "terminated": terminated,
        "truncated": truncated,
    })
    return buffer


def test_returns_to_go_and_timesteps_on_a_hand_built_dataset():
    sampler = WindowSampler(hand_built_buffer(), context=3)
    # Env 0, rewards 1..9: episodes [1, 2, 3], [4, 5, 6, 7], [8, 9].
    assert sampler.rtg[:9, 0].tolist() == [6, 5, 3, 22, 18, 13, 7, 17, 9]
    assert sampler.timestep[:9, 0].tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1]
    assert sampler.rtg[:9, 1].tolist() == [45 - sum(range(1, t + 1)) for t in range(9)]
    assert sampler.timestep[:9, 1].tolist() == list(range(9))
    assert sorted(sampler.episode_returns.tolist()) == [6, 17, 22, 45]
    assert sampler.longest == 9


def test_windows_are_padded_on_the_left_at_episode_starts():
    sampler = WindowSampler(hand_built_buffer(), context=3)
    end = torch.tensor([0, 1, 4, 6, 8, 8])
    env = torch.tensor([0, 0, 0, 0, 0, 1])
    w = sampler.windows(end, env, with_next_obs=True)
    assert w["mask"].tolist() == [
        [False, False, True],  # an episode's first step: two padded positions
        [False, True, True],
        [False, True, True],  # step 1 of the second episode: the first episode is not read
        [True, True, True],
        [False, True, True],
        [True, True, True],
    ]
    assert w["obs"][..., 0].tolist() == [
        [0, 0, 0], [0, 0, 1], [0, 3, 4], [4, 5, 6], [0, 7, 8], [16, 17, 18]
    ]
    assert w["rtg"][2].tolist() == [0, 22, 18]
    assert w["timestep"][3].tolist() == [1, 2, 3]
    assert w["reward"][4].tolist() == [0, 8, 9]
    assert w["action"][5, :, 0].tolist() == [-16, -17, -18]
    assert w["next_obs"][3, :, 0].tolist() == [5, 6, 6.5]


def test_sampled_windows_and_both_replay_layouts():
    torch.manual_seed(0)
    full = WindowSampler(hand_built_buffer(), context=3)
    compact = hand_built_buffer(store_next_obs=False)
    t, env = torch.arange(9).repeat(2), torch.arange(2).repeat_interleave(9)
    assert torch.equal(compact.next_frame(t, env), full.buffer.data["next_obs"][t, env])
    w = full.sample(64)
    assert w["obs"].shape == (64, 3, 1) and w["mask"][:, -1].all()
    # Padded positions are zero and never follow a real one.
    assert (w["obs"][~w["mask"]] == 0).all() and (w["mask"].long().diff(dim=1) >= 0).all()


def test_a_wrapped_buffer_starts_its_oldest_episode_at_the_oldest_step():
    buffer = hand_built_buffer(capacity=10)  # 5 steps per env: slots hold steps 4..8
    sampler = WindowSampler(buffer, context=2)
    order = (buffer.oldest + torch.arange(5)) % 5
    assert sampler.timestep[order, 0].tolist() == [0, 1, 2, 0, 1]  # [5, 6, 7] cut, [8, 9]
    assert sampler.rtg[order, 0].tolist() == [18, 13, 7, 17, 9]


def test_bad_context_is_refused():
    with pytest.raises(UserError, match="context=0"):
        WindowSampler(hand_built_buffer(), context=0)


@pytest.fixture(scope="module")
def dataset():
    return load_toy_pendulum(ToyPendulumConfig(steps=800, envs=4, seed=0), torch.device("cpu"))


def act_history(agent, steps: int, seed: int = 0):
    """Act for ``steps`` steps of two env copies on random observations with rewards -1 and -2
    after each step; returns the actions (steps, 2, 1) and the final state."""
    generator = torch.Generator().manual_seed(seed)
    state = agent.initial_state(2)
    actions = []
    with torch.inference_mode():
        for t in range(steps):
            obs = torch.randn(2, 3, generator=generator)
            action, _, state = agent.act(obs, state, torch.full((2,), t == 0))
            state = agent.observe(state, torch.tensor([-1.0, -2.0]))
            actions.append(action)
    return torch.stack(actions), state


@pytest.mark.parametrize("name, backbone", [
    ("dt", "transformer"), ("dt", "mamba2"), ("dt", "gru"), ("modt", "transformer"),
])
def test_acting_from_the_token_history_equals_one_forward_pass(name, backbone, dataset):
    torch.manual_seed(0)
    agent = make_agent(name, dataset.spec, 1, "cpu", {**TINY, "context": 8, "backbone": backbone})
    for step in range(2):
        agent.update(dataset.buffer, step)
    agent.eval()
    actions, state = act_history(agent, steps=6)
    # The history holds the 6 steps on the right, padding on the left.
    assert state["mask"].tolist() == [[False, False, True, True, True, True, True, True]] * 2
    assert state["timestep"][0, 2:].tolist() == list(range(6))
    target = agent.target_return.float()
    scale = agent.config.reward_scale
    expected_rtg = torch.stack([target + torch.arange(6) * r for r in (1.0, 2.0)]) * scale
    torch.testing.assert_close(state["rtg"][:, 2:], expected_rtg)
    torch.testing.assert_close(state["target"], target + torch.tensor([6.0, 12.0]))
    window = {k: state[k] for k in ("obs", "action", "rtg", "timestep", "mask")}
    with torch.no_grad():
        full = agent.predict_actions(agent.hidden(window))[:, 2:]
    acted = (actions.squeeze(-1).T.unsqueeze(-1) - agent.action_bias) / agent.action_scale
    torch.testing.assert_close(full, acted, atol=1e-5, rtol=1e-5)


def test_a_history_longer_than_the_context_keeps_the_last_k_steps(dataset):
    torch.manual_seed(0)
    agent = make_agent("dt", dataset.spec, 1, "cpu", TINY)
    agent.eval()
    _, long_state = act_history(agent, steps=7)
    assert long_state["mask"].all() and long_state["timestep"][0].tolist() == [3, 4, 5, 6]
    # A new episode (is_first) restarts the history of that copy only.
    obs = torch.zeros(2, 3)
    with torch.inference_mode():
        _, _, state = agent.act(obs, long_state, torch.tensor([True, False]))
    assert state["mask"][0].tolist() == [False, False, False, True]
    assert state["timestep"][:, -1].tolist() == [0, 7]


def test_loss_terms_on_hand_built_tensors():
    mask = torch.tensor([[False, True, True]])
    pred = torch.tensor([[[5.0], [1.0], [2.0]]])
    target = torch.tensor([[[0.0], [0.0], [0.0]]])
    assert masked_mse(pred, target, mask).item() == pytest.approx(2.5)  # padding ignored
    terms = modt_loss(
        {"action": pred, "next_obs": pred.expand(-1, -1, 2), "next_rtg": 2 * pred},
        {"action": target, "next_obs": target.expand(-1, -1, 2), "next_rtg": target},
        mask, state_weight=0.5, return_weight=0.25,
    )
    assert terms["action_loss"].item() == pytest.approx(2.5)
    assert terms["state_loss"].item() == pytest.approx(2.5)
    assert terms["return_loss"].item() == pytest.approx(10.0)
    assert terms["loss"].item() == pytest.approx(2.5 + 0.5 * 2.5 + 0.25 * 10.0)
    only_action = modt_loss({"action": pred}, {"action": target}, mask, 1.0, 1.0)
    assert set(only_action) == {"loss", "action_loss"}


def test_kmeans_finds_the_action_regions():
    points = torch.cat([torch.full((50, 1), -0.8), torch.full((30, 1), 0.6)]) + 0.01 * torch.randn(
        80, 1, generator=torch.Generator().manual_seed(0))
    centers = kmeans(points, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(centers.sort(0).values, torch.tensor([[-0.8], [0.6]]), atol=0.01,
                               rtol=0)


@pytest.mark.parametrize("options", [
    {"region_tokens": False},
    {"predict_states": False, "predict_returns": False},
    {"predict_states": False, "region_tokens": True},
])
def test_modt_ablations_train(options, dataset):
    torch.manual_seed(0)
    agent = make_agent("modt", dataset.spec, 1, "cpu", {**TINY, **options})
    metrics = agent.update(dataset.buffer, 0)
    assert ("state_loss" in metrics) == agent.config.predict_states
    assert ("return_loss" in metrics) == agent.config.predict_returns
    assert hasattr(agent, "embed_region") == agent.config.region_tokens
    if agent.config.region_tokens:
        assert bool(agent.regions_fitted) and agent.region_centers.abs().max() <= 1


def test_modt_with_every_addition_off_is_dt(dataset):
    off = {"predict_states": False, "predict_returns": False, "region_tokens": False}
    agents = []
    for name, options in (("dt", {}), ("modt", off)):
        torch.manual_seed(0)
        agents.append(make_agent(name, dataset.spec, 1, "cpu", {**TINY, **options}))
    torch.manual_seed(1)
    dt_metrics = agents[0].update(dataset.buffer, 0)
    torch.manual_seed(1)
    modt_metrics = agents[1].update(dataset.buffer, 0)
    assert dt_metrics["loss"].item() == modt_metrics["loss"].item()


def test_offline_runs_of_dt_modt_and_a_mamba_decision_model(tmp_path):
    for name, extra in (("dt", []), ("modt", []), ("dt", ["agent.backbone=mamba2"])):
        run_dir = tmp_path / f"{name}{len(extra)}"
        trainer = deeprl.learn(name, "pendulum", [
            "dataset=toy_pendulum", "dataset.steps=400", *TINY_CLI, *extra,
            "train.total_steps=10", "train.eval_every=0", "train.log_every=5",
            "train.eval_episodes=1", "train.threads=1",
        ], run_dir=run_dir)
        lines = read_jsonl(run_dir / "metrics.jsonl")
        assert [line["step"] for line in lines] == [5, 10] and "eval/return_mean" in lines[-1]
        assert "train/action_loss" in lines[0]
        assert trainer.agent.grad_steps == 10


@pytest.mark.parametrize("option, value, match", [
    ("backbone", "lstm", "agent.backbone"),
    ("context", 0, "agent.context"),
    ("target_return", "high", "agent.target_return"),
])
def test_bad_options_fail_in_one_line(option, value, match):
    with pytest.raises(UserError) as info:
        make_config(agent_registry()["dt"].Config, {option: value})
    assert match in str(info.value) and "\n" not in str(info.value)


def test_cli_refuses_a_context_longer_than_every_episode(tmp_path):
    proc = run_cli("agent=dt", "dataset=toy_pendulum", "dataset.steps=400", "env=pendulum",
                   "agent.context=201", "agent.embed_dim=16", "train.total_steps=5",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, module="offline_toys")
    assert proc.returncode != 0
    assert "agent.context=201" in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "context" in line]) == 1
    assert not (tmp_path / "run").exists()  # refused before Hydra claimed the run directory


DT_CLI = [
    "agent=dt", "dataset=toy_pendulum", "dataset.steps=400", "env=pendulum", *TINY_CLI,
    "seed=3", "train.total_steps=60", "train.eval_every=30", "train.log_every=5",
    "train.eval_episodes=1", "train.checkpoint_every=0",
]


@pytest.mark.slow
def test_dt_resume_after_sigterm_equals_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    proc = run_cli(f"hydra.run.dir={reference}", *DT_CLI, cwd=tmp_path, module="offline_toys")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "interrupted"
    interrupt_run(DT_CLI, run_dir, cwd=tmp_path, module="offline_toys")
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] < 60
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path, module="offline_toys")
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_dt_learns_from_a_generated_pendulum_expert_dataset(tmp_path):
    """deeprl-dataset's recipe with a short SAC run makes the expert data (its reference
    scores give the normalized score); a small DT learns it offline."""
    from deeprl.offline.generate import generate

    files = generate(
        "pendulum", tmp_path / "data", train_steps=8000, snapshot_every=1000,
        snapshot_episodes=3, dataset_steps=10000, score_episodes=10, kinds=("expert",),
        collect_envs=10, seed=0, overrides=("agent.learning_starts=1000",),
    )
    run_dir = tmp_path / "dt"
    deeprl.learn("dt", "pendulum", [
        "dataset=d4rl", f"dataset.path={files['expert']}", "agent.embed_dim=64",
        "agent.n_layers=2", "agent.lr=1e-3", "agent.warmup_steps=200", "seed=0",
        "train.total_steps=3000", "train.eval_every=1000", "train.eval_episodes=10",
        "train.threads=1",
    ], run_dir=run_dir)
    curve = [(line["step"], line["eval/normalized_score"])
             for line in read_jsonl(run_dir / "metrics.jsonl") if "eval/normalized_score" in line]
    print("DT normalized score by update:", curve)
    assert json.loads((run_dir / "eval.json").read_text())["normalized_score"] >= 80, curve
