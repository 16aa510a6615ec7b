"""Images, captions and caches in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), through boto3.

Every path of an s3 dataset entry is a key prefix under the entry's ``aws_data_prefix``: its images under
``instance_data_dir`` (the prefix itself when unset), its latents under ``cache_dir_vae`` and a text_embeds entry's
embeddings under ``cache_dir``. A cache whose prefix the entry leaves unset stays on this machine, in the run's
output folder. Writes are single ``PutObject`` calls, so a reader sees the old object or the new one, never a
partial file. Requests are retried by botocore (``standard`` mode); reading a body that breaks off is retried too.
boto3 is imported when a backend is made, never at module import.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.interfaces.data_backend import FileListing
from simpletuner.core.outbound import OutboundPolicy, active_policy, connect, refusal_in
from simpletuner.plugins.data_backends.s3_options import S3Options

#: Attempts per request (the first try included), for botocore's retry handler and for broken-off body reads.
MAX_ATTEMPTS = 5
#: Seconds allowed to connect and to wait for an answer, in normal operation and for :meth:`S3DataBackend.check`.
TIMEOUTS = {"connect_timeout": 10, "read_timeout": 60}
CHECK_TIMEOUTS = {"connect_timeout": 3, "read_timeout": 5}

_MISSING_KEY = {"404", "NoSuchKey", "NotFound"}
_MISSING_BUCKET = {"NoSuchBucket"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
            "ExpiredToken", "InvalidClientTokenId"}


def _clean(prefix: str) -> str:
    """A key prefix without leading/trailing slashes; refuses ``..`` segments."""
    parts = [p for p in prefix.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataBackendError(f"s3 prefix {prefix!r} holds '..'; give a key prefix inside the bucket")
    return "/".join(parts)


def parse_options(options: Mapping[str, Any] | S3Options | None) -> S3Options:
    """The options of an entry (a dict of its keys, as the engine passes them) as :class:`S3Options`."""
    if isinstance(options, S3Options):
        return options
    known = {f.name for f in attrs.fields(S3Options)}
    values = {k: v for k, v in dict(options or {}).items() if k in known}
    return S3Options(**values)


def client_for(options: S3Options, timeouts: Mapping[str, int], attempts: int,
               policy: OutboundPolicy | None = None) -> Any:
    """A boto3 S3 client for the options; credentials the options leave unset come from the AWS chain. With a
    ``policy``, every connection the client makes (redirects included) is checked against it."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DataBackendError("the s3 data backend needs boto3: pip install boto3") from None
    if (options.aws_access_key_id is None) != (options.aws_secret_access_key is None):
        given, missing = (("aws_access_key_id", "aws_secret_access_key") if options.aws_access_key_id
                          else ("aws_secret_access_key", "aws_access_key_id"))
        raise DataBackendError(f"s3: {given} is set but {missing} is not; set both, or neither to use the AWS "
                               "environment variables or profile")
    session = boto3.session.Session(aws_access_key_id=options.aws_access_key_id,
                                    aws_secret_access_key=options.aws_secret_access_key,
                                    region_name=options.aws_region_name)
    # S3-compatible servers are reached by path (http://host/bucket/key): not every one resolves bucket host names.
    addressing = {"addressing_style": "path"} if options.aws_endpoint_url else {}
    config = Config(max_pool_connections=options.aws_max_pool_connections, s3=addressing,
                    retries={"mode": "standard", "total_max_attempts": attempts}, **timeouts)
    try:
        client = session.client("s3", endpoint_url=options.aws_endpoint_url, config=config)
    except ValueError as exc:  # botocore refuses a malformed endpoint URL here
        raise DataBackendError(f"s3: aws_endpoint_url {options.aws_endpoint_url!r} is not usable ({exc}); "
                               "give a URL such as https://minio.example:9000") from None
    if policy is not None:
        _guard_connections(client, policy)
    return client


def _guard_connections(client: Any, policy: OutboundPolicy) -> None:
    """Make the client open every connection through :func:`simpletuner.core.outbound.connect`: resolved, checked
    and connected to the checked address. botocore offers no public hook for this, so its pool classes are
    replaced; if that is not possible with this botocore, the backend is refused rather than left unchecked."""
    from botocore import awsrequest
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    def guarded(pool: type) -> type:
        class Connection(pool.ConnectionCls):  # type: ignore[name-defined, misc]
            def _new_conn(self) -> Any:
                timeout = self.timeout if isinstance(self.timeout, int | float) else None
                try:
                    return connect(self._dns_host, self.port, policy, timeout, self.source_address,
                                   self.socket_options or ())
                except TimeoutError as exc:  # the errors urllib3's own connection raises, for botocore's retries
                    raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from exc
                except OSError as exc:
                    raise NewConnectionError(self, f"failed to connect: {exc}") from exc

        return type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": Connection})

    pools = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_pool_classes_by_scheme", None)
    if not isinstance(pools, dict) or set(pools) != {"http", "https"}:
        raise DataBackendError("s3: this botocore version cannot be held to the server's outbound policy; install "
                               "the botocore version SimpleTuner is tested with")
    # the session's pool managers share this dict, so every pool made from now on is guarded
    pools.update(http=guarded(awsrequest.AWSHTTPConnectionPool), https=guarded(awsrequest.AWSHTTPSConnectionPool))


