"""``ga4gh-broker demo``: a whole broker with people, a DAC and data in one folder, on one port.

``demo [--dir DIR] [--port P]`` makes the folder on first start (see :mod:`broker.demo.folder`),
prints the URLs, the accounts (passwords only when they are created) and a copy-paste session,
then serves until Ctrl-C. Run it again to resume with the same folder.

``demo --check [--dir DIR] [--url URL]`` runs that session against the running demo without a
person (:mod:`broker.demo.check`) and exits 0, or 1 naming the step that failed.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from broker.cli.context import CommandError, Context
from broker.demo.check import run_check
from broker.demo.folder import (
    ACCOUNTS_FILE,
    BAM_DATASET,
    DAC_ID,
    DEFAULT_FOLDER,
    PEOPLE,
    PURPOSE,
    SERVICE_CLIENT_ID,
    SERVICE_SECRET_FILE,
    VCF_DATASET,
    Demo,
    DemoError,
    open_demo,
)
from broker.serve.production import StartError, run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="a ready broker with people, a DAC and synthetic data in one folder (or --check it)",
        description="Make (first time) or reuse a demo folder and serve it: local accounts, a DAC governing two "
        "datasets, a synthetic VCF and BAM with indexes, matching policies. --check runs the printed session "
        "against the running demo and names the first step that fails.",
    )
    demo.add_argument(
        "--dir", default=None, metavar="DIR", help=f"the demo folder (default: ./{DEFAULT_FOLDER}, made if absent)"
    )
    demo.add_argument("--port", type=int, default=None, metavar="P", help="port on 127.0.0.1 (default: 8080)")
    demo.add_argument("--check", action="store_true", help="run the session against the running demo, then exit")
    demo.add_argument("--url", default=None, metavar="URL", help="with --check: the demo's URL (default: its port)")
    demo.set_defaults(handler=_demo)


def _folder(ctx: Context) -> Path:
    return Path(ctx.args.dir) if ctx.args.dir else Path.cwd() / DEFAULT_FOLDER


def _demo(ctx: Context) -> int:
    folder = _folder(ctx)
    if ctx.args.check:
        try:
            return run_check(folder.resolve(), ctx.args.url, sys.stdout)
        except DemoError as exc:
            raise CommandError(str(exc), 2) from None
    if ctx.args.url:
        raise CommandError("--url goes with --check (the demo itself serves on 127.0.0.1 --port)", 2)
    port = ctx.args.port
    if port is not None and not 1 <= port <= 65535:
        raise CommandError("--port must be from 1 to 65535", 2)
    try:
        demo = open_demo(folder, port)
    except DemoError as exc:
        raise CommandError(str(exc), 2) from None
    _port_free(demo.port)
    ctx.out(introduction(demo, ctx.args.dir))
    sys.stdout.flush()
    try:
        return run(demo.settings(), f"127.0.0.1:{demo.port}", 1)
    except StartError as exc:
        raise CommandError(str(exc), 1) from None


def _port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CommandError(f"port {port} on 127.0.0.1 is in use; choose another with --port", 1) from None


def introduction(demo: Demo, given_dir: str | None) -> str:
    """What the demo prints before serving: where, who, and the session to paste."""
    base = demo.base
    dir_option = f" --dir {given_dir}" if given_dir else ""
    lines = [
        f"ga4gh-broker demo: {base}/   (folder {demo.folder}; Ctrl-C stops it, run it again to resume)",
        "",
        f"Accounts (local logins). DAC {DAC_ID} governs {VCF_DATASET} and {BAM_DATASET}.",
    ]
    for person in PEOPLE:
        secret = demo.created_passwords.get(person.username, "") if demo.created_passwords else ""
        lines.append(f"  {person.username:<6} {secret:<18} {person.role}  (sub {demo.subs[person.username]})")
    if demo.created_passwords:
        lines.append(f"Passwords are shown this once; they are also in {demo.folder / ACCOUNTS_FILE} (mode 0600).")
    else:
        lines.append(f"Passwords: {demo.folder / ACCOUNTS_FILE} (mode 0600).")
    lines.append(
        f"A confidential client for a data service or portal: {SERVICE_CLIENT_ID}, its secret in "
        f"{demo.folder / SERVICE_SECRET_FILE} (mode 0600)."
    )
    alice = demo.subs["alice"]
    lines += [
        "",
        "Try it, in another terminal:",
        f"  1. Browser: open {base}/account/visas and log in as alice: her visas.",
        f"  2. ga4gh-broker login --broker {base}/",
        "     (open the URL it prints, enter the code, allow: you are alice in that browser)",
        f"  3. ga4gh-broker download {VCF_DATASET}/demo.vcf.gz {VCF_DATASET}/demo.vcf.gz.tbi --purpose {PURPOSE} "
        "-o downloads",
        f"  4. ga4gh-broker download {BAM_DATASET}/demo.bam -o downloads",
        "     -> 403: the answer lists the visas to apply for",
        f"  5. In a private window, {base}/dac/datasets/{BAM_DATASET} as dora: grant researcher {alice}",
        f"  6. ga4gh-broker download {BAM_DATASET}/demo.bam {BAM_DATASET}/demo.bam.bai -o downloads",
        "",
        f"All of it without a person: ga4gh-broker demo --check{dir_option}",
        f"Any command on this broker: ga4gh-broker -c {demo.settings_path} ...  (e.g. grants list --as <dora's sub>)",
        "",
    ]
    return "\n".join(lines)
