"""PPO on CartPole: deeprl against Stable-Baselines3 at CleanRL ppo.py settings, in one run.

Both train 100k steps with 4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed
linearly, gamma 0.99, lambda 0.95, clip 0.2 (values too), entropy 0.01, grad-norm 0.5, separate
64x64 tanh actor and critic, one torch thread. deeprl steps its torch-native CartPole; SB3 steps
gymnasium's CartPole-v1 in a DummyVecEnv (its standard set-up). Reported: training wall time
(agent construction excluded, env construction included), the ratio deeprl / SB3, and the final
deterministic evaluation return over 10 episodes.

    python benchmarks/ppo_cartpole.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

STEPS = 100_000


def run_deeprl(seed: int, steps: int) -> tuple[float, float]:
    from deeprl.agents import PPO, PPOConfig
    from deeprl.envs import make_env
    from deeprl.train.collector import Collector
    from deeprl.train.policy_eval import evaluate_policy

    torch.manual_seed(seed)
    start = time.perf_counter()
    env = make_env("cartpole", num_envs=4)
    agent = PPO(env.spec, 4, config=PPOConfig(), total_steps=steps)
    buffer = agent.make_buffer()
    collector = Collector(env, agent, seed=seed)
    while collector.steps < steps:
        buffer.add(collector.step())
        agent.update(buffer, collector.steps)
    wall = time.perf_counter() - start
    report = evaluate_policy(
        agent, make_env("cartpole", num_envs=10), episodes=10, seed=seed + 1000
    )
    return wall, report["return_mean"]


def run_sb3(seed: int, steps: int) -> tuple[float, float]:
    import gymnasium as gym
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

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
    construct = time.perf_counter() - start
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start + construct
    eval_env = gym.make("CartPole-v1")
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return wall, float(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        ours = run_deeprl(seed, args.steps)
        peer = run_sb3(seed, args.steps)
        rows.append((seed, *ours, *peer))
        print(f"seed {seed}: deeprl {ours[0]:.1f}s return {ours[1]:.1f} | "
              f"SB3 {peer[0]:.1f}s return {peer[1]:.1f} | ratio {ours[0] / peer[0]:.2f}")
    print("\n| seed | deeprl wall (s) | deeprl return | SB3 wall (s) | SB3 return | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed, w1, r1, w2, r2 in rows:
        print(f"| {seed} | {w1:.1f} | {r1:.1f} | {w2:.1f} | {r2:.1f} | {w1 / w2:.2f} |")
    ratio = statistics.mean(r[1] / r[3] for r in rows)
    print(f"\nmean wall-time ratio deeprl/SB3: {ratio:.2f}; mean returns: "
          f"deeprl {statistics.mean(r[2] for r in rows):.1f}, "
          f"SB3 {statistics.mean(r[4] for r in rows):.1f}")


if __name__ == "__main__":
    main()
