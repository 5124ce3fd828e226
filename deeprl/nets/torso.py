"""Torsos: the part of an agent's networks that turns observations into features, chosen by
``agent.torso`` from the observation space the same way in every agent.

``auto`` picks the agent's CNN for pixel observations (uint8 (C, H, W)) and ``mlp`` otherwise.
A torso is an *encoder* followed by a *projection*. Agents that train one torso use both
(:func:`make_torso`); SAC shares the critics' encoder with the actor and gives each reader a
projection of its own, as SAC-AE and DrQ do.

* ``mlp``: the encoder flattens the observation, the projection is the identity; the agent's
  own MLPs read the flat vector.
* ``nature_cnn``: Mnih et al. 2015 (:class:`~deeprl.nets.cnn.NatureCNN`, 512 features; the
  torso of CleanRL's ``dqn_atari.py`` and ``ppo_atari.py``) as the encoder, identity projection.
* ``drq``: the SAC-AE / DrQ encoder, its convolutions (:class:`~deeprl.nets.cnn.DrQConv`) then
  a Linear -> LayerNorm -> tanh projection to 50 features.

uint8 observations are scaled to [0, 1] by every torso, ``mlp`` included.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deeprl.envs.spec import Box, EnvSpec
from deeprl.errors import UserError
from deeprl.nets.cnn import DrQConv, NatureCNN, drq_projection
from deeprl.nets.mlp import orthogonal_init

TORSOS = ("auto", "mlp", "nature_cnn", "drq")
CNNS = ("nature_cnn", "drq")


def is_pixels(space: Box) -> bool:
    """Whether observations are images: uint8 (C, H, W)."""
    return space.dtype == torch.uint8 and len(space.shape) == 3


def resolve_torso(name: str, spec: EnvSpec, pixel_default: str = "nature_cnn") -> str:
    """The torso ``agent.torso=name`` builds for ``spec``: ``auto`` becomes ``pixel_default`` for
    pixel observations and ``mlp`` otherwise; a CNN needs (C, H, W) observations."""
    if name not in TORSOS:
        raise UserError(f"unknown agent.torso={name!r}; use one of {', '.join(TORSOS)}")
    shape = spec.observation_space.shape
    if name == "auto":
        return pixel_default if is_pixels(spec.observation_space) else "mlp"
    if name in CNNS and len(shape) != 3:
        raise UserError(
            f"agent.torso={name} needs (C, H, W) image observations, {spec.id} has shape "
            f"{shape}; use agent.torso=mlp"
        )
    return name


class FlatObservation(nn.Module):
    """(B, *shape) -> (B, prod(shape)) float32, divided by 255 when ``scale`` (uint8 pixels)."""

    def __init__(self, scale: bool) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.flatten(1).float()
        return x / 255.0 if self.scale else x


def make_encoder(name: str, space: Box) -> tuple[nn.Module, int]:
    """The encoder of the resolved torso ``name`` for observations in ``space`` and its output
    width."""
    scale = space.dtype == torch.uint8
    if name == "mlp":
        return FlatObservation(scale), math.prod(space.shape)
    try:
        encoder = {"nature_cnn": NatureCNN, "drq": DrQConv}[name](*space.shape, scale=scale)
    except RuntimeError:  # the convolutions shrink the frame to nothing
        raise UserError(
            f"agent.torso={name} cannot read {space.shape[1]}x{space.shape[2]} frames, they are "
            "too small for its convolutions; use larger frames (env.size) or another agent.torso"
        ) from None
    return encoder, encoder.out_dim


def make_projection(name: str, in_dim: int) -> tuple[nn.Module, int]:
    """A fresh projection of torso ``name`` from its encoder's ``in_dim`` features, and its
    output width."""
    if name == "drq":
        return drq_projection(in_dim), 50
    return nn.Identity(), in_dim


def make_torso(name: str, space: Box, orthogonal: bool = False) -> tuple[nn.Module, int]:
    """Encoder and projection of the resolved torso ``name`` as one module, and its output width.
    ``orthogonal``: orthogonal weights with gain sqrt(2) and zero biases in every convolution and
    linear layer (CleanRL's ``ppo_atari.py``); otherwise PyTorch's default init."""
    encoder, width = make_encoder(name, space)
    projection, width = make_projection(name, width)
    torso = encoder if isinstance(projection, nn.Identity) else nn.Sequential(encoder, projection)
    if orthogonal:
        for layer in torso.modules():
            if isinstance(layer, nn.Conv2d | nn.Linear):
                orthogonal_init(layer)
    return torso, width
