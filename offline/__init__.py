"""Offline RL (installed as ``deeprl.offline``): datasets, decision transformers, dual RL, IQL, BC.

Nothing here yet; the offline issue brings it.
"""

if __name__ != "deeprl.offline":  # the folder offline/ is only ever the package deeprl.offline
    raise ImportError(f"import deeprl.offline, not {__name__!r}")
