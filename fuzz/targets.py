"""The fuzz targets: one per boundary where bytes from outside meet our parsing code.

Each :class:`Target` has a ``build()`` that imports what it fuzzes (so the runner can import it
under atheris' coverage instrumentation) and returns the function libFuzzer calls with each
input, and ``seeds()`` (valid and nearly-valid inputs to start from). A target function returns
normally for every input the module handles as documented and raises (which atheris reports as a
crash, with the input saved) for anything else. What "as documented" means, per target:

``jose``        ``broker.core.jose``: ``parse``, ``loads_strict``, ``b64url_decode`` and
                ``verify_signature`` raise only ``JoseError``; a parsed token has an allowed
                ``alg``, a ``kid``/``typ``/``jku`` that is absent or a string, and parsing it
                again (from the header memo) gives the same result.
``verifier``    ``broker.core.verify.Verifier`` over a fixed trust setup (pinned keys, frozen
                clock, no network: any socket connect fails the input) never raises and never
                answers "internal error"; a bad visa never spoils the good ones of a passport
                (THREAT-MODEL EPM f); ``effective_exp`` answers for every accepted visa; and the
                policy engine deciding on what was accepted never fails (``internal_error``).
``policy``      ``broker.core.policy.loader.load_policy`` of up to four fuzzed files raises only
                ``PolicyLoadError``; a policy that loads decides, for fixed personas, without
                ``internal_error``, and ``required_visas`` raises only ``UnknownDataset``.
``paths``       ``broker.gateway.paths``: ``parse_data_target``, ``validate_object_path`` and
                ``split_target`` raise only ``PathError``; an accepted path validates again to the
                same segments, and its re-encoding (what reaches an upstream) parses back to the
                very same object.
``ranges``      ``broker.gateway.ranges``: ``parse_range`` and ``resolve`` raise only
                ``RangeNotSatisfiable``; resolved ranges lie inside the representation, are
                disjoint and not adjacent, never add up to more than its size; the canonical
                header parses back to the same ranges; ``if_range_holds`` never raises.
``untrusted_json`` ``broker.core.untrusted_json``: ``loads_bounded`` raises only ``ValueError``
                (never ``RecursionError``) and returns nothing deeper than asked;
                ``exceeds_depth`` and ``peek_jws`` never raise.
``settings``    ``broker.settings.build_settings`` of fuzzed YAML (parsed by the harness with
                ``yaml.safe_load``, as the loader does) returns ``Settings`` or raises
                ``SettingsError``, nothing else.

Inputs that carry structure use the first byte as a mode selector and the rest as the fuzzed
text. Keys are derived from fixed numbers, so a saved input means the same thing in every run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = Path(__file__).resolve().parent / "regressions"

#: The frozen clock of the verifier and policy targets (2026-01-01T00:00:00Z).
NOW = 1_767_225_600

FuzzFunction = Callable[[bytes], None]


class ContractBroken(AssertionError):
    """A target saw its module break the documented contract (the fuzzer reports it as a crash)."""


@dataclass(frozen=True)
class Target:
    """One fuzz target: what to instrument, how to build the test function, where to start from."""

    name: str
    instrument: tuple[str, ...]  # module prefixes atheris instruments for coverage
    build: Callable[[], FuzzFunction]
    seeds: Callable[[], list[bytes]]
    weight: float  # share of a campaign's executions (the fast targets get more)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ContractBroken(what)


def _text(data: bytes) -> str:
    """Bytes to text where every byte is one character (so the fuzzer reaches non-ASCII too)."""
    return data.decode("latin-1")


def _mode(data: bytes, modes: int) -> tuple[int, bytes]:
    return (data[0] % modes, data[1:]) if data else (0, b"")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (containers count one level each), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


# --------------------------------------------------------------------------- fixed keys and tokens

ISSUER_A = "https://login.aai.lifescience-ri.eu/oidc/"  # named in policies/lists.yaml (ls_login)
ISSUER_B = "https://permissions.ega.example.org/"  # named in policies/lists.yaml (dac_visa_issuers)
BROKER = "https://broker.fuzz.test/"
OWN = "https://own.fuzz.test/"
SUB = "alice@lifescience-ri.eu"
_KEY_NUMBERS = {ISSUER_A: 0x5EED_A11CE_0001, ISSUER_B: 0x5EED_B0B_0002, BROKER: 0x5EED_B40CE4_0003}


def _keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    return {iss: ec.derive_private_key(number, ec.SECP256R1()) for iss, number in _KEY_NUMBERS.items()}


def _kid(iss: str) -> str:
    return "fuzz-" + format(_KEY_NUMBERS[iss], "x")


def _sign(private: Any, header: bytes, payload: bytes) -> str:
    """A compact ES256 JWS over exactly these header and payload bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from broker.core.jose import b64url_encode

    signing_input = b64url_encode(header) + "." + b64url_encode(payload)
    r, s = decode_dss_signature(private.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _visa_header(iss: str) -> dict[str, Any]:
    return {"alg": "ES256", "kid": _kid(iss), "typ": "vnd.ga4gh.visa+jwt", "jku": iss + "jwk"}


def _passport_header() -> dict[str, Any]:
    return {"alg": "ES256", "kid": _kid(BROKER), "typ": "vnd.ga4gh.passport+jwt"}


def _visa_payload(iss: str, visa: dict[str, Any], jti: str, sub: str = SUB) -> dict[str, Any]:
    return {"iss": iss, "sub": sub, "iat": NOW - 60, "exp": NOW + 3600, "jti": jti, "ga4gh_visa_v1": visa}


def _visa_objects() -> list[dict[str, Any]]:
    return [
        {
            "type": "AffiliationAndRole",
            "asserted": NOW - 600,
            "value": "faculty@uio.no",
            "source": "https://www.uio.no",
            "by": "system",
        },
        {
            "type": "ControlledAccessGrants",
            "asserted": NOW - 600,
            "value": "https://ega-archive.org/datasets/EGAD00001000001",
            "source": "https://ega-archive.org/dacs/EGAC00001000001",
            "by": "dac",
        },
        {
            "type": "ControlledAccessGrants",
            "asserted": NOW - 600,
            "value": "https://ega-archive.org/datasets/EGAD00001000100",
            "source": "https://ega-archive.org/dacs/EGAC00001000001",
            "by": "dac",
            "conditions": [
                [{"type": "AffiliationAndRole", "value": "pattern:faculty@*", "by": "const:system"}],
                [{"type": "ResearcherStatus", "value": "split_pattern:https://doi.org/*;x", "source": "const:a"}],
            ],
        },
        {
            "type": "AcceptedTermsAndPolicies",
            "asserted": NOW - 600,
            "value": "https://doi.org/10.1038/s41431-018-0219-y",
            "source": "https://login.aai.lifescience-ri.eu",
            "by": "self",
        },
        {
            "type": "ResearcherStatus",
            "asserted": NOW - 600,
            "value": "https://doi.org/10.1038/s41431-018-0219-y",
            "source": "https://login.aai.lifescience-ri.eu",
            "by": "so",
        },
        {
            "type": "LinkedIdentities",
            "asserted": NOW - 600,
            "value": "bob,https%3A%2F%2Fpermissions.ega.example.org%2F;10001,https%3A%2F%2Fother.example",
            "source": "https://login.aai.lifescience-ri.eu",
        },
    ]


# --------------------------------------------------------------------------- jose


def _build_jose() -> FuzzFunction:
    from broker.core.jose import JoseError, b64url_decode, b64url_encode, loads_strict, parse, verify_signature
    from broker.core.models import ALLOWED_ALGORITHMS

    key = _keys()[ISSUER_A].public_key()

    def one(data: bytes) -> None:
        mode, rest = _mode(data, 4)
        try:
            if mode == 0:
                token = _text(rest)
            elif mode == 1:
                value = loads_strict(rest, 16, "fuzz")
                _require(_depth(value) <= 16, "loads_strict returned a value deeper than its limit")
                return
            elif mode == 2:
                b64url_decode(_text(rest))
                return
            else:
                header, _, payload = rest.partition(b"\x00")
                token = b64url_encode(header) + "." + b64url_encode(payload) + "." + b64url_encode(bytes(64))
            jws = parse(token, max_bytes=16_384, max_depth=16)
        except JoseError:
            return
        _require(jws.alg in ALLOWED_ALGORITHMS, f"parsed a token whose alg is {jws.alg!r}")
        for name, value in (("kid", jws.kid), ("typ", jws.typ), ("jku", jws.jku)):
            _require(value is None or type(value) is str, f"parsed a token whose {name} is {type(value).__name__}")
            _require((value is None) == (name not in jws.header), f"{name} disagrees with the header")
        _require(parse(token, max_bytes=16_384, max_depth=16) == jws, "a second parse (header memo) differs")
        try:
            verify_signature(jws, key)
        except JoseError:
            return

    return one


def _seeds_jose() -> list[bytes]:
    keys = _keys()
    visa = _sign(keys[ISSUER_A], _compact(_visa_header(ISSUER_A)), _compact(_visa_payload(ISSUER_A, {}, "j")))
    return [
        b"\x00" + visa.encode(),
        b"\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        b'\x01{"a":[1,2.5,{"b":null}],"c":"\\u00e9"}',
        b'\x01{"a":1,"a":2}',
        b"\x02eyJhbGciOiJFUzI1NiJ9",
        b'\x03{"alg":"ES256","kid":"k","typ":"JWT","jku":"https://x/"}\x00{"iss":"x"}',
        b'\x03{"alg":"RS256","kid":null}\x00{}',
        b'\x03{"alg":"ES256","crit":["b64"],"b64":false}\x00{}',
    ]


# --------------------------------------------------------------------------- verifier


def _fixed_trust() -> Any:
    from broker.trust.config import TrustConfig, TrustedBroker, TrustedIssuer
    from broker.trust.keyset import ResolvedKey

    keys = _keys()

    def pinned(iss: str) -> dict[str, ResolvedKey]:
        return {_kid(iss): ResolvedKey(_kid(iss), "ES256", keys[iss].public_key())}

    issuers = {
        iss: TrustedIssuer(iss=iss, jku=frozenset(), pinned=pinned(iss), sources=None) for iss in (ISSUER_A, ISSUER_B)
    }
    brokers = {BROKER: TrustedBroker(iss=BROKER, jwks_uri=None, pinned=pinned(BROKER))}
    return TrustConfig(OWN, issuers, brokers)


def _no_network() -> None:
    """Any connect from this process fails the input: the verifier must never reach the network."""

    def refuse(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        raise ContractBroken("the verifier tried to open a network connection")

    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign,assignment]


def _build_verifier() -> FuzzFunction:
    from broker.core.limits import LimitSettings
    from broker.core.models import PassportResult, Rejection, Visa
    from broker.core.policy.decision import Code
    from broker.core.policy.loader import load_policy
    from broker.core.verify import INTERNAL_ERROR, Verifier, effective_exp
    from broker.trust.jwks import KeyResolver
    from broker.trust.settings import JwksFetchSettings

    keys = _keys()
    trust = _fixed_trust()
    resolver = KeyResolver(trust, JwksFetchSettings(), clock=lambda: float(NOW))
    verifier = Verifier(trust, resolver, LimitSettings(), clock=lambda: float(NOW))
    policy = load_policy(ROOT / "policies")
    datasets = [*policy.dataset_ids()[:4], "EGAD5000000042"]
    objects = _visa_objects()
    good = _sign(
        keys[ISSUER_A], _compact(_visa_header(ISSUER_A)), _compact(_visa_payload(ISSUER_A, objects[0], "good-0"))
    )
    linked = _sign(
        keys[ISSUER_A], _compact(_visa_header(ISSUER_A)), _compact(_visa_payload(ISSUER_A, objects[5], "link-0"))
    )
    _no_network()

    def passport(visas: list[Any]) -> str:
        payload = {
            "iss": BROKER,
            "sub": SUB,
            "iat": NOW - 10,
            "exp": NOW + 600,
            "jti": "p-1",
            "ga4gh_passport_v1": visas,
        }
        return _sign(keys[BROKER], _compact(_passport_header()), _compact(payload))

    def check_rejection(rejection: Rejection | None) -> None:
        if rejection is not None:
            _require(isinstance(rejection, Rejection), "a rejection of the wrong type")
            _require(not rejection.detail.startswith(INTERNAL_ERROR), f"internal error: {rejection.detail}")

    def check_result(result: PassportResult) -> None:
        _require(isinstance(result, PassportResult), f"verify returned {type(result).__name__}")
        check_rejection(result.error)
        for rejection in result.rejected:
            check_rejection(rejection)
        for visa in result.accepted:
            _require(type(visa) is Visa and type(visa.sub) is str and type(visa.exp) is int, "a malformed Visa")
            _require(visa.exp > NOW - 60, "an expired visa was accepted")
            effective_exp(result, visa)
        if result.ok and result.accepted:
            holder = (result.iss, result.sub) if result.iss and result.sub else None
            for dataset in datasets:
                decision = policy.decide(result.accepted, dataset=dataset, holder=holder, now=NOW, valid_for=60)
                for reason in decision.reasons:
                    _require(reason.code != Code.INTERNAL_ERROR, f"the policy engine failed: {reason.message}")

    def one(data: bytes) -> None:
        mode, rest = _mode(data, 4)
        if mode == 0:
            token = _text(rest)
            check_result(verifier.verify_passport(token))
            check_result(verifier.verify_visas([token, good]))
            verdict = verifier.verify_visa(token)
            _require(isinstance(verdict, Visa | Rejection), "verify_visa returned something else")
            if isinstance(verdict, Rejection):
                check_rejection(verdict)
        elif mode == 1:  # a fuzzed visa payload, well signed, between good visas of the same holder
            fuzzed = _sign(keys[ISSUER_A], _compact(_visa_header(ISSUER_A)), rest)
            result = verifier.verify_passport(passport([good, fuzzed, linked]))
            check_result(result)
            _require(result.ok, f"a visa spoiled its passport: {result.error}")
            _require(any(v.jti == "good-0" for v in result.accepted), "a bad visa spoiled a good one (EPM f)")
        elif mode == 2:  # a fuzzed visa header, well signed
            fuzzed = _sign(keys[ISSUER_B], rest, _compact(_visa_payload(ISSUER_B, objects[1], "h-1")))
            check_result(verifier.verify_passport(passport([fuzzed, good])))
        else:  # a fuzzed passport payload, well signed
            check_result(verifier.verify_passport(_sign(keys[BROKER], _compact(_passport_header()), rest)))

    return one


def _seeds_verifier() -> list[bytes]:
    keys = _keys()
    objects = _visa_objects()
    seeds: list[bytes] = []
    visas = []
    for i, obj in enumerate(objects):
        iss = ISSUER_B if obj["type"] == "ControlledAccessGrants" else ISSUER_A
        payload = _visa_payload(iss, obj, f"seed-{i}")
        seeds.append(b"\x01" + _compact({**payload, "iss": ISSUER_A}))
        visas.append(_sign(keys[iss], _compact(_visa_header(iss)), _compact(payload)))
    payload = {"iss": BROKER, "sub": SUB, "iat": NOW - 10, "exp": NOW + 600, "jti": "p", "ga4gh_passport_v1": visas}
    token = _sign(keys[BROKER], _compact(_passport_header()), _compact(payload))
    seeds += [b"\x00" + token.encode(), b"\x00" + visas[1].encode(), b"\x03" + _compact(payload)]
    seeds += [b"\x03" + _compact({**payload, "aud": ["a", "b"], "nbf": NOW})]
    seeds += [b"\x02" + _compact(_visa_header(ISSUER_B)), b"\x02" + _compact({"alg": "ES256", "typ": "JWT"})]
    seeds += [b"\x01" + _compact(_visa_payload(ISSUER_A, {**objects[1], "by": None}, "x", sub="bob"))]
    return seeds


# --------------------------------------------------------------------------- policy


def _build_policy() -> FuzzFunction:
    from broker.core.policy.decision import Code
    from broker.core.policy.errors import PolicyLoadError
    from broker.core.policy.loader import load_policy
    from broker.core.policy.personas import load_personas
    from broker.core.policy.required import UnknownDataset, required_visas

    personas = list(load_personas(ROOT / "policies" / "personas", now=NOW).values())[:4]
    shm = Path("/dev/shm")  # noqa: S108 - memory-backed: one file write per input costs nothing there
    work = Path(tempfile.mkdtemp(prefix="fuzz-policy-", dir=shm if shm.is_dir() else None))

    def one(data: bytes) -> None:
        for old in work.iterdir():
            old.unlink()
        for i, content in enumerate(data.split(b"\x00")[:4]):
            (work / f"p{i}.yaml").write_bytes(content)
        try:
            policy = load_policy(work)
        except PolicyLoadError:
            return
        for dataset in [*policy.dataset_ids()[:6], "EGAD5000000042", "X"]:
            for persona in personas:
                decision = policy.decide(
                    persona.visas, dataset=dataset, purpose=persona.purpose, holder=persona.holder, now=NOW
                )
                for reason in decision.reasons:
                    _require(reason.code != Code.INTERNAL_ERROR, f"the policy engine failed: {reason.message}")
            with contextlib.suppress(UnknownDataset):
                required_visas(policy, dataset)

    return one


def _seeds_policy() -> list[bytes]:
    files = sorted((ROOT / "policies").glob("*.yaml"))
    together = b"\x00".join(p.read_bytes() for p in files[:4])
    return [together, *(p.read_bytes() for p in files)]


# --------------------------------------------------------------------------- paths


def _build_paths() -> FuzzFunction:
    from broker.gateway.paths import PathError, parse_data_target, quote_segments, split_target, validate_object_path

    def one(data: bytes) -> None:
        mode, rest = _mode(data, 3)
        text = _text(rest)
        try:
            if mode == 1:
                segments = validate_object_path(text)
                _require("/".join(segments) == text, "validate_object_path changed the path")
                return
            if mode == 2:
                split_target(text)
                return
            target = parse_data_target(text, "/data/")
        except PathError:
            return
        ref = target.ref
        try:
            again = validate_object_path(ref.path)
        except PathError as exc:
            raise ContractBroken(f"an accepted object path does not validate again: {exc.code}") from None
        _require(again == ref.segments, "validating an accepted path gives other segments")
        upstream = "/data/" + ref.dataset + "/" + quote_segments(again)
        try:
            round_trip = parse_data_target(upstream, "/data/")
        except PathError as exc:
            raise ContractBroken(f"the re-encoded path is refused: {exc.code}") from None
        _require(round_trip.ref == ref, "the re-encoded path names another object")

    return one


def _seeds_paths() -> list[bytes]:
    return [
        b"\x00/data/ds1/a/b.bam?x=1",
        b"\x00/data/ds1/%2e%2e/secret",
        b"\x00/data/ds1/caf%C3%A9/%EF%BC%8E%EF%BC%8E/x",
        b"\x00/data/ds1/a%2fb",
        b"\x01cohort1/sample.cram",
        b"\x02/x?y=%20",
    ]


# --------------------------------------------------------------------------- ranges


def _build_ranges() -> FuzzFunction:
    from broker.gateway.ranges import (
        RangeNotSatisfiable,
        canonical_header,
        if_range_holds,
        multipart_layout,
        parse_range,
        resolve,
    )

    def one(data: bytes) -> None:
        if len(data) < 8:
            return
        size = int.from_bytes(data[:5], "big") >> (data[5] % 40)
        max_ranges = 1 + data[6] % 32
        text = _text(data[7:])
        holds = if_range_holds(text, '"etag-1"', 1_700_000_000.0)
        _require(type(holds) is bool, "if_range_holds is not a bool")
        try:
            specs = parse_range(text, max_ranges, 1024)
        except RangeNotSatisfiable:
            return
        if specs is None:
            return
        _require(0 < len(specs) <= max_ranges, "parse_range returned too many or no ranges")
        _require(parse_range(canonical_header(specs), max_ranges, 1 << 16) == specs, "canonical header round trip")
        try:
            ranges = resolve(specs, size)
        except RangeNotSatisfiable:
            return
        total = 0
        ordered = sorted(ranges, key=lambda r: r.start)
        for previous, current in itertools.pairwise(ordered):
            _require(previous.end + 1 < current.start, "resolved ranges overlap or touch")
        for rng in ranges:
            _require(0 <= rng.start <= rng.end < size, f"range {rng} outside a representation of {size} bytes")
            total += rng.length
        _require(total <= size, "resolved ranges add up to more than the representation")
        if len(ranges) > 1:
            layout = multipart_layout(ranges, size, "application/octet-stream")
            body = sum(len(head) + rng.length for head, rng in layout.parts) + len(layout.tail)
            _require(layout.content_length == body, "multipart Content-Length is not the body length")

    return one


def _seeds_ranges() -> list[bytes]:
    size = (10_000).to_bytes(5, "big") + b"\x00\x10"
    return [
        size + b"bytes=0-99",
        size + b"bytes=0-0,-1,5000-,100-200,150-250",
        size + b"bytes=-0",
        size + b"items=0-1",
        size + b" bytes = 1-2",
        size + b"Thu, 01 Jan 1970 00:00:00 GMT",
    ]


# --------------------------------------------------------------------------- untrusted JSON


def _build_untrusted_json() -> FuzzFunction:
    from broker.core.untrusted_json import exceeds_depth, loads_bounded, peek_jws

    def one(data: bytes) -> None:
        if not data:
            return
        depth = 1 + data[0] % 40
        rest = data[1:]
        text = rest.decode("utf-8", "replace")
        _require(type(exceeds_depth(text, depth)) is bool, "exceeds_depth is not a bool")
        for segment in (0, 1):
            peeked = peek_jws(text, segment)
            _require(peeked is None or type(peeked) is dict, "peek_jws returned something else")
        for raw in (rest, text):
            try:
                value = loads_bounded(raw, depth)
            except ValueError:
                continue
            _require(_depth(value) <= depth, f"loads_bounded returned a value nested deeper than {depth}")

    return one


def _seeds_untrusted_json() -> list[bytes]:
    return [
        b'\x10{"a":[1,{"b":"]]]]"}],"c":"\\"[[["}',
        b"\x02[[[[[[]]]]]]",
        b'\x05"\\\\"[[[[',
        b"\x08eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    ]


# --------------------------------------------------------------------------- settings


def _build_settings() -> FuzzFunction:
    from broker.settings import Settings, SettingsError, load_settings

    # Relative paths in a fuzzed file (data_dir, policy.directory) land in a scratch folder, and
    # the input goes through the file reader too (YAML errors are part of the contract).
    scratch = tempfile.mkdtemp(prefix="fuzz-settings-")
    os.chdir(scratch)
    path = Path(scratch) / "fuzz.yaml"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        try:
            settings = load_settings(path, environ={})
        except SettingsError as exc:
            _require("\n" not in exc.detail.strip() or exc.key == "policy.directory", "a multi-line error")
            return
        _require(isinstance(settings, Settings), "build_settings returned something else")

    return one


def _seeds_settings() -> list[bytes]:
    return [
        b"{}",
        b"issuer: https://broker.example.org/\ndata_dir: ./var\nlog_level: INFO\n",
        b"server: {bind: '127.0.0.1:8080', workers: 2}\nstore: {backend: sqlite}\n",
        b"trust:\n  visa_issuers:\n    - iss: https://login.aai.lifescience-ri.eu/oidc/\n"
        b"      jku: [https://login.aai.lifescience-ri.eu/oidc/jwk]\n"
        b"  brokers:\n    - iss: https://login.aai.lifescience-ri.eu/oidc/\n"
        b"      jwks_uri: https://login.aai.lifescience-ri.eu/oidc/jwk\n",
        b"gateway:\n  stores: {local: {kind: directory, path: /srv}}\n"
        b"  datasets: {ds1: {store: local, prefix: ds1}, ds2: {store: local, prefix: ds1/x}}\n",
        b"limits: {max_json_depth: 16, max_visa_bytes: 16384}\nkeys: {algorithm: ES256}\n",
        b"policy: {directory: ./policies}\noidc: {}\nlogin: {}\ndac: {}\nvisa_sources: []\n",
    ]


# --------------------------------------------------------------------------- the registry

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("jose", ("broker",), _build_jose, _seeds_jose, 0.24),
        Target("untrusted_json", ("broker",), _build_untrusted_json, _seeds_untrusted_json, 0.20),
        Target("paths", ("broker",), _build_paths, _seeds_paths, 0.18),
        Target("ranges", ("broker",), _build_ranges, _seeds_ranges, 0.18),
        Target("verifier", ("broker",), _build_verifier, _seeds_verifier, 0.12),
        Target("policy", ("broker",), _build_policy, _seeds_policy, 0.05),
        Target("settings", ("broker",), _build_settings, _seeds_settings, 0.03),
    )
}


def regression_inputs(name: str) -> list[bytes]:
    """Every input that once crashed target ``name`` (kept in fuzz/regressions/<name>/)."""
    folder = REGRESSIONS / name
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []


def write_corpus(name: str, folder: Path) -> None:
    """Put the target's seeds and regression inputs into ``folder`` (created; existing files kept)."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    target = TARGETS[name]
    for data in [*target.seeds(), *regression_inputs(name)]:
        (folder / ("seed-" + hashlib.sha1(data, usedforsecurity=False).hexdigest())).write_bytes(data)


def remove_tree(folder: Path) -> None:
    """Delete a scratch folder made by a target or the runner."""
    shutil.rmtree(folder, ignore_errors=True)
