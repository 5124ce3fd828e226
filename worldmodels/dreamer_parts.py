"""DreamerV3 world-model parts around the RSSM: encoders, decoders and prediction heads.

Hafner et al. 2023, "Mastering Diverse Domains through World Models" (DreamerV3; settings of the
2023 release of its configs). Images go through a CNN of stride-2 4x4 convolutions whose channels
double from the size preset's depth (32 for size S) down to 4x4, each followed by LayerNorm over
channels and SiLU; vectors through symlog and an MLP of Linear-LayerNorm-SiLU layers.
Decoders mirror them: transposed convolutions for images (MSE to the image scaled to
[-0.5, 0.5]), an MLP regressing symlog(x) for vectors (MSE, the paper's symlog loss).
Reward and critic heads predict symlog two-hot distributions over 255 bins in [-20, 20] through
``deeprl.nets.heads``; the continue head is a Bernoulli logit.

Observations with several keys (a dict) are handled by ``MultiEncoder``/``MultiDecoder``: 3-d
shapes (C, H, W) are images, 1-d shapes vectors; the embeddings are concatenated. Every module
accepts any leading dimensions, e.g. (B, L, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeprl.nets.functional import symlog
from deeprl.nets.heads import ValueHead, make_value_head

__all__ = [
    "ContinueHead",
    "ConvDecoder",
    "ConvEncoder",
    "MultiDecoder",
    "MultiEncoder",
    "ValueMLPHead",
    "VectorDecoder",
    "VectorEncoder",
    "dreamer_mlp",
    "symlog_mse",
    "two_hot_head",
]


def dreamer_mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None) -> nn.Sequential:
    """``layers`` x (Linear without bias, LayerNorm, SiLU) of width ``units``, then a Linear to
    ``out_dim`` if given (DreamerV3's MLP: the norm replaces the bias)."""
    modules: list[nn.Module] = []
    last = in_dim
    for _ in range(layers):
        modules += [nn.Linear(last, units, bias=False), nn.LayerNorm(units, eps=1e-3), nn.SiLU()]
        last = units
    if out_dim is not None:
        modules.append(nn.Linear(last, out_dim))
    return nn.Sequential(*modules)


def _flatten_leading(x: Tensor, event_dims: int) -> tuple[Tensor, tuple[int, ...]]:
    lead = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims:]), lead


