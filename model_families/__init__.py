"""Built-in model families, each an entry-point plugin."""
