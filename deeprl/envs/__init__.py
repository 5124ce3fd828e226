"""Vector environments: one interface (batched torch tensors, autoreset) over several backends."""

from deeprl.envs.base import StepResult, VectorEnv
from deeprl.envs.registry import TORCH_ENVS, make_env
from deeprl.envs.spec import Box, Discrete, EnvSpec

__all__ = ["Box", "Discrete", "EnvSpec", "StepResult", "TORCH_ENVS", "VectorEnv", "make_env"]
