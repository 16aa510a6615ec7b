"""The rows of a Hugging Face dataset (on the Hub, or downloaded or written on this machine) as a dataset's images
and captions, through the ``datasets`` library.

Row ``i`` of the split is served as the image ``row-<i>.<ext>`` (the extension from the image bytes) and, when its
caption columns hold text, the caption file ``row-<i>.txt``; so scanning, buckets and caption reading work as for a
folder, with ``caption_strategy: huggingface``. Keys are the row's index in the split, so ``max_num_samples`` picks
the same rows on every run. Latents and embeddings are keyed by image bytes and caption text (see
:mod:`simpletuner.core.datasets.cache_store`): a new revision of the dataset re-encodes only the rows it changed.

The dataset is read-only; its caches live on this machine (``cache_dir_vae`` / ``cache_dir``, or the run's output
folder). ``datasets`` is imported when the rows are first needed, never at module import. ``HF_HUB_OFFLINE=1`` uses
a copy downloaded before; ``HF_ENDPOINT`` and ``HF_TOKEN`` work as for every Hugging Face library. A private
dataset is read with the token of the user the backend is made for, sent only to the endpoint it was checked against
(see :mod:`simpletuner.core.hub_tokens`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import Token, read_token
from simpletuner.core.interfaces import DataBackend
from simpletuner.plugins.data_backends.huggingface_filters import field
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions

#: Seconds allowed for the Hub to answer :meth:`HuggingFaceDataBackend.check`.
CHECK_TIMEOUT = 10

_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"))


def hub_token() -> Token:
    """The token for reads from the Hub endpoint huggingface_hub is configured for, for whom the reads are made."""
    from huggingface_hub import constants

    return read_token(constants.ENDPOINT)


def parse_options(options: Mapping[str, Any] | HuggingFaceOptions | None) -> HuggingFaceOptions:
    """The options of an entry (a dict of its keys, as the engine passes them) as :class:`HuggingFaceOptions`."""
    if isinstance(options, HuggingFaceOptions):
        return options
    known = {f.name for f in attrs.fields(HuggingFaceOptions)}
    return HuggingFaceOptions(**{k: v for k, v in dict(options or {}).items() if k in known})


def text(value: Any) -> str:
    """A caption value as text: strings stripped, the first non-empty string of a list, "" for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        return next((t for t in map(text, value) if t), "")
    return ""


def caption_of(row: Mapping[str, Any], options: HuggingFaceOptions) -> str:
    """The first non-empty caption column of a row, else its fallback caption column, else its description column,
    else ""."""
    for column in (*options.caption_column, options.fallback_caption_column):
        caption = text(field(row, column)) if column else ""
        if caption:
            return caption
    return description(field(row, options.description_column)) if options.description_column else ""


def description(value: Any) -> str:
    """A description value as a caption: text as it is, an object's ``main_subject``, ``description`` and
    ``text`` joined (as SimpleTuner reads a description column)."""
    if isinstance(value, Mapping):
        return " ".join(t for t in (text(value.get(k)) for k in ("main_subject", "description", "text")) if t)
    return text(value)


