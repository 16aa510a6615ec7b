"""Setup, login, logout, the current user, password change and self-registration."""

from __future__ import annotations

import falcon
import peewee

from simpletuner.ui.auth.credentials import PASSWORD_POLICY, hash_password, password_problem, verify_password
from simpletuner.ui.auth.devices import known_device, remember_device
from simpletuner.ui.auth.permissions import ADMIN_LEVEL, AUTHENTICATED, PUBLIC
from simpletuner.ui.auth.sessions import (
    SESSION_COOKIE,
    clear_cookie,
    end_session,
    end_user_sessions,
    set_session_cookie,
    start_session,
)
from simpletuner.ui.auth.throttle import admit, buckets_for, record_failure, record_success, release, wait_for
from simpletuner.ui.auth.users import AccountError, create_user, find_user, user_to_json
from simpletuner.ui.db.models import AuthProviderConfig, Setting, User
from simpletuner.ui.http import EMAIL_RE, EMAIL_RULE, USERNAME_RE, USERNAME_RULE, bad_request, boolean, field, only_keys
from simpletuner.ui.http import read_json as _read_json
from simpletuner.ui.middleware import is_loopback
from simpletuner.ui.resources.base import Resource, http_error, send_json
from simpletuner.ui.setup import SETUP_DONE_KEY, SETUP_TOKEN_KEY, setup_token_matches

MAX_LOGIN_NAME = 254
MAX_PASSWORD_CHARS = 1024


class _Json(Resource):
    def body(self, req: falcon.Request) -> dict:
        return _read_json(req, self.ctx.settings.max_body_bytes)


class SetupStatus(_Json):
    """``GET /api/auth/setup/status``: whether the first admin is still to be created."""

    permissions = {"GET": PUBLIC}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        needed = not self.ctx.has_users()
        send_json(resp, {"needs_setup": needed, "token_required": needed and not is_loopback(req.context.client_ip),
                         "password_policy": PASSWORD_POLICY})


class FirstAdmin(_Json):
    """``POST /api/auth/setup/first-admin``: ``{email, username, password[, setup_token]}``; 409 once any user exists.

    Two concurrent requests cannot both succeed: the user and a ``setup_done`` marker row are inserted in one
    transaction, and the marker's primary key admits only one.
    """

    permissions = {"POST": PUBLIC}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.body(req)
        only_keys(data, {"email", "username", "password", "setup_token"})
        if self.ctx.has_users():
            raise falcon.HTTPConflict(title="Already set up", description="an admin exists; log in instead")
        token = data.get("setup_token") or req.get_param("token")
        if not is_loopback(req.context.client_ip) and not setup_token_matches(token if isinstance(token, str)
                                                                              else None):
            self.audit(req, "setup_refused", success=False, detail={"reason": "setup token missing or wrong"})
            raise falcon.HTTPForbidden(title="Setup token required",
                                       description="from another machine, give the setup token printed in the "
                                                   "server's console and log at start")
        username = field(data, "username", USERNAME_RE, what=USERNAME_RULE)
        email = field(data, "email", EMAIL_RE, what=EMAIL_RULE)
        password = data.get("password")
        assert username is not None
        problem = password_problem(password, username, email)
        if problem:
            raise bad_request(f"{problem} (policy: {PASSWORD_POLICY})")
        try:
            with self.ctx.database.atomic():
                if User.select().exists():
                    raise falcon.HTTPConflict(title="Already set up", description="an admin exists; log in instead")
                Setting.create(key=SETUP_DONE_KEY, value={"by": username})
                user = create_user(username=username, email=email, password=password, levels=[ADMIN_LEVEL],
                                   now=self.ctx.now(), rounds=self.ctx.settings.bcrypt_rounds)
                Setting.delete().where(Setting.key == SETUP_TOKEN_KEY).execute()
        except (peewee.IntegrityError, AccountError):
            raise falcon.HTTPConflict(title="Already set up", description="an admin exists; log in instead") from None
        self.audit(req, "first_admin_created", actor=username, target=username)
        send_json(resp, {"user": user_to_json(user)}, 201)


