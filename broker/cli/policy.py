"""``ga4gh-broker policy ...``: check, explain, test, required, diff.

- ``policy check [DIR]``: load and validate the rules; every mistake as ``file:line: field: ...``.
- ``policy explain --dataset D (--passport FILE | --persona FILE)``: the decision and, per
  requirement, every visa considered and why it did or did not count (exit 0 allow, 3 deny). ``--passport`` verifies
  the passport JWT in FILE with the broker's own verifier and trust settings first
  (:func:`passport_verifier`); ``--persona`` takes visas from a persona file, unsigned.
- ``policy test [DIR]``: run the persona tests in ``DIR/tests`` with ``DIR/personas``; exit 1
  on any failure, printing the explanation of each.
- ``policy required --dataset D``: the required-visas document (JSON).
- ``policy diff OLD NEW --personas DIR``: which decisions the change from OLD to NEW flips.

DIR defaults to ``policy.directory`` of the settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from broker.cli.context import CommandError
from broker.cli.verifier import cli_verifier
from broker.core.models import IdentityBinding
from broker.core.policy.compile import PolicySet
from broker.core.policy.decision import Withdrawn
from broker.core.policy.errors import PolicyError, PolicyLoadError
from broker.core.policy.explain import explain, render_text
from broker.core.policy.language import DURATION_RE, DURATION_UNITS
from broker.core.policy.loader import load_policy
from broker.core.policy.nodes import READ
from broker.core.policy.personas import diff_policies, load_cases, load_persona, load_personas, load_suite, run_tests
from broker.core.policy.required import UnknownDataset, required_visas
from broker.dac.services import build_services
from broker.identity.service import IdentityService
from broker.visas.minting import withdrawn_visas

if TYPE_CHECKING:
    from broker.cli.context import Context
    from broker.core.verify import Verifier
    from broker.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``policy check | explain | test | required | diff``."""
    policy = sub.add_parser("policy", help="dataset access rules: check, explain, test, required, diff")
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    actions.required = True

    check = actions.add_parser("check", help="validate the rules in DIR (default: policy.directory)")
    check.add_argument("directory", nargs="?", metavar="DIR")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_check)

    ex = actions.add_parser("explain", help="decide one request and say why, visa by visa (exit 0 allow, 3 deny)")
    ex.add_argument("--dataset", required=True)
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--passport", metavar="FILE", help="a passport JWT (verified with the trust settings)")
    source.add_argument("--persona", metavar="FILE", help="a persona file (unsigned visas)")
    ex.add_argument("--purpose", default=None, help="declared purpose (data use term id)")
    ex.add_argument("--action", default=READ)
    ex.add_argument("--valid-for", default="0", metavar="DURATION", help="access needed for this long (e.g. 1h)")
    ex.add_argument("--audience", default=None, help="the audience to verify the passport for")
    ex.add_argument("--policies", metavar="DIR", default=None, help="rules directory (default: policy.directory)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(handler=_explain)

    test = actions.add_parser("test", help="run the persona tests of DIR (exit 1 on any failure)")
    test.add_argument("directory", nargs="?", metavar="DIR")
    test.add_argument("--personas", metavar="DIR", default=None, help="default: DIR/personas")
    test.add_argument("--tests", metavar="DIR", default=None, help="default: DIR/tests")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_test)

    req = actions.add_parser("required", help="the required-visas document of a dataset (JSON)")
    req.add_argument("--dataset", required=True)
    req.add_argument("--action", default=READ)
    req.add_argument("--policies", metavar="DIR", default=None)
    req.set_defaults(handler=_required)

    diff = actions.add_parser("diff", help="which decisions a change of rules would flip (dry run)")
    diff.add_argument("old", metavar="OLD_DIR")
    diff.add_argument("new", metavar="NEW_DIR")
    diff.add_argument("--personas", metavar="DIR", required=True)
    diff.add_argument("--tests", metavar="DIR", default=None, help="also every case of these test files")
    diff.add_argument("--dataset", action="append", default=[], help="also this dataset id (repeatable)")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when any decision flips")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=_diff)


