"""Training jobs run by the server: the queue, the supervisor process, event ingestion and the status views.

Nothing here imports the training stack: jobs run ``simpletuner train`` in child processes.
"""
