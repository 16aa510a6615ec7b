"""The web UI and HTTP API (Falcon)."""
