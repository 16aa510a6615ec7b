"""Fixtures of the data-backend tests: a real S3-protocol server (moto's server mode) on a loopback port, spoken to
over HTTP by boto3 exactly as a MinIO or AWS endpoint would be, and buckets made fresh for each test."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_helpers import ACCESS_KEY, SECRET_KEY
from tiny_models import build_tiny


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server running in a thread for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Credentials and region through the standard AWS variables; no profile or config file of this machine."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    values = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
              "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
              "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    """A plain boto3 client of the test server, for arranging and inspecting buckets."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def make_bucket(s3_client: Any) -> Callable[[], str]:
    """Create a bucket with a fresh name."""

    def make() -> str:
        name = f"st-{uuid.uuid4().hex[:16]}"
        s3_client.create_bucket(Bucket=name)
        return name

    return make


@pytest.fixture
def bucket(make_bucket: Callable[[], str]) -> str:
    """A fresh, empty bucket."""
    return make_bucket()


@pytest.fixture
def closed_endpoint() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Flux pipeline folder (built once per test session)."""
    return build_tiny("flux", tmp_path_factory.mktemp("tiny-flux") / "pipeline")

