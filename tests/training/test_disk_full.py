"""The disk filling up while a checkpoint is written: the run fails with a message saying so and naming the
checkpoint that is still intact; the half-written one is gone and the earlier one resumes."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training import checkpoints
from simpletuner.core.training.run_folders import run_folders

pytestmark = pytest.mark.timeout(300)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
        workspace: Any, make_env: Callable[..., str], run_env: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = make_env("full", max_train_steps=3, checkpointing_steps=1)
    write_state = checkpoints.write_state
    calls = {"scheduler": 0}

    def filling(path: Any, state: Any) -> None:
        if path.name == checkpoints.SCHEDULER_FILE:
            calls["scheduler"] += 1
            if calls["scheduler"] == 2:  # the second checkpoint meets a full disk
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_state(path, state)

    monkeypatch.setattr(checkpoints, "write_state", filling)
    with pytest.raises(SimpleTunerError, match=r"checkpoint-2 could not be written .*the disk is full; "
                                               r"checkpoint-1 is intact"):
        run_env(name)
    [run] = run_folders(workspace.root / "output" / "full")
    assert [p.name for _, p in checkpoints.complete_checkpoints(run.path)] == ["checkpoint-1"]
    assert not list(run.path.glob(".checkpoint-*"))  # nothing half-written left behind
    events = (run.path / "events.jsonl").read_text()
    assert '"event": "failed"' in events and "the disk is full" in events
