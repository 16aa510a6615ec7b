"""Training environments: folders ``configs/<env>/`` holding ``config.json``, ``multidatabackend*.json`` and
optionally ``lycoris_config.json`` — SimpleTuner's own layout, so an existing ``config/`` folder works as it is.

The ``default`` environment holds shared settings: ``configs/default/`` or, in SimpleTuner's layout, the
``config.json`` at the top of the configs folder. An environment with ``merge_environment_config: true`` takes every
key it does not set itself from ``default``.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from simpletuner.core.archives import DAMAGED_ARCHIVE, open_member
from simpletuner.core.atomic import atomic_copy_tree, atomic_remove_tree, atomic_write_json
from simpletuner.core.errors import ConfigError, EnvironmentExists, EnvironmentNotFound, WorkspaceError

CONFIG_FILE = "config.json"
DATASETS_GLOB = "multidatabackend*.json"
DEFAULT_DATASETS_FILE = "multidatabackend.json"
LYCORIS_FILE = "lycoris_config.json"
DEFAULT_ENVIRONMENT = "default"

# SimpleTuner's own examples name folders with '+' ("flux.peft-lora+TREAD"); every character allowed here is literal
# in a file name and in a URL path segment, so a name needs no quoting on disk, in a route or in a shell.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,99}$")
MAX_IMPORT_BYTES = 64 * 1024 * 1024
MAX_IMPORT_FILES = 1000


def environment_name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe environment (folder) name, or None when it is."""
    if not isinstance(name, str) or not name:
        return "environment name must not be empty"
    if "/" in name or "\\" in name:
        return f"environment name {name!r} must not contain path separators"
    if name.startswith(".") or ".." in name:
        return f"environment name {name!r} must not start with '.' or contain '..'"
    if not _NAME.match(name):
        return (f"environment name {name!r} may use letters, digits, '-', '_', '.' and '+' (up to 100 characters), "
                "starting with a letter or digit")
    return None


def validate_environment_name(name: str) -> str:
    """Return ``name`` if it is a safe folder name, else raise :class:`WorkspaceError` saying why."""
    problem = environment_name_problem(name)
    if problem is not None:
        raise WorkspaceError(problem)
    return name


