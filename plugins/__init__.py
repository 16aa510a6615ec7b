"""Built-in plugins of the kinds that have no top-level folder: data backends, quantizers, auth, validation."""
