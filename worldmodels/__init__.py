"""World models (installed as ``deeprl.worldmodels``).

Sequence models so far (issue 6): Mamba-1 and Mamba-2 blocks in PyTorch with mamba-ssm's
parameter layout (``mamba``, ``mamba2``, scans in ``scans``), and the shared sequence-model
interface with GRU and transformer baselines (``sequence``). ``make_sequence_model(kind)`` builds
one by config name; the Drama world model will select its sequence model that way.
"""

if __name__ != "deeprl.worldmodels":  # the folder worldmodels/ is only ever deeprl.worldmodels
    raise ImportError(f"import deeprl.worldmodels, not {__name__!r}")

from deeprl.worldmodels.mamba import KernelUnavailableError, Mamba, SSMState
from deeprl.worldmodels.mamba2 import Mamba2
from deeprl.worldmodels.sequence import (
    SEQUENCE_MODELS,
    GRUModel,
    KVCache,
    Mamba2Model,
    MambaModel,
    SequenceModel,
    TransformerModel,
    make_sequence_model,
)

__all__ = [
    "SEQUENCE_MODELS",
    "GRUModel",
    "KVCache",
    "KernelUnavailableError",
    "Mamba",
    "Mamba2",
    "Mamba2Model",
    "MambaModel",
    "SSMState",
    "SequenceModel",
    "TransformerModel",
    "make_sequence_model",
]