class Login(_Json):
    """``POST /api/auth/login``: ``{username, password[, provider][, remember]}`` → a session cookie.

    Unknown users and wrong passwords get the same 401 (and cost the same bcrypt check). Failures slow further
    attempts on the account from that address, and from the address, with growing waits (429 with Retry-After); a
    browser that logged in to the account before is slowed by its own failures only (see
    :mod:`simpletuner.ui.auth.throttle`).
    """

    permissions = {"POST": PUBLIC}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.body(req)
        only_keys(data, {"username", "password", "provider", "remember"})
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not username or len(username) > MAX_LOGIN_NAME \
                or not username.isprintable():
            raise bad_request("username is required (printable text, at most 254 characters)")
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_CHARS:
            raise bad_request("password is required")
        remember = boolean(data, "remember")
        provider_name = data.get("provider", "local")
        config = AuthProviderConfig.get_or_none(AuthProviderConfig.name == provider_name) \
            if isinstance(provider_name, str) else None
        if config is None or not config.enabled:
            raise bad_request(f"unknown login provider {provider_name!r}")
        now, settings = self.ctx.now(), self.ctx.settings
        device = known_device(req.cookies, username, now, settings)
        buckets = buckets_for(username, req.context.client_ip, device, settings)
        wait = admit(buckets, now, settings, self.ctx.database)
        if wait is not None:
            self.audit(req, "login_throttled", actor=username, success=False, detail={"wait_s": wait})
            raise falcon.HTTPTooManyRequests(description=f"too many failed logins; try again in {wait} s",
                                             retry_after=wait)
        try:
            identity = self._authenticate(req, config, username, password)
            user = complete_login(self, req, resp, config, identity, remember) if identity is not None else None
        except falcon.HTTPError:
            release(buckets, settings)  # the provider or the account refused otherwise: not a wrong password
            raise
        if user is None:
            record_failure(buckets, now, settings, self.ctx.database)
            self.audit(req, "login_failed", actor=username, success=False, detail={"provider": config.name})
            raise falcon.HTTPUnauthorized(title="Login failed", description="wrong username or password")
        record_success(buckets, settings)
        remember_device(resp, username, device, now, settings)
        send_json(resp, {"user": user_to_json(user), "csrf_token": req.context.new_csrf})

    def _authenticate(self, req: falcon.Request, config: AuthProviderConfig, username: str,
                      password: str):  # type: ignore[no-untyped-def]
        """The provider's identity for the credentials (None when they are wrong); HTTP errors otherwise."""
        try:
            spec = self.ctx.providers.spec(config)
            if spec.style != "password":
                raise bad_request(f"{config.title} logs in through its own page, not with a password")
            return self.ctx.providers.get(config).authenticate(username, password)
        except AccountError as exc:
            raise http_error(exc) from None
        except falcon.HTTPError:
            raise
        except Exception as exc:  # the directory is down or misconfigured: not the user's fault, not a failure
            self.audit(req, "login_error", actor=username, success=False, detail={"provider": config.name,
                                                                                 "error": str(exc)[:300]})
            raise falcon.HTTPBadGateway(description=f"the login provider {config.title!r} failed: {exc}") from None


def complete_login(resource: Resource, req: falcon.Request, resp: falcon.Response, config: AuthProviderConfig,
                   identity, remember: bool) -> User:  # type: ignore[no-untyped-def]
    """Find or provision the user behind ``identity``, start their session and set the cookie."""
    from simpletuner.ui.auth.providers import provision_external_user

    ctx, now = resource.ctx, resource.ctx.now()
    try:
        with ctx.database.atomic():
            if config.type == "local":
                user = find_user(identity.username)
                if user is None or not user.active:
                    raise AccountError("wrong username or password", status=401)
            else:
                user = provision_external_user(config, identity, now)
            user.last_login_at = now
            user.save()
            token, session = start_session(user, remember=remember, now=now, settings=ctx.settings,
                                           ip=req.context.client_ip, user_agent=req.user_agent)
    except AccountError as exc:
        resource.audit(req, "login_refused", actor=identity.username, success=False,
                       detail={"provider": config.name, "reason": str(exc)})
        raise http_error(exc) from None
    set_session_cookie(resp, token, remember=remember, settings=ctx.settings)
    req.context.new_csrf = session.csrf_token
    resource.audit(req, "login", actor=user.username, detail={"provider": config.name})
    return user