# ---------------------------------------------------------------------------- helpers


def _directory(ctx: Context, given: str | None) -> str:
    return given if given else ctx.settings.policy.directory


def _load(ctx: Context, directory: str) -> PolicySet:

    try:
        return load_policy(directory)
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise CommandError(f"policy {directory}: {len(exc.errors)} mistake(s); nothing loaded") from None


def _duration(text: str) -> int:

    match = DURATION_RE.fullmatch(text.strip())
    if not match:
        raise CommandError(f"--valid-for: expected a duration such as 1h or 30d, got {text!r}", 2)
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


# ---------------------------------------------------------------------------- commands


def _check(ctx: Context) -> int:
    directory = _directory(ctx, ctx.args.directory)
    try:
        policy = load_policy(directory)
    except PolicyLoadError as exc:
        if ctx.args.json:
            ctx.out_json({"ok": False, "errors": [e.to_json() for e in exc.errors]})
            return 1
        for error in exc.errors:
            print(error, file=sys.stderr)

        raise CommandError(f"policy {directory}: {len(exc.errors)} mistake(s)") from None
    summary = {
        "ok": True,
        "directory": directory,
        "version": policy.version,
        "files": list(policy.files),
        "datasets": len(policy.explicit),
        "pattern_templates": len(policy.patterns),
        "warnings": list(policy.warnings),
    }
    if ctx.args.json:
        ctx.out_json(summary)
        return 0
    ctx.out(
        f"ok: {directory} ({policy.version}): {len(policy.files)} file(s), {len(policy.explicit)} dataset id(s), "
        f"{len(policy.patterns)} dataset pattern(s)"
    )
    for warning in policy.warnings:
        ctx.out(f"warning: {warning}")
    return 0


def _explain(ctx: Context) -> int:

    args = ctx.args
    policy = _load(ctx, _directory(ctx, args.policies))
    valid_for = _duration(args.valid_for)
    ignored: list[str] = []
    purpose = args.purpose
    binding: IdentityBinding | str = IdentityBinding.LINKED
    if args.persona:
        try:
            persona = load_persona(args.persona)
        except PolicyError as exc:
            raise CommandError(str(exc)) from None
        visas = persona.visas
        holder: tuple[str, str] | None = persona.holder
        purpose = purpose if purpose is not None else persona.purpose
    else:
        try:
            token = Path(args.passport).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {args.passport}: {exc.__class__.__name__}") from None
        result = passport_verifier(ctx.settings).verify_passport(token, audience=args.audience)
        if result.error is not None:
            raise CommandError(f"passport refused: {result.error.reason}: {result.error.detail}")
        visas = result.accepted
        binding = result.identity_binding
        holder = (result.iss, result.sub) if result.iss and result.sub else None
        ignored = [f"#{r.index}: {r.reason}: {r.detail}" for r in result.rejected]
    withdrawn = _withdrawn(ctx, holder) if args.passport else []
    explanation = explain(
        policy,
        visas,
        None,
        args.dataset,
        args.action,
        purpose,
        holder,
        now=int(time.time()),
        valid_for=valid_for,
        ignored=ignored,
        identity_binding=binding,
        withdrawn=withdrawn,
    )
    if args.json:
        ctx.out_json(explanation.to_json())
    else:
        ctx.out(render_text(explanation))
        if explanation.required is not None:
            ctx.out("")
            ctx.out("required visas (policy required --dataset ... prints the full document):")
            ctx.out(json.dumps(explanation.required["requires"], indent=2))
    return 0 if explanation.decision.allow else 3


def _withdrawn(ctx: Context, holder: tuple[str, str] | None) -> list[Withdrawn]:
    """For a passport of one of our own accounts, the visas its revoked DAC grants gave (so the
    explanation says ``grant_revoked`` as the gateway does); none when there is no store yet."""
    settings = ctx.settings
    if holder is None or holder[0] != settings.issuer or ctx.missing_store() is not None:
        return []
    with ctx.kernel() as kernel:
        services = build_services(settings.dac, settings.issuer, kernel, IdentityService(kernel))
        return withdrawn_visas(services.grants, settings.issuer, holder[1])


