"""Pixel observations: the shared torsos (deeprl.nets.torso) in PPO, SAC and DQN, scaled input,
gradient steps on tiny pixel batches, DrQ's augmentation, a short pixel run from the CLI, and
the replay's capacity hint (pixel replays are the ones that do not fit)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import read_jsonl, run_cli
from deeprl.agent import load_agent
from deeprl.agents import DQN, PPO, SAC
from deeprl.buffers.replay import HEADROOM_BYTES, ReplayBuffer, fitting_capacity
from deeprl.config import make_config
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.errors import UserError
from deeprl.nets.cnn import DrQConv, NatureCNN, random_shift
from deeprl.nets.torso import FlatObservation, resolve_torso

ATARI = EnvSpec("atari-like", Box.uniform((4, 84, 84), 0, 255, torch.uint8), Discrete(6),
                metadata={"frame_stack": 4})
DMC = EnvSpec("dmc-like", Box.uniform((3, 64, 64), 0, 255, torch.uint8),
              Box.uniform((2,), -2, 2))
STATE = EnvSpec("state", Box.uniform((5,), -1, 1), Box.uniform((2,), -2, 2))


def frames(spec: EnvSpec, n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *spec.observation_space.shape), dtype=torch.uint8)


def fill(agent, buffer, steps: int) -> None:
    """Add ``steps`` batched transitions of random frames with the agent's own actions."""
    n = agent.num_envs
    for _ in range(steps):
        obs = frames(agent.spec, n)
        with torch.inference_mode():
            action, extras, _ = agent.act(obs)
        buffer.add({"obs": obs, "action": action, "reward": torch.randn(n),
                    "next_obs": frames(agent.spec, n),
                    "terminated": torch.zeros(n, dtype=torch.bool),
                    "truncated": torch.zeros(n, dtype=torch.bool), **extras})


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def same_actions_after_reload(agent, tmp_path, obs: torch.Tensor) -> bool:
    loaded = load_agent(agent.save(tmp_path / "agent.safetensors"))
    with torch.inference_mode():
        return torch.equal(agent.act(obs, deterministic=True)[0],
                           loaded.act(obs, deterministic=True)[0])


def test_auto_picks_a_cnn_for_pixels_only():
    assert resolve_torso("auto", ATARI) == "nature_cnn"
    assert resolve_torso("auto", DMC, pixel_default="drq") == "drq"
    assert resolve_torso("auto", STATE) == "mlp"
    assert resolve_torso("mlp", ATARI) == "mlp"
    with pytest.raises(UserError, match="agent.torso=mlp"):
        resolve_torso("drq", STATE)
    tiny = EnvSpec("tiny", Box.uniform((3, 16, 16), 0, 255, torch.uint8), Discrete(2))
    with pytest.raises(UserError, match="16x16 frames"):
        PPO(tiny, 1, config=PPO.Config(num_steps=4, num_minibatches=1))


def test_every_torso_scales_uint8_frames():
    torch.manual_seed(0)
    x = frames(DMC, 2)
    for cnn in (NatureCNN(3, 64, 64), DrQConv(3, 64, 64)):
        expected = cnn(x)
        cnn.scale = False
        torch.testing.assert_close(cnn(x.float() / 255), expected)
    torch.testing.assert_close(FlatObservation(scale=True)(x), x.flatten(1).float() / 255)


def test_random_shift_crops_a_window_of_the_padded_image():
    torch.manual_seed(0)
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    shifted = random_shift(images.to(torch.uint8), pad=2)
    assert shifted.shape == images.shape and shifted.dtype == torch.float32
    padded = torch.nn.functional.pad(images.to(torch.uint8).float(), (2, 2, 2, 2),
                                     mode="replicate")
    for i in range(2):
        windows = [padded[i, :, y:y + 6, x:x + 6] for y in range(5) for x in range(5)]
        assert any(torch.equal(shifted[i], w) for w in windows)
    assert torch.equal(random_shift(images, pad=0), images)


def test_ppo_shares_one_nature_cnn_between_actor_and_critic(tmp_path):
    torch.manual_seed(0)
    config = make_config(PPO.Config, {"num_steps": 4, "num_minibatches": 2, "update_epochs": 2})
    agent = PPO(ATARI, 2, config=config)
    assert isinstance(agent.torso, NatureCNN)
    # CleanRL ppo_atari.py: linear heads on the 512 features, orthogonal with gains 0.01 and 1.
    (actor,), (critic,) = agent.actor, agent.critic
    assert actor.weight.shape == (6, 512) and critic.weight.shape == (1, 512)
    torch.testing.assert_close(actor.weight @ actor.weight.T, 1e-4 * torch.eye(6))
    torch.testing.assert_close(critic.weight.norm(), torch.tensor(1.0))
    action, _, _ = agent.act(frames(ATARI, 2))
    assert action.shape == (2,)
    before = snapshot(agent.torso)
    buffer = agent.make_buffer()
    fill(agent, buffer, 4)
    metrics = agent.update(buffer, 8)
    assert metrics is not None and math.isfinite(metrics["policy_loss"])
    assert moved(before, agent.torso)
    assert same_actions_after_reload(agent, tmp_path, frames(ATARI, 3))
    continuous = PPO(DMC, 2, config=config)
    assert continuous.act(frames(DMC, 2), deterministic=True)[0].shape == (2, 2)


