"""``simpletuner users`` and ``simpletuner apikeys``: provisioning on the server host, straight in the database."""

from __future__ import annotations

import argparse
import getpass
import sys

from simpletuner.core.cli.context import CliContext
from simpletuner.core.errors import SimpleTunerError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``users`` and ``apikeys`` command groups."""
    users = commands.add_parser("users", help="create users and reset passwords (server host)",
                                description="Manage web UI accounts directly in the server database (for "
                                            "automation and recovery). The password is read from a prompt, or "
                                            "from the first line of stdin when it is not a terminal.")
    sub = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    create = sub.add_parser("create", help="create a local user", description="Create a local user.")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true", help="give the admin level")
    create.add_argument("--level", help="give this level instead (default: viewer)")
    _database_flag(create)
    create.set_defaults(handler=create_user)
    reset = sub.add_parser("reset-password", help="set a local user's password",
                           description="Set a local user's password and end their sessions.")
    reset.add_argument("--username", required=True)
    _database_flag(reset)
    reset.set_defaults(handler=reset_password)

    keys = commands.add_parser("apikeys", help="create API keys (server host)",
                               description="Create API keys directly in the server database.")
    keys_sub = keys.add_subparsers(dest="apikeys_command", metavar="COMMAND", required=True)
    key_create = keys_sub.add_parser("create", help="create a key and print it once",
                                     description="Create an API key for a user and print it (only this once).")
    key_create.add_argument("--user", required=True, help="the owner's username")
    key_create.add_argument("--name", default="cli", help="a name to recognise the key by (default: cli)")
    key_create.add_argument("--expires-days", type=float, metavar="D", help="expire after D days (default: never)")
    _database_flag(key_create)
    key_create.set_defaults(handler=create_api_key)


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL", help="as for 'simpletuner server' (default: workspace SQLite)")


def read_password(confirm: bool = True) -> str:
    """A password from a prompt (typed twice) or from the first line of stdin."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise SimpleTunerError("no password on stdin; pipe one line holding it, or run in a terminal")
        return line
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != first:
        raise SimpleTunerError("the passwords differ")
    return first


def create_user(args: argparse.Namespace, context: CliContext) -> int:
    """Create a user."""
    from simpletuner.ui.provisioning import AccountError, Provisioner, levels_for

    levels = levels_for(args.admin, args.level)
    password = read_password()
    try:
        with Provisioner(context.workspace, args.database_url) as db:
            db.create_user(args.username, args.email, password, levels)
    except AccountError as exc:
        raise SimpleTunerError(str(exc)) from None
    print(f"Created user {args.username!r} with level(s) {', '.join(levels)}")
    return 0


def reset_password(args: argparse.Namespace, context: CliContext) -> int:
    """Set a user's password."""
    from simpletuner.ui.provisioning import Provisioner

    password = read_password()
    with Provisioner(context.workspace, args.database_url) as db:
        db.reset_password(args.username, password)
    print(f"Password of {args.username!r} changed; their sessions were ended")
    return 0


def create_api_key(args: argparse.Namespace, context: CliContext) -> int:
    """Create a key and print it once."""
    from simpletuner.ui.provisioning import AccountError, Provisioner

    try:
        with Provisioner(context.workspace, args.database_url) as db:
            key = db.create_api_key(args.user, args.name, args.expires_days)
    except AccountError as exc:
        raise SimpleTunerError(str(exc)) from None
    print(key)
    print("This key is shown only once; store it now.", file=sys.stderr)
    return 0
