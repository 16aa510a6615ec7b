"""Running the app under gunicorn: migrate in the master, then fork workers that each build their own app."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from gunicorn.app.base import BaseApplication

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.workspace import Workspace
from simpletuner.ui.db.connection import connect_checked, database_file, describe, open_database
from simpletuner.ui.db.migrations import migrate
from simpletuner.ui.db.models import User, bind_models
from simpletuner.ui.private_files import append_private, tighten_workspace
from simpletuner.ui.settings import parse_networks
from simpletuner.ui.setup import issue_setup_token
from simpletuner.ui.workflow.publisher_logins import remove_orphans

LOG_FILE = "logs/server.log"


@attrs.frozen(kw_only=True)
class ServeOptions:
    """The flags of ``simpletuner server``."""

    host: str = "127.0.0.1"
    port: int = 8001
    ssl: bool = False
    ssl_key: Path | None = None
    ssl_cert: Path | None = None
    workers: int = 2
    threads: int = 8
    database_url: str | None = None
    forwarded_allow_ips: str | None = None
    bcrypt_rounds: int = 12
    environment: str | None = None
    stop_grace: float = 30.0
    streams_per_user: int = 8
    streams_per_key: int = 4
    stream_heartbeat: float = 15.0
    header_timeout: float = 10.0
    body_timeout: float = 15.0


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: dict[str, Any], options: ServeOptions, workspace: Workspace) -> None:
        self._config, self._options, self._workspace = config, options, workspace
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._config.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return build_worker_app(self._options, self._workspace)


def build_worker_app(options: ServeOptions, workspace: Workspace) -> Any:
    """The ASGI app of one worker process: the Falcon app (its own database connections and plugin registry)
    behind the bridge that reads requests and serves event streams on the worker's event loop."""
    from simpletuner.core.plugins import Registry
    from simpletuner.ui.app import create_app
    from simpletuner.ui.serving.bridge import AsgiBridge, BridgeSettings
    from simpletuner.ui.serving.hub import EventHub, HubSettings
    from simpletuner.ui.serving.stream_limits import StreamLimits
    from simpletuner.ui.settings import ServerSettings

    settings = ServerSettings(secure_cookies=options.ssl, trusted_proxies=parse_networks(options.forwarded_allow_ips),
                              bcrypt_rounds=options.bcrypt_rounds)
    database = open_database(options.database_url, workspace.root)
    app = create_app(database=database, registry=Registry(), workspace=workspace, settings=settings)
    context = app.app_context

    def connected(function: Any) -> Any:
        def run() -> Any:
            connect_checked(database)
            try:
                return function()
            except Exception:
                if not database.is_closed() and not database.is_connection_usable():
                    database.close()  # broken mid-call: the next call reconnects
                raise
        return run

    def authenticated(headers: dict[str, str]) -> bool:
        return connected(lambda: credentials_hold(headers, context))()

    hub_settings = HubSettings(heartbeat_s=options.stream_heartbeat, recheck_s=min(5.0, options.stream_heartbeat),
                               limits=StreamLimits(per_user=options.streams_per_user, per_key=options.streams_per_key))
    bridge_settings = BridgeSettings(threads=options.threads, header_timeout_s=options.header_timeout,
                                     body_timeout_s=options.body_timeout)
    return AsgiBridge(app, authenticated,
                      lambda run_sync: EventHub(lambda function: run_sync(connected(function)), hub_settings,
                                                clock=context.now),
                      bridge_settings)


def credentials_hold(headers: dict[str, str], context: Any) -> bool:
    """Whether request headers carry a valid API key or session cookie (checked before a large body is read)."""
    from http.cookies import CookieError, SimpleCookie

    from simpletuner.ui.auth.principals import principal_for_api_key, principal_for_session
    from simpletuner.ui.auth.sessions import SESSION_COOKIE

    now = context.now()
    key = headers.get("x-api-key")
    if key is not None:
        return principal_for_api_key(key.strip(), now, context.settings) is not None
    try:
        cookie = SimpleCookie(headers.get("cookie", "")).get(SESSION_COOKIE)
    except CookieError:
        return False
    return cookie is not None and principal_for_session(cookie.value, now, context.settings) is not None


