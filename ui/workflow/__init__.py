"""The web UI's workflow: environments, configuration forms, onboarding, wizards, dataset browsing and uploads.

Nothing here imports the training stack; GPU discovery and the tiny demo run in child processes.
"""
