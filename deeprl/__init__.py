"""deeprl: classical and model-based deep reinforcement learning in PyTorch."""

__version__ = "0.1.0"
