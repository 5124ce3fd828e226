"""Open-loop prediction videos of world models, as DreamerV3 reports them.

Hafner et al. 2023, "Mastering Diverse Domains through World Models" (DreamerV3; its report
shows 6 replayed sequences with 5 context frames). For each sequence the model observes the
first ``context`` frames with the posterior q(z_t | h_t, x_t), then predicts the rest with the
prior p(z_t | h_t) alone, fed the actions that were really taken:

    t < context:   z_t ~ q(z_t | h_t, x_t)    (reconstruction)
    t >= context:  z_t ~ p(z_t | h_t)         (open-loop prediction, no observation)

An episode start after the context is not shown to the prior: the prediction carries on the
old episode where the truth starts a new one.

The decoded frames go into a grid (:func:`video_grid`, also the layout of Drama's videos,
:meth:`deeprl.worldmodels.drama.DramaWorldModel.open_loop`): per sequence a column of truth,
model and error (model - truth + 1) / 2 (mid-grey where they agree), the sequences side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deeprl.worldmodels.rssm import RSSM

__all__ = ["VIDEO_CONTEXT", "VIDEO_SEQUENCES", "open_loop_video", "video_grid"]

# The agents' videos at each evaluation: DreamerV3's report shows 6 sequences, 5 observed frames
VIDEO_SEQUENCES, VIDEO_CONTEXT = 6, 5


def _shown_channels(images: Tensor) -> Tensor:
    """(..., C, H, W) -> (..., H, W, c): a stack of frames shows its newest one (the last 3
    channels when C is a multiple of 3, RGB; else the last channel, grayscale)."""
    shown = images[..., -3:, :, :] if images.shape[-3] % 3 == 0 else images[..., -1:, :, :]
    return shown.movedim(-3, -1)


@torch.no_grad()
def open_loop_video(
    rssm: RSSM,
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    obs: Tensor,
    action: Tensor,
    is_first: Tensor,
    context: int = 5,
    sample: bool = True,
) -> Tensor:
    """The open-loop prediction video of B replayed sequences.

    Args:
        rssm: the world model's RSSM.
        encode: uint8 images (B, L, C, H, W) -> embeddings (B, L, E).
        decode: features (B, L, rssm.feature_dim) -> images (B, L, C, H, W) in [-0.5, 0.5]
            pixel scale (as ``ConvDecoder``).
        obs: uint8 images (B, L, C, H, W), the observations x_t.
        action: (B, L, A) model actions, ``action[:, t]`` = a_{t-1} (the RSSM's layout).
        is_first: (B, L) bool episode starts (read during the context).
        context: observed steps, 1 <= context < L.
        sample: sample the latents (else their modes).
    Returns:
        uint8 video (L, 3 H, B W, c), c = 3 or 1 (see ``_shown_channels``): rows truth, model,
        error; the first ``context`` model frames are posterior reconstructions.
    """
    length = obs.shape[1]
    if not 1 <= context < length:
        raise ValueError(f"context must be in [1, {length - 1}] for {length} steps, got {context}")
    observed = rssm.observe(encode(obs[:, :context]), action[:, :context], is_first[:, :context],
                            sample=sample)
    deters, stochs = [observed.deter], [observed.stoch]
    state = observed.last
    for t in range(context, length):
        state = rssm.imagine_step(state, action[:, t], sample)
        deters.append(state.deter.unsqueeze(1))
        stochs.append(state.stoch.unsqueeze(1))
    features = rssm.features(torch.cat(deters, 1), torch.cat(stochs, 1))
    return video_grid(obs, (decode(features).float() + 0.5).clamp(0, 1))


def video_grid(obs: Tensor, model: Tensor) -> Tensor:
    """The video of B sequences from the true frames ``obs`` (B, L, C, H, W) uint8 and the
    model's ``model`` (B, L, C, H, W) in [0, 1]: uint8 (L, 3 H, B W, c), c = 3 or 1 (see
    ``_shown_channels``), rows truth, model, error."""
    truth = obs.float() / 255
    error = (model - truth + 1) / 2
    grid = torch.cat([truth, model, error], -2)  # (B, L, C, 3H, W)
    grid = grid.permute(1, 2, 3, 0, 4).flatten(-2)  # (L, C, 3H, B W)
    return (_shown_channels(grid) * 255).round().to(torch.uint8)
