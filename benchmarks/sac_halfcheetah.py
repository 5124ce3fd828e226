"""SAC on HalfCheetah-v5: deeprl against Stable-Baselines3 at equal settings, in one run.

Both use 256x256 ReLU actor and twin critics, batch 256, one gradient step per env step
(UTD 1), actor and temperature updated every gradient step (SB3's schedule; deeprl's default
``policy_frequency`` 2 is set to 1 here), target update every step with tau 0.005, one env,
one torch thread. After ``--learning-starts`` random steps each trains for ``--steps`` more; the
figures are gradient updates/s and env-steps/s over that training phase, and their ratio.

    python benchmarks/sac_halfcheetah.py --steps 3000
"""

from __future__ import annotations

import argparse
import time

import torch


def run_deeprl(steps: int, learning_starts: int, seed: int) -> float:
    from deeprl.agents import SAC, SACConfig
    from deeprl.envs import make_env
    from deeprl.train.collector import Collector

    torch.manual_seed(seed)
    env = make_env("mujoco", 1, backend="mujoco", task="HalfCheetah-v5")
    config = SACConfig(learning_starts=learning_starts, policy_frequency=1, buffer_size=100_000)
    agent = SAC(env.spec, 1, config=config)
    buffer = agent.make_buffer()
    collector = Collector(env, agent, seed=seed)
    while collector.steps < learning_starts:
        buffer.add(collector.step())
        agent.update(buffer, collector.steps)
    start = time.perf_counter()
    while collector.steps < learning_starts + steps:
        buffer.add(collector.step())
        agent.update(buffer, collector.steps)
    return time.perf_counter() - start


def run_sb3(steps: int, learning_starts: int, seed: int) -> float:
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC

    env = gym.make("HalfCheetah-v5")
    model = SB3SAC("MlpPolicy", env, learning_starts=learning_starts, batch_size=256,
                   buffer_size=100_000, train_freq=1, gradient_steps=1, tau=0.005,
                   policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
    model.learn(total_timesteps=learning_starts)
    start = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours = run_deeprl(args.steps, args.learning_starts, args.seed)
    peer = run_sb3(args.steps, args.learning_starts, args.seed)
    print("| | deeprl | SB3 | ratio |\n| --- | --- | --- | --- |")
    print(f"| gradient updates/s (= env-steps/s at UTD 1) | {args.steps / ours:.0f} | "
          f"{args.steps / peer:.0f} | {peer / ours:.2f}x |")


if __name__ == "__main__":
    main()
