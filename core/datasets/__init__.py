"""Datasets: scanning image folders and buckets, where a dataset's images and caches are stored, and reading them
back (pixels for the encoders, cached tensors for training). Used by the training engine and the web UI alike."""
