#!/usr/bin/env python
"""POST a JSON message about an upload (or a checkpoint) to a webhook, e.g. a chat channel or a CI trigger.

As ``post_upload_script`` (split into arguments, never run by a shell)::

    "post_upload_script": "python examples/external-validation/post_webhook.py https://hooks.example/abc
        --remote {remote_checkpoint_path} --step {global_step} --run {tracker_run_name}"

The body is ``{"run": ..., "step": ..., "remote": ..., "local": ..., "text": "<one line summary>"}``. Exits with
status 1 when the webhook cannot be reached or answers with an error, which SimpleTuner reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="webhook address (http or https)")
    parser.add_argument("--remote", default="", help="where the upload went ({remote_checkpoint_path})")
    parser.add_argument("--local", default="", help="the checkpoint on disk ({local_checkpoint_path})")
    parser.add_argument("--step", type=int, default=0)
    parser.add_argument("--run", default="")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        print(f"not an http(s) address: {args.url!r}", file=sys.stderr)
        return 1
    body = {"run": args.run, "step": args.step, "remote": args.remote, "local": args.local,
            "text": f"{args.run or 'training'}: step {args.step} uploaded to {args.remote or args.local}"}
    request = urllib.request.Request(args.url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            print(f"webhook answered {response.status}")
    except (urllib.error.URLError, TimeoutError) as exc:
        print(f"webhook failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
