"""Real servers for the login provider tests: OpenLDAP ``slapd`` (plain and with TLS) and an OpenID Connect
provider process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from oidc_mock_server import missing_package, run_oidc_provider  # noqa: E402
from slapd_server import Slapd, missing_binaries, run_slapd  # noqa: E402
from tls_certs import TlsFiles, make_tls_files  # noqa: E402


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a server certificate for ``localhost``."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def slapd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """slapd with the seeded directory and no TLS configured."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture(scope="session")
def slapd_tls_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Slapd]:
    """slapd with the seeded directory, offering StartTLS and LDAPS with the test certificate."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    with run_slapd(tmp_path_factory.mktemp("slapd-tls"), tls=(tls_files.cert_file, tls_files.key_file)) as server:
        yield server


@pytest.fixture(scope="session")
def oidc_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The issuer URL of a running oidc-provider-mock with the seeded users."""
    reason = missing_package()
    if reason:
        pytest.skip(reason)
    with run_oidc_provider(tmp_path_factory.mktemp("oidc") / "provider.log") as issuer:
        yield issuer


@pytest.fixture(scope="session")
def oidc_expired_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An oidc-provider-mock whose tokens expired five minutes before they were issued."""
    reason = missing_package()
    if reason:
        pytest.skip(reason)
    log = tmp_path_factory.mktemp("oidc-expired") / "provider.log"
    with run_oidc_provider(log, ["--token-max-age", "-300"]) as issuer:
        yield issuer