class _ChannelNorm(nn.Module):
    """LayerNorm over the channels of (N, C, H, W), as DreamerV3's conv layers."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _conv_stages(image_size: int, min_res: int) -> int:
    stages, size = 0, image_size
    while size > min_res:
        if size % 2:
            raise ValueError(f"image size {image_size} must halve evenly down to {min_res}")
        size //= 2
        stages += 1
    if size != min_res:
        raise ValueError(f"image size {image_size} must be {min_res} times a power of two")
    return stages


class ConvEncoder(nn.Module):
    """uint8 images (..., C, H, W), H = W = image_size -> embeddings (..., out_dim).

    Pixels are scaled to [-0.5, 0.5]; stride-2 4x4 convolutions with depth * 2^i channels halve
    the resolution down to ``min_res`` (64x64 at depth 32: 32, 64, 128, 256 channels, 4x4).
    """

    def __init__(self, channels: int, image_size: int = 64, depth: int = 32,
                 min_res: int = 4) -> None:
        super().__init__()
        stages = _conv_stages(image_size, min_res)
        layers: list[nn.Module] = []
        last = channels
        for i in range(stages):
            out = depth * 2**i
            layers += [nn.Conv2d(last, out, 4, stride=2, padding=1, bias=False),
                       _ChannelNorm(out), nn.SiLU()]
            last = out
        self.convs = nn.Sequential(*layers)
        self.out_dim = last * min_res * min_res

    def forward(self, image: Tensor) -> Tensor:
        x, lead = _flatten_leading(image, 3)
        x = x.to(torch.float32) / 255.0 - 0.5
        return self.convs(x).reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Features (..., in_dim) -> predicted images (..., C, H, W) in [-0.5, 0.5] pixel scale:
    a Linear to (depth * 2^(stages-1), min_res, min_res), then transposed convolutions mirroring
    ``ConvEncoder`` (the last without norm)."""

    def __init__(self, in_dim: int, channels: int, image_size: int = 64, depth: int = 32,
                 min_res: int = 4) -> None:
        super().__init__()
        stages = _conv_stages(image_size, min_res)
        self.shape = (depth * 2 ** (stages - 1), min_res, min_res)
        self.channels, self.image_size = channels, image_size
        self.linear = nn.Linear(in_dim, self.shape[0] * min_res * min_res)
        layers: list[nn.Module] = []
        last = self.shape[0]
        for i in reversed(range(stages - 1)):
            out = depth * 2**i
            layers += [nn.ConvTranspose2d(last, out, 4, stride=2, padding=1, bias=False),
                       _ChannelNorm(out), nn.SiLU()]
            last = out
        layers.append(nn.ConvTranspose2d(last, channels, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        x, lead = _flatten_leading(features, 1)
        x = self.deconvs(self.linear(x).reshape(-1, *self.shape))
        return x.reshape(*lead, self.channels, self.image_size, self.image_size)

    def loss(self, pred: Tensor, image: Tensor) -> Tensor:
        """Squared error summed over pixels: pred (..., C, H, W), uint8 image -> (...)."""
        target = image.to(pred.dtype) / 255.0 - 0.5
        return (pred - target).square().sum((-3, -2, -1))


class VectorEncoder(nn.Module):
    """Vectors (..., in_dim) -> symlog, then ``dreamer_mlp`` -> (..., units)."""

    def __init__(self, in_dim: int, units: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.mlp = dreamer_mlp(in_dim, units, layers)
        self.out_dim = units

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(symlog(x.to(torch.float32)))


def symlog_mse(pred: Tensor, x: Tensor) -> Tensor:
    """Symlog squared error summed over the vector: pred, x (..., n) -> (...)."""
    return (pred - symlog(x.to(pred.dtype))).square().sum(-1)


class VectorDecoder(nn.Module):
    """Features (..., in_dim) -> prediction of symlog(x) (..., out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, units: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.mlp = dreamer_mlp(in_dim, units, layers, out_dim)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def loss(self, pred: Tensor, x: Tensor) -> Tensor:
        return symlog_mse(pred, x)


def _split_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:
    images = {k: s for k, s in shapes.items() if len(s) == 3}
    vectors = {k: s for k, s in shapes.items() if len(s) == 1}
    other = set(shapes) - set(images) - set(vectors)
    if other:
        key = sorted(other)[0]
        raise ValueError(f"observation {key!r} has shape {shapes[key]}; the Dreamer encoder "
                         f"takes images (C, H, W) and vectors (n,)")
    for key, (_, height, width) in images.items():
        if height != width:
            raise ValueError(f"image {key!r} is {height}x{width}; the Dreamer CNN takes square "
                             f"images (resize them, e.g. to 64x64)")
    return images, vectors


class MultiEncoder(nn.Module):
    """Dict observations {key: (..., *shape)} -> one embedding (..., out_dim): a ``ConvEncoder``
    per image key and one ``VectorEncoder`` over the concatenated vector keys (sorted)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], depth: int = 32, units: int = 512,
                 layers: int = 2, min_res: int = 4) -> None:
        super().__init__()
        images, vectors = _split_shapes(shapes)
        self.image_keys, self.vector_keys = sorted(images), sorted(vectors)
        self.convs = nn.ModuleDict({
            k: ConvEncoder(images[k][0], images[k][1], depth, min_res) for k in self.image_keys
        })
        vector_dim = sum(vectors[k][0] for k in self.vector_keys)
        self.mlp = VectorEncoder(vector_dim, units, layers) if self.vector_keys else None
        self.out_dim = sum(c.out_dim for c in self.convs.values()) + (units if self.mlp else 0)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        parts = [self.convs[k](obs[k]) for k in self.image_keys]
        if self.mlp is not None:
            parts.append(self.mlp(torch.cat([obs[k].to(torch.float32)
                                             for k in self.vector_keys], -1)))
        return torch.cat(parts, -1)


class MultiDecoder(nn.Module):
    """Features (..., in_dim) -> {key: prediction}; ``loss`` gives {key: per-step loss (...)}."""

    def __init__(self, in_dim: int, shapes: dict[str, tuple[int, ...]], depth: int = 32,
                 units: int = 512, layers: int = 2, min_res: int = 4) -> None:
        super().__init__()
        images, vectors = _split_shapes(shapes)
        self.image_keys, self.vector_keys = sorted(images), sorted(vectors)
        self.convs = nn.ModuleDict({
            k: ConvDecoder(in_dim, images[k][0], images[k][1], depth, min_res)
            for k in self.image_keys
        })
        self.sizes = [vectors[k][0] for k in self.vector_keys]
        self.mlp = (VectorDecoder(in_dim, sum(self.sizes), units, layers)
                    if self.vector_keys else None)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        out = {k: self.convs[k](features) for k in self.image_keys}
        if self.mlp is not None:
            out.update(zip(self.vector_keys, self.mlp(features).split(self.sizes, -1),
                           strict=True))
        return out

    def loss(self, pred: dict[str, Tensor], obs: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = {k: self.convs[k].loss(pred[k], obs[k]) for k in self.image_keys}
        for k in self.vector_keys:
            losses[k] = symlog_mse(pred[k], obs[k])
        return losses


def two_hot_head() -> ValueHead:
    """DreamerV3's reward/critic encoding: symlog two-hot over 255 bins in [-20, 20]."""
    return make_value_head("two_hot", num_bins=255, v_min=-20.0, v_max=20.0, symlog=True)


class ValueMLPHead(nn.Module):
    """Reward or critic: features (..., in_dim) -> 255 two-hot logits (..., 255).

    The output layer starts at zero, as DreamerV3's reward and critic, so early predictions are
    0 rather than large random values. ``value(logits)`` and ``loss(logits, target)`` come from
    the ``deeprl.nets.heads`` two-hot head (``self.head``).
    """

    def __init__(self, in_dim: int, units: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.head = two_hot_head()
        self.mlp = dreamer_mlp(in_dim, units, layers, self.head.num_outputs)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def value(self, logits: Tensor) -> Tensor:
        return self.head.value(logits)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.head.loss(logits, target)


class ContinueHead(nn.Module):
    """Features (..., in_dim) -> Bernoulli logit (...) of the episode continuing."""

    def __init__(self, in_dim: int, units: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.mlp = dreamer_mlp(in_dim, units, layers, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features).squeeze(-1)

    def loss(self, logit: Tensor, cont: Tensor) -> Tensor:
        """Binary cross entropy per element against ``cont`` (1 - terminal) (...)."""
        return F.binary_cross_entropy_with_logits(logit, cont.to(logit.dtype), reduction="none")