def passport_verifier(settings: Settings) -> Verifier:
    """The broker's verifier for these settings (see :func:`broker.cli.verifier.cli_verifier`)."""

    return cli_verifier(settings)


def _test(ctx: Context) -> int:

    args = ctx.args
    directory = _directory(ctx, args.directory)
    policy = _load(ctx, directory)
    personas_dir = args.personas or str(Path(directory) / "personas")
    tests_dir = args.tests or str(Path(directory) / "tests")
    now = int(time.time())
    try:
        suite = load_suite(personas_dir, tests_dir, now=now)
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise CommandError(f"persona tests: {len(exc.errors)} mistake(s)") from None
    if not suite.cases:
        raise CommandError(f"no test cases in {tests_dir}")
    results = run_tests(policy, suite, now=now)
    failed = [r for r in results if not r.passed]
    if args.json:
        ctx.out_json(
            {
                "policy_version": policy.version,
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "cases": [
                    {
                        "name": r.case.name,
                        "file": r.case.file,
                        "line": r.case.line,
                        "passed": r.passed,
                        "problem": r.problem or None,
                        "decision": r.decision.to_json(),
                    }
                    for r in results
                ],
            }
        )
    else:
        for r in results:
            ctx.out(f"{'PASS' if r.passed else 'FAIL'}  {r.case.file}:{r.case.line}  {r.case.name}")
            if not r.passed:
                ctx.out(f"      {r.problem}")
                ctx.out("\n".join("      " + line for line in r.explanation.splitlines()))
        ctx.out(
            f"{len(results) - len(failed)} passed, {len(failed)} failed "
            f"(policy {policy.version}, {len(suite.personas)} personas)"
        )
    return 1 if failed else 0


def _required(ctx: Context) -> int:

    policy = _load(ctx, _directory(ctx, ctx.args.policies))
    try:
        ctx.out_json(required_visas(policy, ctx.args.dataset, ctx.args.action))
    except UnknownDataset as exc:
        raise CommandError(str(exc)) from None
    return 0


def _diff(ctx: Context) -> int:
    args = ctx.args
    old = _load(ctx, args.old)
    new = _load(ctx, args.new)
    now = int(time.time())
    try:
        personas = load_personas(args.personas, now=now)
        cases = load_cases(args.tests) if args.tests else []
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise CommandError(f"personas/tests: {len(exc.errors)} mistake(s)") from None
    flips = diff_policies(old, new, personas.values(), datasets=args.dataset, cases=cases, now=now)
    patterns = sorted({e.dataset_pattern for p in (old, new) for e in p.entries if e.dataset_pattern})
    if args.json:
        ctx.out_json(
            {
                "old": old.version,
                "new": new.version,
                "flips": [
                    {
                        "persona": f.persona,
                        "dataset": f.dataset,
                        "purpose": f.purpose,
                        "old": f.old.to_json(),
                        "new": f.new.to_json(),
                    }
                    for f in flips
                ],
                "unenumerated_patterns": patterns,
            }
        )
    else:
        ctx.out(f"{len(flips)} decision(s) flip from {args.old} ({old.version}) to {args.new} ({new.version})")
        for f in flips:
            before, after = ("allow" if f.old.allow else "deny"), ("allow" if f.new.allow else "deny")
            why = f.new if not f.new.allow else f.old
            detail = "; ".join(f"{r.code}: {r.message}" for r in why.reasons[:2])
            purpose = f" purpose {f.purpose}" if f.purpose else ""
            ctx.out(f"  {f.persona} on {f.dataset}{purpose}: {before} -> {after}" + (f"  ({detail})" if detail else ""))
        if patterns:
            ctx.out(
                f"note: dataset patterns {', '.join(patterns)} were checked only for ids given with --dataset "
                "or used by --tests cases"
            )
    return 1 if flips and args.exit_code else 0
