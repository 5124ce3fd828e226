"""Drama's world model: a Mamba-2 sequence model over categorical latents of single frames.

Wang et al., ICLR 2025, "Drama: Mamba-Enabled Model-Based Reinforcement Learning Is Sample and
Parameter Efficient" (Sec. 3; sizes from realwenlongwang/drama config_files/train.yaml). Unlike
DreamerV3's RSSM the posterior reads the frame alone (as STORM), so a whole replayed window
trains in one parallel pass of the sequence model::

    posterior     z_t ~ q(z_t | o_t)                 32 categoricals x 32 classes, 1% unimix
    stem          x_t = SiLU(RMSNorm(W [z_t, a_t]))  -> d_model 512
    sequence      h_t = Mamba2(x_{<=t})              2 layers, d_state 16, expand 2, head dim 64
    prior         z^_{t+1} ~ p(z^_{t+1} | h_t)       (a linear head, 1% unimix)
    reward        r^_t from h_t: symlog two-hot, 255 bins in [-20, 20]
    termination   d^_t from h_t: Bernoulli (trained as the continue logit 1 - d)
    decoder       o^_t from z_t (MSE summed over pixels, images in [0, 1]; symlog MSE for vectors)

    L = L_rec + L_rew + L_term + L_dyn + 0.1 L_rep,
    L_dyn = max(1, mean KL[sg(q(z_{t+1} | o_{t+1})) || p(z_{t+1} | h_t)]),
    L_rep = max(1, mean KL[q(z_{t+1} | o_{t+1}) || sg(p(z_{t+1} | h_t))]),

with free bits 1 on the batch-mean KL (summed over the 32 latents), not per step as DreamerV3.
Windows may cross episodes: the sequence model restarts where ``is_first`` marks an episode's
first frame, and the KL pairs (t, t + 1) across such a start are left out.

Images (C, 64, 64) use Drama's CNN: depth 16, channel multipliers [1, 2, 3, 4, 4], kernel 5,
each conv followed by BatchNorm and SiLU, the first with stride 1 and the others stride 2 (64 ->
4x4x64); the decoder mirrors it with transposed convolutions and a sigmoid output. Vectors use
DreamerV3's symlog MLP encoder/decoder (:mod:`deeprl.worldmodels.dreamer_parts`), as do the
reward and termination heads (one 256-unit layer as Drama's, with LayerNorm where Drama's have
RMSNorm). At Atari's settings the model has about 7M parameters.

Open-loop videos (:meth:`DramaWorldModel.open_loop`): the posterior of a few observed frames, then
the prior alone fed the real actions, decoded beside the truth as DreamerV3's RSSM videos.

Imagination (:meth:`DramaWorldModel.imagine_start`, :meth:`DramaWorldModel.imagine_step`) runs
the context in one parallel pass that returns the sequence model's state, then steps the model
one imagined step at a time from that cached state. An imagined state is (z, h): the prior
sample z_t and the output h_{t-1} it was drawn from; the actor and critic read [z_t, h_{t-1}]
(:meth:`DramaWorldModel.features`), as Drama's agent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from deeprl.worldmodels.dreamer_parts import (
    ContinueHead,
    ValueMLPHead,
    VectorDecoder,
    VectorEncoder,
    _flatten_leading,
)
from deeprl.worldmodels.rssm import categorical_kl, straight_through_sample, unimix
from deeprl.worldmodels.sequence import make_sequence_model

__all__ = ["DramaConvDecoder", "DramaConvEncoder", "DramaState", "DramaWorldModel",
           "drama_kl_loss"]


class DramaConvEncoder(nn.Module):
    """uint8 images (..., C, H, W) -> embeddings (..., out_dim): convs of ``depth * mults[i]``
    channels, kernel ``kernel``, 'same' padding, stride 1 then 2, each BatchNorm + SiLU."""

    def __init__(self, channels: int, image_size: int = 64, depth: int = 16,
                 mults: tuple[int, ...] = (1, 2, 3, 4, 4), kernel: int = 5) -> None:
        super().__init__()
        downsample = 2 ** (len(mults) - 1)
        if image_size % downsample or kernel % 2 == 0:
            raise ValueError(f"the Drama CNN with {len(mults)} stages needs images whose side is "
                             f"a multiple of {downsample} and an odd kernel; got {image_size} "
                             f"and kernel {kernel}")
        layers: list[nn.Module] = []
        last = channels
        for i, mult in enumerate(mults):
            out = depth * mult
            layers += [nn.Conv2d(last, out, kernel, stride=1 if i == 0 else 2,
                                 padding=kernel // 2), nn.BatchNorm2d(out), nn.SiLU()]
            last = out
        self.convs = nn.Sequential(*layers)
        self.out_shape = (last, image_size // downsample, image_size // downsample)
        self.out_dim = last * self.out_shape[1] * self.out_shape[2]

    def forward(self, image: Tensor) -> Tensor:
        x, lead = _flatten_leading(image, 3)
        return self.convs(x.to(torch.float32) / 255.0).reshape(*lead, self.out_dim)


class DramaConvDecoder(nn.Module):
    """Latents (..., in_dim) -> images (..., C, H, W) in [0, 1]: a Linear to the encoder's
    output shape (BatchNorm, SiLU), transposed convs back up (BatchNorm, SiLU), a stride-1
    transposed conv to C channels and a sigmoid."""

    def __init__(self, in_dim: int, channels: int, image_size: int = 64, depth: int = 16,
                 mults: tuple[int, ...] = (1, 2, 3, 4, 4), kernel: int = 5) -> None:
        super().__init__()
        self.shape = DramaConvEncoder(channels, image_size, depth, mults, kernel).out_shape
        self.channels, self.image_size = channels, image_size
        self.linear = nn.Linear(in_dim, self.shape[0] * self.shape[1] ** 2)
        self.stem = nn.Sequential(nn.BatchNorm2d(self.shape[0]), nn.SiLU())
        layers: list[nn.Module] = []
        last = self.shape[0]
        for mult in reversed(mults[:-1]):
            out = depth * mult
            layers += [nn.ConvTranspose2d(last, out, kernel, stride=2, padding=kernel // 2,
                                          output_padding=1), nn.BatchNorm2d(out), nn.SiLU()]
            last = out
        layers.append(nn.ConvTranspose2d(last, channels, kernel, stride=1, padding=kernel // 2))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, latent: Tensor) -> Tensor:
        x, lead = _flatten_leading(latent, 1)
        x = self.stem(self.linear(x).reshape(-1, *self.shape))
        image = torch.sigmoid(self.deconvs(x))
        return image.reshape(*lead, self.channels, self.image_size, self.image_size)

    def loss(self, pred: Tensor, image: Tensor) -> Tensor:
        """Squared error summed over pixels: pred (..., C, H, W), uint8 image -> (...)."""
        return (pred - image.to(pred.dtype) / 255.0).square().sum((-3, -2, -1))


def drama_kl_loss(post_logits: Tensor, prior_logits: Tensor, mask: Tensor | None = None,
                  dyn_scale: float = 1.0, rep_scale: float = 0.1,
                  free_bits: float = 1.0) -> dict[str, Tensor]:
    """Drama's KL terms over (..., S, K) logits of the same steps, free bits on the mean.

    mask: (...) bool, the steps that count (None: all). Returns ``loss`` = dyn_scale *
    max(free_bits, mean dyn KL) + rep_scale * max(free_bits, mean rep KL), the clipped ``dyn``
    and ``rep`` and the unclipped ``kl`` (no gradient).
    """
    dyn = categorical_kl(post_logits.detach(), prior_logits)
    rep = categorical_kl(post_logits, prior_logits.detach())
    if mask is None:
        mask = torch.ones_like(dyn, dtype=torch.bool)
    weight = mask.to(dyn.dtype) / mask.sum().clamp(min=1)
    dyn_mean, rep_mean = (dyn * weight).sum(), (rep * weight).sum()
    dyn_clipped, rep_clipped = dyn_mean.clamp(min=free_bits), rep_mean.clamp(min=free_bits)
    return {"loss": dyn_scale * dyn_clipped + rep_scale * rep_clipped, "dyn": dyn_clipped,
            "rep": rep_clipped, "kl": dyn_mean.detach()}


class DramaState(NamedTuple):
    """Imagined state: ``z`` the one-hot latent z_t (B, S, K), ``h`` the sequence output
    h_{t-1} (B, d_model) whose prior drew it, ``core`` the sequence model's state after h."""

    z: Tensor
    h: Tensor
    core: Any


