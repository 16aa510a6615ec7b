"""The s3 data backend against a real S3-protocol server over HTTP: the DataBackend contract, pagination past
1000 keys, retries, and one-line errors for each way the storage can be unusable."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from simpletuner.core.errors import DataBackendError
from simpletuner.core.plugins import Registry
from simpletuner.plugins.data_backends.s3 import MAX_ATTEMPTS, S3DataBackend


def backend(endpoint: str, bucket: str | None, root: str = "", **options: Any) -> S3DataBackend:
    return S3DataBackend.from_options(root, {"aws_bucket_name": bucket, "aws_endpoint_url": endpoint, **options})


def test_registered_as_a_remote_backend_with_simpletuner_option_names() -> None:
    spec = Registry().data_backends()["s3"]
    assert spec.local_paths is False
    import attrs

    names = [f.name for f in attrs.fields(spec.options)]
    assert names[:6] == ["aws_bucket_name", "aws_data_prefix", "aws_endpoint_url", "aws_region_name",
                         "aws_access_key_id", "aws_secret_access_key"]
    secret = attrs.fields_dict(spec.options)["aws_secret_access_key"].metadata["simpletuner"]
    assert secret.secret is True


def test_write_read_exists_delete_under_the_prefix(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    store = backend(s3_endpoint, bucket, "images", aws_data_prefix="/pets/")
    store.write("cats/1.png", b"\x89PNG one")
    store.write("cats/1.txt", b"a cat")
    assert store.read("cats/1.png") == b"\x89PNG one"
    assert store.exists("cats/1.txt") and not store.exists("cats/2.txt")
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["pets/images/cats/1.png", "pets/images/cats/1.txt"]

    store.write("cats/1.txt", b"a different cat")  # overwrite in place
    assert store.read("cats/1.txt") == b"a different cat"
    store.delete("cats/1.txt")
    store.delete("cats/1.txt")  # absent: no error
    assert not store.exists("cats/1.txt")
    with pytest.raises(FileNotFoundError, match="no object 'cats/1.txt'"):
        store.read("cats/1.txt")
    for bad in ("../escape.png", "/abs.png", "a/../../b.png", ""):
        with pytest.raises(ValueError, match="not a plain relative path"):
            store.key(bad)


def test_listing_is_confined_to_its_prefix_and_filters(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    for key in ("set/a.png", "set/sub/b.JPG", "set/a.txt", "set/.hidden.png", "set/.cache/c.png", "set/folder/",
                "settings/x.png", "other/y.png"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    store = backend(s3_endpoint, bucket, aws_data_prefix="set")
    assert store.list() == ["a.png", "a.txt", "sub/b.JPG"]  # not settings/: the prefix is a folder
    assert store.list(extensions={"png", ".jpg"}) == ["a.png", "sub/b.JPG"]
    assert store.list("sub") == store.list("sub/") == ["sub/b.JPG"]
    assert backend(s3_endpoint, bucket).list(extensions={"png"}) == ["other/y.png", "set/a.png", "settings/x.png"]


def test_a_stamped_listing_tells_which_objects_changed(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    store = backend(s3_endpoint, bucket, "stamped")
    store.write("a.png", b"one")
    store.write("b.png", b"two!")
    store.write("b.txt", b"a caption")
    first = store.list_stamped(extensions={"png"})
    assert first.paths == ["a.png", "b.png"] and first.sizes == [3, 4] and all(first.stamps)
    assert store.list_stamped(extensions={"png"}) == first  # nothing read, nothing changed
    store.write("b.png", b"TWO!")  # same size, new content
    second = store.list_stamped(extensions={"png"})
    assert second.stamps[0] == first.stamps[0] and second.stamps[1] != first.stamps[1]


def test_listing_pages_past_1000_keys(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    keys = [f"many/{i:05d}.png" for i in range(1105)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=bucket, Key=key, Body=b""), keys))
    store = backend(s3_endpoint, bucket, "many")
    calls: list[dict[str, Any]] = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda params, **kw: calls.append(params))
    found = store.list(extensions={"png"})
    assert found == [key.removeprefix("many/") for key in keys]
    assert len(calls) == 2  # S3 answers at most 1000 keys per request: the second page was asked for


@pytest.mark.timeout(60)
def test_folders_are_listed_in_parallel_with_the_same_result(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    keys = [f"tree/top-{i}.png" for i in range(3)] + ["tree/.hidden/x.png", "tree/a/.b/y.png", "tree/marker/"]
    keys += [f"tree/shard-{s:02d}/{i:03d}.{ext}" for s in range(12) for i in range(25) for ext in ("png", "txt")]
    keys += [f"tree/shard-03/deeper/{i}.png" for i in range(5)] + ["tree-sibling/z.png"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
    store = backend(s3_endpoint, bucket, "tree")
    prefixes: list[str] = []
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def started(params: dict[str, Any], **kwargs: Any) -> None:
        with lock:
            prefixes.append(params["Prefix"] + ("|" if params.get("Delimiter") else ""))
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)  # long enough for the other listings to be under way too

    def finished(**kwargs: Any) -> None:
        with lock:
            in_flight[0] -= 1

    store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", started)
    store.client.meta.events.register("after-call.s3.ListObjectsV2", finished)
    listing = store.list_stamped(extensions={"png", "txt"})
    expected = sorted(k.removeprefix("tree/") for k in keys
                      if k.startswith("tree/") and not k.endswith("/") and "/." not in k)
    assert listing.paths == expected and listing.sizes == [len(f"tree/{p}") for p in expected]
    # one look at the folder's first level, then each visible subfolder whole (a folder marker's too), several at
    # once
    shards = [f"tree/shard-{s:02d}/" for s in range(12)]
    assert sorted(prefixes) == sorted(["tree/|", "tree/a/", "tree/marker/", *shards])
    assert most[0] > 1

    lone = backend(s3_endpoint, bucket, "tree/shard-03")
    assert lone.list() == sorted([f"{i:03d}.{e}" for i in range(25) for e in ("png", "txt")]
                                 + [f"deeper/{i}.png" for i in range(5)])


def test_a_failing_request_is_retried_by_botocore(s3_endpoint: str, bucket: str) -> None:
    from botocore.awsrequest import AWSResponse

    store = backend(s3_endpoint, bucket)
    store.write("x.bin", b"payload")
    sent: list[int] = []

    class Raw:
        def stream(self, **kwargs: Any) -> Any:
            return iter([b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"])

    def flaky(request: Any, **kwargs: Any) -> Any:
        sent.append(1)
        return AWSResponse(request.url, 503, {}, Raw()) if len(sent) < 3 else None

    store.client.meta.events.register("before-send.s3.GetObject", flaky)
    assert store.read("x.bin") == b"payload"
    assert len(sent) == 3


def test_a_body_that_breaks_off_is_read_again(s3_endpoint: str, bucket: str) -> None:
    from botocore.exceptions import ResponseStreamingError

    store = backend(s3_endpoint, bucket)
    store.write("x.bin", b"payload")
    broken: list[int] = []

    class BrokenBody:
        def read(self) -> bytes:
            raise ResponseStreamingError(error="connection reset mid-body")

    def break_first(parsed: dict[str, Any], **kwargs: Any) -> None:
        if not broken:
            broken.append(1)
            parsed["Body"] = BrokenBody()

    store.client.meta.events.register("after-call.s3.GetObject", break_first)
    assert store.read("x.bin") == b"payload" and broken == [1]

    store.client.meta.events.register("after-call.s3.GetObject",
                                      lambda parsed, **kw: parsed.update(Body=BrokenBody()))
    with pytest.raises(DataBackendError, match="reading 'x.bin' in s3://.*ResponseStreamingError"):
        store.read("x.bin")
    assert MAX_ATTEMPTS > 1


def test_missing_bucket_is_one_clear_line(s3_endpoint: str) -> None:
    store = backend(s3_endpoint, "no-such-bucket-here")
    for action in (store.check, store.list):
        with pytest.raises(DataBackendError) as caught:
            action()
        message = str(caught.value)
        assert "bucket 'no-such-bucket-here' does not exist at http://127.0.0.1:" in message
        assert "create it or fix aws_bucket_name" in message and "\n" not in message


def test_unreachable_endpoint_fails_fast_with_its_address(closed_endpoint: str) -> None:
    store = backend(closed_endpoint, "pets")
    with pytest.raises(DataBackendError, match=f"cannot reach {closed_endpoint} .*check aws_endpoint_url"):
        store.check()


@pytest.mark.parametrize(("options", "message"), [
    ({"aws_bucket_name": None}, "aws_bucket_name is not set; name the bucket"),
    ({"aws_bucket_name": ""}, "aws_bucket_name is not set"),
    ({"aws_access_key_id": "AKID"}, "aws_access_key_id is set but aws_secret_access_key is not"),
    ({"aws_endpoint_url": "not a url"}, "aws_endpoint_url 'not a url' is not usable"),
    ({"aws_max_pool_connections": 0}, "aws_max_pool_connections must be between 1 and 512"),
])
def test_bad_options_are_refused_when_the_backend_is_made(s3_endpoint: str, options: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(DataBackendError, match=message):
        S3DataBackend.from_options("", {"aws_bucket_name": "pets", "aws_endpoint_url": s3_endpoint, **options})


def test_no_credentials_anywhere(s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(DataBackendError, match="no AWS credentials; set aws_access_key_id"):
        backend(s3_endpoint, bucket).check()


def test_credentials_from_options_win_over_the_environment(s3_endpoint: str, bucket: str) -> None:
    store = backend(s3_endpoint, bucket, aws_access_key_id="AKIDFROMOPTIONS", aws_secret_access_key="s")
    assert store.client._request_signer._credentials.access_key == "AKIDFROMOPTIONS"
    assert backend(s3_endpoint, bucket).client._request_signer._credentials.access_key == "AKIDEXAMPLESIMPLETUNER"
