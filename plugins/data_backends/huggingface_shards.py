"""A parquet dataset (how the Hub stores datasets) read shard by shard, for the ``huggingface`` data backend.

Nothing is downloaded or converted before work starts. Opening the split reads each shard's footer and only the
small columns (captions, what the filters read, the image file names) — with HTTP range requests for a shard on the
Hub, so the images stay where they are. An image is read when the scan or the latent cache asks for it: its shard is
downloaded then, once, into huggingface_hub's cache (keyed by commit, so later runs, other revisions sharing the file
and offline use find it there), and only the row group holding it is decoded, a few at a time. Memory stays at a few
row groups whatever the dataset's size.

Each row's change stamp comes from its shard's content hash (the Hub's ETag): after a new revision, the rows of the
shards it did not change are not read again, so their shards are not even downloaded.

Imports ``pyarrow``, ``datasets`` and ``huggingface_hub``: only the backend's methods import this module.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import Token
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions

#: Decoded row groups of image bytes held at once (Hub datasets hold about 100 images per row group): twice the
#: scan's threads, each reading rows in order.
ROW_GROUPS_HELD = 8

#: Requests made at once while opening a dataset (a file's metadata, a footer).
PARALLEL_REQUESTS = 8

_HUB_FILE = re.compile(r"^hf://datasets/(?P<repo>[^@]+)@(?P<revision>[^/]+)/(?P<path>.+)$")


@attrs.frozen
class ShardFile:
    """One parquet file of the split: a file on this machine, or a file of a Hub repository at a commit."""

    path: str  # the local path, or the path inside the repository
    size: int
    etag: str  # changes whenever the content does
    repo_id: str | None = None
    commit: str | None = None

    @property
    def name(self) -> str:
        """The file name, for messages."""
        return self.path.rsplit("/", 1)[-1]


class RangeFile(io.RawIOBase):
    """A file of a Hub repository read with HTTP range requests (what pyarrow needs to read a footer or a column
    without the rest). The token goes to the endpoint only: a redirect to another host drops it."""

    def __init__(self, url: str, size: int, token: Token) -> None:
        from huggingface_hub.utils import build_hf_headers

        self.url, self.size, self.position = url, size, 0
        self.headers = build_hf_headers(token=token)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        from huggingface_hub.utils import get_session, hf_raise_for_status

        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        headers = {**self.headers, "Range": f"bytes={self.position}-{end - 1}"}
        response = get_session().get(self.url, headers=headers, follow_redirects=True)
        hf_raise_for_status(response)
        data = response.content
        if response.status_code == 200:  # a server that ignores ranges sends everything
            data = data[self.position:end]
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        self.position += len(data)
        return len(data)


def shard_files(options: HuggingFaceOptions, token: Token, offline: bool) -> list[ShardFile] | None:
    """The parquet files of the split, in order; None when the dataset is not stored as parquet (it is then read
    whole through ``datasets``)."""
    import datasets
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, snapshot_download

    from simpletuner.plugins.data_backends.huggingface_load import local_copy

    name = options.dataset_name or ""
    local = local_copy(name)
    if local is not None and local.is_file():
        return [_local_shard(local)]
    if local is None and offline:  # the copy this machine downloaded before, as a local folder
        local = Path(snapshot_download(name, repo_type="dataset", revision=options.revision or "main",
                                       local_files_only=True, token=token))
    if local is not None:
        builder = datasets.load_dataset_builder(str(local))
    else:
        # resolve the revision once (and record it in the hub cache for offline use); every read is at that commit
        folder = snapshot_download(name, repo_type="dataset", revision=options.revision or "main",
                                   allow_patterns=["README.md"], token=token)
        builder = datasets.load_dataset_builder(name, revision=Path(folder).name, token=token)
    if builder.name != "parquet":
        return None
    data_files = (builder.config.data_files or {}).get(options.split)
    if not data_files:
        splits = ", ".join(builder.config.data_files or {}) or "none"
        raise DataBackendError(f"no split {options.split!r} (the dataset has {splits}); fix split")

    def shard(location: str) -> ShardFile:
        found = _HUB_FILE.match(location)
        if found is None:
            return _local_shard(Path(location))
        url = hf_hub_url(found["repo"], found["path"], repo_type="dataset", revision=found["revision"])
        meta = get_hf_file_metadata(url, token=token)
        return ShardFile(path=found["path"], size=int(meta.size or 0), etag=str(meta.etag), repo_id=found["repo"],
                         commit=found["revision"])

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:  # one request per shard: in parallel
        return list(pool.map(shard, data_files))


def _local_shard(path: Path) -> ShardFile:
    stat = path.stat()
    return ShardFile(path=str(path), size=stat.st_size, etag=f"{stat.st_size}-{stat.st_mtime_ns}")


class ShardedRows:
    """The rows of a split stored as parquet shards: row numbers across the split, the small columns read up front,
    images read (and their shard downloaded) when asked."""

    def __init__(self, shards: list[ShardFile], token: Token) -> None:
        import pyarrow.parquet as pq

        self.shards = shards
        self.token = token
        self._lock = threading.Lock()
        self._shard_locks = [threading.Lock() for _ in shards]
        self._local: dict[int, Path] = {}
        self._held: OrderedDict[tuple[int, int], list[Any]] = OrderedDict()
        self.row_groups: list[list[int]] = []  # per shard: the first row of each row group, and its end
        self.offsets: list[int] = [0]

        def footer(index: int) -> Any:
            with self._open(index) as handle:
                return pq.ParquetFile(handle).metadata

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:  # a footer is a request or two per shard
            for metadata in pool.map(footer, range(len(shards))):
                starts = [0]
                for group in range(metadata.num_row_groups):
                    starts.append(starts[-1] + metadata.row_group(group).num_rows)
                self.row_groups.append(starts)
                self.offsets.append(self.offsets[-1] + metadata.num_rows)

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def held_row_groups(self) -> int:
        """Row groups of images decoded and held in memory now (at most :data:`ROW_GROUPS_HELD`)."""
        with self._lock:
            return len(self._held)

    def features(self) -> Any:
        """The split's ``datasets`` features (from the first shard's schema)."""
        import datasets
        import pyarrow.parquet as pq

        with self._open(0) as handle:
            return datasets.Features.from_arrow_schema(pq.ParquetFile(handle).schema_arrow)

    def locate(self, row: int) -> tuple[int, int]:
        """(shard, row within the shard) of split row ``row``."""
        shard = bisect.bisect_right(self.offsets, row) - 1
        return shard, row - self.offsets[shard]

    def stamp(self, row: int, kind: str) -> int:
        """A nonzero change stamp of one row's ``kind`` (image or caption), from its shard's content hash."""
        shard, within = self.locate(row)
        digest = hashlib.sha256(f"{self.shards[shard].etag}\0{within}\0{kind}".encode()).digest()
        return int.from_bytes(digest[:7], "big") | 1

    def iter_columns(self, columns: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(split row, its values of ``columns``) for every row, in order (``a.b`` reads a nested field); a few
        shards are read at once."""
        import pyarrow.parquet as pq

        def read(index: int) -> Any:
            if not columns:
                return None
            with self._open(index) as handle:
                return pq.ParquetFile(handle, pre_buffer=True).read(columns=columns)

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            for index, table in enumerate(pool.map(read, range(len(self.shards)))):
                first = self.offsets[index]
                values = table.to_pylist() if table is not None else [{}] * (self.offsets[index + 1] - first)
                for offset, row_values in enumerate(values):
                    yield first + offset, row_values

    def image_cell(self, row: int, column: str) -> Any:
        """The image column's value in split row ``row`` (its shard downloaded first when it is on the Hub)."""
        import pyarrow.parquet as pq

        shard, within = self.locate(row)
        starts = self.row_groups[shard]
        group = bisect.bisect_right(starts, within) - 1
        key = (shard, group)
        with self._lock:
            cells = self._held.get(key)
            if cells is not None:
                self._held.move_to_end(key)
        if cells is None:
            path = self.local_path(shard)
            cells = pq.ParquetFile(path).read_row_group(group, columns=[column]).column(0).to_pylist()
            with self._lock:
                self._held[key] = cells
                while len(self._held) > ROW_GROUPS_HELD:
                    self._held.popitem(last=False)
        return cells[within - starts[group]]

    def local_path(self, shard: int) -> Path:
        """Shard ``shard`` on this machine: downloaded (once) into huggingface_hub's cache when it is on the Hub."""
        from huggingface_hub import hf_hub_download

        file = self.shards[shard]
        if file.repo_id is None:
            return Path(file.path)
        with self._shard_locks[shard]:
            if shard not in self._local:
                self._local[shard] = Path(hf_hub_download(file.repo_id, file.path, repo_type="dataset",
                                                          revision=file.commit, token=self.token))
            return self._local[shard]

    def _open(self, shard: int) -> Any:
        """A binary file of shard ``shard``: the local file or the cached download, else ranged reads of the Hub's."""
        from huggingface_hub import hf_hub_url, try_to_load_from_cache

        file = self.shards[shard]
        if file.repo_id is None:
            return open(file.path, "rb")  # noqa: SIM115 - the caller closes it
        cached = try_to_load_from_cache(file.repo_id, file.path, revision=file.commit, repo_type="dataset")
        if isinstance(cached, str):
            return open(cached, "rb")  # noqa: SIM115
        url = hf_hub_url(file.repo_id, file.path, repo_type="dataset", revision=file.commit)
        return io.BufferedReader(RangeFile(url, file.size, self.token), buffer_size=1 << 20)
