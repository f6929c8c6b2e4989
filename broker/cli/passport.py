"""``ga4gh-broker passport inspect|verify`` and ``ga4gh-broker visa sign``.

- ``passport inspect [TOKEN|-] [--json] [--audience AUD]``: the passport's header and
  claims, then every visa decoded with its verdict (accepted, or the machine-readable
  reason it was refused) against the configured trust: a table and details for people,
  JSON for machines. TOKEN may also be a userinfo JSON document
  (``{"ga4gh_passport_v1": [...]}``, the AAI 1.0 flow), whose visas are judged the same way.
- ``passport verify [TOKEN|-] [--audience AUD]``: exit status 0 when the passport is
  accepted, 1 when it is refused, 2 on an error (unreadable input, bad settings).
  A refused visa inside an accepted passport is ignored, as the gateway does (EPM f).
- ``visa sign --sub S --type T --value V --source SRC [--by B] [--exp-in SECONDS]
  [--conditions JSON]``: a visa signed by our key ring with our issuer, printed as a JWT.

Trust comes from the settings (``trust``: visa issuers, brokers) plus our own key ring,
exactly as the server builds it. Decoding for display is done separately from
verification and is never used to decide anything; the raw token is never printed by
``inspect``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.cli.context import CommandError
from broker.cli.verifier import cli_verifier
from broker.core.conditions import conditions_from_claim
from broker.core.issue import IssueError, mint_visa
from broker.core.models import PASSPORT_CLAIM, VISA_CLAIM, PassportResult, Reason, Rejection, Visa, VisaObject
from broker.keys.errors import KeyRingError
from broker.keys.ring import KeyRing

if TYPE_CHECKING:
    from broker.cli.context import Context
    from broker.core.verify import Verifier
    from broker.settings import Settings

EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_ERROR = 2
#: Visas of a refused passport decoded for display at most (its own visa limit was not applied).
MAX_SHOWN_VISAS = 1000


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``passport inspect``, ``passport verify`` and ``visa sign`` to the ga4gh-broker parser."""
    passport = sub.add_parser("passport", help="inspect or verify a GA4GH passport against the configured trust")
    passport_sub = passport.add_subparsers(dest="passport_command", metavar="ACTION")
    passport_sub.required = True

    inspect = passport_sub.add_parser(
        "inspect",
        help="decode a passport and judge each visa (table, or --json)",
        description="Decode a passport JWT (or a userinfo JSON document with ga4gh_passport_v1) and show "
        "each visa with its verdict and reason against the configured trust.",
    )
    inspect.add_argument("token", nargs="?", default="-", help="the passport, or - (default) to read stdin")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--audience", default=None, help="the audience to check the passport's aud against")
    inspect.set_defaults(handler=_inspect)

    verify = passport_sub.add_parser(
        "verify",
        help="exit 0 if the passport is accepted, 1 if refused, 2 on error",
        description="Verify a passport against the configured trust. Exit status: 0 accepted, 1 refused, "
        "2 error. Visas refused inside an accepted passport are ignored (and listed).",
    )
    verify.add_argument("token", nargs="?", default="-", help="the passport, or - (default) to read stdin")
    verify.add_argument("--audience", default=None, help="the audience to check the passport's aud against")
    verify.set_defaults(handler=_verify)

    visa = sub.add_parser("visa", help="issue visas signed by this broker's key ring")
    visa_sub = visa.add_subparsers(dest="visa_command", metavar="ACTION")
    visa_sub.required = True
    sign = visa_sub.add_parser(
        "sign",
        help="print a visa JWT signed by our active key",
        description="Sign a visa (typ vnd.ga4gh.visa+jwt, jku = our JWKS) for SUB with our issuer and print it.",
    )
    sign.add_argument("--sub", required=True, help="the visa subject")
    sign.add_argument("--type", required=True, dest="visa_type", help="visa type (standard name or custom URL)")
    sign.add_argument("--value", required=True, help="visa value")
    sign.add_argument("--source", required=True, help="assertion source URL (https://no.organization if none)")
    sign.add_argument("--by", default=None, help="self, peer, system, so or dac (required for some types)")
    sign.add_argument("--exp-in", type=int, default=3600, metavar="SECONDS", help="lifetime (default 3600)")
    sign.add_argument("--asserted", type=int, default=None, metavar="EPOCH", help="default: now")
    sign.add_argument(
        "--assertion-end",
        type=int,
        default=None,
        metavar="EPOCH",
        help="when the assertion itself ends: the visa never outlives it",
    )
    sign.add_argument("--conditions", default=None, metavar="JSON", help="conditions as JSON (DNF of clauses)")
    sign.set_defaults(handler=_sign)


# ---------------------------------------------------------------------- passport commands


def _inspect(ctx: Context) -> int:
    text = _read_token(ctx.args.token)
    verifier = build_verifier(ctx.settings)
    report = inspect_token(verifier, text, ctx.args.audience, ctx.settings.limits.max_passport_bytes)
    if ctx.args.json:
        ctx.out_json(report)
    else:
        ctx.out(render_report(report))
    return EXIT_ACCEPTED if report["passport"]["verdict"] == "accepted" else EXIT_REJECTED


