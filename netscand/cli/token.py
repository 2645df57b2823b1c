"""`netscand token create|list|revoke`: API tokens for the HTTPS listener, kept hashed.

Run as root, it works as the daemon's user (daemon.user), whose database it is."""

from __future__ import annotations

import argparse
import sys

from netscand import config, privileges
from netscand.cli.serve import add_config_flags, load

SCOPES = ("read", "scan", "admin")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create, list and revoke API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", choices=SCOPES, default="read")
    list_ = tsub.add_parser("list", help="list tokens (never their values)")
    revoke = tsub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    for q in (create, list_, revoke):
        add_config_flags(q)
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported by this command alone: the daemon's graph and SQLite are no part of `netscand
    # --help` or of the other subcommands (start-up cost).
    from netscand import daemon
    from netscand.store import Store, StoreError

    try:
        cfg = load(args)
        _become_daemon_user(cfg)
        store = Store(daemon.db_path(cfg))
    except (config.ConfigError, StoreError, privileges.PrivilegeError) as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return 1
    try:
        if args.token_command == "create":
            print(store.create_token(args.name, args.scope))
        elif args.token_command == "list":
            for t in store.list_tokens():
                state = "revoked" if t["revoked"] else "active"
                print(f"{t['name']}\t{t['scope']}\t{state}\tcreated {t['created_at']}\tlast used {t['last_used_at'] or 'never'}")
        elif not store.revoke_token(args.name):
            print(f"netscand: no active token named {args.name!r}", file=sys.stderr)
            return 1
        return 0
    except StoreError as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _become_daemon_user(cfg: config.Config) -> None:
    """Run as root, do the work as the daemon's user, as the daemon does: the database and its
    -wal and -shm, made or touched here, stay the daemon's to write (root's would lock it out)."""
    from netscand import daemon  # as in run(): this command's alone

    account = privileges.account(cfg.daemon.user)  # None unless root
    if account is None:
        return
    daemon.state_directory(cfg, account)
    privileges.switch(account)
    privileges.drop_all()  # a token needs no capability