def _announce(workspace: Workspace, lines: list[str]) -> None:
    """Print to the console and append to the workspace's server log."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with append_private(workspace.root / LOG_FILE) as handle:  # it holds the setup token
        for line in lines:
            handle.write(f"{stamp} {line}\n")
    for line in lines:
        print(line, flush=True)


def prepare(options: ServeOptions, workspace: Workspace) -> dict[str, Any]:
    """Everything before forking: check flags, migrate the database, the TLS pair, the setup token.
    Returns the gunicorn settings."""
    from simpletuner.ui.tls import check_pair, ensure_self_signed

    if not 0 < options.port < 65536:
        raise SimpleTunerError(f"--port {options.port}: must be between 1 and 65535")
    if options.workers < 1:
        raise SimpleTunerError("--workers must be at least 1")
    trusted = parse_networks(options.forwarded_allow_ips)
    if (options.ssl_key is None) != (options.ssl_cert is None):
        raise SimpleTunerError("give both --ssl-key and --ssl-cert, or neither (--ssl alone makes a self-signed pair)")
    workspace.root.mkdir(parents=True, exist_ok=True)
    lines = []
    cert = key = None
    if options.ssl_key is not None and options.ssl_cert is not None:
        cert, key = options.ssl_cert.resolve(), options.ssl_key.resolve()
        check_pair(cert, key)
    elif options.ssl:
        cert, key, created = ensure_self_signed(workspace.root)
        lines.append(f"{'Made' if created else 'Using'} the self-signed certificate {cert}")
    database = open_database(options.database_url, workspace.root)
    tightened = tighten_workspace(workspace, database_file(database))
    if tightened:
        lines.append(f"Made {len(tightened)} file(s) and folder(s) holding secrets readable by this user only "
                     f"(e.g. {tightened[0]})")
    try:
        database.connect()
        applied = migrate(database)
        bind_models(database)
        token = issue_setup_token()
        orphans = remove_orphans(workspace, {user.id for user in User.select(User.id)})
    finally:
        database.close()
    scheme = "https" if cert else "http"
    host = f"[{options.host}]" if ":" in options.host else options.host
    lines.append(f"Database: {describe(database)}" + (f" (applied {len(applied)} migration(s))" if applied else ""))
    lines.append(f"SimpleTuner web UI on {scheme}://{host}:{options.port}/")
    if orphans:
        lines.append(f"Removed the stored Hub tokens of {len(orphans)} deleted user(s) (ids {orphans})")
    if token:
        lines.append(f"No admin yet: open {scheme}://{host}:{options.port}/setup to create one.")
        lines.append(f"Setup token (needed from other machines): {token}")
        lines.append(f"  or open {scheme}://{host}:{options.port}/setup?token={token}")
    _announce(workspace, lines)
    config: dict[str, Any] = {
        "bind": [f"{host}:{options.port}"],
        "workers": options.workers,
        "worker_class": "simpletuner.ui.serving.worker.ServerWorker",
        "asgi_loop": "asyncio",
        "asgi_lifespan": "on",
        "worker_connections": 4096,
        "forwarded_allow_ips": ",".join(str(n) for n in trusted),
        "proxy_allow_ips": "",
        "preload_app": False,
        "graceful_timeout": 10,
        "timeout": 120,
        "keepalive": 5,
        "proc_name": "simpletuner-server",
        "errorlog": "-",
        "loglevel": "warning",
        "accesslog": None,
    }
    if cert and key:
        config.update(certfile=str(cert), keyfile=str(key))
    return config


def run_server(options: ServeOptions, workspace: Workspace) -> int:
    """Serve until SIGTERM or SIGINT (both shut down cleanly); returns the exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    from simpletuner.ui.jobs import service

    if options.environment:
        service.check_environment(workspace, options.environment)
    config = prepare(options, workspace)
    os.environ.setdefault("SIMPLETUNER_WORKSPACE", str(workspace.root))
    keeper = service.SupervisorKeeper(workspace, options.database_url, options.stop_grace)
    config.update(service.gunicorn_hooks(keeper, options.environment, options.database_url, workspace))
    _Gunicorn(config, options, workspace).run()
    return 0
