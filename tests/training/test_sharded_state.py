"""FSDP's sharded checkpoints (torch.distributed.checkpoint folders) load while a run resumes without running code or
reading outside their folder: a real checkpoint loads as before, a planted ``.metadata`` pickle runs nothing, and
metadata that names a file elsewhere is refused. (DeepSpeed's files: ``test_deepspeed_runs.py``.)"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import Payload

from simpletuner.core.training.sharded_state import UntrustedCheckpointFile, dcp_metadata_read_safely

pytestmark = pytest.mark.timeout(60)


def _save(folder: Path) -> dict[str, Any]:
    import torch
    import torch.distributed.checkpoint as dcp

    state = {"model": {"weight": torch.randn(4, 4, dtype=torch.bfloat16), "bias": torch.randn(3)}, "step": 7}
    dcp.save(state, checkpoint_id=str(folder))
    return state


def _load(folder: Path) -> dict[str, Any]:
    import torch
    import torch.distributed.checkpoint as dcp

    state = {"model": {"weight": torch.zeros(4, 4, dtype=torch.bfloat16), "bias": torch.zeros(3)}, "step": 0}
    with dcp_metadata_read_safely():
        dcp.load(state, checkpoint_id=str(folder))
    return state


def test_a_checkpoint_torch_wrote_loads_as_before(tmp_path: Path) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    original = FileSystemReader.read_metadata
    saved = _save(tmp_path / "state")
    loaded = _load(tmp_path / "state")
    assert loaded["step"] == 7
    assert all(loaded["model"][k].equal(saved["model"][k]) for k in saved["model"])
    assert FileSystemReader.read_metadata is original


def test_a_planted_metadata_pickle_runs_nothing(tmp_path: Path) -> None:
    _save(tmp_path / "state")
    marker = tmp_path / "ran"
    (tmp_path / "state" / ".metadata").write_bytes(pickle.dumps({"storage_data": Payload(marker)}))
    with pytest.raises(UntrustedCheckpointFile, match=r"\.metadata is not checkpoint metadata \(pathlib\.Path\.touch"):
        _load(tmp_path / "state")
    assert not marker.exists()


def test_metadata_naming_a_file_outside_its_folder_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "state")
    (tmp_path / "secret.distcp").write_bytes(b"x" * 64)
    metadata_file = tmp_path / "state" / ".metadata"
    metadata = pickle.loads(metadata_file.read_bytes())
    for info in metadata.storage_data.values():
        info.relative_path = "../secret.distcp"
    metadata_file.write_bytes(pickle.dumps(metadata))
    with pytest.raises(UntrustedCheckpointFile, match=r"names '\.\./secret\.distcp', which is not a file of its own"):
        _load(tmp_path / "state")
