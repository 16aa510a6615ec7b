"""The rows of a Hugging Face dataset (on the Hub, or downloaded or written on this machine) as a dataset's images
and captions.

Row ``i`` of the split is served as the image ``row-<i>.<ext>`` (``i`` zero-padded to eight digits, so path order is
row order; the extension from the image's file name or bytes) and, when its caption columns hold text, the caption
file ``row-<i>.txt``; so scanning, buckets and caption reading work as for a folder, with ``caption_strategy:
huggingface``. Keys are the row's index in the split, so ``max_num_samples`` picks the same rows on every run.
Latents and embeddings are keyed by image bytes and caption text (see :mod:`simpletuner.core.datasets.cache_store`):
a new revision of the dataset re-encodes only the rows it changed.

A parquet dataset (how the Hub stores them) is read shard by shard: nothing is downloaded before work starts, a
shard is downloaded when one of its images is first read, and a new revision's unchanged shards are not read again
(see :mod:`~simpletuner.plugins.data_backends.huggingface_shards`). Other formats are loaded whole through
``datasets``.

The dataset is read-only; its caches live on this machine (``cache_dir_vae`` / ``cache_dir``, or the run's output
folder). ``datasets`` is imported when the rows are first needed, never at module import. ``HF_HUB_OFFLINE=1`` uses
a copy downloaded before; ``HF_ENDPOINT`` and ``HF_TOKEN`` work as for every Hugging Face library. A private
dataset is read with the token of the user the backend is made for, sent only to the endpoint it was checked against
(see :mod:`simpletuner.core.hub_tokens`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import Token, read_token
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.interfaces.data_backend import FileListing
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions

if TYPE_CHECKING:
    from simpletuner.plugins.data_backends.huggingface_catalogue import Catalogue

#: Seconds allowed for the Hub to answer :meth:`HuggingFaceDataBackend.check`.
CHECK_TIMEOUT = 10

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
        self._catalogue: Catalogue | None = None

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
        """The dataset, split, revision and composite picture, for messages (and what a scan's index is made for:
        another picture of composite images is another set of images)."""
        at = f" at revision {self.options.revision}" if self.options.revision else ""
        split = self.options.composite()
        picture = f", picture {split.index + 1} of {split.count}" if split else ""
        return f"huggingface dataset {self.options.dataset_name} (split {self.options.split}{at}{picture})"

    def catalogue(self) -> Catalogue:
        """The served rows (opened once: footers and small columns of a parquet dataset, see
        :mod:`~simpletuner.plugins.data_backends.huggingface_catalogue`)."""
        from simpletuner.plugins.data_backends.huggingface_catalogue import open_catalogue

        with self._lock:
            if self._catalogue is None:
                self._catalogue = open_catalogue(self.options, self.location, self.token)
            return self._catalogue

    def files(self) -> Mapping[str, tuple[int, str]]:
        """Every served path → (row of the split, ``image`` or ``caption``)."""
        return self.catalogue().files

    def list(self, prefix: str = "", extensions: Iterable[str] | None = None) -> list[str]:
        """The rows' image and caption paths (a dataset has no folders: any prefix but ``""`` lists nothing)."""
        if prefix.strip("/"):
            return []
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        return sorted(p for p in self.files() if wanted is None or p.rsplit(".", 1)[-1] in wanted)

    def list_stamped(self, prefix: str = "", extensions: Iterable[str] | None = None) -> FileListing:
        """:meth:`list` with change stamps from the shards' content hashes where the dataset is parquet, so a scan
        after a new revision reads only the rows of the shards it changed (0, read again, otherwise)."""
        paths = self.list(prefix, extensions)
        catalogue = self.catalogue()
        return FileListing(paths=paths, sizes=[-1] * len(paths),
                           stamps=[catalogue.stamp(*catalogue.files[p]) for p in paths])

    def image_sizes(self, paths: Sequence[str]) -> Sequence[tuple[int, int] | None]:
        """Sizes from the dataset's width and height columns, when the options name both (read with the other small
        columns: no image is fetched for them)."""
        catalogue = self.catalogue()
        found = [catalogue.files.get(path) for path in paths]
        return [catalogue.size(where[0]) if where is not None and where[1] == "image" else None
                for where in found]

    def read(self, path: str) -> bytes:
        """A row's image bytes or caption; ``FileNotFoundError`` for any other path."""
        catalogue = self.catalogue()
        found = catalogue.files.get(path)
        if found is None:
            raise FileNotFoundError(f"{self.location}: no row file {path!r}")
        row, what = found
        if what == "caption":
            return catalogue.files.captions[row].encode("utf-8")
        try:
            data = catalogue.image(row)
        except DataBackendError:
            raise
        except Exception as exc:  # the shard could not be downloaded or read
            from simpletuner.plugins.data_backends.huggingface_load import explain

            raise DataBackendError(explain(exc, self.options, self.location)) from None
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
        A Hub dataset is asked about (not downloaded); a local or offline one is opened (and kept open)."""
        from simpletuner.plugins.data_backends.huggingface_catalogue import check_dataset

        opened = check_dataset(self.options, self.location, CHECK_TIMEOUT, self.token)
        if opened is not None:
            with self._lock:
                self._catalogue = self._catalogue or opened
