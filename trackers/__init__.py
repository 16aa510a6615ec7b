"""Built-in trackers, each an entry-point plugin."""
