"""Hydra configuration groups shipped with deeprl (installed as ``deeprl.configs``)."""
