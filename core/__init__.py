"""SimpleTuner's kernel: hookspecs, the plugin registry, configuration, environments and the CLI.

The kernel imports nothing heavy (torch, diffusers, transformers, peft) at module import time, so listing plugins,
checking configs and serving the web UI stay fast; the training engine imports those when it runs.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simpletuner")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
