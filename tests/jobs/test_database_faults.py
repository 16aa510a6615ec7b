"""Database faults while a job runs: SQLite held busy by a long writer and a long reader, and PostgreSQL restarted
mid-run. Either way the job finishes, every event its run wrote is stored exactly once and in order, and the server
answers again (reconnecting after the restart)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import postgres_server
import pytest

from .conftest import kill_leftover_jobs, write_env
from .live import LiveServer, make_users, start_held

pytestmark = pytest.mark.timeout(300)


def _release(workspace: Path) -> None:
    (workspace / "cache" / "held" / "text" / ".hold").unlink()


def _stored_and_written(server: LiveServer, job_id: int) -> tuple[list[Any], list[Any]]:
    """The run's own events as the server stored them (ids in order) and as the run wrote them to its file."""
    events = server.read_events("rita", lambda e: e["event"] == "job_finished", job=job_id)
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "events repeated or out of order"
    stored = [(e["event"], e.get("step")) for e in events
              if e["event"] not in ("phase", "log") and not e["event"].startswith("job_")]  # the runner's own
    run_dir = Path(server.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["run_dir"])
    written = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return stored, [(record["event"], record.get("step")) for record in written]


def test_sqlite_busy_with_a_long_writer_and_reader_loses_no_event(tmp_path: Path, held_site: Path,
                                                                    tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_env(workspace, tiny_flux, "held", held=True, max_train_steps=6)
    server = LiveServer(workspace, make_users(workspace), {"PYTHONPATH": str(held_site)})
    try:
        job_id = start_held(server, tiny_flux)
        reader = sqlite3.connect(workspace / "simpletuner.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM job_events").fetchone()  # a snapshot held open
        writer = sqlite3.connect(workspace / "simpletuner.db", isolation_level=None, timeout=30)
        writer.execute("BEGIN IMMEDIATE")  # the write lock, held longer than the server's busy timeout
        _release(workspace)
        time.sleep(12)
        writer.execute("ROLLBACK")
        writer.close()
        stored, written = _stored_and_written(server, job_id)
        reader.execute("ROLLBACK")
        reader.close()
        assert stored == written and ("finished", 6) in written
        assert server.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["status"] == "completed"
    finally:
        server.stop()
        kill_leftover_jobs(workspace)


def test_postgresql_restarted_mid_run_loses_no_event(tmp_path: Path, held_site: Path, tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_env(workspace, tiny_flux, "held", held=True, max_train_steps=6)
    with postgres_server.run_postgres_instance() as database:
        url = postgres_server.create_database(database.url)
        server = LiveServer(workspace, make_users(workspace, url), {"PYTHONPATH": str(held_site)},
                            "--database-url", url)
        try:
            job_id = start_held(server, tiny_flux)
            database.stop()
            _release(workspace)  # the run writes its events while the database is down
            down = threading.Event()
            threading.Timer(5.0, down.set).start()
            down.wait()
            database.start()
            deadline = time.monotonic() + 30
            while True:  # request workers reconnect on their next request
                try:
                    if server.call("GET", "/api/training/status", user="vic")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the server did not reconnect to the database"
                time.sleep(0.5)
            stored, written = _stored_and_written(server, job_id)
            assert stored == written and ("finished", 6) in written
            assert server.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["status"] == "completed"
        finally:
            server.stop()
