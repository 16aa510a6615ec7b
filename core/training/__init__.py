"""The training engine: datasets, buckets, caches, the loop, checkpoints and outputs."""
