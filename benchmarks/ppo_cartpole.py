"""PPO on CartPole, 100k steps: deeprl's default run against Stable-Baselines3, in one process.

deeprl runs what ``deeprl-train`` runs with no overrides (agent ppo, env cartpole, the shipped
``configs/tuned/ppo_cartpole.yaml``) through the same code path, ``deeprl.learn``, with
``train.eval_every=0``: no evaluations during training, the final one (10 deterministic
episodes) as the CLI runs it. Its wall time covers config composition, env and agent
construction, training, the final evaluation and the checkpoint and agent files.

SB3 runs CleanRL ``ppo.py``'s settings (4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4
annealed linearly, gamma 0.99, lambda 0.95, clip 0.2 (values too), entropy 0.01, grad-norm 0.5,
separate 64x64 tanh actor and critic) on gymnasium's CartPole-v1 in a DummyVecEnv (its standard
set-up); its wall time covers env and model construction and training, and its return is SB3's
``evaluate_policy`` over 10 deterministic episodes (not timed) of an env seeded as deeprl's.

Both use one torch thread (deeprl's ``train.threads=1``). One-time import costs are paid before
any timing (the first ``torch.optim.Adam`` imports ``torch._dynamo``, ~2.5 s on a 2-core CPU;
Hydra initialises on the first composition), so neither library pays them for the other. The
seeds alternate which library runs first. Exits 1 unless deeprl solves CartPole (return >= 475)
for every seed and its total wall time is at most half of SB3's.

    python benchmarks/ppo_cartpole.py            # seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from deeprl.train.policy_eval import EVAL_SEED_OFFSET

STEPS = 100_000
SOLVED = 475.0
TARGET_RATIO = 0.5


def run_deeprl(seed: int, steps: int) -> tuple[float, float]:
    import deeprl

    overrides = [f"seed={seed}", f"train.total_steps={steps}", "train.eval_every=0"]
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        trainer = deeprl.learn("ppo", "cartpole", overrides, run_dir=run_dir)
        wall = time.perf_counter() - start
    return wall, trainer.last_eval["return_mean"]


def run_sb3(seed: int, steps: int) -> tuple[float, float]:
    import gymnasium as gym
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=4, seed=seed)
    model = SB3PPO(
        "MlpPolicy",
        env,
        n_steps=128,
        batch_size=128,  # 4 envs x 128 steps / 4 minibatches
        n_epochs=4,
        learning_rate=lambda progress: 2.5e-4 * progress,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        clip_range_vf=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={
            "net_arch": {"pi": [64, 64], "vf": [64, 64]},
            "activation_fn": torch.nn.Tanh,
        },
        seed=seed,
        device="cpu",
    )
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    eval_env = Monitor(gym.make("CartPole-v1"))
    eval_env.reset(seed=seed + EVAL_SEED_OFFSET)  # later resets continue this seeded stream
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return wall, float(mean)


def warm_up() -> None:
    """Pay the one-time costs that would otherwise land on whichever library runs first."""
    import stable_baselines3  # noqa: F401

    import deeprl
    import deeprl.train.trainer  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    deeprl.compose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warm_up()
    rows = []
    for i, seed in enumerate(args.seeds):
        if i % 2 == 0:
            ours = run_deeprl(seed, args.steps)
            peer = run_sb3(seed, args.steps)
        else:
            peer = run_sb3(seed, args.steps)
            ours = run_deeprl(seed, args.steps)
        rows.append((seed, *ours, *peer))
        print(
            f"seed {seed}: deeprl {ours[0]:.1f}s return {ours[1]:.1f} | "
            f"SB3 {peer[0]:.1f}s return {peer[1]:.1f} | ratio {ours[0] / peer[0]:.2f}",
            flush=True,
        )
    print("\n| seed | deeprl wall (s) | deeprl return | SB3 wall (s) | SB3 return | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed, w1, r1, w2, r2 in rows:
        print(f"| {seed} | {w1:.1f} | {r1:.1f} | {w2:.1f} | {r2:.1f} | {w1 / w2:.2f} |")
    ours_total, peer_total = sum(r[1] for r in rows), sum(r[3] for r in rows)
    ratio = ours_total / peer_total
    solved = all(r[2] >= SOLVED for r in rows)
    print(
        f"\ntotal wall time: deeprl {ours_total:.1f}s, SB3 {peer_total:.1f}s, ratio {ratio:.2f} "
        f"(goal <= {TARGET_RATIO}); deeprl solved (>= {SOLVED:.0f}) every seed: {solved}"
    )
    return 0 if solved and ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
