"""The dataset formats: D4RL's HDF5 files with ``qlearning_dataset``'s rules, Minari datasets
written and read back through ``minari`` itself, ``dataset=d4rl|minari`` and their bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprl.datasets import load_dataset
from deeprl.errors import UserError
from deeprl.offline.d4rl import read_d4rl, write_d4rl
from deeprl.offline.minari import episodes_from_flat, read_minari, write_minari

h5py = pytest.importorskip("h5py")
minari = pytest.importorskip("minari")

CPU = torch.device("cpu")


def qlearning_reference(data: dict, max_episode_steps: int | None = None) -> dict:
    """d4rl's ``qlearning_dataset`` (d4rl/__init__.py) as a plain loop: next_obs = obs[i + 1],
    steps that time out are skipped, only terminals are done, the last step has no successor."""
    out = {"obs": [], "next_obs": [], "action": [], "reward": [], "terminated": []}
    episode_step = 0
    for i in range(len(data["rewards"]) - 1):
        if "timeouts" in data:
            final = bool(data["timeouts"][i])
        else:
            final = episode_step == max_episode_steps - 1
        if final:
            episode_step = 0
            continue
        if data["terminals"][i]:
            episode_step = 0
        out["obs"].append(data["observations"][i])
        out["next_obs"].append(data["observations"][i + 1])
        out["action"].append(data["actions"][i])
        out["reward"].append(data["rewards"][i])
        out["terminated"].append(bool(data["terminals"][i]))
        episode_step += 1
    return {k: np.asarray(v) for k, v in out.items()}


def hand_built(steps: int = 14, obs_dim: int = 2) -> dict[str, np.ndarray]:
    """Episodes: steps 0-3 end in a terminal, 4-8 time out, 9-11 end in a terminal, 12-13 are
    an unfinished episode. Observation i is [i, 10 i, 100 i, ...][:obs_dim]."""
    index = np.arange(steps, dtype=np.float32)
    terminals = np.zeros(steps, dtype=bool)
    timeouts = np.zeros(steps, dtype=bool)
    terminals[[3, 11]] = True
    timeouts[8] = True
    return {
        "observations": np.stack([index * 10**k for k in range(obs_dim)], 1),
        "actions": np.stack([index / 100], 1),
        "rewards": index * 2,
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/action_log_probs": -index,
    }


def test_d4rl_reader_matches_qlearning_dataset(tmp_path):
    data = hand_built()
    path = write_d4rl(tmp_path / "mine.hdf5", data, {"ref_min_score": 0.0})
    got, metadata = read_d4rl(path)
    want = qlearning_reference(data)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    # The timeout step 8 and the last step 13 (no successor) are left out.
    np.testing.assert_array_equal(got["obs"][:, 0], [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12])
    # The stream leaves an episode after step 7 (8 skipped) and at the data's end (12):
    # truncations, not terminations, so their next_obs still counts.
    np.testing.assert_array_equal(np.flatnonzero(got["truncated"]), [7, 11])
    np.testing.assert_array_equal(np.flatnonzero(got["terminated"]), [3, 10])
    np.testing.assert_array_equal(got["infos/action_log_probs"], -got["obs"][:, 0])
    assert metadata["ref_min_score"] == 0.0


def test_d4rl_reader_next_observations_and_limit(tmp_path):
    data = hand_built()
    data["next_observations"] = data["observations"] + 0.5  # the true successors
    got, _ = read_d4rl(write_d4rl(tmp_path / "next.hdf5", data))
    # With next_observations the last step has a successor and is kept; timeouts still skipped.
    np.testing.assert_array_equal(got["obs"][:, 0], [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13])
    np.testing.assert_array_equal(got["next_obs"], got["obs"] + 0.5)
    assert got["truncated"][-1] and not got["terminated"][-1]
    # Without timeouts d4rl counts steps since the last terminal against the time limit.
    del data["timeouts"], data["next_observations"]
    got, _ = read_d4rl(write_d4rl(tmp_path / "limit.hdf5", data), max_episode_steps=3)
    want = qlearning_reference(data, max_episode_steps=3)
    np.testing.assert_array_equal(got["obs"], want["obs"])
    np.testing.assert_array_equal(got["terminated"], want["terminated"])


def test_dataset_d4rl_buffer_scores_and_env(tmp_path):
    data = hand_built()
    path = write_d4rl(tmp_path / "mine.hdf5", data, {"ref_min_score": -5.0, "ref_max_score": 15.0})
    rng = torch.get_rng_state()
    dataset = load_dataset({"name": "d4rl", "path": str(path)}, CPU)
    # Loading leaves the global RNG alone: a resumed run reloads the data and replays the same
    # batches from its checkpointed RNG state.
    assert torch.equal(torch.get_rng_state(), rng)
    assert dataset.env is None  # a file of one's own is evaluated on env=
    assert dataset.normalizer(15.0) == pytest.approx(100.0)
    assert dataset.normalizer(5.0) == pytest.approx(50.0)
    assert len(dataset.buffer) == 12
    batch = dataset.buffer.sample(8, generator=torch.Generator().manual_seed(0))
    assert batch["obs"].dtype == torch.float32 and batch["infos/action_log_probs"].shape == (8,)
    assert dataset.spec.action_space.low == (-1.0,)  # actions inside [-1, 1]
    # Config keys win over the file's scores.
    dataset = load_dataset(
        {"name": "d4rl", "path": str(path), "ref_min_score": 0.0, "ref_max_score": 10.0}, CPU
    )
    assert dataset.normalizer(10.0) == pytest.approx(100.0)
    # A D4RL name (d4rl's download names use '_') brings D4RL's scores and the v4 MuJoCo task.
    named = write_d4rl(tmp_path / "hopper_medium-v2.hdf5", data)
    dataset = load_dataset({"name": "d4rl", "path": str(named)}, CPU)
    assert dataset.env["id"] == "Hopper-v4"
    assert dataset.normalizer(3234.3) == pytest.approx(100.0)
    assert dataset.normalizer(-20.272305) == pytest.approx(0.0)


def test_minari_round_trip(tmp_path):
    data = hand_built(steps=12, obs_dim=3)  # three whole episodes, Pendulum's shapes
    obs = data["observations"]
    data["next_observations"] = np.concatenate([obs[1:], obs[-1:]])
    data["next_observations"][[3, 8, 11]] = obs[[3, 8, 11]] + 0.5  # the episodes' last ones
    root = tmp_path / "minari"
    write_minari(
        "test/pendulum/mine-v0", episodes_from_flat(data), env_id="Pendulum-v1", root=root,
        ref_min_score=-1000.0, ref_max_score=-100.0,
    )
    # minari's own reader, with downloads off, finds it under MINARI_DATASETS_PATH.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        stored = minari.load_dataset("test/pendulum/mine-v0", download=False)
        episodes = list(stored.iterate_episodes())
        assert [len(e) for e in episodes] == [4, 5, 3]
        np.testing.assert_array_equal(episodes[1].observations[-1], data["next_observations"][8])
        assert stored.storage.metadata["ref_max_score"] == -100.0
        transitions, _ = read_minari(stored)
        rng = torch.get_rng_state()
        dataset = load_dataset({"name": "minari", "id": "test/pendulum/mine-v0"}, CPU)
        assert torch.equal(torch.get_rng_state(), rng)  # as for dataset=d4rl
    np.testing.assert_array_equal(transitions["next_obs"], data["next_observations"])
    np.testing.assert_array_equal(np.flatnonzero(transitions["terminated"]), [3, 11])
    np.testing.assert_array_equal(np.flatnonzero(transitions["truncated"]), [8])
    np.testing.assert_array_equal(transitions["infos/action_log_probs"], -np.arange(12))
    assert dataset.env["id"] == "Pendulum-v1"  # the eval env from the dataset's env spec
    assert dataset.normalizer(-100.0) == pytest.approx(100.0)
    assert dataset.spec.action_space.high == (2.0,)  # Pendulum's bounds from the dataset
    assert len(dataset.buffer) == 12


def test_minari_data_collector_dataset(tmp_path, monkeypatch):
    """A dataset written by minari's own DataCollector (needs minari[create], i.e. jax, which
    the dev extra installs): eval env and reference scores come from it."""
    pytest.importorskip("jax")
    import gymnasium as gym

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=50), record_infos=True)
    lengths = []
    for episode in range(3):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        for step in range(1, 51):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                lengths.append(step)
                break
    env.create_dataset(
        "test/pendulum/collected-v0", eval_env="Pendulum-v1", algorithm_name="random",
        author="deeprl tests", author_email="none", code_permalink="none", description="test",
        ref_min_score=-400.0, ref_max_score=-50.0,
    )
    env.close()
    dataset = load_dataset({"name": "minari", "id": "test/pendulum/collected-v0"}, CPU)
    assert lengths == [50, 50, 50] and len(dataset.buffer) == 150
    assert dataset.env["id"] == "Pendulum-v1"
    assert dataset.env["make_kwargs"]["max_episode_steps"] == 200  # the eval env's own limit
    assert dataset.normalizer(-50.0) == pytest.approx(100.0)
    truncated = dataset.buffer.data["truncated"][:, 0]
    assert torch.equal(torch.nonzero(truncated).flatten(), torch.tensor([49, 99, 149]))
    assert not dataset.buffer.data["terminated"].any()


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_one_line(tmp_path):
    data = hand_built()
    with pytest.raises(UserError) as exc:
        load_dataset({"name": "d4rl", "path": str(tmp_path / "none.hdf5")}, CPU)
    assert "none.hdf5 does not exist" in one_line(exc)
    with pytest.raises(UserError) as exc:
        load_dataset({"name": "d4rl"}, CPU)
    assert "dataset.path" in one_line(exc)
    good = write_d4rl(tmp_path / "good.hdf5", data)
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(UserError) as exc:
        read_d4rl(truncated)
    assert "truncated.hdf5" in one_line(exc)
    path = tmp_path / "no_terminals.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards"):
            f[key] = data[key]
    with pytest.raises(UserError) as exc:
        read_d4rl(path)
    assert "no 'terminals'" in one_line(exc)
    with pytest.raises(UserError) as exc:
        write_d4rl(tmp_path / "short.hdf5", {**data, "rewards": data["rewards"][:-1]})
    assert "rewards has 13 rows" in one_line(exc)
    assert not (tmp_path / "short.hdf5").exists()
    with pytest.raises(UserError) as exc:
        load_dataset({"name": "d4rl", "path": str(good), "ref_min_score": 1.0}, CPU)
    assert "only one reference score" in one_line(exc)
    with pytest.raises(UserError) as exc:
        load_dataset({"name": "minari", "id": "nobody/nothing-v0", "root": str(tmp_path)}, CPU)
    assert "'nobody/nothing-v0' is not installed" in one_line(exc)
