"""The queue on a live server: one job per GPU set, disjoint sets side by side, reorder and cancel with permission,
the next job starting by itself; who may start and stop what; the jobs CLI."""

from __future__ import annotations

import os
import subprocess

from .conftest import write_env
from .live import SIMPLETUNER_BIN, LiveServer


def start(live: LiveServer, environment: str, user: str) -> dict:
    live.adopt(environment, user)
    status, body = live.call("POST", "/api/training/start", {"environment": environment}, user)
    assert status == 202, body
    return body


def test_queue_order_cancel_reorder_and_disjoint_gpu_sets(live: LiveServer) -> None:
    for name, gpus in (("qa", "0"), ("qb", "0"), ("qc", "1"), ("qd", "0")):
        write_env(live.workspace, live.model, name, held=True, gpu_ids=gpus)  # type: ignore[attr-defined]
    a = start(live, "qa", "rita")
    b = start(live, "qb", "remy")
    c = start(live, "qc", "rita")
    d = start(live, "qd", "rita")
    assert (a["status"], c["status"]) == ("running", "running")  # GPU 0 and GPU 1 side by side
    assert (b["status"], b["position"], d["status"], d["position"]) == ("queued", 1, "queued", 2)
    status = live.call("GET", "/api/training/status", user="vic")[1]
    assert status["status"] == "running" and status["job"]["id"] == a["job_id"]
    assert [j["id"] for j in status["jobs"]] == [a["job_id"], c["job_id"]]
    assert [(j["id"], j["position"]) for j in status["queue"]] == [(b["job_id"], 1), (d["job_id"], 2)]

    # Reordering needs job.reorder (leads and admins); researchers cannot jump the queue.
    assert live.call("PATCH", f"/api/jobs/{d['job_id']}", {"position": 1}, "rita")[0] == 403
    code, body = live.call("PATCH", f"/api/jobs/{d['job_id']}", {"position": 1}, "lena")
    assert code == 200 and body["queue"] == [d["job_id"], b["job_id"]]
    assert live.call("PATCH", f"/api/jobs/{d['job_id']}", {"position": 7}, "lena")[0] == 400
    assert live.call("PATCH", f"/api/jobs/{a['job_id']}", {"position": 1}, "lena")[0] == 409

    # A researcher stops only their own jobs; cancelling a queued job needs no process.
    code, body = live.call("POST", "/api/training/stop", {"job_id": b["job_id"]}, "rita")
    assert code == 403 and "only your own" in body["description"]
    assert live.call("POST", "/api/training/stop", {"job_id": b["job_id"]}, "remy")[1]["status"] == "cancelled"
    assert live.call("POST", "/api/training/stop", {"job_id": b["job_id"]}, "remy")[0] == 409
    queue = live.call("GET", "/api/training/status", user="vic")[1]["queue"]
    assert [(j["id"], j["position"]) for j in queue] == [(d["job_id"], 1)]

    # When GPU 0 frees up, the waiting job starts by itself.
    assert live.call("POST", "/api/training/stop", {"job_id": a["job_id"]}, "rita")[0] == 202
    events = live.read_events("vic", lambda e: e["job_id"] == d["job_id"] and e["event"] == "job_started")
    order = [(e["job_id"], e["event"]) for e in events]
    assert order.index((a["job_id"], "job_finished")) < order.index((d["job_id"], "job_started"))
    assert not any(e["job_id"] == c["job_id"] and e["event"] == "job_finished" for e in events)

    # The CLI, as a lead with an API key in the environment: list, show, stop anyone's job.
    env = {**os.environ, "SIMPLETUNER_SERVER": f"http://127.0.0.1:{live.port}",
           "SIMPLETUNER_API_KEY": live.keys["lena"]}
    listing = subprocess.run([str(SIMPLETUNER_BIN), "jobs", "list", "--status", "running,stopping"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {str(c["job_id"]), str(d["job_id"])} and rows[str(c["job_id"])][1] == "qc"
    shown = subprocess.run([str(SIMPLETUNER_BIN), "jobs", "show", str(b["job_id"])], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "qb (cancelled, cancelled)" in shown.stdout and "cancelled by remy" in shown.stdout
    for job in (c, d):
        stopped = subprocess.run([str(SIMPLETUNER_BIN), "jobs", "stop", str(job["job_id"])], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0 and f"Job {job['job_id']} is stopping." in stopped.stdout, stopped.stderr
    for job in (c, d):
        end = live.read_events("vic", lambda e, j=job: e["job_id"] == j["job_id"] and e["event"] == "job_finished",
                               job=job["job_id"])[-1]
        assert end["status"] == "stopped"
    bad = subprocess.run([str(SIMPLETUNER_BIN), "jobs", "show", "99999"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "404" in bad.stderr and "no job with id 99999" in bad.stderr


def test_viewers_watch_but_cannot_start_or_stop(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "mine", held=True, gpu_ids="2")  # type: ignore[attr-defined]
    job = start(live, "mine", "remy")
    assert live.call("POST", "/api/training/start", {"environment": "mine"}, "vic")[0] == 403
    assert live.call("POST", "/api/training/stop", {"job_id": job["job_id"]}, "vic")[0] == 403
    assert live.call("GET", "/api/training/status", user="vic")[0] == 200
    assert live.call("GET", f"/api/jobs/{job['job_id']}", user="vic")[0] == 200
    seen = live.read_events("vic", lambda e: e["job_id"] == job["job_id"] and e["event"] == "job_started",
                            job=job["job_id"])
    assert seen[0]["event"] == "job_queued"
    # rita has no running job of her own; a lead may stop anyone's
    assert live.call("POST", "/api/training/stop", {}, "rita")[0] == 404
    assert live.call("POST", "/api/training/stop", {"job_id": job["job_id"]}, "lena")[1]["status"] == "stopping"
    end = live.read_events("vic", lambda e: e["job_id"] == job["job_id"] and e["event"] == "job_finished",
                           job=job["job_id"])[-1]
    assert end["status"] == "stopped"
    assert live.call("GET", f"/api/jobs/{job['job_id']}", user="vic")[1]["stop_requested_by"] == "lena"
