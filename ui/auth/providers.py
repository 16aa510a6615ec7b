"""Configured login providers: options checked against the plugin's attrs class, secrets kept write-only,
instances built lazily and cached, and external users provisioned and kept in sync on every login."""

from __future__ import annotations

import json
import threading
import typing
from collections.abc import Mapping
from typing import Any

from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value
from simpletuner.core.interfaces import AuthProvider, ExternalIdentity
from simpletuner.core.options import describe_options
from simpletuner.core.plugins import Registry
from simpletuner.core.plugins.registry import suggest
from simpletuner.core.specs import AuthProviderSpec
from simpletuner.ui.auth.local_accounts import LocalAccounts
from simpletuner.ui.auth.permissions import ADMIN_LEVEL
from simpletuner.ui.auth.users import AccountError, find_user, levels_by_name, set_user_levels, user_level_names
from simpletuner.ui.db.models import AuthProviderConfig, Level, User

MAX_GROUP_LENGTH = 500


def option_fields(spec: AuthProviderSpec) -> list[dict[str, Any]]:
    """The spec's options as the UI renders them (type, default, help, choices, secret, ...)."""
    if spec.options is None:
        return []
    return [info.to_json() | {"default": None if info.secret else info.default, "required": info.default is None
                              and not info.nullable} for info in describe_options(spec.options, owner=spec.name)]


def provider_types(registry: Registry) -> list[dict[str, Any]]:
    """Every registered auth-provider plugin with its option fields."""
    return [{"name": spec.name, "title": spec.title, "description": spec.description, "style": spec.style,
             "options": option_fields(spec)} for spec in registry.auth_providers().values()]


