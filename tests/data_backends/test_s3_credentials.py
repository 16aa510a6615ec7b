"""Refused credentials, with the test server's authentication switched on (moto accepts any key by default).

The server checks access keys and signatures against the IAM users it holds; bucket policies and other
permission details of a real service are not modelled, so only "unknown key" and "wrong secret" are tested here.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from s3_helpers import ACCESS_KEY, SECRET_KEY

from simpletuner.core.errors import DataBackendError
from simpletuner.plugins.data_backends.s3 import S3DataBackend


def _set_auth(endpoint: str, after: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=after.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["status"] == "ok"


@pytest.fixture
def iam_user(s3_endpoint: str) -> Iterator[tuple[str, str]]:
    """An IAM user allowed every S3 action; authentication is enforced while the test runs."""
    import boto3

    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1",
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    name = "trainer"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    _set_auth(s3_endpoint, "0")
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        _set_auth(s3_endpoint, "inf")
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
        iam.delete_user_policy(UserName=name, PolicyName="s3")
        iam.delete_user(UserName=name)


def _backend(endpoint: str, bucket: str, key_id: str, secret: str) -> S3DataBackend:
    return S3DataBackend.from_options("", {"aws_bucket_name": bucket, "aws_endpoint_url": endpoint,
                                           "aws_access_key_id": key_id, "aws_secret_access_key": secret})


def test_valid_unknown_and_wrong_secret_credentials(s3_endpoint: str, bucket: str,
                                                    iam_user: tuple[str, str]) -> None:
    key_id, secret = iam_user
    good = _backend(s3_endpoint, bucket, key_id, secret)
    good.check()
    good.write("a.txt", b"ok")
    assert good.list() == ["a.txt"]

    cases: list[tuple[Any, str]] = [
        (_backend(s3_endpoint, bucket, "AKIDUNKNOWN000000000", secret).check, r"\(403\)"),
        (_backend(s3_endpoint, bucket, key_id, secret + "x").list, r"\(SignatureDoesNotMatch\)"),
        (_backend(s3_endpoint, bucket, "AKIDUNKNOWN000000000", secret).list, r"\(InvalidAccessKeyId\)"),
    ]
    for action, code in cases:
        with pytest.raises(DataBackendError, match=f"refused the credentials or access to bucket '{bucket}' {code}; "
                                                   "check aws_access_key_id / aws_secret_access_key"):
            action()
