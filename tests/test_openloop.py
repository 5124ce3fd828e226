"""Open-loop prediction videos: the grid on a tiny RSSM, Dreamer's eval media, the CLI."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_dreamer import TINY, TINY_CLI, tiny_agent

from conftest import run_cli, video_frames
from deeprl.agents import Dreamer
from deeprl.config import make_config
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.worldmodels import RSSM, ConvDecoder, ConvEncoder, open_loop_video

SIZE, B, L, A, CONTEXT = 16, 2, 6, 3, 3


def tiny_world_model(channels: int = 3):
    torch.manual_seed(0)
    encoder = ConvEncoder(channels, SIZE, depth=4)
    rssm = RSSM(A, encoder.out_dim, deter=16, stoch=4, classes=4, hidden=16)
    decoder = ConvDecoder(rssm.feature_dim, channels, SIZE, depth=4)
    obs = torch.randint(0, 256, (B, L, channels, SIZE, SIZE), dtype=torch.uint8)
    action = torch.nn.functional.one_hot(torch.randint(A, (B, L)), A).float()
    is_first = torch.zeros(B, L, dtype=torch.bool)
    is_first[:, 0] = True
    return rssm, encoder, decoder, obs, action, is_first


def as_frames(pred: torch.Tensor) -> torch.Tensor:
    """Decoder output (..., C, H, W) in [-0.5, 0.5] -> uint8 (..., H, W, C), as the video."""
    return ((pred + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)


def test_open_loop_grid_has_truth_reconstruction_then_prediction():
    rssm, encoder, decoder, obs, action, is_first = tiny_world_model()
    video = open_loop_video(rssm, encoder, decoder, obs, action, is_first, CONTEXT, sample=False)
    assert video.dtype == torch.uint8 and video.shape == (L, 3 * SIZE, B * SIZE, 3)

    def panel(row: int, seq: int) -> torch.Tensor:
        return video[:, row * SIZE:(row + 1) * SIZE, seq * SIZE:(seq + 1) * SIZE]

    with torch.no_grad():
        # Context: the posterior reconstruction of the observed frames.
        observed = rssm.observe(encoder(obs[:, :CONTEXT]), action[:, :CONTEXT],
                                is_first[:, :CONTEXT], sample=False)
        recon = as_frames(decoder(rssm.features(observed.deter, observed.stoch)))
        # After it: the prior alone, fed the real actions.
        state, imagined = observed.last, []
        for t in range(CONTEXT, L):
            state = rssm.imagine_step(state, action[:, t], sample=False)
            imagined.append(as_frames(decoder(rssm.features(state.deter, state.stoch))))
        imagined = torch.stack(imagined, 1)
        # The full posterior differs after the context: the prediction is open loop.
        posterior = rssm.observe(encoder(obs), action, is_first, sample=False)
        closed = as_frames(decoder(rssm.features(posterior.deter, posterior.stoch)))
    for seq in range(B):
        assert torch.equal(panel(0, seq), obs[seq].movedim(1, -1))
        assert torch.equal(panel(1, seq)[:CONTEXT], recon[seq])
        assert torch.equal(panel(1, seq)[CONTEXT:], imagined[seq])
        assert not torch.equal(panel(1, seq)[CONTEXT:], closed[seq, CONTEXT:])
        # Error (model - truth + 1) / 2: mid-grey is no error.
        model, truth = panel(1, seq).float(), panel(0, seq).float()
        assert (panel(2, seq).float() - (model - truth + 255) / 2).abs().max() <= 1


def test_frame_stacks_show_their_newest_frame():
    rssm, encoder, decoder, obs, action, is_first = tiny_world_model(channels=4)
    video = open_loop_video(rssm, encoder, decoder, obs, action, is_first, CONTEXT)
    assert video.shape == (L, 3 * SIZE, B * SIZE, 1)
    assert torch.equal(video[:, :SIZE, :SIZE, 0], obs[0, :, -1])


@pytest.mark.parametrize("context", [0, L])
def test_context_must_leave_a_step_to_predict(context):
    rssm, encoder, decoder, obs, action, is_first = tiny_world_model()
    with pytest.raises(ValueError, match="context"):
        open_loop_video(rssm, encoder, decoder, obs, action, is_first, context)


def test_dreamer_eval_media_on_images_only_and_leaves_the_rng_alone():
    spec = EnvSpec("pixels", Box.uniform((3, SIZE, SIZE), 0, 255, torch.uint8), Discrete(3))
    agent = Dreamer(spec, 2, config=make_config(Dreamer.Config, {**TINY, "depth": 4}))
    buffer = agent.make_buffer()
    assert agent.eval_media(buffer) == {}  # nothing replayed yet
    frames = torch.randint(0, 256, (21, 2, 3, SIZE, SIZE), dtype=torch.uint8)
    for t in range(20):
        buffer.add({"obs": frames[t], "action": torch.randint(3, (2,)), "reward": torch.rand(2),
                    "next_obs": frames[t + 1], "terminated": torch.zeros(2, dtype=torch.bool),
                    "truncated": torch.zeros(2, dtype=torch.bool)})
    rng = torch.get_rng_state()
    video = agent.eval_media(buffer)["open_loop"]
    assert torch.equal(torch.get_rng_state(), rng)
    assert video.dtype == torch.uint8 and video.shape == (8, 3 * SIZE, 6 * SIZE, 3)

    vector_agent, env = tiny_agent("cartpole")
    vector_buffer = vector_agent.make_buffer()
    assert vector_agent.eval_media(vector_buffer) == {}
    env.close()


def test_dreamer_pixel_run_writes_open_loop_videos_and_logs_every_term(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *TINY_CLI, "agent.depth=4", "agent.batch_size=2", "agent.learning_starts=50",
        "agent.train_ratio=4", "env=atari100k", "env.size=16", "train.total_steps=100",
        "train.eval_every=0", "train.eval_episodes=1", "train.eval_max_episode_steps=20",
        f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    frames = video_frames(run_dir / "videos" / "open_loop_100.mp4")
    assert len(frames) == 8 and frames[0].shape == (3 * 16, 6 * 16, 3)
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert "eval/open_loop" in events.Tags()["images"]
    # Every world-model loss term, KL and latent entropies, the actor-critic's terms, entropy,
    # return scale and imagined return reach TensorBoard.
    expected = [
        "model_loss", "recon_obs_loss", "reward_loss", "cont_loss", "dyn_loss", "rep_loss", "kl",
        "prior_entropy", "post_entropy", "actor_loss", "policy_loss", "entropy", "critic_loss",
        "value_loss", "slow_reg_loss", "return_scale", "imagined_return",
    ]
    assert {f"train/{k}" for k in expected} <= set(events.Tags()["scalars"])