def _verify(ctx: Context) -> int:
    text = _read_token(ctx.args.token)
    verifier = build_verifier(ctx.settings)
    report = inspect_token(verifier, text, ctx.args.audience, ctx.settings.limits.max_passport_bytes)
    passport = report["passport"]
    visas = report["visas"]
    accepted = sum(1 for v in visas if v["verdict"] == "accepted")
    if passport["verdict"] != "accepted":
        ctx.out(f"rejected: {passport['reason']}: {passport['detail']}")
        return EXIT_REJECTED
    ctx.out(f"accepted: {accepted} of {len(visas)} visas accepted")
    for v in visas:
        if v["verdict"] != "accepted":
            ctx.out(f"  visa {v['index']} ignored: {v['reason']}: {v['detail']}")
    return EXIT_ACCEPTED


def _read_token(arg: str) -> str:

    if arg == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CommandError("no token given: pass it as an argument or on standard input", EXIT_ERROR)
        text = sys.stdin.read()
    else:
        text = arg
    text = text.strip()
    if not text:
        raise CommandError("the token is empty", EXIT_ERROR)
    return text


def build_verifier(settings: Settings) -> Verifier:
    """The verifier the server would use: trust from the settings, our own keys from the key ring."""

    return cli_verifier(settings)


def inspect_token(verifier: Verifier, text: str, audience: str | None, max_bytes: int) -> dict[str, Any]:
    """Judge a passport JWT (or a userinfo JSON document) and decode it for display."""
    if text.startswith("{"):
        return _inspect_userinfo(verifier, text, audience, max_bytes)
    result = verifier.verify_passport(text, audience=audience)
    header, claims = peek(text, max_bytes)
    raw_visas = claims.get(PASSPORT_CLAIM) if isinstance(claims, dict) else None
    tokens = list(raw_visas[:MAX_SHOWN_VISAS]) if isinstance(raw_visas, list) else []
    shown_claims = dict(claims) if isinstance(claims, dict) else claims
    if isinstance(shown_claims, dict) and isinstance(raw_visas, list):
        shown_claims[PASSPORT_CLAIM] = f"<{len(raw_visas)} visas, below>"
    visas = _visa_reports(result, tokens, max_bytes) if result.ok else _unjudged(tokens, max_bytes)
    return {"passport": {**_verdict(result.error), "header": header, "claims": shown_claims}, "visas": visas}


def _unjudged(tokens: list[Any], max_bytes: int) -> list[dict[str, Any]]:
    """The visas of a refused passport, decoded for display: none of them counts."""
    reports = []
    for index, token in enumerate(tokens):
        header, claims = peek(token, max_bytes) if isinstance(token, str) else (None, None)
        reports.append(
            {
                "index": index,
                "verdict": "not judged",
                "reason": "passport_refused",
                "detail": "the passport itself was refused",
                "header": header,
                "claims": claims,
            }
        )
    return reports


def _inspect_userinfo(verifier: Verifier, text: str, audience: str | None, max_bytes: int) -> dict[str, Any]:
    try:
        document = json.loads(text) if len(text) <= max_bytes else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get(PASSPORT_CLAIM), list):
        bad = Rejection(_malformed(), f"not a JWT, nor a JSON object with a {PASSPORT_CLAIM} array")
        return {"passport": {**_verdict(bad), "header": None, "claims": None}, "visas": []}
    tokens = document[PASSPORT_CLAIM]
    result = verifier.verify_visas(tokens, audience=audience)
    shown = {k: v for k, v in document.items() if k != PASSPORT_CLAIM}
    shown[PASSPORT_CLAIM] = f"<{len(tokens)} visas, below>"
    return {
        "passport": {**_verdict(result.error), "header": None, "claims": shown, "form": "userinfo"},
        "visas": _visa_reports(result, tokens if result.ok else [], max_bytes),
    }


def _malformed() -> Any:

    return Reason.MALFORMED


def _verdict(error: Rejection | None) -> dict[str, Any]:
    if error is None:
        return {"verdict": "accepted"}
    return {"verdict": "rejected", "reason": str(error.reason), "detail": error.detail}


def _visa_reports(result: PassportResult, tokens: list[Any], max_bytes: int) -> list[dict[str, Any]]:
    """One report per visa, in passport order: accepted visas fill the indexes not rejected."""
    rejected = {r.index: r for r in result.rejected}
    accepted = iter(result.accepted)
    reports = []
    for index, token in enumerate(tokens):
        header, claims = peek(token, max_bytes) if isinstance(token, str) else (None, None)
        report: dict[str, Any] = {"index": index}
        rejection = rejected.get(index)
        if rejection is None:
            visa: Visa = next(accepted)
            report.update(verdict="accepted")
            report["summary"] = {
                "iss": visa.iss,
                "sub": visa.sub,
                "type": visa.visa.type,
                "value": visa.visa.value,
                "source": visa.visa.source,
                "by": visa.visa.by,
                "exp": visa.exp,
            }
        else:
            report.update(verdict="rejected", reason=str(rejection.reason), detail=rejection.detail)
        report["header"] = header
        report["claims"] = claims
        reports.append(report)
    return reports