def check_options(spec: AuthProviderSpec, raw: Mapping[str, Any], old_secrets: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate option values for ``spec``; returns (public options, secrets) to store.

    A secret left empty keeps its stored value, so the UI can save a form without ever having seen the secret.
    Raises AccountError (400) listing every problem.
    """
    if spec.options is None:
        if raw:
            raise AccountError(f"provider type {spec.name!r} takes no options", status=400)
        return {}, {}
    infos = {info.key: info for info in describe_options(spec.options, owner=spec.name)}
    problems = [f"options.{key}: unknown option{suggest(key, infos)}" for key in raw if key not in infos]
    converter = make_converter()
    hints = typing.get_type_hints(spec.options)
    public: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for key, info in infos.items():
        value = raw.get(key)
        if info.secret and (value is None or value == ""):
            if key in old_secrets:
                secrets[key] = old_secrets[key]
            continue
        if key not in raw:
            continue
        try:
            value = structure_value(converter, value, hints[key])
        except ValueTypeError as exc:
            problems.append(f"options.{key}: {exc}")
            continue
        if info.choices is not None and value is not None and value not in info.choices:
            problems.append(f"options.{key}: must be one of {', '.join(map(str, info.choices))}")
        elif isinstance(value, int | float) and not isinstance(value, bool) and (
            (info.minimum is not None and value < info.minimum) or (info.maximum is not None and value > info.maximum)
        ):
            problems.append(f"options.{key}: must be between {info.minimum} and {info.maximum}")
        else:
            (secrets if info.secret else public)[key] = value
    if not problems:
        try:
            spec.options(**public, **secrets)
        except (TypeError, ValueError) as exc:  # missing required options, the class's own validators
            problems.append(f"options: {exc}")
    if problems:
        raise AccountError("; ".join(problems), status=400)
    return public, secrets


def check_group_levels(raw: object) -> dict[str, str]:
    """A ``{group: level}`` mapping whose levels exist."""
    if not isinstance(raw, dict):
        raise AccountError("group_levels must be an object mapping group names to level names", status=400)
    for group, level in raw.items():
        if not group or len(group) > MAX_GROUP_LENGTH or not group.isprintable() or not isinstance(level, str):
            raise AccountError(f"group_levels: {group!r} must be a printable group name mapped to a level name",
                               status=400)
    levels_by_name(raw.values())
    return dict(raw)


def config_to_json(config: AuthProviderConfig, registry: Registry) -> dict[str, Any]:
    """A provider configuration as JSON; secrets appear only as the names of those that are set."""
    spec = registry.auth_providers().get(config.type)
    return {"id": config.id, "name": config.name, "type": config.type, "title": config.title,
            "enabled": config.enabled, "style": spec.style if spec else None, "installed": spec is not None,
            "options": config.options, "secrets_set": sorted(config.secrets), "group_levels": config.group_levels,
            "default_level": config.default_level, "position": config.position}


class ProviderInstances:
    """Built provider instances, cached per configuration version (so OIDC discovery is not refetched per login)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._cache: dict[tuple[int, str], AuthProvider] = {}
        self._lock = threading.Lock()

    def spec(self, config: AuthProviderConfig) -> AuthProviderSpec:
        """The plugin spec behind a configuration; AccountError when the plugin is not installed."""
        spec = self._registry.auth_providers().get(config.type)
        if spec is None:
            raise AccountError(f"login provider {config.name!r} needs the {config.type!r} plugin, which is not "
                               "installed or failed to load (see the Plugins page)", status=503)
        return spec

    def get(self, config: AuthProviderConfig) -> AuthProvider:
        """The provider instance for a configuration."""
        # Keyed by the configuration's content, so a save in another worker (or within one clock tick) is seen.
        key = (config.id, json.dumps([config.type, config.options, config.secrets], sort_keys=True, default=str))
        with self._lock:
            if key not in self._cache:
                spec = self.spec(config)
                options = spec.options(**config.options, **config.secrets) if spec.options else None
                instance = spec.build(options, LocalAccounts())
                for old in [k for k in self._cache if k[0] == config.id]:
                    del self._cache[old]
                self._cache[key] = instance
            return self._cache[key]


def mapped_levels(config: AuthProviderConfig, identity: ExternalIdentity) -> list[str]:
    """Levels an external identity gets from its groups (or the provider's default level)."""
    levels = [config.group_levels[g] for g in identity.groups if g in config.group_levels]
    if not levels and config.default_level:
        levels = [config.default_level]
    return list(dict.fromkeys(levels))


def provision_external_user(config: AuthProviderConfig, identity: ExternalIdentity, now: float) -> User:
    """The local account of an external identity: created on first login, its email, name and levels synced on
    every later one. AccountError (403) when the identity maps to no level or the account is deactivated."""
    levels = mapped_levels(config, identity)
    user = User.get_or_none((User.auth_source == config.name) & (User.external_id == identity.username))
    if not levels:
        raise AccountError(f"{identity.username} has no level on this server: none of their groups is mapped",
                           status=403)
    if user is None:
        if find_user(identity.username) is not None:
            raise AccountError(f"an account named {identity.username!r} already exists here; an admin must rename "
                               "or delete it before this person can log in through the provider", status=403)
        existing = {lvl.name for lvl in Level.select().where(Level.name.in_(levels))}
        if len(existing) != len(levels):
            raise AccountError("the provider's group mapping names a level that no longer exists", status=403)
        user = User.create(username=identity.username, username_key=identity.username.lower(), email=identity.email,
                           display_name=identity.display_name, auth_source=config.name,
                           external_id=identity.username, active=True, created_at=now, updated_at=now)
        set_user_levels(user, levels)
        return user
    if not user.active:
        raise AccountError("this account is deactivated", status=403)
    user.email, user.display_name, user.updated_at = identity.email, identity.display_name, now
    user.save()
    current = user_level_names(user.id)
    if ADMIN_LEVEL in current and ADMIN_LEVEL not in levels:
        try:
            set_user_levels(user, levels)
        except AccountError:  # the directory dropped the last admin: keep them admin rather than lock everyone out
            set_user_levels(user, [*levels, ADMIN_LEVEL])
    elif sorted(current) != sorted(levels):
        set_user_levels(user, levels)
    return user
