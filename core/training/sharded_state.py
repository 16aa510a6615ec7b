"""Loading the sharded state of a DeepSpeed or FSDP checkpoint without running code or reading outside it.

A checkpoint may come from a user who is not trusted to run code or to read the server's files (docs/security.md).

- DeepSpeed writes its model and optimizer state with ``torch.save`` (pickles) and loads them with
  ``torch.load(weights_only=False)``, which runs whatever functions a file names. A resuming run gives its engine a
  loader that uses torch's weights-only unpickler instead: tensors, plain values and the few state classes DeepSpeed
  stores (:func:`deepspeed_state_classes`).
- FSDP's sharded checkpoints are torch.distributed.checkpoint folders, whose ``.metadata`` file is a plain pickle
  that says which files and byte ranges hold each tensor. While a run resumes, it is read by an unpickler that builds
  only the checkpoint's metadata classes, and every file it names must be a plain name inside the folder.

Anything else is refused with :class:`UntrustedCheckpointFile`, naming the file.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simpletuner.core.errors import SimpleTunerError

_NOT_RESUMED = ("so the run does not resume from it. Resume from a checkpoint SimpleTuner wrote, or start fresh "
                "(unset resume_from_checkpoint)")


class UntrustedCheckpointFile(SimpleTunerError):
    """A checkpoint file holds more than the state it should (objects that could run code, or paths elsewhere)."""


def deepspeed_state_classes() -> list[Any]:
    """The classes DeepSpeed's model and optimizer state files hold besides tensors and plain values: the loss
    scaler, the ZeRO stage and the address of a parameter's fragment. None of them runs code when rebuilt."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def load_weights_only(path: str, map_location: Any = None) -> Any:
    """One DeepSpeed state file, read with torch's weights-only unpickler; raises :class:`UntrustedCheckpointFile`
    naming the file when it holds anything else."""
    import torch

    with torch.serialization.safe_globals(deepspeed_state_classes()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().split(". ", 1)[0]
            raise UntrustedCheckpointFile(f"checkpoint file {path} holds objects other than tensors and "
                                          f"DeepSpeed's state ({reason}); loading it could run code, "
                                          f"{_NOT_RESUMED}") from None


def load_checkpoints_weights_only(engine: Any) -> None:
    """Make a ``DeepSpeedEngine`` read every checkpoint file through :func:`load_weights_only` (its checkpoint
    engine's ``load``, which all of DeepSpeed's model and optimizer state loading goes through)."""
    engine.checkpoint_engine.load = load_weights_only


#: module → names a torch.distributed.checkpoint ``.metadata`` pickle may build: the metadata classes, tensor
#: shapes, dtypes and layouts, and the path of the checkpoint it was saved as.
_DCP_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Builds only what :data:`_DCP_METADATA_GLOBALS` lists, plus torch's shapes and dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if name in _DCP_METADATA_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not checkpoint metadata")


def read_dcp_metadata(path: Path) -> Any:
    """A torch.distributed.checkpoint ``.metadata`` file, read without running code; every data file it names must
    be a plain file name inside the checkpoint folder. Raises :class:`UntrustedCheckpointFile` otherwise."""
    with open(path, "rb") as stream:  # a missing file is the checkpoint library's to report
        try:
            metadata = _MetadataUnpickler(stream).load()
        except Exception as exc:  # whatever a damaged or foreign file makes the allowed classes raise
            raise UntrustedCheckpointFile(f"checkpoint file {path} is not checkpoint metadata ({exc}); loading it "
                                          f"could run code, {_NOT_RESUMED}") from None
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        name = getattr(info, "relative_path", None)
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise UntrustedCheckpointFile(f"checkpoint file {path} names {name!r}, which is not a file of its own "
                                          f"folder; reading it would reach other files, {_NOT_RESUMED}")
    return metadata


@contextlib.contextmanager
def dcp_metadata_read_safely() -> Iterator[None]:
    """While open, torch.distributed.checkpoint's file reader reads ``.metadata`` through
    :func:`read_dcp_metadata` (accelerate builds the reader itself while it loads FSDP's sharded state). A refused
    file ends the load with :class:`UntrustedCheckpointFile` rather than the checkpoint library's wrapped error."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    original = FileSystemReader.read_metadata
    refused: list[UntrustedCheckpointFile] = []

    def read_metadata(self: Any, *args: Any, **kwargs: Any) -> Any:
        locate = getattr(self, "_get_metadata_path", None)  # per-rank metadata files in newer torch versions
        path = locate(kwargs.get("rank")) if locate else self.fs.concat_path(self.path, ".metadata")
        try:
            metadata = read_dcp_metadata(Path(path))
        except UntrustedCheckpointFile as exc:
            refused.append(exc)
            raise
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    FileSystemReader.read_metadata = read_metadata  # type: ignore[method-assign]
    try:
        yield
    except BaseException:  # the checkpoint library's own exception is a BaseException
        if refused:
            raise refused[0] from None
        raise
    finally:
        FileSystemReader.read_metadata = original  # type: ignore[method-assign]