class DramaWorldModel(nn.Module):
    """Drama's world model (module docstring) for discrete actions.

    Args:
        obs_shape: (C, H, W) uint8 images or (n,) vectors.
        num_actions: size of the discrete action space (actions enter one-hot).
        stoch, classes: the latent's categoricals and classes. unimix: uniform mix in q and p.
        d_model: stem and sequence width. sequence: ``make_sequence_model`` kind (``mamba2``;
            ``mamba``, ``gru``, ``transformer`` for comparisons). sequence_kwargs: its options
            (Drama's Mamba-2: n_layers 2, d_state 16, expand 2, headdim 64, backend).
        depth, mults, kernel: the image CNN. units, layers: the vector MLPs.
        head_units, head_layers: reward and termination MLPs.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        stoch: int = 32,
        classes: int = 32,
        d_model: int = 512,
        sequence: str = "mamba2",
        sequence_kwargs: dict[str, Any] | None = None,
        depth: int = 16,
        mults: tuple[int, ...] = (1, 2, 3, 4, 4),
        kernel: int = 5,
        units: int = 256,
        layers: int = 2,
        head_units: int = 256,
        head_layers: int = 1,
        unimix: float = 0.01,
    ) -> None:
        super().__init__()
        self.obs_shape, self.num_actions = tuple(obs_shape), num_actions
        self.stoch, self.classes, self.d_model, self.mix = stoch, classes, d_model, unimix
        self.latent_dim = stoch * classes
        if len(self.obs_shape) == 3:
            channels, height, width = self.obs_shape
            if height != width:
                raise ValueError(f"images are {height}x{width}; the Drama CNN takes square "
                                 f"images (e.g. 64x64)")
            self.encoder = DramaConvEncoder(channels, height, depth, tuple(mults), kernel)
            self.decoder = DramaConvDecoder(self.latent_dim, channels, height, depth,
                                            tuple(mults), kernel)
        elif len(self.obs_shape) == 1:
            self.encoder = VectorEncoder(self.obs_shape[0], units, layers)
            self.decoder = VectorDecoder(self.latent_dim, self.obs_shape[0], units, layers)
        else:
            raise ValueError(f"observations of shape {self.obs_shape}: the Drama world model "
                             f"takes images (C, H, W) or vectors (n,)")
        self.post_head = nn.Linear(self.encoder.out_dim, self.latent_dim)
        # No bias: the RMSNorm right after rescales, and Drama's stem has none either.
        self.stem = nn.Sequential(nn.Linear(self.latent_dim + num_actions, d_model, bias=False),
                                  nn.RMSNorm(d_model), nn.SiLU())
        self.sequence = make_sequence_model(sequence, d_model=d_model, **(sequence_kwargs or {}))
        self.prior_head = nn.Linear(d_model, self.latent_dim)
        self.reward_head = ValueMLPHead(d_model, head_units, head_layers)
        self.cont_head = ContinueHead(d_model, head_units, head_layers)

    @property
    def feature_dim(self) -> int:
        """Width of [z, h], what the actor and critic read."""
        return self.latent_dim + self.d_model

    def _latent(self, logits: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        log_probs = unimix(logits.unflatten(-1, (self.stoch, self.classes)), self.mix)
        return straight_through_sample(log_probs, sample), log_probs

    def encode(self, obs: Tensor, sample: bool = True) -> tuple[Tensor, Tensor]:
        """Posterior of frames (..., *obs_shape): one-hot z (..., S, K) with straight-through
        gradients (the mode when not ``sample``) and its log-probabilities (..., S, K)."""
        return self._latent(self.post_head(self.encoder(obs)), sample)

    def prior(self, h: Tensor, sample: bool = True) -> tuple[Tensor, Tensor]:
        """Prior of the next latent from sequence outputs (..., d_model): z, log-probs."""
        return self._latent(self.prior_head(h), sample)

    def stem_input(self, z: Tensor, action: Tensor) -> Tensor:
        """x = SiLU(RMSNorm(W [z, a])): z (..., S, K), one-hot action (..., A) -> (..., d)."""
        return self.stem(torch.cat([z.flatten(-2), action.to(z.dtype)], -1))

    def features(self, z: Tensor, h: Tensor) -> Tensor:
        """[z, h] (..., S * K + d_model)."""
        return torch.cat([z.flatten(-2), h], -1)

    def observe(self, z: Tensor, action: Tensor, is_first: Tensor | None = None,
                state: Any = None) -> tuple[Tensor, Any]:
        """Sequence outputs h (B, L, d) over latents z (B, L, S, K) and one-hot actions
        (B, L, A) in one parallel pass, restarting where ``is_first`` (B, L); and the final
        state of the sequence model."""
        return self.sequence(self.stem_input(z, action), state, is_first)

    def loss(self, obs: Tensor, action: Tensor, reward: Tensor, terminated: Tensor,
             is_first: Tensor, dyn_scale: float = 1.0, rep_scale: float = 0.1,
             free_bits: float = 1.0) -> dict[str, Tensor]:
        """The world-model loss of a window: obs (B, L, *obs_shape), one-hot action (B, L, A),
        reward (B, L), terminated (B, L) bool (the step from o_t ended the episode), is_first
        (B, L) bool. Returns ``loss`` and the terms ``recon``, ``reward``, ``termination``,
        ``dyn``, ``rep`` (scalars) and ``kl`` (unclipped, no gradient)."""
        z, post = self.encode(obs)
        recon = self.decoder.loss(self.decoder(z.flatten(-2)), obs)
        h, _ = self.observe(z, action, is_first)
        reward_loss = self.reward_head.loss(self.reward_head(h), reward.float())
        term_loss = self.cont_head.loss(self.cont_head(h), ~terminated.bool())
        _, prior = self.prior(h[:, :-1])
        kl = drama_kl_loss(post[:, 1:], prior, ~is_first[:, 1:].bool(), dyn_scale, rep_scale,
                           free_bits)
        pred = recon.mean() + reward_loss.mean() + term_loss.mean()
        return {"loss": pred + kl["loss"], "recon": recon.mean(), "reward": reward_loss.mean(),
                "termination": term_loss.mean(), "dyn": kl["dyn"], "rep": kl["rep"],
                "kl": kl["kl"]}

    def imagine_start(self, obs: Tensor, action: Tensor, is_first: Tensor | None = None,
                      sample: bool = True) -> DramaState:
        """The imagined state after a real context: obs (B, C, *obs_shape), one-hot actions
        (B, C, A) taken there, is_first (B, C) or None. One parallel pass over the context,
        then the prior sample of the next latent from the last output."""
        z, _ = self.encode(obs, sample)
        h, core = self.observe(z, action, is_first)
        z_next, _ = self.prior(h[:, -1], sample)
        return DramaState(z_next, h[:, -1], core)

    def imagine_step(self, state: DramaState, action: Tensor, sample: bool = True) -> DramaState:
        """One imagined step from ``state`` with one-hot ``action`` (B, A), in the sequence
        model's step mode from its cached state."""
        h, core = self.sequence.step(self.stem_input(state.z, action), state.core)
        z, _ = self.prior(h, sample)
        return DramaState(z, h, core)

    @torch.no_grad()
    def open_loop(self, obs: Tensor, action: Tensor, is_first: Tensor, context: int = 5,
                  sample: bool = True) -> Tensor:
        """Frames (B, L, *obs_shape) of B replayed windows, the video of
        :func:`deeprl.worldmodels.openloop.video_grid` for images (in [0, 1]): the first
        ``context`` decoded from the posterior of the observed frames, the rest predicted open
        loop (the prior alone, fed the actions really taken), as DreamerV3's RSSM videos.

        Args:
            obs: (B, L, *obs_shape) uint8 images (or vectors); action: (B, L, A) one-hot;
                is_first: (B, L) bool, read in the context only (an episode start after it
                is not shown to the model); context: observed steps, 1 <= context < L.
            sample: sample the latents (else their modes).

        BatchNorm layers use their running statistics: the call changes no model state.
        """
        length = obs.shape[1]
        if not 1 <= context < length:
            raise ValueError(f"context must be in [1, {length - 1}] for {length} steps, "
                             f"got {context}")
        training = self.training
        self.train(False)
        try:
            z, _ = self.encode(obs[:, :context], sample)
            h, core = self.observe(z, action[:, :context], is_first[:, :context])
            state = DramaState(self.prior(h[:, -1], sample)[0], h[:, -1], core)
            latents = [z]
            for t in range(context, length):
                latents.append(state.z.unsqueeze(1))
                if t + 1 < length:
                    state = self.imagine_step(state, action[:, t], sample)
            return self.decoder(torch.cat(latents, 1).flatten(-2))
        finally:
            self.train(training)

    def continue_prob(self, h: Tensor) -> Tensor:
        """P(episode continues) (...) after the step that produced h (..., d_model)."""
        return torch.sigmoid(self.cont_head(h))

    def reward(self, h: Tensor) -> Tensor:
        """Predicted reward (...) of the step that produced h (..., d_model)."""
        return self.reward_head.value(self.reward_head(h))
