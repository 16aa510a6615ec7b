"""Options of the ``s3`` data backend (SimpleTuner's key names); light to import.

A dataset entry with ``"type": "s3"`` carries these keys. Set in an environment's ``config.json`` (or the
``default`` environment) they are the defaults of every s3 entry, so credentials and the endpoint can be written
once. Unset credentials come from the standard AWS chain: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
(and ``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` and ``~/.aws/credentials``, instance roles.
"""

from __future__ import annotations

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.options import PRIVILEGED, option


@attrs.define(kw_only=True)
class S3Options:
    """Where an s3 dataset lives and how to reach it."""

    aws_bucket_name: str | None = option(
        None, help="Bucket of an s3 dataset (required for type s3).", section="dataset", label="S3 bucket")
    aws_data_prefix: str = option(
        "", help="Key prefix of the dataset in the bucket; an s3 entry's instance_data_dir, cache_dir_vae and "
        "cache_dir are key prefixes under it.", section="dataset", label="S3 key prefix")
    aws_endpoint_url: str | None = option(
        None, help="Endpoint of S3-compatible storage (MinIO, Ceph, R2, ...), e.g. https://minio.example:9000; "
        "AWS S3 itself if unset.", section="dataset", label="S3 endpoint URL", trust=PRIVILEGED)
    aws_region_name: str | None = option(
        None, help="Region of the bucket; AWS_DEFAULT_REGION or the profile's if unset.", section="dataset",
        label="S3 region")
    aws_access_key_id: str | None = option(
        None, help="Access key ID; from AWS_ACCESS_KEY_ID or the AWS profile if unset.", section="dataset",
        label="S3 access key ID")
    aws_secret_access_key: str | None = option(
        None, help="Secret access key; from AWS_SECRET_ACCESS_KEY or the AWS profile if unset.", section="dataset",
        label="S3 secret access key", secret=True)
    aws_max_pool_connections: int = option(
        16, help="Parallel HTTP connections per s3 dataset (image scans and cache reads run in threads).",
        section="dataset", minimum=1, maximum=512, label="S3 connections")

    def __attrs_post_init__(self) -> None:
        for name in ("aws_bucket_name", "aws_endpoint_url", "aws_region_name", "aws_access_key_id",
                     "aws_secret_access_key"):
            if getattr(self, name) == "":  # an emptied form field means "not set", not an empty name
                setattr(self, name, None)
        if not 1 <= self.aws_max_pool_connections <= 512:
            raise DataBackendError(f"s3: aws_max_pool_connections must be between 1 and 512, got "
                                   f"{self.aws_max_pool_connections}")