#: Listing entries of objects, the prefixes of folders, and (relative path, listing entry) pairs.
Entries = list[dict[str, Any]]
Prefixes = list[str]
Found = list[tuple[str, dict[str, Any]]]


class S3DataBackend(DataBackend):
    """A :class:`DataBackend` over the keys under one prefix of a bucket.

    >>> backend = S3DataBackend.from_options("images", {"aws_bucket_name": "pets", "aws_data_prefix": "cats",
    ...                                                 "aws_endpoint_url": "http://127.0.0.1:9000"})
    >>> backend.location, backend.key("a/1.png")
    ('s3://pets/cats/images at http://127.0.0.1:9000', 'cats/images/a/1.png')
    """

    def __init__(self, options: S3Options, root: str = "") -> None:
        if not options.aws_bucket_name:
            raise DataBackendError("s3 dataset: aws_bucket_name is not set; name the bucket holding the dataset")
        self.options = options
        self.bucket = options.aws_bucket_name
        self.base = _clean(posixpath.join(_clean(options.aws_data_prefix), _clean(root)))
        # the policy of the request this backend is built for (None in the trainer: nothing to enforce there)
        self.policy = active_policy()
        self.client = client_for(options, TIMEOUTS, MAX_ATTEMPTS, self.policy)

    @classmethod
    def from_options(cls, root: str, options: Mapping[str, Any] | S3Options | None) -> S3DataBackend:
        """The engine's factory: ``root`` is a key prefix under ``aws_data_prefix``; ``options`` the entry's keys."""
        return cls(parse_options(options), root or "")

    @property
    def location(self) -> str:
        """``s3://bucket/prefix`` (and the endpoint when not AWS), for messages."""
        where = f"s3://{self.bucket}/{self.base}".rstrip("/")
        return f"{where} at {self.options.aws_endpoint_url}" if self.options.aws_endpoint_url else where

    def key(self, path: str) -> str:
        """The object key of a relative path; refuses paths that leave the prefix."""
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
            raise ValueError(f"path {path!r} is not a plain relative path inside {self.location}")
        return f"{self.base}/{path}" if self.base else path

    def _folder(self, prefix: str) -> str:
        folder = _clean(prefix)
        joined = f"{self.base}/{folder}" if self.base and folder else (self.base or folder)
        return f"{joined}/" if joined else ""

    def list(self, prefix: str = "", extensions: Iterable[str] | None = None) -> list[str]:
        """Keys under ``prefix`` (a folder), recursively, as relative paths, sorted; hidden names are skipped."""
        return sorted(relative for relative, _ in self._objects(prefix, extensions))

    def list_stamped(self, prefix: str = "", extensions: Iterable[str] | None = None) -> FileListing:
        """:meth:`list` with each object's size and a stamp of its ETag and modification time (from the same
        listing pages: nothing is read)."""
        found = sorted(self._objects(prefix, extensions), key=lambda pair: pair[0])
        return FileListing(paths=[relative for relative, _ in found],
                           sizes=[int(item.get("Size", -1)) for _, item in found],
                           stamps=[_stamp(item) for _, item in found])

    def _objects(self, prefix: str, extensions: Iterable[str] | None) -> Found:
        """(relative path, listing entry) of the objects under ``prefix``.

        S3 answers a listing 1,000 keys at a time, each page asking for the next, so a million keys under one
        listing take a thousand requests in a row. The folder is therefore listed one level deep first (its own
        objects and its subfolders), then every subfolder is listed whole in parallel, with as many requests in
        flight as the backend has connections. Only a folder holding its objects directly, with no subfolders,
        is listed page after page."""
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        start = len(self.base) + 1 if self.base else 0
        try:
            items, folders = self._level(self._folder(prefix))
            while not items and len(folders) == 1:  # a lone subfolder: look inside it for folders to share out
                items, folders = self._level(folders[0])
            if folders:
                workers = max(1, min(len(folders), self.options.aws_max_pool_connections))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for listed in pool.map(self._everything, folders):
                        items += listed
        except Exception as exc:
            raise self._explain(exc, "listing") from None
        found: Found = []
        for item in items:
            relative = item["Key"][start:]
            if not relative or relative.endswith("/"):  # "folder" marker objects
                continue
            if any(part.startswith(".") for part in relative.split("/")):
                continue
            if wanted is not None and relative.rsplit(".", 1)[-1].lower() not in wanted:
                continue
            found.append((relative, item))
        return found

    def _pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        return iter(self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **params))

    def _level(self, folder: str) -> tuple[Entries, Prefixes]:
        """The objects directly in ``folder`` and the prefixes of its subfolders (hidden ones left out)."""
        items: Entries = []
        folders: Prefixes = []
        for page in self._pages(Prefix=folder, Delimiter="/"):
            items += page.get("Contents", ())
            folders += [sub["Prefix"] for sub in page.get("CommonPrefixes", ())
                        if not sub["Prefix"][len(folder):].startswith(".")]
        return items, folders

    def _everything(self, folder: str) -> Entries:
        """Every object under ``folder``, page after page."""
        return [item for page in self._pages(Prefix=folder) for item in page.get("Contents", ())]

    def read(self, path: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` if absent."""
        from botocore.exceptions import ClientError

        key = self.key(path)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                return response["Body"].read()
            except ClientError as exc:
                if _code(exc) in _MISSING_KEY:
                    raise FileNotFoundError(f"{self.location}: no object {path!r}") from None
                raise self._explain(exc, f"reading {path!r}") from None
            except Exception as exc:
                # botocore retries requests; a body that breaks off mid-read is retried here
                if attempt == MAX_ATTEMPTS or not _transient(exc):
                    raise self._explain(exc, f"reading {path!r}") from None
        raise AssertionError("unreachable")

    def write(self, path: str, data: bytes) -> None:
        """One PutObject: readers see the old object or the new one, never part of it."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=bytes(data))
        except Exception as exc:
            raise self._explain(exc, f"writing {path!r}") from None

    def exists(self, path: str) -> bool:
        """Whether the object exists (a HeadObject)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(path))
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                return False
            raise self._explain(exc, f"looking up {path!r}") from None
        except Exception as exc:
            raise self._explain(exc, f"looking up {path!r}") from None

    def delete(self, path: str) -> None:
        """Remove the object; S3 answers the same whether it existed or not."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(path))
        except Exception as exc:
            raise self._explain(exc, f"deleting {path!r}") from None

    def check(self) -> None:
        """A HeadBucket with short timeouts and no retries: endpoint, credentials and bucket in one request."""
        probe = client_for(self.options, CHECK_TIMEOUTS, 1, self.policy)
        try:
            probe.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._explain(exc, "checking the bucket") from None

    def _explain(self, exc: BaseException, doing: str) -> DataBackendError:
        return DataBackendError(explain(exc, self.options, f"{doing} in {self.location}"))


def _stamp(item: Mapping[str, Any]) -> int:
    """A non-zero 63-bit number that changes when an object is replaced: from its ETag and modification time."""
    text = f"{item.get('ETag', '')}|{item.get('LastModified', '')}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1 or 1


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _transient(exc: BaseException) -> bool:
    from botocore import exceptions as b

    return isinstance(exc, b.ConnectionClosedError | b.IncompleteReadError | b.ReadTimeoutError
                      | b.ResponseStreamingError)


def explain(exc: BaseException, options: S3Options, what: str) -> str:
    """One line saying what went wrong with S3 and how to fix it."""
    from botocore import exceptions as b

    bucket, endpoint = options.aws_bucket_name, options.aws_endpoint_url or "AWS S3"
    if isinstance(exc, DataBackendError):
        return str(exc)
    refused = refusal_in(exc)
    if refused is not None:
        return f"{what}: {refused}"
    if isinstance(exc, b.NoCredentialsError | b.PartialCredentialsError):
        return (f"{what}: no AWS credentials; set aws_access_key_id and aws_secret_access_key, or the "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables, or an AWS profile")
    if isinstance(exc, b.EndpointConnectionError | b.ConnectTimeoutError | b.ReadTimeoutError
                  | b.ConnectionClosedError):
        return (f"{what}: cannot reach {endpoint} ({type(exc).__name__}); check aws_endpoint_url, that the server "
                "runs and that this machine can reach it")
    if isinstance(exc, b.ParamValidationError):
        return f"{what}: {' '.join(str(exc).split())}"
    if isinstance(exc, b.ClientError):
        code = _code(exc)
        if code in _MISSING_BUCKET or (code == "404" and "bucket" in what):
            return f"{what}: bucket {bucket!r} does not exist at {endpoint}; create it or fix aws_bucket_name"
        if code in _REFUSED:
            return (f"{what}: {endpoint} refused the credentials or access to bucket {bucket!r} ({code}); check "
                    "aws_access_key_id / aws_secret_access_key (or the AWS profile) and the bucket's permissions")
        if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
            return f"{what}: bucket {bucket!r} is in another region ({code}); set aws_region_name to its region"
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{what}: {endpoint} answered {code or 'an error'}{': ' + message if message else ''}"
    return f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
