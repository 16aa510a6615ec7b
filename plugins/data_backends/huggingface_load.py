"""Opening a Hugging Face dataset for the ``huggingface`` data backend, and saying in one line why it cannot be.

Imports ``datasets`` and ``huggingface_hub``: only the backend's methods import this module.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import Token
from simpletuner.core.workspace import Workspace
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions

#: The seed of the ``max_num_samples`` pick: fixed, so every run trains on the same rows.
SUBSET_SEED = 0


def local_copy(name: str) -> Path | None:
    """The folder or parquet file ``dataset_name`` names on this machine (as written, then workspace-relative);
    None for a Hub id."""
    for candidate in (Path(name).expanduser(), Workspace.from_environment().resolve(name)):
        if candidate.is_dir() or (candidate.is_file() and candidate.suffix == ".parquet"):
            return candidate
    return None


def subset(count: int, limit: int | None) -> list[int]:
    """The row indices to train on: all of them, or ``limit`` of them picked with a fixed seed, in order."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(random.Random(SUBSET_SEED).sample(range(count), limit))


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, as the Hugging Face libraries read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def open_split(options: HuggingFaceOptions, token: Token = None) -> Any:
    """The whole split as a ``datasets.Dataset`` (downloading a Hub dataset's files unless cached, with ``token``)."""
    import datasets

    name = options.dataset_name or ""
    local = local_copy(name)
    if local is not None and local.is_file():
        return datasets.load_dataset("parquet", data_files=str(local), split=options.split)
    if local is not None:
        return datasets.load_dataset(str(local), split=options.split)
    return datasets.load_dataset(name, split=options.split, revision=options.revision, token=token)


def check_columns(features: Any, options: HuggingFaceOptions, where: str) -> None:
    """Refuse options naming columns (or nested fields) the dataset lacks, naming the columns it has."""
    names = [options.image_column, *options.caption_column, options.fallback_caption_column, options.width_column,
             options.height_column, options.description_column]
    rule = options.row_filter()
    needed = {column: None for column in names if column}
    needed.update({column: key for column, key in (rule.reads() if rule else {}).items() if column not in needed})
    for column, filter_key in needed.items():
        if column in features:
            continue
        top, _, rest = column.partition(".")
        if top in features and rest and _has_path(features[top], rest):
            continue
        reader = f" (read by huggingface.filter_func.{filter_key})" if filter_key else ""
        raise DataBackendError(f"{where}: no column {column!r}{reader}; its columns are {', '.join(features)}")


def kept_rows(split: Any, options: HuggingFaceOptions) -> list[int]:
    """The indices of the rows ``huggingface.filter_func`` keeps (every row without filters); only the columns
    the filters read are decoded, never the images."""
    rule = options.row_filter()
    if rule is None:
        return list(range(len(split)))
    columns = list(dict.fromkeys(column.split(".", 1)[0] for column in rule.reads()))
    kept: list[int] = []
    position = 0
    for batch in split.select_columns(columns).iter(batch_size=1000):
        count = len(next(iter(batch.values())))
        for offset in range(count):
            if rule.keep({name: values[offset] for name, values in batch.items()}):
                kept.append(position + offset)
        position += count
    return kept


def _has_path(feature: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(feature, dict) or part not in feature:
            return False
        feature = feature[part]
    return True


def explain(exc: BaseException, options: HuggingFaceOptions, where: str) -> str:
    """One line saying why the dataset cannot be opened and what to do."""
    from huggingface_hub import constants, errors

    name = options.dataset_name
    endpoint = constants.ENDPOINT
    if isinstance(exc, DataBackendError):
        return str(exc)
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"{where}: the dataset has no revision {options.revision!r}; fix revision"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if (isinstance(exc, errors.RepositoryNotFoundError) or type(exc).__name__ == "DatasetNotFoundError"
            or (isinstance(exc, errors.HfHubHTTPError) and status == 404)):
        return (f"{where}: no dataset {name!r} on the Hub or on this machine (a private one needs your Hub login "
                "or HF_TOKEN); "
                "fix dataset_name")
    message = " ".join(str(exc).split())
    if isinstance(exc, ValueError) and "split" in message.lower():
        return f"{where}: {message}; fix split"
    if type(exc).__name__ == "IncompleteSnapshotError":  # a run stopped while downloading the shards
        return (f"{where}: HF_HUB_OFFLINE is set and only part of the dataset was downloaded before; run once online "
                "to download the rest, or unset HF_HUB_OFFLINE")
    if offline() and isinstance(exc, ConnectionError | FileNotFoundError | OSError):
        return (f"{where}: HF_HUB_OFFLINE is set and the dataset was not downloaded before; download it once "
                "online or unset HF_HUB_OFFLINE")
    if _is_connection_error(exc):
        return (f"{where}: cannot reach the Hub at {endpoint} ({type(exc).__name__}); check the network, or set "
                "HF_HUB_OFFLINE=1 to use a copy downloaded before")
    return f"{where}: {type(exc).__name__}: {message}".rstrip(": ")


def _is_connection_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        kind = type(seen).__name__
        if isinstance(seen, ConnectionError | TimeoutError) or "Connect" in kind or "Timeout" in kind:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