def test_sac_trains_the_encoder_through_the_critics_only(tmp_path):
    torch.manual_seed(0)
    options = {"learning_starts": 14, "batch_size": 8, "buffer_size": 64, "image_pad": 4,
               "hidden_sizes": [32, 32]}
    agent = SAC(DMC, 1, config=make_config(SAC.Config, options))
    assert isinstance(agent.encoder, DrQConv)
    action, _, _ = agent.act(frames(DMC, 2))
    assert action.shape == (2, 2) and action.abs().max() <= 2
    encoder, target = snapshot(agent.encoder), snapshot(agent.encoder_target)
    actor_projection = snapshot(agent.actor[0])
    buffer = agent.make_buffer()
    assert not buffer.store_next_obs  # pixels: each frame stored once
    fill(agent, buffer, 16)
    metrics = agent.update(buffer, 16)
    assert agent.grad_steps == 2 and all(math.isfinite(v) for v in metrics.values())
    assert "actor_loss" in metrics
    assert moved(encoder, agent.encoder) and moved(actor_projection, agent.actor[0])
    # The target encoder follows by Polyak averaging: it moved, but not all the way.
    assert moved(target, agent.encoder_target)
    assert moved(snapshot(agent.encoder), agent.encoder_target)
    assert same_actions_after_reload(agent, tmp_path, frames(DMC, 3))

    # With the critics' learning rate ~0 the encoder stays put while the actor learns.
    frozen = SAC(DMC, 1, config=make_config(SAC.Config, {**options, "q_lr": 1e-30}))
    encoder, actor = snapshot(frozen.encoder), snapshot(frozen.actor)
    buffer = frozen.make_buffer()
    fill(frozen, buffer, 16)
    frozen.update(buffer, 16)
    assert not moved(encoder, frozen.encoder) and moved(actor, frozen.actor)


def test_sac_replay_stacks_frames_as_the_env_says():
    stacked = EnvSpec("stacked", Box.uniform((9, 64, 64), 0, 255, torch.uint8),
                      Box.uniform((2,), -1, 1), metadata={"frame_stack": 3})
    config = make_config(SAC.Config, {"buffer_size": 100, "hidden_sizes": [8]})
    assert SAC(stacked, 1, config=config).make_buffer().frame_stack == 3


def test_dqn_builds_its_torso_with_the_shared_helper():
    agent = DQN(ATARI, 1)
    assert isinstance(agent.q_network.torso, NatureCNN)
    drq = DQN(ATARI, 1, config=make_config(DQN.Config, {"torso": "drq"}))
    assert drq.q_network.advantage.in_features == 50


def test_sac_on_rendered_pixels_from_the_cli(tmp_path):
    pytest.importorskip("mujoco")
    run_dir = tmp_path / "run"
    proc = run_cli(
        "agent=sac", "env=mujoco/invertedpendulum", "env.pixels=true", "env.size=32",
        "agent.learning_starts=32", "agent.batch_size=8", "agent.buffer_size=1000",
        "train.total_steps=48", "train.eval_every=0", "train.eval_episodes=1",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert last["step"] == 48 and math.isfinite(last["train/actor_loss"])


def test_capacity_hint_leaves_headroom():
    gib = 2**30
    # Half of what is free, or all but 2 GiB, whichever is smaller.
    assert fitting_capacity(10 * gib, 1024) == 5 * gib // 1024
    assert fitting_capacity(3 * gib, 1024) == (3 * gib - HEADROOM_BYTES) // 1024
    assert fitting_capacity(gib, 1024) == 0


def test_capacity_error_suggests_a_capacity_with_headroom(monkeypatch):
    import deeprl.buffers.replay as replay

    gib = 2**30
    buffer = ReplayBuffer(10**9, 1)
    obs = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    transition = {"obs": obs, "action": torch.zeros(1, 2), "reward": torch.zeros(1),
                  "next_obs": obs, "terminated": torch.zeros(1, dtype=torch.bool),
                  "truncated": torch.zeros(1, dtype=torch.bool)}
    per_item = buffer.required_bytes(transition) / 10**9
    monkeypatch.setattr(replay, "available_memory", lambda device: 10 * gib)
    with pytest.raises(UserError) as info:
        buffer.add(transition)
    assert f"about {int(5 * gib // per_item)} would fit" in str(info.value)
    assert "leaving 2 GiB free" in str(info.value) and buffer.data == {}
    monkeypatch.setattr(replay, "available_memory", lambda device: gib)
    with pytest.raises(UserError, match="free memory on cpu"):
        buffer.add(transition)
