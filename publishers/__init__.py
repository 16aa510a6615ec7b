"""Built-in publishers, each an entry-point plugin."""