def read_json(path: Path) -> Any:
    """Decode a JSON file, turning OS and syntax errors into a :class:`ConfigError` that names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source=str(path)) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"],
                          source=str(path)) from exc
    except RecursionError:
        raise ConfigError(["JSON nested too deeply to read"], source=str(path)) from None


@attrs.frozen
class Environment:
    """One environment folder."""

    name: str
    path: Path

    @property
    def config_path(self) -> Path:
        """Its ``config.json``."""
        return self.path / CONFIG_FILE

    def datasets_files(self) -> list[Path]:
        """Its ``multidatabackend*.json`` files, sorted."""
        return sorted(self.path.glob(DATASETS_GLOB))

    def lycoris_file(self) -> Path | None:
        """Its ``lycoris_config.json``, if present."""
        candidate = self.path / LYCORIS_FILE
        return candidate if candidate.is_file() else None

    def read_config(self) -> dict[str, Any]:
        """The raw content of ``config.json`` (must be a JSON object)."""
        data = read_json(self.config_path)
        if not isinstance(data, dict):
            raise ConfigError(["$: expected a JSON object of option names to values"], source=str(self.config_path))
        return data

    def write_config(self, data: dict[str, Any]) -> None:
        """Replace ``config.json`` atomically."""
        atomic_write_json(self.config_path, data)

    def problem(self) -> str | None:
        """Why its ``config.json`` cannot be read as a config (unreadable, not JSON, not an object), or None."""
        try:
            self.read_config()
        except ConfigError as exc:
            return "; ".join(exc.problems)
        return None

    def summary(self) -> dict[str, Any]:
        """Name, folder, files and :meth:`problem` (as ``error``), JSON-ready."""
        lycoris = self.lycoris_file()
        return {
            "name": self.name,
            "path": str(self.path),
            "datasets_files": [p.name for p in self.datasets_files()],
            "lycoris_config": lycoris.name if lycoris else None,
            "error": self.problem(),
        }


@attrs.frozen
class UnloadableFolder:
    """A folder of the configs folder that holds a ``config.json`` but cannot be used as an environment."""

    name: str
    path: Path
    error: str

    def summary(self) -> dict[str, Any]:
        """The same keys as :meth:`Environment.summary`, with ``error`` saying why and what to do."""
        return {"name": self.name, "path": str(self.path), "datasets_files": [], "lycoris_config": None,
                "error": self.error}


class EnvironmentStore:
    """The environments of one configs folder: discovery and the create/copy/rename/export/import/delete
    operations, each atomic."""

    def __init__(self, configs_dir: Path) -> None:
        self.configs_dir = Path(configs_dir)

    # -- discovery ---------------------------------------------------------------------------------------------

    def _default_path(self) -> Path | None:
        folder = self.configs_dir / DEFAULT_ENVIRONMENT
        if (folder / CONFIG_FILE).is_file():
            return folder
        if (self.configs_dir / CONFIG_FILE).is_file():
            return self.configs_dir
        return None

    def list(self) -> list[Environment]:
        """Every environment, ``default`` first, then by name."""
        found: list[Environment] = []
        default_path = self._default_path()
        if default_path is not None:
            found.append(Environment(DEFAULT_ENVIRONMENT, default_path))
        for child in self._candidates():
            if child.name != DEFAULT_ENVIRONMENT and (child / CONFIG_FILE).is_file() and _NAME.match(child.name):
                found.append(Environment(child.name, child))
        return found

    def _candidates(self) -> builtins.list[Path]:
        # folders starting with '.' are the staging folders of create, copy and import, never environments
        if not self.configs_dir.is_dir():
            return []
        return [child for child in sorted(self.configs_dir.iterdir())
                if child.is_dir() and not child.name.startswith(".")]

    def unloadable(self) -> builtins.list[UnloadableFolder]:
        """Folders that look like environments but that :meth:`list` cannot offer, each with the reason: a name
        that is not a valid environment name, a ``config.json`` that is not a file, or an environment nested one
        level down (SimpleTuner's ``config/examples/<name>/`` layout)."""
        found: list[UnloadableFolder] = []
        for child in self._candidates():
            config = child / CONFIG_FILE
            if config.exists() and not config.is_file():
                found.append(UnloadableFolder(child.name, child, f"{CONFIG_FILE} is not a file"))
            elif config.is_file() and not _NAME.match(child.name):
                found.append(UnloadableFolder(child.name, child, _rename_advice(child.name)))
            elif not config.exists():
                found += [UnloadableFolder(f"{child.name}/{nested.name}", nested, _nested_advice(child, nested))
                          for nested in sorted(child.iterdir())
                          if nested.is_dir() and (nested / CONFIG_FILE).is_file()]
        return found

    def exists(self, name: str) -> bool:
        """Whether an environment called ``name`` exists."""
        return any(env.name == name for env in self.list())

    def get(self, name: str) -> Environment:
        """The environment called ``name``; the error lists the existing ones."""
        validate_environment_name(name)
        for env in self.list():
            if env.name == name:
                return env
        names = ", ".join(e.name for e in self.list()) or "none yet"
        raise EnvironmentNotFound(
            f"no environment {name!r} in {self.configs_dir} (existing: {names}); create it with "
            f"'simpletuner env create {name}'"
        )

    def _new_path(self, name: str) -> Path:
        validate_environment_name(name)
        if self.exists(name):
            raise EnvironmentExists(f"environment {name!r} already exists; choose another name or delete it first")
        path = self.configs_dir / name
        if path.exists():
            raise EnvironmentExists(f"{path} already exists and is not an environment; move it away first")
        self.configs_dir.mkdir(parents=True, exist_ok=True)
        return path

    # -- operations --------------------------------------------------------------------------------------------

    def create(self, name: str, config: dict[str, Any] | None = None,
               datasets: builtins.list[dict[str, Any]] | None = None) -> Environment:
        """Create an environment with the given config (blank: ``{}``) and optional datasets file."""
        path = self._new_path(name)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.configs_dir))
        try:
            atomic_write_json(staging / CONFIG_FILE, config or {})
            if datasets is not None:
                atomic_write_json(staging / DEFAULT_DATASETS_FILE, datasets)
            staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Environment(name, path)

    def copy(self, source: str, target: str) -> Environment:
        """Duplicate an environment's folder under a new name."""
        env = self.get(source)
        if env.path == self.configs_dir:
            raise WorkspaceError("the top-level default environment cannot be copied; create a new one instead")
        path = self._new_path(target)
        atomic_copy_tree(env.path, path)
        return Environment(target, path)

    def rename(self, source: str, target: str) -> Environment:
        """Rename an environment's folder."""
        env = self.get(source)
        if env.name == DEFAULT_ENVIRONMENT:
            raise WorkspaceError("the default environment cannot be renamed; copy it instead")
        path = self._new_path(target)
        env.path.rename(path)
        return Environment(target, path)

    def delete(self, name: str) -> None:
        """Delete an environment's folder."""
        env = self.get(name)
        if env.path == self.configs_dir:
            (self.configs_dir / CONFIG_FILE).unlink()
            return
        atomic_remove_tree(env.path)

    def export(self, name: str, target: Path,
               redact: Callable[[str, Any], Any] | None = None) -> Path:
        """Write a zip of the environment's files (a folder named after it at the top) to ``target``.

        ``redact(file_name, data)`` rewrites the decoded JSON of ``config.json`` and the datasets files on the way
        (e.g. to leave secrets out of an archive others download)."""
        env = self.get(name)
        files = [env.config_path, *env.datasets_files()]
        if env.lycoris_file():
            files.append(env.lycoris_file())  # type: ignore[arg-type]
        if env.path != self.configs_dir:
            files = [p for p in env.path.rglob("*") if p.is_file() and not p.is_symlink()]
        staging = target.with_name(f".{target.name}.tmp")
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(files):
                entry = f"{name}/{file.relative_to(env.path).as_posix()}"
                if redact is not None and (file.name == CONFIG_FILE or file.match(DATASETS_GLOB)):
                    archive.writestr(entry, json.dumps(redact(file.name, read_json(file)), indent=2))
                else:
                    archive.write(file, entry)
        staging.replace(target)
        return target

    def import_(self, archive_path: Path, name: str | None = None) -> Environment:
        """Create an environment from a zip made by :meth:`export` (or any zip holding a ``config.json``).

        Entries with absolute paths, ``..``, links or special files are refused, as are archives over
        ``MAX_IMPORT_BYTES`` uncompressed or ``MAX_IMPORT_FILES`` files.
        """
        try:
            archive = zipfile.ZipFile(archive_path)
        except DAMAGED_ARCHIVE as exc:
            raise WorkspaceError(f"{archive_path} is not a readable zip file: {exc}") from exc
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_members(members)
            root = _common_root(members)
            if name is None:
                name = root or PurePosixPath(archive_path.name).stem
            path = self._new_path(name)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.configs_dir))
            try:
                for member in members:
                    relative = PurePosixPath(member.filename)
                    if root:
                        relative = relative.relative_to(root)
                    destination = staging.joinpath(*relative.parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with open_member(archive, member, _damaged) as read, open(destination, "wb") as sink:
                        while chunk := read(1 << 20):
                            sink.write(chunk)
                if not (staging / CONFIG_FILE).is_file():
                    raise WorkspaceError(f"{archive_path} holds no {CONFIG_FILE} (at its top or in one folder)")
                read_json(staging / CONFIG_FILE)
                staging.rename(path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return Environment(name, path)


def _rename_advice(name: str) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9_.+\-]+", "-", name).strip("-.")[:100] or "my-environment"
    return f"{environment_name_problem(name)}; rename the folder (e.g. to {suggestion!r}) to use it"


def _nested_advice(parent: Path, nested: Path) -> str:
    return (f"environments nested in a folder are not discovered; move {nested} to "
            f"{parent.parent / (parent.name + '-' + nested.name)} (or another name) to use it")


def _damaged(message: str) -> WorkspaceError:
    return WorkspaceError(f"{message}; refusing the archive")


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_IMPORT_FILES:
        raise WorkspaceError(f"archive holds {len(members)} files; at most {MAX_IMPORT_FILES} are allowed")
    total = sum(m.file_size for m in members)
    if total > MAX_IMPORT_BYTES:
        raise WorkspaceError(f"archive expands to {total} bytes; at most {MAX_IMPORT_BYTES} are allowed")
    for member in members:
        name = member.filename
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\\" in name:
            raise WorkspaceError(f"archive entry {name!r} has an unsafe path; refusing the archive")
        mode = member.external_attr >> 16
        if mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
            raise WorkspaceError(f"archive entry {name!r} is a link or special file; refusing the archive")


def _common_root(members: list[zipfile.ZipInfo]) -> str | None:
    tops = {PurePosixPath(m.filename).parts[0] for m in members}
    if len(tops) == 1 and all(len(PurePosixPath(m.filename).parts) > 1 for m in members):
        return tops.pop()
    return None