class Logout(_Json):
    """``POST /api/auth/logout``: end the session."""

    permissions = {"POST": AUTHENTICATED}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if principal.session_hash:
            end_session(principal.session_hash)
        clear_cookie(resp, SESSION_COOKIE, self.ctx.settings)
        self.audit(req, "logout")
        send_json(resp, {"logged_out": True})


class Me(_Json):
    """``GET /api/auth/me``: who is asking, with levels and permissions."""

    permissions = {"GET": AUTHENTICATED}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        user = User.get_by_id(principal.user_id)
        send_json(resp, {**principal.to_json(), "email": user.email, "display_name": user.display_name,
                         "auth_source": user.auth_source, "csrf_token": principal.csrf_token})


class ChangePassword(_Json):
    """``POST /api/auth/password``: ``{current_password, new_password}`` for local accounts; ends other sessions."""

    permissions = {"POST": AUTHENTICATED}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.body(req)
        only_keys(data, {"current_password", "new_password"})
        principal = self.principal(req)
        user = User.get_by_id(principal.user_id)
        if not user.password_hash:
            raise falcon.HTTPConflict(description=f"this account logs in through {user.auth_source}; change the "
                                                  "password there")
        current, new = data.get("current_password"), data.get("new_password")
        if not isinstance(current, str) or not verify_password(current, user.password_hash):
            self.audit(req, "password_change", success=False, target=user.username)
            raise falcon.HTTPForbidden(title="Wrong password", description="the current password is wrong")
        problem = password_problem(new, user.username, user.email)
        if problem:
            raise bad_request(f"{problem} (policy: {PASSWORD_POLICY})")
        user.password_hash = hash_password(new, self.ctx.settings.bcrypt_rounds)  # type: ignore[arg-type]
        user.updated_at = self.ctx.now()
        user.save()
        end_user_sessions(user.id, keep=principal.session_hash)
        self.audit(req, "password_change", target=user.username)
        send_json(resp, {"changed": True})


class Register(_Json):
    """``POST /api/auth/register``: self-registration ``{username, email, password}``, when an admin enabled it."""

    permissions = {"POST": PUBLIC}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = Setting.get_or_none(Setting.key == "registration")
        if policy is None or not policy.value.get("enabled"):
            raise falcon.HTTPForbidden(title="Registration closed", description="ask an admin for an account")
        data = self.body(req)
        only_keys(data, {"username", "email", "password"})
        username = field(data, "username", USERNAME_RE, what=USERNAME_RULE)
        email = field(data, "email", EMAIL_RE, what=EMAIL_RULE)
        assert username is not None
        # an address busy failing logins registers no accounts either
        wait = wait_for(buckets_for(username, req.context.client_ip, None, self.ctx.settings), self.ctx.now(),
                        self.ctx.settings)
        if wait is not None:
            raise falcon.HTTPTooManyRequests(description=f"try again in {wait} s", retry_after=wait)
        problem = password_problem(data.get("password"), username, email)
        if problem:
            raise bad_request(f"{problem} (policy: {PASSWORD_POLICY})")
        try:
            with self.ctx.database.atomic():
                user = create_user(username=username, email=email, password=data["password"],
                                   levels=[policy.value.get("default_level") or "viewer"], now=self.ctx.now(),
                                   rounds=self.ctx.settings.bcrypt_rounds)
        except AccountError as exc:
            raise http_error(exc) from None
        self.audit(req, "user_registered", actor=username, target=username)
        send_json(resp, {"user": user_to_json(user)}, 201)