def peek(token: str, max_bytes: int) -> tuple[Any, Any]:
    """Header and payload of a JWT decoded for display only (never for a decision); None when undecodable."""
    if len(token) > max_bytes:
        return None, None
    parts = token.split(".")
    if len(parts) != 3:
        return None, None
    return _peek_part(parts[0]), _peek_part(parts[1])


def _peek_part(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def render_report(report: dict[str, Any]) -> str:
    """The report as text: passport verdict, header and claims, a table of visas, then visa details."""
    lines: list[str] = []
    passport = report["passport"]
    verdict = passport["verdict"].upper() if passport["verdict"] != "accepted" else "accepted"
    what = "userinfo visa list" if passport.get("form") == "userinfo" else "passport"
    line = f"{what}: {verdict}"
    if passport["verdict"] != "accepted":
        line += f" ({passport['reason']}: {passport['detail']})"
    lines.append(line)
    if passport.get("header") is not None:
        lines.append(f"  header: {_compact(passport['header'])}")
    claims = passport.get("claims")
    if isinstance(claims, dict):
        for key, value in claims.items():
            lines.append(f"  {key}: {_show_claim(key, value)}")
    elif claims is not None:
        lines.append(f"  claims: {_compact(claims)}")
    visas = report["visas"]
    if not visas:
        lines.append("visas: none")
        return "\n".join(lines)
    accepted = sum(1 for v in visas if v["verdict"] == "accepted")
    if passport["verdict"] == "accepted":
        lines.append(f"visas: {len(visas)} ({accepted} accepted, {len(visas) - accepted} rejected)")
    else:
        lines.append(f"visas: {len(visas)} (not judged: the passport was refused)")
    rows = [("#", "verdict", "reason", "type", "value", "iss", "sub", "exp")]
    for v in visas:
        claims_v = v.get("claims") if isinstance(v.get("claims"), dict) else {}
        found = claims_v.get(VISA_CLAIM)
        obj: dict[str, Any] = found if isinstance(found, dict) else {}
        rows.append(
            (
                str(v["index"]),
                v["verdict"],
                v.get("reason", ""),
                _cut(obj.get("type")),
                _cut(obj.get("value")),
                _cut(claims_v.get("iss")),
                _cut(claims_v.get("sub"), 20),
                _when(claims_v.get("exp")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    lines.append("details:")
    for v in visas:
        head = f"  [{v['index']}] {v['verdict']}"
        if v["verdict"] != "accepted":
            head += f": {v['reason']}: {v['detail']}"
        lines.append(head)
        lines.append(f"      header: {_compact(v.get('header'))}")
        lines.append(f"      claims: {_compact(v.get('claims'))}")
    return "\n".join(lines)


def _compact(value: Any) -> str:
    if value is None:
        return "(not decodable)"
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _cut(value: Any, limit: int = 48) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(value: Any) -> str:
    """An epoch as UTC ISO time; anything else (or out of range, e.g. 1e20) shown as it is."""
    if type(value) is int and 0 <= value <= 253_402_300_799:
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _cut(value, 24)


def _show_claim(key: str, value: Any) -> str:
    if key in ("iat", "exp", "nbf") and type(value) is int:
        return f"{value} ({_when(value)})"
    return _cut(value, 200) if isinstance(value, str) else _compact(value)


# ---------------------------------------------------------------------- visa sign


def _sign(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    now = int(time.time())
    conditions = None
    if args.conditions is not None:
        try:
            conditions = conditions_from_claim(json.loads(args.conditions)) or None
        except ValueError as exc:
            raise CommandError(f"--conditions: {exc}", EXIT_ERROR) from None
    if args.exp_in <= 0:
        raise CommandError("--exp-in must be a positive number of seconds", EXIT_ERROR)
    visa = VisaObject(
        type=args.visa_type,
        asserted=now if args.asserted is None else args.asserted,
        value=args.value,
        source=args.source,
        by=args.by,
        conditions=conditions,
    )
    with ctx.kernel() as kernel:
        try:
            ring = KeyRing.open(
                settings.keys,
                settings.keys_path,
                kernel,
                leeway_seconds=settings.limits.clock_leeway_seconds,
                auto_maintain_seconds=None,
            )
            token = mint_visa(
                ring, settings.issuer, args.sub, visa, now + args.exp_in, now=now, assertion_end=args.assertion_end
            )
        except IssueError as exc:
            raise CommandError(f"cannot sign this visa: {exc}", EXIT_ERROR) from None
        except KeyRingError as exc:
            raise CommandError(f"keys: {exc}") from None
    ctx.out(token)
    return 0
