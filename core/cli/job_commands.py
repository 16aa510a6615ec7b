"""``simpletuner jobs list|show|stop``: the jobs of a running server, over its HTTP API with an API key.

The server and key come from ``--server`` / ``--api-key`` or ``$SIMPLETUNER_SERVER`` / ``$SIMPLETUNER_API_KEY``;
``--ca-cert`` (or ``$SIMPLETUNER_CA_CERT``) trusts a self-signed HTTPS certificate.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from simpletuner.core.cli.context import CliContext, print_json, print_table
from simpletuner.core.errors import SimpleTunerError

DEFAULT_SERVER = "http://127.0.0.1:8001"


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``jobs`` command group."""
    jobs = commands.add_parser("jobs", help="list, inspect and stop training jobs of a running server",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_argument("--server", default=os.environ.get("SIMPLETUNER_SERVER", DEFAULT_SERVER),
                      help=f"server URL (default: $SIMPLETUNER_SERVER or {DEFAULT_SERVER})")
    jobs.add_argument("--api-key", default=os.environ.get("SIMPLETUNER_API_KEY"),
                      help="API key (default: $SIMPLETUNER_API_KEY)")
    jobs.add_argument("--ca-cert", default=os.environ.get("SIMPLETUNER_CA_CERT"), metavar="FILE",
                      help="PEM certificate to trust for HTTPS (default: $SIMPLETUNER_CA_CERT)")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="job history, newest first")
    listing.add_argument("--status", help="comma-separated statuses (queued, running, completed, failed, ...)")
    listing.add_argument("--environment", help="only jobs of this environment")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="print the server's JSON")
    listing.set_defaults(handler=list_jobs)
    show = actions.add_parser("show", help="one job: progress, outcome, log tail and outputs")
    show.add_argument("job_id", type=int)
    show.add_argument("--json", action="store_true", help="print the server's JSON")
    show.set_defaults(handler=show_job)
    stop = actions.add_parser("stop", help="stop a running job or cancel a queued one")
    stop.add_argument("job_id", type=int, nargs="?", help="the job (default: your running job)")
    stop.set_defaults(handler=stop_job)


def request(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the server's API; SimpleTunerError with the server's explanation on failure."""
    if not args.api_key:
        raise SimpleTunerError("no API key: pass --api-key or set SIMPLETUNER_API_KEY (create one in the web UI's "
                               "profile page or with 'simpletuner apikeys create --user NAME')")
    base = args.server.rstrip("/")
    if urllib.parse.urlparse(base).scheme not in ("http", "https"):
        raise SimpleTunerError(f"--server {args.server!r}: expected a URL such as {DEFAULT_SERVER}")
    headers = {"X-API-Key": args.api_key, "Accept": "application/json"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    context = ssl.create_default_context(cafile=args.ca_cert) if args.ca_cert else None
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers, method=method),
                                    timeout=30, context=context) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
            message = detail.get("description") or detail.get("title") or str(exc)
        except ValueError:
            message = str(exc)
        raise SimpleTunerError(f"the server answered {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SimpleTunerError(f"cannot reach the server at {base}: {reason} (is 'simpletuner server' running? "
                               "set --server or SIMPLETUNER_SERVER)") from None


def _when(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(value)) if value else "-"


def _progress(job: dict[str, Any]) -> str:
    if job.get("position"):
        return f"#{job['position']} in queue"
    if job.get("step") is None:
        return "-"
    return f"{job['step']}/{job.get('total_steps') or '?'}"


def list_jobs(args: argparse.Namespace, context: CliContext) -> int:
    """Print the job history."""
    if args.limit < 1:
        raise SimpleTunerError("--limit must be at least 1")
    query = {"limit": str(args.limit), **{k: v for k in ("status", "environment") if (v := getattr(args, k))}}
    data = request(args, "GET", "/api/jobs?" + urllib.parse.urlencode(query))
    if args.json:
        print_json(data)
        return 0
    rows = [[str(j["id"]), j["environment"], j.get("owner") or "(server)", j["status"], j["phase"], _progress(j),
             _when(j.get("created_at"))] for j in data["jobs"]]
    print_table(rows, ["ID", "ENVIRONMENT", "OWNER", "STATUS", "PHASE", "PROGRESS", "CREATED"])
    return 0


def show_job(args: argparse.Namespace, context: CliContext) -> int:
    """Print one job."""
    job = request(args, "GET", f"/api/jobs/{args.job_id}")
    if args.json:
        print_json(job)
        return 0
    print(f"Job {job['id']}: {job['environment']} ({job['status']}, {job['phase']})")
    print(f"  owner: {job.get('owner') or '(server)'}   GPUs: {','.join(job['gpu_ids'] or []) or 'all'}")
    print(f"  progress: {_progress(job)}   loss: {job.get('loss')}   it/s: {job.get('it_per_s')}"
          f"   ETA: {job.get('eta_s')}")
    print(f"  created: {_when(job['created_at'])}   started: {_when(job['started_at'])}"
          f"   ended: {_when(job['ended_at'])}")
    if job.get("exit_code") is not None or job.get("exit_signal") is not None:
        print(f"  exit code: {job['exit_code']}   signal: {job['exit_signal']}")
    if job.get("error"):
        print(f"  error: {job['error']}")
    if job.get("run_dir"):
        print(f"  run folder: {job['run_dir']}")
    model = job["outputs"]["model"]
    if model:
        print(f"  model: {model['path']}" + (f"  ({args.server.rstrip('/')}{model['url']})" if model["url"] else ""))
    for image in job["outputs"]["validation_images"]:
        print(f"  validation image (step {image['step']}): {image['path']}")
    if job["log_tail"]:
        print("  last log lines:")
        for line in job["log_tail"][-15:]:
            print(f"    {line}")
    return 0


def stop_job(args: argparse.Namespace, context: CliContext) -> int:
    """Ask the server to stop a job."""
    result = request(args, "POST", "/api/training/stop", {"job_id": args.job_id} if args.job_id else {})
    verb = "cancelled" if result["status"] == "cancelled" else "is stopping"
    print(f"Job {result['job_id']} {verb}.", file=sys.stdout)
    return 0
