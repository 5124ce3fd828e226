"""Convolutional encoders for pixel observations and the random-shift image augmentation.

Both encoders take (B, C, H, W) frames; built with ``scale=True`` (uint8 observation spaces)
they divide them by 255 first, so uint8 frames and augmented float copies of them read the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _flat_size(convs: nn.Module, in_channels: int, height: int, width: int) -> int:
    with torch.no_grad():
        return convs(torch.zeros(1, in_channels, height, width)).shape[1]


class NatureCNN(nn.Module):
    """The DQN torso of Mnih et al. 2015, "Human-level control through deep reinforcement
    learning" (Methods): 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, ReLU, a 512-unit layer.

    Returns (B, 512) features.
    """

    def __init__(self, in_channels: int, height: int = 84, width: int = 84,
                 scale: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        flat = _flat_size(self.convs, in_channels, height, width)
        self.fc = nn.Sequential(nn.Linear(flat, 512), nn.ReLU())
        self.out_dim = 512

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        return self.fc(self.convs(x / 255.0 if self.scale else x))


class DrQConv(nn.Module):
    """The convolutional stack of the SAC-AE / DrQ encoder (Yarats et al. 2021, "Improving
    Sample Efficiency in Model-Free Reinforcement Learning from Images"; Kostrikov et al. 2021,
    "Image Augmentation Is All You Need", DrQ): four 3x3 convolutions
    with 32 channels, strides 2, 1, 1, 1, ReLU. Returns the flattened (B, out_dim) feature map;
    :func:`drq_projection` maps it to the encoder's 50 features.
    """

    def __init__(self, in_channels: int, height: int = 84, width: int = 84,
                 scale: bool = True) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(in_channels if i == 0 else 32, 32, 3, stride=2 if i == 0 else 1),
                       nn.ReLU()]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.out_dim = _flat_size(self.convs, in_channels, height, width)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        return self.convs(x / 255.0 if self.scale else x)


def drq_projection(in_dim: int, features: int = 50) -> nn.Sequential:
    """The SAC-AE / DrQ encoder's output layer: Linear -> LayerNorm -> tanh, 50 features."""
    return nn.Sequential(nn.Linear(in_dim, features), nn.LayerNorm(features), nn.Tanh())


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ's image augmentation (Kostrikov et al. 2021): pad each (C, H, W) image by
    ``pad`` pixels, repeating its border, and crop a random H x W window, independently per
    image. Returns float images (B, C, H, W) on the input's scale."""
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, b, 1), device=images.device)
    rows = (offsets[0] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (offsets[1] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]
