"""The training engine: caches, the model and its adapter, the loop, checkpoints, validation and outputs."""
