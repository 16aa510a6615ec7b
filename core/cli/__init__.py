"""The ``simpletuner`` command-line interface; each command group lives in its own module."""
