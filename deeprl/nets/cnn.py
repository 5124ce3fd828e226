"""Convolutional torsos for pixel observations."""

from __future__ import annotations

import torch
from torch import nn


class NatureCNN(nn.Module):
    """The DQN torso of Mnih et al. 2015, "Human-level control through deep reinforcement
    learning" (Methods): 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, ReLU, a 512-unit layer.

    Takes uint8 (B, C, H, W) frames, scales them to [0, 1] and returns (B, 512) features.
    """

    def __init__(self, in_channels: int, height: int = 84, width: int = 84) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, 512), nn.ReLU())
        self.out_dim = 512

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() / 255.0))
