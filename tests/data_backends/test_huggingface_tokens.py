"""A private Hub dataset read with the token of the user the reads are for: the job owner's stored token (handed to
the training process as a file), the requesting user's in the server, never another user's or the machine's own Hub
login, never to an endpoint the token was not checked against, and never to the host a download is redirected to.
Everything runs against the loopback dataset Hub, which answers a private repository only to its token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hf_helpers import rows, use_datasets_cache, write_parquet
from hub_datasets import DatasetHub, dataset_hub, use_hub

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import JOB_ID_ENV, TOKEN_FILE_ENV, user_token_scope
from simpletuner.plugins.data_backends.huggingface import HuggingFaceDataBackend

pytestmark = pytest.mark.timeout(120)

OWNER_TOKEN = "hf_ownerOfTheSecretDataset0123"
MACHINE_TOKEN = "hf_theServerMachinesOwnLogin0123"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatasetHub]:
    """A Hub serving the private dataset ``owner/secret`` (three rows) to ``OWNER_TOKEN`` only; the machine has a
    Hub login of its own (huggingface_hub's token file) that must never be used for a user."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", TOKEN_FILE_ENV, JOB_ID_ENV):
        monkeypatch.delenv(name, raising=False)
    machine_login = tmp_path / "machine-hf-token"
    machine_login.write_text(MACHINE_TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(machine_login))
    use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")
    with dataset_hub() as served:
        use_hub(monkeypatch, served.base_url, tmp_path / "hub-cache")
        path = write_parquet(tmp_path / "secret", rows(3))
        served.publish("owner/secret", {"data/train-00000-of-00001.parquet": path.read_bytes()})
        served.private["owner/secret"] = OWNER_TOKEN
        yield served


def secret() -> HuggingFaceDataBackend:
    return HuggingFaceDataBackend.from_options("", {"dataset_name": "owner/secret"})  # type: ignore[return-value]


def job_token_file(tmp_path: Path, token: str, endpoint: str) -> Path:
    """A stored login as the server keeps it: the token, and beside it what the Hub said (the endpoint)."""
    path = tmp_path / "secrets" / "hf-hub" / "7.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.with_suffix(".json").write_text(json.dumps({"name": "rita", "endpoint": endpoint, "role": "read",
                                                     "saved_at": 0}))
    return path


def sent_tokens(hub: DatasetHub) -> set[str | None]:
    """The Authorization headers of the requests for dataset repositories (huggingface_hub also asks the Hub for
    things of its own)."""
    return {auth for path, auth in hub.auth if "/datasets/" in path}


def test_a_job_reads_a_private_dataset_with_its_owner_s_token(hub: DatasetHub, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(JOB_ID_ENV, "7")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(job_token_file(tmp_path, OWNER_TOKEN, hub.base_url + "/")))
    backend = secret()
    backend.check()
    assert backend.list(extensions={"png"}) == ["row-00000000.png", "row-00000001.png", "row-00000002.png"]
    assert backend.read("row-00000001.txt") == b"a square number 1"
    assert sent_tokens(hub) == {f"Bearer {OWNER_TOKEN}"}


def test_a_job_whose_owner_stored_no_token_reads_anonymously(hub: DatasetHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(JOB_ID_ENV, "7")
    with pytest.raises(DataBackendError, match="no dataset 'owner/secret' .*needs your Hub login or HF_TOKEN"):
        secret().check()
    with pytest.raises(DataBackendError, match="no dataset 'owner/secret'"):
        secret().list()
    assert sent_tokens(hub) == {None}  # not the machine's own login


def test_a_token_checked_against_another_hub_is_not_sent(hub: DatasetHub, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(JOB_ID_ENV, "7")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(job_token_file(tmp_path, OWNER_TOKEN, "https://hub.elsewhere.example")))
    with pytest.raises(DataBackendError, match="no dataset 'owner/secret'"):
        secret().check()
    assert sent_tokens(hub) == {None}


def test_the_server_reads_with_the_requesting_user_s_token_only(hub: DatasetHub) -> None:
    with user_token_scope(OWNER_TOKEN, hub.base_url):
        owner = secret()
    with user_token_scope(None, None):
        other = secret()
    # the token is fixed when the backend is made: reads made later, outside the scope, keep it
    assert owner.list(extensions={"png"}) == ["row-00000000.png", "row-00000001.png", "row-00000002.png"]
    assert sent_tokens(hub) == {f"Bearer {OWNER_TOKEN}"}
    hub.auth.clear()
    with pytest.raises(DataBackendError, match="no dataset 'owner/secret'"):
        other.check()
    assert sent_tokens(hub) == {None}


def test_hf_token_set_by_the_operator_is_used_for_everyone(hub: DatasetHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    monkeypatch.setenv(JOB_ID_ENV, "7")
    with user_token_scope(None, None):
        backend = secret()
    backend.check()
    assert sent_tokens(hub) == {f"Bearer {OWNER_TOKEN}"}


def test_downloads_redirected_to_another_host_carry_no_token(hub: DatasetHub, tmp_path: Path) -> None:
    with dataset_hub() as cdn:
        for repo, commits in hub.commits.items():  # the CDN holds the same files, reached by signed URL
            cdn.commits[repo] = dict(commits)
            cdn.branches[repo] = dict(hub.branches[repo])
        hub.redirect_files_to = cdn.base_url
        with user_token_scope(OWNER_TOKEN, hub.base_url):
            backend = secret()
        assert backend.read("row-00000000.txt") == b"a square number 0"
        assert any("/resolve/" in path for path, _ in cdn.auth)  # the files did come from the CDN
        assert sent_tokens(cdn) == {None}
        assert sent_tokens(hub) == {f"Bearer {OWNER_TOKEN}"}


def test_the_cli_uses_the_machine_user_s_own_hub_login(hub: DatasetHub) -> None:
    hub.private["owner/secret"] = MACHINE_TOKEN  # the machine's user may read it
    secret().check()
    assert sent_tokens(hub) == {f"Bearer {MACHINE_TOKEN}"}
