"""Migration 1: the initial schema (users, levels, sessions, API keys, auth providers, audit) and its seed rows.

The models below are a frozen copy of the schema as it was at version 1. Later migrations change tables with their
own statements; this file never changes, so databases created by any release upgrade the same way.
"""

from __future__ import annotations

import time

import peewee

from simpletuner.ui.db.fields import JSONTextField

VERSION = 1
NAME = "initial schema"

BUILTIN_LEVELS = (
    ("viewer", 10, "Sees jobs, configurations and results."),
    ("researcher", 20, "Starts and stops their own jobs, edits configurations and uploads datasets."),
    ("lead", 30, "A researcher who may also stop anyone's jobs."),
    ("admin", 40, "Everything, including users, levels, login providers and settings."),
)


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class _Base(peewee.Model):
        class Meta:
            legacy_table_names = False

    class User(_Base):
        username = peewee.CharField(max_length=64)
        username_key = peewee.CharField(max_length=64, unique=True)  # lowercase: usernames are case-insensitive
        email = peewee.CharField(max_length=254, null=True)
        display_name = peewee.CharField(max_length=200, null=True)
        password_hash = peewee.CharField(max_length=100, null=True)
        auth_source = peewee.CharField(max_length=64, default="local")  # name of the provider config
        external_id = peewee.CharField(max_length=254, null=True)
        active = peewee.BooleanField(default=True)
        created_at = peewee.DoubleField()
        updated_at = peewee.DoubleField()
        last_login_at = peewee.DoubleField(null=True)

        class Meta:
            table_name = "users"

    class Level(_Base):
        name = peewee.CharField(max_length=64, unique=True)
        description = peewee.CharField(max_length=200, default="")
        builtin = peewee.BooleanField(default=False)
        rank = peewee.IntegerField(default=0)
        permissions = JSONTextField(default=list)  # custom levels only; built-ins take theirs from code

        class Meta:
            table_name = "levels"

    class UserLevel(_Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="level_links")
        level = peewee.ForeignKeyField(Level, on_delete="CASCADE", backref="user_links")

        class Meta:
            table_name = "user_levels"
            indexes = ((("user", "level"), True),)

    class Session(_Base):
        token_hash = peewee.CharField(max_length=64, primary_key=True)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="sessions")
        csrf_token = peewee.CharField(max_length=64)
        created_at = peewee.DoubleField()
        expires_at = peewee.DoubleField(index=True)
        last_seen_at = peewee.DoubleField()
        remember = peewee.BooleanField(default=False)
        ip = peewee.CharField(max_length=64, null=True)
        user_agent = peewee.CharField(max_length=200, null=True)

        class Meta:
            table_name = "sessions"

    class ApiKey(_Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="api_keys")
        name = peewee.CharField(max_length=100)
        key_hash = peewee.CharField(max_length=64, unique=True)
        prefix = peewee.CharField(max_length=16)
        scopes = JSONTextField(null=True)  # None: everything the owner may do; else a list of permissions
        created_at = peewee.DoubleField()
        created_by = peewee.CharField(max_length=64, null=True)
        expires_at = peewee.DoubleField(null=True)
        last_used_at = peewee.DoubleField(null=True)
        revoked_at = peewee.DoubleField(null=True)

        class Meta:
            table_name = "api_keys"

    class AuthProviderConfig(_Base):
        name = peewee.CharField(max_length=64, unique=True)
        type = peewee.CharField(max_length=64)
        title = peewee.CharField(max_length=100)
        enabled = peewee.BooleanField(default=True)
        options = JSONTextField(default=dict)
        secrets = JSONTextField(default=dict)  # values of options marked secret; never sent back to clients
        group_levels = JSONTextField(default=dict)  # external group -> level name
        default_level = peewee.CharField(max_length=64, null=True)
        position = peewee.IntegerField(default=0)
        created_at = peewee.DoubleField()
        updated_at = peewee.DoubleField()

        class Meta:
            table_name = "auth_providers"

    class PendingLogin(_Base):
        token_hash = peewee.CharField(max_length=64, primary_key=True)
        provider = peewee.CharField(max_length=64)
        state = JSONTextField()
        remember = peewee.BooleanField(default=False)
        next_url = peewee.CharField(max_length=500, default="/")
        expires_at = peewee.DoubleField(index=True)

        class Meta:
            table_name = "pending_logins"

    class LoginFailure(_Base):
        key = peewee.CharField(max_length=300, primary_key=True)
        count = peewee.IntegerField(default=0)
        window_start = peewee.DoubleField()

        class Meta:
            table_name = "login_failures"

    class Setting(_Base):
        key = peewee.CharField(max_length=100, primary_key=True)
        value = JSONTextField()

        class Meta:
            table_name = "settings"

    class AuditEvent(_Base):
        at = peewee.DoubleField(index=True)
        event = peewee.CharField(max_length=64)
        actor = peewee.CharField(max_length=64, null=True)  # a username, kept as text so history outlives the user
        target = peewee.CharField(max_length=200, null=True)
        ip = peewee.CharField(max_length=64, null=True)
        success = peewee.BooleanField(default=True)
        detail = JSONTextField(null=True)

        class Meta:
            table_name = "audit_events"

    models = [
        User,
        Level,
        UserLevel,
        Session,
        ApiKey,
        AuthProviderConfig,
        PendingLogin,
        LoginFailure,
        Setting,
        AuditEvent,
    ]
    database.bind(models, bind_refs=False, bind_backrefs=False)
    return models


def apply(database: peewee.Database) -> None:
    """Create the version-1 tables and seed the built-in levels, the local provider and the registration policy."""
    models = _models(database)
    database.create_tables(models)
    by_name = {m.__name__: m for m in models}
    now = time.time()
    for name, rank, description in BUILTIN_LEVELS:
        by_name["Level"].create(name=name, rank=rank, description=description, builtin=True, permissions=[])
    by_name["AuthProviderConfig"].create(
        name="local",
        type="local",
        title="Username and password",
        enabled=True,
        options={},
        secrets={},
        group_levels={},
        default_level=None,
        position=0,
        created_at=now,
        updated_at=now,
    )
    by_name["Setting"].create(key="registration", value={"enabled": False, "default_level": "viewer"})
