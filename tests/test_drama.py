"""Drama: world model (size, loss, step-mode imagination), DFS sampler, agent, CLI, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import deeprl
from conftest import assert_resume_equal, read_jsonl, run_cli, video_frames
from deeprl.agents import Drama
from deeprl.buffers.replay import ReplayBuffer
from deeprl.buffers.samplers import DFSSampler, UniformSampler
from deeprl.config import compose, make_config
from deeprl.envs import make_env
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.errors import UserError
from deeprl.train.collector import Collector
from deeprl.worldmodels.drama import DramaWorldModel, drama_kl_loss

TINY = {
    "d_model": 32, "headdim": 16, "stoch": 4, "classes": 4, "units": 32, "head_units": 32,
    "batch_size": 4, "batch_length": 8, "imagine_batch": 8, "imagine_context": 4, "context": 4,
    "learning_starts": 32, "world_model_lr": 1e-3,
    "imagination": {"horizon": 5, "actor_units": 32, "critic_units": 32, "actor_layers": 1,
                    "critic_layers": 1, "num_bins": 15},
}
TINY_CLI = [
    "agent=drama", "agent.d_model=32", "agent.headdim=16", "agent.stoch=4", "agent.classes=4",
    "agent.units=32", "agent.head_units=32", "agent.batch_size=4", "agent.batch_length=8",
    "agent.imagine_batch=8", "agent.imagine_context=4", "agent.context=4",
    "agent.learning_starts=100", "agent.imagination.horizon=5",
    "agent.imagination.actor_units=32", "agent.imagination.critic_units=32",
    "agent.imagination.actor_layers=1", "agent.imagination.critic_layers=1",
]


def tiny_agent(num_envs: int = 2, **overrides) -> tuple[Drama, object]:
    env = make_env("cartpole", num_envs=num_envs)
    return Drama(env.spec, num_envs, config=make_config(Drama.Config, {**TINY, **overrides})), env


def small_model(obs_shape=(4,), actions: int = 3) -> DramaWorldModel:
    return DramaWorldModel(obs_shape, actions, stoch=4, classes=4, d_model=32,
                           sequence_kwargs={"n_layers": 2, "d_state": 8, "headdim": 16},
                           depth=4, units=32, head_units=32)


# ---- world model ---------------------------------------------------------------------------------
def test_world_model_at_atari_settings_has_about_7m_parameters():
    agent = Drama(EnvSpec("pong", Box.uniform((3, 64, 64), 0, 255, torch.uint8), Discrete(6)), 1)
    count = sum(p.numel() for p in agent.world_model.parameters())
    assert abs(count - 7e6) <= 0.1 * 7e6, count


def test_kl_free_bits_apply_to_the_batch_mean():
    post = torch.zeros(2, 3, 2, 4, requires_grad=True)
    prior = torch.zeros(2, 3, 2, 4, requires_grad=True)
    with torch.no_grad():
        post[0, 0, :, 0] = 5.0  # one step with a KL above 1, the mean below 1
    terms = drama_kl_loss(post, prior, free_bits=1.0)
    p = torch.softmax(torch.tensor([5.0, 0, 0, 0]), 0)
    kl_step = 2 * (p * (p.log() - math.log(0.25))).sum()  # summed over the 2 latents
    assert terms["kl"].item() == pytest.approx(kl_step.item() / 6, rel=1e-5)
    assert terms["dyn"].item() == terms["rep"].item() == 1.0
    terms["loss"].backward()  # clipped at the mean: no gradient at all, not even that step's
    assert post.grad.abs().max() == 0 and prior.grad.abs().max() == 0
    # A mask leaves steps out of the mean: only the high-KL step -> mean above 1.
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[0, 0] = True
    masked = drama_kl_loss(post, prior, mask, dyn_scale=1.0, rep_scale=0.1)
    assert masked["dyn"].item() == pytest.approx(kl_step.item(), rel=1e-5)
    assert masked["loss"].item() == pytest.approx(1.1 * kl_step.item(), rel=1e-5)


@pytest.mark.parametrize("obs_shape", [(4,), (3, 16, 16)])
def test_world_model_loss_terms(obs_shape):
    torch.manual_seed(0)
    model = small_model(obs_shape)
    obs = (torch.randint(0, 256, (2, 6, *obs_shape), dtype=torch.uint8) if len(obs_shape) == 3
           else torch.randn(2, 6, *obs_shape))
    action = F.one_hot(torch.randint(3, (2, 6)), 3).float()
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[1, 3] = True
    terms = model.loss(obs, action, torch.randn(2, 6), torch.zeros(2, 6, dtype=torch.bool),
                       is_first)
    assert set(terms) == {"loss", "recon", "reward", "termination", "dyn", "rep", "kl"}
    expected = (terms["recon"] + terms["reward"] + terms["termination"] + terms["dyn"]
                + 0.1 * terms["rep"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    terms["loss"].backward()
    assert model.sequence.layers[0].mixer.in_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("sequence", ["mamba2", "gru"])
def test_step_mode_imagination_equals_a_parallel_pass(sequence):
    torch.manual_seed(0)
    kwargs = {"n_layers": 2} if sequence == "gru" else {"n_layers": 2, "d_state": 8,
                                                         "headdim": 16}
    model = DramaWorldModel((4,), 3, stoch=4, classes=4, d_model=32, sequence=sequence,
                            sequence_kwargs=kwargs, units=32, head_units=32).eval()
    batch, context, horizon = 3, 5, 6
    obs = torch.randn(batch, context, 4)
    ctx_actions = F.one_hot(torch.randint(3, (batch, context)), 3).float()
    is_first = torch.zeros(batch, context, dtype=torch.bool)
    is_first[0, 2] = True  # a context crossing an episode start
    with torch.no_grad():
        ctx_z, _ = model.encode(obs, sample=False)
        state = model.imagine_start(obs, ctx_actions, is_first, sample=False)
        zs, hs, actions = [], [], []
        for _ in range(horizon):
            action = F.one_hot(torch.randint(3, (batch,)), 3).float()
            zs.append(state.z)
            actions.append(action)
            state = model.imagine_step(state, action)
            hs.append(state.h)
        # The same sequence in one parallel pass: context latents, then the imagined ones.
        z_all = torch.cat([ctx_z, torch.stack(zs, 1)], 1)
        a_all = torch.cat([ctx_actions, torch.stack(actions, 1)], 1)
        first = F.pad(is_first, (0, horizon))
        h_all, _ = model.observe(z_all, a_all, first)
    assert torch.allclose(torch.stack(hs, 1), h_all[:, context:], atol=1e-5)


def test_open_loop_frames_are_posterior_then_prior_fed_the_real_actions():
    torch.manual_seed(0)
    model = small_model((3, 16, 16))
    batch, length, context = 2, 6, 3
    obs = torch.randint(0, 256, (batch, length, 3, 16, 16), dtype=torch.uint8)
    action = F.one_hot(torch.randint(3, (batch, length)), 3).float()
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    frames = model.open_loop(obs, action, is_first, context, sample=False)
    assert frames.shape == obs.shape and 0 <= frames.min() and frames.max() <= 1
    assert model.training  # restored, and BatchNorm's running statistics were only read
    model.eval()
    with torch.no_grad():
        z, _ = model.encode(obs[:, :context], sample=False)
        state = model.imagine_start(obs[:, :context], action[:, :context], is_first[:, :context],
                                    sample=False)
        latents = [z]
        for t in range(context, length):
            latents.append(state.z.unsqueeze(1))
            state = model.imagine_step(state, action[:, t], sample=False)
        expected = model.decoder(torch.cat(latents, 1).flatten(-2))
        closed = model.decoder(model.encode(obs, sample=False)[0].flatten(-2))
    assert torch.allclose(frames, expected, atol=1e-6)
    assert torch.allclose(frames[:, :context], closed[:, :context], atol=1e-6)
    assert not torch.allclose(frames[:, context:], closed[:, context:])  # no observation after
    with pytest.raises(ValueError, match="context"):
        model.open_loop(obs, action, is_first, length)


def test_drama_eval_media_leaves_the_rng_and_dfs_counts_alone():
    spec = EnvSpec("pixels", Box.uniform((3, 16, 16), 0, 255, torch.uint8), Discrete(3))
    agent = Drama(spec, 2, config=make_config(Drama.Config, {**TINY, "depth": 4}))
    buffer = agent.make_buffer()
    assert agent.eval_media(buffer) == {}  # nothing replayed yet
    frames = torch.randint(0, 256, (21, 2, 3, 16, 16), dtype=torch.uint8)
    for t in range(20):
        buffer.add({"obs": frames[t], "action": torch.randint(3, (2,)), "reward": torch.rand(2),
                    "next_obs": frames[t + 1], "terminated": torch.zeros(2, dtype=torch.bool),
                    "truncated": torch.zeros(2, dtype=torch.bool)})
    buffer.sample_sequences(3, 8, allow_cross_episode=True)
    counts, rng = buffer.sampler.model_counts.clone(), torch.get_rng_state()
    video = agent.eval_media(buffer)["open_loop"]
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(buffer.sampler.model_counts, counts)
    # batch_length 8 frames; rows truth, model, error; 6 sequences side by side
    assert video.dtype == torch.uint8 and video.shape == (8, 3 * 16, 6 * 16, 3)
    vector_agent, env = tiny_agent()
    assert vector_agent.eval_media(vector_agent.make_buffer()) == {}
    env.close()


# ---- DFS sampler ---------------------------------------------------------------------------------
def filled_buffer(sampler, steps: int = 10, num_envs: int = 1) -> ReplayBuffer:
    buffer = ReplayBuffer(64, num_envs, store_next_obs=False, sampler=sampler)
    for t in range(steps):
        buffer.add({"obs": torch.full((num_envs, 2), float(t)),
                    "action": torch.zeros(num_envs, dtype=torch.int64),
                    "reward": torch.zeros(num_envs), "next_obs": torch.full((num_envs, 2), t + 1.0),
                    "terminated": torch.zeros(num_envs, dtype=torch.bool),
                    "truncated": torch.zeros(num_envs, dtype=torch.bool)})
    return buffer


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_dfs_probabilities_follow_the_formulas_on_given_counts():
    sampler = DFSSampler(tau=10.0, imagine_tau=10.0, imagine_scale=4.0)
    filled_buffer(sampler)
    items = torch.arange(8)  # windows of 3 steps over 10 stored: starts 0..7
    c = torch.tensor([0, 5, 10, 20, 0, 0, 30, 2], dtype=torch.int32)
    i = torch.tensor([0, 40, 0, 200, 8, 0, 0, 4], dtype=torch.int32)
    sampler.model_counts[:8], sampler.imagine_counts[:8] = c, i
    model = torch.exp(-c.double() / 10)
    assert torch.allclose(sampler.probabilities(items, False).double(), model / model.sum())
    score = torch.exp(torch.minimum(torch.zeros(8), c - i / 4.0).double() / 10)
    assert torch.allclose(sampler.probabilities(items, True).double(), score / score.sum())
    # Frequencies of single draws match (chi-square, 7 dof, critical value 24.3 at p = 0.001).
    generator = torch.Generator().manual_seed(0)
    for imagination, probs in ((False, model / model.sum()), (True, score / score.sum())):
        sampler.imagining = imagination
        drawn = torch.zeros(8)
        for _ in range(3000):
            start, _, _ = sampler.sample(1, 3, generator)
            drawn[start] += 1
        assert chi_square(drawn, probs.float()) < 24.3


def test_uniform_sampler_matches_uniform():
    buffer = filled_buffer(UniformSampler())
    generator = torch.Generator().manual_seed(0)
    drawn = torch.zeros(8)
    for _ in range(10):
        start, _, _ = buffer.sampler.sample(300, 3, generator)
        drawn += torch.bincount(start, minlength=8).float()
    assert chi_square(drawn, torch.full((8,), 1 / 8)) < 24.3


def test_dfs_counts_starts_per_purpose_and_restarts_overwritten_items():
    sampler = DFSSampler(imagine_scale=2.0)
    buffer = filled_buffer(sampler, num_envs=2)
    batch = buffer.sample_sequences(5, 4, allow_cross_episode=True)
    assert sampler.model_counts.sum() == 5 and sampler.imagine_counts.sum() == 0
    expected = torch.bincount(batch["index"][:, 0], minlength=sampler.model_counts.numel())
    assert torch.equal(sampler.model_counts, expected.int())
    assert len(set(batch["index"][:, 0].tolist())) == 5  # without replacement
    with sampler.imagination():
        buffer.sample_sequences(3, 2, allow_cross_episode=True)
    assert sampler.imagine_counts.sum() == 3 and sampler.model_counts.sum() == 5
    sampler.on_write(0, 64)
    assert sampler.model_counts.sum() == 0 and sampler.imagine_counts.sum() == 0


# ---- agent ---------------------------------------------------------------------------------------
def test_drama_acts_from_a_context_of_real_steps():
    torch.manual_seed(0)
    agent, env = tiny_agent(num_envs=3)
    agent.env_steps = 10**6  # past learning_starts: the actor acts
    state = agent.initial_state(3)
    assert state["frames"].shape == (3, 4, 4) and state["actions"].shape == (3, 4, 2)
    obs = env.reset(seed=0)
    with torch.inference_mode():
        action, extras, state = agent.act(obs, state, torch.ones(3, dtype=torch.bool))
        assert extras == {} and action.shape == (3,) and action.dtype == torch.int64
        assert state["valid"].sum(1).tolist() == [1, 1, 1]
        assert torch.equal(state["frames"][:, -1], obs)
        for _ in range(5):
            action, _, state = agent.act(obs, state, torch.tensor([False, True, False]),
                                         deterministic=True)
    assert state["valid"].sum(1).tolist() == [4, 1, 4]  # the context keeps 4; copy 1 restarted
    assert torch.equal(state["actions"][:, -1], F.one_hot(action, 2).float())
    # Acting changes no agent state (BatchNorm/normalisers): same input, same action.
    with torch.inference_mode():
        again = agent.act(obs, state, None, deterministic=True)[0]
        assert torch.equal(again, agent.act(obs, state, None, deterministic=True)[0])
    # Nor on images, whose encoder has BatchNorm (in training mode here, as during a run).
    spec = EnvSpec("img", Box.uniform((3, 16, 16), 0, 255, torch.uint8), Discrete(2))
    agent = Drama(spec, 2, config=make_config(Drama.Config, {**TINY, "depth": 4}))
    agent.env_steps = 10**6
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    frames = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    state = agent.initial_state(2)
    with torch.inference_mode():
        for _ in range(3):
            _, _, state = agent.act(frames, state, None)
    assert agent.world_model.encoder.training
    assert all(torch.equal(v, agent.state_dict()[k]) for k, v in before.items())


def test_drama_updates_and_agent_file_round_trip(tmp_path):
    torch.manual_seed(0)
    agent, env = tiny_agent()
    buffer = agent.make_buffer()
    assert isinstance(buffer.sampler, DFSSampler)
    collector = Collector(env, agent, seed=0)
    metrics = None
    while collector.steps < 48:
        buffer.add(collector.step())
        metrics = agent.update(buffer, collector.steps) or metrics
    assert agent.grad_steps == agent.updates_due(48) == 16
    for name in ("model_loss", "recon_loss", "reward_loss", "termination_loss", "dyn_loss",
                 "rep_loss", "kl", "actor_loss", "critic_loss", "entropy", "imagined_return",
                 "actor_critic_grad_norm"):
        assert metrics[name].dim() == 0 and math.isfinite(metrics[name].item()), name
    assert buffer.sampler.model_counts.sum() == 16 * 4
    assert buffer.sampler.imagine_counts.sum() == 16 * 8
    loaded = deeprl.load_agent(agent.save(tmp_path / "agent.safetensors"))
    state = agent.initial_state(2)
    obs = env.reset(seed=1)
    with torch.inference_mode():
        _, _, state = agent.act(obs, state, None)
        assert torch.equal(agent.act(obs, state, None, deterministic=True)[0],
                           loaded.act(obs, state, None, deterministic=True)[0])


@pytest.mark.parametrize("options", [
    {"sampler": "rank"}, {"batch_length": 200, "buffer_size": 100},
    {"imagine_context": 20, "buffer_size": 10}, {"headdim": 48}, {"backend": "cuda"},
])
def test_drama_bad_input_is_one_line(options):
    if options.get("backend") == "cuda" and torch.cuda.is_available():
        pytest.skip("the cuda backend may run here")
    env = make_env("cartpole", num_envs=1)
    with pytest.raises(UserError) as error:
        Drama(env.spec, 1, config=make_config(Drama.Config, {**TINY, **options}))
    message = str(error.value)
    assert "\n" not in message and any(key in message for key in options), message


def test_drama_refuses_continuous_actions():
    env = make_env("pendulum", num_envs=1)
    with pytest.raises(UserError, match="discrete actions"):
        Drama(env.spec, 1, config=make_config(Drama.Config, TINY))


def test_drama_cli_run_on_cartpole(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY_CLI, "env=cartpole", "train.total_steps=150", "train.eval_every=0",
                   "train.eval_episodes=1", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "eval.json").exists()
    logged = read_jsonl(run_dir / "metrics.jsonl")
    assert any("train/model_loss" in row for row in logged)


def test_drama_pixel_run_writes_an_open_loop_video(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY_CLI, "agent.depth=4", "env=atari100k", "env.size=16",
                   "train.total_steps=120", "train.eval_every=0", "train.eval_episodes=1",
                   "train.eval_max_episode_steps=20", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    frames = video_frames(run_dir / "videos" / "open_loop_120.mp4")
    assert len(frames) == 8 and frames[0].shape == (3 * 16, 6 * 16, 3)


@pytest.mark.slow  # ~2 min on 2 busy cores: three CLI runs
def test_drama_resume_after_sigterm_equals_uninterrupted(tmp_path):
    args = [*TINY_CLI, "env=cartpole", "seed=3", "train.total_steps=500",
            "train.eval_every=250", "train.log_every=100", "train.eval_episodes=1",
            "train.checkpoint_every=0"]
    assert_resume_equal(args, tmp_path, total_steps=500, after_lines=3)


def test_drama_presets_reach_their_envs():
    atari = compose(["agent=drama", "env=atari100k"])
    assert (atari.agent.batch_size, atari.agent.batch_length, atari.agent.learning_starts) == (
        16, 128, 1032)
    assert atari.agent.imagination.optimizer == "laprop" and atari.train.total_steps == 100_000
    vector = compose(["agent=drama", "env=cartpole"])
    assert vector.agent.d_model == 128 and vector.agent.imagination.joint_clip
