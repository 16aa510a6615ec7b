"""Authentication and authorisation: passwords, sessions, API keys, levels, login providers and the audit log."""