def image_bytes(value: Any) -> bytes | None:
    """The encoded image of a row: a bytes column, or an ``Image`` column read undecoded."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path") and Path(value["path"]).is_file():
            return Path(value["path"]).read_bytes()
    return None


def extension(data: bytes) -> str:
    """The file extension of encoded image bytes (png, jpg, webp); png when unknown, so the scan reports it."""
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), "png")


class HuggingFaceDataBackend(DataBackend):
    """A read-only :class:`DataBackend` over the rows of one split of a Hugging Face dataset.

    >>> backend = HuggingFaceDataBackend.from_options("", {"dataset_name": "owner/pets", "split": "train",
    ...                                                    "caption_column": ["caption", "meta.alt"]})
    >>> backend.location
    'huggingface dataset owner/pets (split train)'
    """

    def __init__(self, options: HuggingFaceOptions) -> None:
        if not options.dataset_name:
            raise DataBackendError("huggingface dataset: dataset_name is not set; name a dataset on the Hub "
                                   "(owner/name) or a dataset folder on this machine")
        self.options = options
        #: the Hub token reads use, fixed when the backend is made (for whom it is made: see core.hub_tokens)
        self.token = hub_token()
        self._lock = threading.Lock()
        self._rows: Any = None
        self._files: dict[str, tuple[int, str]] | None = None

    @classmethod
    def from_options(cls, root: str, options: Mapping[str, Any] | HuggingFaceOptions | None) -> DataBackend:
        """The engine's factory: ``root`` is the entry's ``instance_data_dir``, which a Hub dataset has none of."""
        parsed = parse_options(options)
        if root:
            raise DataBackendError(f"huggingface dataset {parsed.dataset_name}: instance_data_dir {root!r} does not "
                                   "apply (rows come from dataset_name); remove it")
        return cls(parsed)

    @property
    def location(self) -> str:
        """The dataset, split and revision, for messages."""
        at = f" at revision {self.options.revision}" if self.options.revision else ""
        return f"huggingface dataset {self.options.dataset_name} (split {self.options.split}{at})"

    def rows(self) -> Any:
        """The selected rows as a ``datasets.Dataset`` (loaded once; image columns left encoded)."""
        with self._lock:
            if self._rows is None:
                self._rows = self._load()
            return self._rows

    def _load(self) -> Any:
        from simpletuner.plugins.data_backends.huggingface_load import load_rows

        return load_rows(self.options, self.location, self.token)

    def files(self) -> dict[str, tuple[int, str]]:
        """Every served path → (position in :meth:`rows`, ``image`` or ``caption``)."""
        rows = self.rows()
        with self._lock:
            if self._files is None:
                files: dict[str, tuple[int, str]] = {}
                for position, (index, row) in enumerate(zip(rows["__row__"], rows, strict=True)):
                    data = image_bytes(row[self.options.image_column])
                    files[f"row-{index}.{extension(data or b'')}"] = (position, "image")
                    if caption_of(row, self.options):
                        files[f"row-{index}.txt"] = (position, "caption")
                self._files = files
            return self._files

    def list(self, prefix: str = "", extensions: Iterable[str] | None = None) -> list[str]:
        """The rows' image and caption paths (a dataset has no folders: any prefix but ``""`` lists nothing)."""
        if prefix.strip("/"):
            return []
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        return sorted(p for p in self.files() if wanted is None or p.rsplit(".", 1)[-1] in wanted)

    def read(self, path: str) -> bytes:
        """A row's image bytes or caption; ``FileNotFoundError`` for any other path."""
        found = self.files().get(path)
        if found is None:
            raise FileNotFoundError(f"{self.location}: no row file {path!r}")
        position, what = found
        row = self.rows()[position]
        if what == "caption":
            return caption_of(row, self.options).encode("utf-8")
        data = image_bytes(row[self.options.image_column])
        if data is None:
            raise FileNotFoundError(f"{self.location}: row {path!r} has no image")
        return data

    def exists(self, path: str) -> bool:
        """Whether ``path`` is one of the rows' files."""
        return path in self.files()

    def write(self, path: str, data: bytes) -> None:
        """Refused: a Hugging Face dataset is read-only here."""
        raise DataBackendError(f"{self.location} is read-only; its caches are kept on this machine")

    def delete(self, path: str) -> None:
        """Refused: a Hugging Face dataset is read-only here."""
        raise DataBackendError(f"{self.location} is read-only")

    def check(self) -> None:
        """Unknown dataset, revision or split, missing columns, an unreachable Hub: one line, before any encoding.
        A Hub dataset is asked about (not downloaded); a local or offline one is opened."""
        from simpletuner.plugins.data_backends.huggingface_load import check_dataset

        check_dataset(self.options, self.location, CHECK_TIMEOUT, self.token)
