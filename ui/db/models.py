"""The server's peewee models (the current schema).

Models are bound to a database at start-up with :func:`bind_models`; nothing here opens a connection. The schema is
created and changed only by the ordered migrations in :mod:`simpletuner.ui.db.migrations`: when you change a model
here, add a migration that makes the same change (a test compares the migrated tables with these models).

Times are seconds since the epoch (floats), which compare the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import peewee

from simpletuner.ui.db.fields import JSONTextField


class BaseModel(peewee.Model):
    """Base of every model; the database is bound at start-up."""

    class Meta:
        legacy_table_names = False


class User(BaseModel):
    """A person who can log in, locally (password hash) or through an external provider."""

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


class Level(BaseModel):
    """A permission level: built-in (viewer < researcher < lead < admin) or custom with its own permissions."""

    name = peewee.CharField(max_length=64, unique=True)
    description = peewee.CharField(max_length=200, default="")
    builtin = peewee.BooleanField(default=False)
    rank = peewee.IntegerField(default=0)
    permissions = JSONTextField(default=list)  # custom levels only; built-ins take theirs from code

    class Meta:
        table_name = "levels"


class UserLevel(BaseModel):
    """A level assigned to a user."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="level_links")
    level = peewee.ForeignKeyField(Level, on_delete="CASCADE", backref="user_links")

    class Meta:
        table_name = "user_levels"
        indexes = ((("user", "level"), True),)


class Session(BaseModel):
    """A browser session; the cookie holds a random token, the row only its SHA-256."""

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


class ApiKey(BaseModel):
    """An API key; only its SHA-256 is stored, with the first characters for recognising it in lists."""

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


class AuthProviderConfig(BaseModel):
    """A configured login provider: an instance of a registered auth-provider plugin with its options."""

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


class PendingLogin(BaseModel):
    """A redirect-style login in progress: the state kept between the redirect out and the callback."""

    token_hash = peewee.CharField(max_length=64, primary_key=True)
    provider = peewee.CharField(max_length=64)
    state = JSONTextField()
    remember = peewee.BooleanField(default=False)
    next_url = peewee.CharField(max_length=500, default="/")
    expires_at = peewee.DoubleField(index=True)

    class Meta:
        table_name = "pending_logins"


class OpenStream(BaseModel):
    """An event stream a server worker holds open (see :mod:`simpletuner.ui.streams.limits`): counted against its
    owner's and its API key's stream limits while its worker keeps ``seen_at`` fresh."""

    worker = peewee.CharField(max_length=64, index=True)
    user_id = peewee.IntegerField(index=True)
    api_key_id = peewee.IntegerField(null=True, index=True)
    opened_at = peewee.DoubleField()
    seen_at = peewee.DoubleField()

    class Meta:
        table_name = "open_streams"


class LoginThrottle(BaseModel):
    """A bucket of failed logins (see :mod:`simpletuner.ui.auth.throttle`): an account from one address
    (``pair:``), an address (``addr:``) or a known device (``device:``)."""

    key = peewee.CharField(max_length=300, primary_key=True)
    failures = peewee.IntegerField(default=0)
    last_failure_at = peewee.DoubleField()
    blocked_until = peewee.DoubleField()  # attempts before this time get 429

    class Meta:
        table_name = "login_throttle"


class Setting(BaseModel):
    """A server-wide setting (registration policy, setup token hash, ...)."""

    key = peewee.CharField(max_length=100, primary_key=True)
    value = JSONTextField()

    class Meta:
        table_name = "settings"


class AuditEvent(BaseModel):
    """A security event: logins, failures, key creation, user, level and provider changes."""

    at = peewee.DoubleField(index=True)
    event = peewee.CharField(max_length=64)
    actor = peewee.CharField(max_length=64, null=True)  # a username, kept as text so history outlives the user
    target = peewee.CharField(max_length=200, null=True)
    ip = peewee.CharField(max_length=64, null=True)
    success = peewee.BooleanField(default=True)
    detail = JSONTextField(null=True)

    class Meta:
        table_name = "audit_events"


ALL_MODELS: tuple[type[BaseModel], ...] = (
    User,
    Level,
    UserLevel,
    Session,
    ApiKey,
    AuthProviderConfig,
    PendingLogin,
    LoginThrottle,
    OpenStream,
    Setting,
    AuditEvent,
)


def bind_models(database: peewee.Database, models: tuple[type[peewee.Model], ...] = ALL_MODELS) -> None:
    """Bind the models to ``database`` (done once per process at start-up)."""
    database.bind(list(models), bind_refs=False, bind_backrefs=False)
