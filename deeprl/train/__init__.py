"""Training: the loop, Hydra entry point, collector, evaluation and checkpoints."""
