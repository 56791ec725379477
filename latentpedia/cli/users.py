"""`latentpedia user …`: accounts from the command line (the first admin is made here).

    latentpedia user add alice --admin          # prompts for the password
    echo "$PW" | latentpedia user add bob --password-stdin
    latentpedia user list
    latentpedia user key alice --name laptop    # prints a new API key once
    latentpedia user revoke alice lp_AbCdE      # by key prefix or id
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from latentpedia.cli.common import AtlasDbOpt, DbOpt, clear_errors, open_store

app = typer.Typer(help="Accounts: add users, list them, make and revoke API keys.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def _user(store, name: str):
    from latentpedia.store.accounts import MissingError

    user = store.get_user(name)
    if user is None:
        raise MissingError(f"no user {name!r} (see `latentpedia user list`)")
    return user


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="username: letters, digits, '_', '.', '-'")],
    admin: Annotated[bool, typer.Option("--admin", help="may build, import and delete")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin (else prompt)")] = False,
    db: DbOpt = "",
) -> None:
    """Add a user (an admin with --admin)."""
    with clear_errors():
        user = open_store(db).add_user(name, _read_password(password_stdin), "admin" if admin else "user")
    Console(stderr=True).print(f"[green]added[/] {user.role} {user.username}", highlight=False)


@app.command("list")
def list_users(db: AtlasDbOpt = "") -> None:
    """Every user with role, creation date and API keys."""
    store = open_store(db)
    table = Table("user", "role", "created", "disabled", "API keys (prefix, name)")
    for user in store.list_users():
        keys = ", ".join(f"{k.prefix} {k.name}" + (" (revoked)" if k.revoked_at else "") for k in store.list_api_keys(user.id))
        table.add_row(user.username, user.role, f"{user.created_at:%Y-%m-%d}", "yes" if user.disabled else "", keys)
    Console().print(table)


@app.command("key")
def key(
    name: Annotated[str, typer.Argument(help="the user the key acts as")],
    key_name: Annotated[str, typer.Option("--name", help="a label for the key")] = "cli",
    db: AtlasDbOpt = "",
) -> None:
    """Create an API key for a user and print it (once: only its hash is kept)."""
    with clear_errors():
        store = open_store(db)
        new_key, record = store.create_api_key(_user(store, name).id, key_name)
    Console(stderr=True).print(f"API key {record.prefix}… for {name} (send it as the x-api-key header):", highlight=False)
    print(new_key)


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="the key's user")],
    key: Annotated[str, typer.Argument(help="the key's prefix (first 8 characters) or id")],
    db: AtlasDbOpt = "",
) -> None:
    """Revoke an API key: it stops working at once."""
    with clear_errors():
        store = open_store(db)
        record = store.revoke_api_key(_user(store, name).id, key)
    Console(stderr=True).print(f"revoked {record.prefix}… ({record.name}) of {name}", highlight=False)


@app.command("set")
def set_user(
    name: Annotated[str, typer.Argument(help="the user to change")],
    role: Annotated[str | None, typer.Option(help="admin | user")] = None,
    disable: Annotated[bool | None, typer.Option("--disable/--enable", help="disabled users cannot sign in")] = None,
    password: Annotated[bool, typer.Option("--password", help="set a new password (prompt, or stdin with --password-stdin)")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    db: AtlasDbOpt = "",
) -> None:
    """Change a user's role, disable/enable them, or reset their password (ends their sessions)."""
    with clear_errors():
        new_password = _read_password(password_stdin) if (password or password_stdin) else None
        user = open_store(db).set_user(name, role=role, disabled=disable, password=new_password)
    Console(stderr=True).print(f"{user.username}: {user.role}{', disabled' if user.disabled else ''}", highlight=False)
