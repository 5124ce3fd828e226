import torch

from deeprl.buffers import RolloutBuffer, generalized_advantage_estimation


def naive_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    T, N = rewards.shape
    adv = torch.zeros(T, N, dtype=torch.float64)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, n] else gamma * next_values[t, n]
            delta = rewards[t, n] + bootstrap - values[t, n]
            done = terminated[t, n] or truncated[t, n]
            running = delta + (0.0 if done else gamma * lam * running)
            adv[t, n] = running
    return adv


def test_gae_matches_hand_computed_case():
    # One env, 3 steps; the episode terminates at t=1 and a new one runs at t=2.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    next_values = torch.tensor([[0.4], [9.0], [0.2]])  # 9.0 must be ignored: terminal
    terminated = torch.tensor([[False], [True], [False]])
    truncated = torch.zeros(3, 1, dtype=torch.bool)
    gamma, lam = 0.9, 0.5
    adv, ret = generalized_advantage_estimation(
        rewards, values, next_values, terminated, truncated, gamma, lam
    )
    a2 = 3.0 + 0.9 * 0.2 - 0.3
    a1 = 2.0 - 0.4  # terminal: no bootstrap
    a0 = (1.0 + 0.9 * 0.4 - 0.5) + 0.9 * 0.5 * a1
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + values)


def test_truncation_bootstraps_and_cuts_the_trace():
    rewards = torch.ones(2, 1)
    values = torch.zeros(2, 1)
    next_values = torch.tensor([[5.0], [7.0]])
    terminated = torch.zeros(2, 1, dtype=torch.bool)
    truncated = torch.tensor([[True], [False]])
    adv, _ = generalized_advantage_estimation(
        rewards, values, next_values, terminated, truncated, 0.5, 1.0
    )
    # t=0 is truncated: it bootstraps from V(final obs)=5 and does not see t=1's advantage.
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([1 + 0.5 * 5.0, 1 + 0.5 * 7.0]))


def test_gae_matches_naive_recursion_on_random_rollouts():
    g = torch.Generator().manual_seed(0)
    T, N = 17, 5
    rewards, values, next_values = (torch.randn(T, N, generator=g) for _ in range(3))
    terminated = torch.rand(T, N, generator=g) < 0.1
    truncated = (torch.rand(T, N, generator=g) < 0.1) & ~terminated
    adv, _ = generalized_advantage_estimation(
        rewards, values, next_values, terminated, truncated, 0.99, 0.95
    )
    expected = naive_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)


def test_rollout_buffer_fills_and_round_trips():
    buffer = RolloutBuffer(num_steps=3, num_envs=2)
    for t in range(2):
        buffer.add({"obs": torch.full((2, 4), float(t)), "reward": torch.ones(2)})
    assert len(buffer) == 4 and not buffer.full
    restored = RolloutBuffer(num_steps=3, num_envs=2)
    restored.load_state_dict(buffer.state_dict())
    restored.add({"obs": torch.full((2, 4), 2.0), "reward": torch.ones(2)})
    assert restored.full
    assert restored.data["obs"][:, 0, 0].tolist() == [0.0, 1.0, 2.0]
