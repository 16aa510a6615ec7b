"""A private OpenLDAP ``slapd`` for tests: cn=config and a seeded directory loaded with ``slapadd``, then started in
the foreground on a loopback port (optionally with a TLS certificate for StartTLS and LDAPS)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

#: uid → (password, display name, email). "paren(thesis)" proves names with filter metacharacters work when escaped.
USERS: dict[str, tuple[str, str, str]] = {
    "ada": ("ada-password", "Ada Lovelace", "ada@example.org"),
    "bob": ("bob-password", "Bob Builder", "bob@example.org"),
    "carol": ("carol-password", "Carol Shaw", "carol@example.org"),
    "paren(thesis)": ("paren-password", "Paren Thesis", "paren@example.org"),
}
#: group cn → member uids. carol belongs to no group.
GROUP_MEMBERS: dict[str, tuple[str, ...]] = {
    "ml-team": ("ada", "bob", "paren(thesis)"),
    "admins": ("ada",),
}


def missing_binaries() -> str | None:
    """Why slapd cannot run here, or None when it can."""
    if not SLAPD.exists() or not Path(SLAPADD).exists():
        return "OpenLDAP is not installed (Debian packages slapd and ldap-utils; .ci/run installs them)"
    return None


def user_dn(uid: str) -> str:
    """The DN of a seeded user, escaping the RDN value as RFC 4514 asks."""
    from ldap3.utils.dn import escape_rdn

    return f"uid={escape_rdn(uid)},{PEOPLE}"


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config_ldif(root: Path, tls: tuple[Path, Path] | None) -> str:
    tls_lines = f"olcTLSCertificateFile: {tls[0]}\nolcTLSCertificateKeyFile: {tls[1]}\n" if tls else ""
    schemas = "\n".join(f"include: file://{SCHEMA_DIR / name}.ldif" for name in ("core", "cosine", "inetorgperson"))
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {_ssha(ROOT_PASSWORD)}
olcDbDirectory: {root}/data
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by self read by anonymous auth by * none
olcAccess: {{1}}to dn.subtree="{PEOPLE}" by * read
olcAccess: {{2}}to * by users read by * none
"""


def _data_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n"
        f"userPassword: {_ssha(READER_PASSWORD)}",
    ]
    for uid, (password, name, mail) in USERS.items():
        entries.append(
            f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name.split()[-1]}\n"
            f"mail: {mail}\nuserPassword: {_ssha(password)}"
        )
    for cn, members in GROUP_MEMBERS.items():
        lines = "\n".join(f"member: {user_dn(uid)}" for uid in members)
        entries.append(f"dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
    return "\n\n".join(entries) + "\n"


@attrs.frozen
class Slapd:
    """A running server: ``url`` is plain LDAP (StartTLS-capable when ``ldaps_url`` is set)."""

    url: str
    ldaps_url: str | None
    port: int


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"slapd did not listen on port {port} within 15 s")


@contextmanager
def run_slapd(root: Path, tls: tuple[Path, Path] | None = None) -> Iterator[Slapd]:
    """Build a directory under ``root`` and run slapd on it until the block ends.

    ``tls`` is (certificate file, key file): with it the server offers StartTLS and also listens for LDAPS.
    """
    config_dir, data_dir = root / "slapd.d", root / "data"
    config_dir.mkdir(parents=True)
    data_dir.mkdir()
    (root / "config.ldif").write_text(_config_ldif(root, tls))
    (root / "data.ldif").write_text(_data_ldif())
    for db, ldif in (("0", "config.ldif"), ("1", "data.ldif")):
        done = subprocess.run([SLAPADD, "-n", db, "-F", str(config_dir), "-l", str(root / ldif)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"slapadd -n{db} failed: {done.stderr}")
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    listen = [url]
    ldaps_url = None
    if tls:
        ldaps_url = f"ldaps://127.0.0.1:{_free_port()}"
        listen.append(ldaps_url)
    log = root / "slapd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen([str(SLAPD), "-F", str(config_dir), "-h", " ".join(listen), "-d", "0"],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(process, port, log)
        if ldaps_url:
            _wait_until_listening(process, int(ldaps_url.rsplit(":", 1)[1]), log)
        yield Slapd(url=url, ldaps_url=ldaps_url, port=port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
