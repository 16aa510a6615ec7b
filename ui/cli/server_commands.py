"""``simpletuner server``: the web UI and HTTP API under gunicorn (the web stack is imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from simpletuner.core.cli.context import CliContext
from simpletuner.core.errors import SimpleTunerError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``server`` command."""
    server = commands.add_parser(
        "server", help="run the web UI and HTTP API",
        description="Serve the web UI and HTTP API with gunicorn. Loopback only by default (reach it through an "
                    "SSH tunnel, or pass --host 0.0.0.0). The database is created and migrated on start; while no "
                    "user exists, a setup token is printed for creating the first admin from another machine.",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=8001, help="port (default: 8001)")
    server.add_argument("--ssl", action="store_true",
                        help="serve HTTPS; without --ssl-key/--ssl-cert a self-signed pair is made once in the "
                             "workspace and reused")
    server.add_argument("--ssl-key", type=Path, metavar="FILE", help="TLS private key (PEM)")
    server.add_argument("--ssl-cert", type=Path, metavar="FILE", help="TLS certificate chain (PEM)")
    server.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default: 2)")
    server.add_argument("--threads", type=int, default=8, metavar="N",
                        help="threads per worker that run requests once they have arrived (default: 8); waiting "
                             "clients and open event streams do not use them")
    server.add_argument("--streams-per-user", type=int, default=8, metavar="N",
                        help="open event streams (e.g. browser tabs on the Training page) per user (default: 8)")
    server.add_argument("--streams-per-key", type=int, default=4, metavar="N",
                        help="open event streams per API key (default: 4)")
    server.add_argument("--stream-heartbeat", type=float, default=15.0, metavar="SECONDS",
                        help="seconds between keep-alive comments on idle event streams (default: 15)")
    server.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="a new connection must send its request headers within this time (default: 10)")
    server.add_argument("--body-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="a request body of up to 1 MiB must arrive within this time (default: 15)")
    server.add_argument("--database-url", metavar="URL",
                        help="postgresql://user:password@host/db (default: SQLite in the workspace)")
    server.add_argument("--env", metavar="NAME", help="queue training of this environment once the server is up "
                                                      "(checked first: a server with an invalid --env does not start)")
    server.add_argument("--stop-grace", type=float, default=30.0, metavar="SECONDS",
                        help="how long a stopped job may take to exit after SIGTERM before it is killed (default: 30)")
    server.add_argument("--forwarded-allow-ips", metavar="IPS",
                        help="comma-separated proxy addresses whose X-Forwarded-For/-Proto headers are trusted "
                             "(default: none)")
    server.set_defaults(handler=run)


def run(args: argparse.Namespace, context: CliContext) -> int:
    """Start the server (blocks until SIGTERM or SIGINT)."""
    for flag in ("stop_grace", "stream_heartbeat", "header_timeout", "body_timeout"):
        if getattr(args, flag) <= 0:
            raise SimpleTunerError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    for flag in ("threads", "streams_per_user", "streams_per_key"):
        if getattr(args, flag) < 1:
            raise SimpleTunerError(f"--{flag.replace('_', '-')} must be at least 1")
    from simpletuner.ui.serve import ServeOptions, run_server

    options = ServeOptions(host=args.host, port=args.port, ssl=args.ssl or bool(args.ssl_key or args.ssl_cert),
                           ssl_key=args.ssl_key, ssl_cert=args.ssl_cert, workers=args.workers,
                           database_url=args.database_url, forwarded_allow_ips=args.forwarded_allow_ips,
                           environment=args.env, stop_grace=args.stop_grace, threads=args.threads,
                           streams_per_user=args.streams_per_user, streams_per_key=args.streams_per_key,
                           stream_heartbeat=args.stream_heartbeat, header_timeout=args.header_timeout,
                           body_timeout=args.body_timeout)
    return run_server(options, context.workspace)
