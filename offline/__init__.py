"""Offline RL (installed as ``deeprl.offline``): datasets, decision transformers, dual RL, IQL, BC.

Datasets: ``dataset=d4rl`` (D4RL's HDF5 files, :mod:`deeprl.offline.d4rl`) and ``dataset=minari``
(Minari datasets, :mod:`deeprl.offline.minari`); ``deeprl-dataset`` makes D4RL-recipe datasets
with the project's SAC (:mod:`deeprl.offline.generate`).
"""

if __name__ != "deeprl.offline":  # the folder offline/ is only ever the package deeprl.offline
    raise ImportError(f"import deeprl.offline, not {__name__!r}")

from deeprl.offline import d4rl, minari  # noqa: E402, F401 (register dataset=d4rl, dataset=minari)

# Offline agents (agent=bc|td3bc|iql|cql|xql|fdvl|recoil|dt|modt); deeprl.agents registers them.
from deeprl.offline.bc import BC, BCConfig  # noqa: E402
from deeprl.offline.cql import CQL, CQLConfig  # noqa: E402
from deeprl.offline.dt import DT, DTConfig  # noqa: E402
from deeprl.offline.fdvl import FDVL, FDVLConfig  # noqa: E402
from deeprl.offline.iql import IQL, IQLConfig  # noqa: E402
from deeprl.offline.modt import MODT, MODTConfig  # noqa: E402
from deeprl.offline.recoil import ReCOIL, ReCOILConfig  # noqa: E402
from deeprl.offline.td3_bc import TD3BC, TD3BCConfig  # noqa: E402
from deeprl.offline.xql import XQL, XQLConfig  # noqa: E402

OFFLINE_AGENTS = (BC, TD3BC, IQL, CQL, XQL, FDVL, ReCOIL, DT, MODT)

__all__ = [
    "BC", "BCConfig", "CQL", "CQLConfig", "DT", "DTConfig", "FDVL", "FDVLConfig", "IQL",
    "IQLConfig", "MODT", "MODTConfig", "OFFLINE_AGENTS", "ReCOIL", "ReCOILConfig", "TD3BC",
    "TD3BCConfig", "XQL", "XQLConfig",
]
