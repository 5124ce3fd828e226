"""Copies of a gymnasium env spread over a few worker processes.

gymnasium's ``AsyncVectorEnv`` gives every copy a process of its own, so 8 copies on a 2-core
machine are 8 processes contending for 2 cores. :class:`PooledAsyncVectorEnv` splits the copies
into ``workers`` contiguous groups instead; each worker steps its group in a loop, the groups run
in parallel. Results, seeding and same-step autoreset are those of gymnasium's
``SyncVectorEnv`` with ``AutoresetMode.SAME_STEP`` (``info["final_obs"]``/``info["final_info"]``
for finished copies), so it drops in wherever gymnasium's vector envs do.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space


def _serve(connection, env_fns: Sequence[Callable[[], gymnasium.Env]]) -> None:
    """Worker loop: build the group's envs, then answer ``reset``/``step``/``spaces``/``close``."""
    # Ctrl-C reaches the whole process group: the main process turns it into a checkpoint and a
    # clean stop, which needs the workers alive until it closes them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    envs = []
    try:
        envs = [fn() for fn in env_fns]
        while True:
            command, data = connection.recv()
            if command == "reset":
                seeds, options = data
                reply = [
                    env.reset(seed=s, options=options) for env, s in zip(envs, seeds, strict=True)
                ]
            elif command == "step":
                reply = []
                for env, action in zip(envs, data, strict=True):
                    obs, reward, terminated, truncated, info = env.step(action)
                    final = None
                    if terminated or truncated:
                        final = {"final_obs": obs, "final_info": info}
                        obs, info = env.reset()
                    reply.append((obs, reward, terminated, truncated, info, final))
            elif command == "spaces":
                reply = (envs[0].observation_space, envs[0].action_space)
            else:  # "close"
                break
            connection.send(("ok", reply))
    except EOFError:
        pass  # the main process is gone
    except Exception:  # sent back, raised in the main process
        connection.send(("error", traceback.format_exc()))
    finally:
        for env in envs:
            env.close()
        connection.close()


class PooledAsyncVectorEnv(gymnasium.vector.VectorEnv):
    """``len(env_fns)`` copies stepped by ``workers`` subprocesses (contiguous groups).

    Args:
        env_fns: one factory per copy (picklable: they run in the workers).
        workers: number of worker processes, at most ``len(env_fns)``.
        context: multiprocessing start method (None: the platform's default, as gymnasium).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gymnasium.Env]],
        workers: int,
        context: str | None = None,
    ) -> None:
        self.num_envs = len(env_fns)
        if not 1 <= workers <= self.num_envs:
            raise ValueError(f"workers must be in [1, {self.num_envs}], got {workers}")
        self.groups = [g.tolist() for g in np.array_split(np.arange(self.num_envs), workers)]
        ctx = multiprocessing.get_context(context)
        self._connections, self._processes = [], []
        for group in self.groups:
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=_serve, args=(child, [env_fns[i] for i in group]), daemon=True
            )
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        self._send(0, "spaces", None)
        self.single_observation_space, self.single_action_space = self._receive(0)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}

    def _send(self, worker: int, command: str, data: Any) -> None:
        try:
            self._connections[worker].send((command, data))
        except (BrokenPipeError, OSError) as e:
            raise RuntimeError(f"env worker {worker} exited unexpectedly") from e

    def _receive(self, worker: int) -> Any:
        try:
            status, payload = self._connections[worker].recv()
        except EOFError as e:
            raise RuntimeError(f"env worker {worker} exited unexpectedly") from e
        if status == "error":
            raise RuntimeError(f"env worker {worker} failed:\n{payload}")
        return payload

    def _gather(self) -> list:
        """Every worker's reply, in copy order."""
        return [item for worker in range(len(self.groups)) for item in self._receive(worker)]

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        for worker, group in enumerate(self.groups):
            self._send(worker, "reset", ([seed[i] for i in group], options))
        infos: dict[str, Any] = {}
        observations = []
        for i, (obs, info) in enumerate(self._gather()):
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        return np.stack(observations), infos

    def step(self, actions: np.ndarray):
        for worker, group in enumerate(self.groups):
            self._send(worker, "step", [actions[i] for i in group])
        observations, infos = [], {}
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        for i, (obs, reward, term, trunc, info, final) in enumerate(self._gather()):
            observations.append(obs)
            rewards[i], terminated[i], truncated[i] = reward, term, trunc
            if final is not None:
                infos = self._add_info(infos, final, i)
            infos = self._add_info(infos, info, i)
        return np.stack(observations), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        for connection, process in zip(self._connections, self._processes, strict=True):
            if process.is_alive():
                try:
                    connection.send(("close", None))
                except (BrokenPipeError, OSError):
                    pass
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
            connection.close()
