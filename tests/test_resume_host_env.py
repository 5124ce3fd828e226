"""Resuming with an env that cannot restore its state (issue 10, point 5): the stored episodes
are closed, so nothing learned from the replay joins the old episode to the fresh one."""

import torch

import deeprl
from deeprl.train.trainer import Trainer

OPTIONS = {
    "env.game": "Pong", "env.size": 64, "env.grayscale": True, "env.frame_stack": 4,
    "env.max_frames": 400,  # 100 agent steps per episode: evaluations stay short
    "agent.n_step": 3, "agent.learning_starts": 64, "agent.batch_size": 8,
    "agent.buffer_size": 1000, "agent.train_frequency": 8,
    "train.eval_every": 0, "train.eval_episodes": 1, "train.log_every": 100,
    "train.checkpoint_every": 0, "device": "cpu",
}


def test_dqn_with_frame_stacks_resumed_on_atari_closes_the_stored_episode(tmp_path):
    first = 150  # mid-episode: Pong's episodes here last 100 agent steps, 150 is not a multiple
    cfg = deeprl.compose("dqn", "atari100k", {**OPTIONS, "train.total_steps": first})
    Trainer(cfg, tmp_path).train()
    cfg = deeprl.compose("dqn", "atari100k", {**OPTIONS, "train.total_steps": 250})
    trainer = Trainer(cfg, tmp_path)
    trainer.train()  # resumes at step 150 with fresh episodes, runs to 250
    buffer = trainer.buffer
    assert buffer.size == 250
    # Slot 149 (the last step before the resume) ends an episode, slot 150 starts one.
    assert bool(buffer.data["truncated"][first - 1, 0] | buffer.data["terminated"][first - 1, 0])
    assert bool(buffer.data["is_first"][first, 0])

    torch.manual_seed(0)
    batch = buffer.sample(4096)
    t = batch["index"] // buffer.num_envs
    # No n-step window reaches across the resume point: a window from t < 150 stops at 149.
    before = t < first
    steps_taken = torch.log(batch["discount"][before & (batch["discount"] > 0)]) / torch.log(
        torch.tensor(buffer.gamma)
    )
    window_end = t[before & (batch["discount"] > 0)] + steps_taken.round().long() - 1
    assert (window_end <= first - 1).all()
    # The first stack after the resume holds only the fresh episode's first frame.
    at_resume = batch["obs"][t == first]
    assert len(at_resume) > 0
    frames = at_resume.view(len(at_resume), 4, 1, 64, 64)
    assert (frames == frames[:, -1:]).all()
    # The last stack before it is untouched (frames of its own episode, not all equal).
    last = batch["obs"][t == first - 1].view(-1, 4, 1, 64, 64)
    assert len(last) > 0 and not (last == last[:, -1:]).all()
