"""World models (installed as ``deeprl.worldmodels``).

Sequence models so far (issue 6): Mamba-1 and Mamba-2 blocks in PyTorch with mamba-ssm's
parameter layout (``mamba``, ``mamba2``, scans in ``scans``), and the shared sequence-model
interface with GRU and transformer baselines (``sequence``). ``make_sequence_model(kind)`` builds
one by config name; the Drama world model will select its sequence model that way.
DreamerV3's world-model parts (issue 12): the RSSM over any of those cores and its losses
(``rssm``), encoders, decoders and heads (``dreamer_parts``), open-loop prediction videos
(``openloop``). Drama's world model (issue 13): Mamba-2 over single-frame latents (``drama``).
"""

if __name__ != "deeprl.worldmodels":  # the folder worldmodels/ is only ever deeprl.worldmodels
    raise ImportError(f"import deeprl.worldmodels, not {__name__!r}")

from deeprl.worldmodels.drama import (
    DramaConvDecoder,
    DramaConvEncoder,
    DramaState,
    DramaWorldModel,
    drama_kl_loss,
)
from deeprl.worldmodels.dreamer_parts import (
    ContinueHead,
    ConvDecoder,
    ConvEncoder,
    MultiDecoder,
    MultiEncoder,
    ValueMLPHead,
    VectorDecoder,
    VectorEncoder,
)
from deeprl.worldmodels.mamba import KernelUnavailableError, Mamba, SSMState
from deeprl.worldmodels.mamba2 import Mamba2
from deeprl.worldmodels.openloop import open_loop_video, video_grid
from deeprl.worldmodels.rssm import (
    RSSM,
    Observed,
    RSSMState,
    kl_balance_loss,
    straight_through_sample,
    unimix,
    world_model_loss,
)
from deeprl.worldmodels.sequence import (
    SEQUENCE_MODELS,
    GRUModel,
    KVCache,
    Mamba2Model,
    MambaModel,
    NormGRUCell,
    SequenceModel,
    TransformerModel,
    make_sequence_model,
)

__all__ = [
    "RSSM",
    "SEQUENCE_MODELS",
    "ContinueHead",
    "ConvDecoder",
    "ConvEncoder",
    "DramaConvDecoder",
    "DramaConvEncoder",
    "DramaState",
    "DramaWorldModel",
    "GRUModel",
    "KVCache",
    "KernelUnavailableError",
    "Mamba",
    "Mamba2",
    "Mamba2Model",
    "MambaModel",
    "MultiDecoder",
    "MultiEncoder",
    "NormGRUCell",
    "Observed",
    "RSSMState",
    "SSMState",
    "SequenceModel",
    "TransformerModel",
    "ValueMLPHead",
    "VectorDecoder",
    "VectorEncoder",
    "drama_kl_loss",
    "kl_balance_loss",
    "make_sequence_model",
    "open_loop_video",
    "straight_through_sample",
    "unimix",
    "video_grid",
    "world_model_loss",
]
