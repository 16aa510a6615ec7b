"""Commands of ``simpletuner`` that need the server's stack: ``server``, ``users`` and ``apikeys``. They join the
command line through the ``simpletuner.commands`` entry-point group, so the kernel never imports the web layer."""
