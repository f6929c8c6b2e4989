"""Differential test: our JWS verifier against PyJWT on thousands of good and bad tokens.

For each generated token we ask both "does this token verify with this key?":

- ours: ``jose.parse`` then ``jose.verify_signature``;
- PyJWT: ``jwt.decode(token, key, algorithms=[alg], options=...)`` with every claim check
  turned off (claims are verify.py's business, not the JWS layer's).

The property that must always hold: **we never accept a token PyJWT refuses.** Where the
two legitimately differ, it is always in the same direction (we refuse, PyJWT accepts),
for documented reasons, asserted per mutation kind below:

- ``pad``: ``=`` appended to a segment. PyJWT accepts it (THREAT-MODEL JWT-22); we refuse,
  so one token has one spelling (caches and deny-lists can rely on it).
- ``dup_header`` / ``dup_payload``: duplicate JSON members (JWT-19). PyJWT keeps the last.
- ``embedded_jwk``: a ``jwk``/``x5c``/``x5u`` header. PyJWT ignores it when given a key; we
  refuse any embedded key material (JWT-09).
- ``b64_false``: an unprotected ``b64`` member. We support no JWS extension.
- ``nan``: ``NaN``/``Infinity`` in the payload, which Python's json (so PyJWT) accepts.
- ``ws_json``: none expected (both accept whitespace in JSON); listed to prove agreement.

Every other kind (bit flips in each segment, alphabet swaps, truncation, wrong key, alg
swaps, trailing garbage, crit, kid types, non-objects) must agree exactly.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from broker.core import jose
from broker.core.jose import JoseError, parse, verify_signature
from tests.support.forge import TestKey, b64, forge

SEED = 20240611
BASES_PER_ALG = 45
PYJWT_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
# Kinds where we are stricter than PyJWT by design (see the module docstring).
STRICTER_KINDS = frozenset({"pad", "dup_header", "dup_payload", "embedded_jwk", "b64_false", "nan"})
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def ours(token: str, key: Any) -> bool:
    try:
        verify_signature(parse(token, max_bytes=1 << 20, max_depth=32), key)
    except JoseError:
        return False
    return True


def theirs(token: str, key: Any, alg: str) -> bool:
    try:
        jwt.decode(token, key, algorithms=[alg], options=PYJWT_OPTIONS)
    except (jwt.PyJWTError, ValueError, TypeError):
        return False
    return True


def random_payload(rng: random.Random) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": "https://issuer.test/",
        "sub": f"user-{rng.randrange(10**6)}",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        "jti": f"{rng.getrandbits(64):x}",
    }
    for i in range(rng.randrange(0, 5)):
        choice = rng.randrange(4)
        payload[f"c{i}"] = (
            rng.randrange(-(10**9), 10**9)
            if choice == 0
            else "".join(rng.choice('abcé€😀 "\\/{}[]') for _ in range(rng.randrange(0, 12)))
            if choice == 1
            else {"type": "AffiliationAndRole", "value": "faculty@x.org", "n": [1, 2, {"k": None}]}
            if choice == 2
            else [True, False, None, 1.5]
        )
    return payload


def random_header(rng: random.Random, key: TestKey) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
    if rng.random() < 0.7:
        header["typ"] = rng.choice(["vnd.ga4gh.visa+jwt", "JWT", "vnd.ga4gh.passport+jwt"])
    if rng.random() < 0.5:
        header["jku"] = "https://issuer.test/jwks.json"
    return header


def _segments(token: str) -> list[str]:
    return token.split(".")


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _flip_decoded(rng: random.Random, token: str, index: int) -> str:
    parts = _segments(token)
    raw = bytearray(_decode(parts[index]))
    if not raw:
        return token
    position = rng.randrange(len(raw))
    raw[position] ^= 1 << rng.randrange(8)
    parts[index] = b64(bytes(raw))
    return ".".join(parts)


def _flip_text(rng: random.Random, token: str) -> str:
    position = rng.randrange(len(token))
    if token[position] == ".":
        return token
    replacement = rng.choice([c for c in ALPHABET if c != token[position]])
    return token[:position] + replacement + token[position + 1 :]


def mutations(
    rng: random.Random, key: TestKey, other: TestKey, header: dict[str, Any], payload: dict[str, Any]
) -> list[tuple[str, str, Any]]:
    """(kind, token, verification key) for one base token: good ones and bad ones."""
    good = key.sign(header, payload)
    sign: Callable[[Any, Any], str] = key.sign
    raw_payload = json.dumps(payload).encode()
    out: list[tuple[str, str, Any]] = [("good", good, key.public), ("wrong_key", good, other.public)]
    for index in (0, 1, 2):
        out.append((f"flip_decoded_{index}", _flip_decoded(rng, good, index), key.public))
    out += [("flip_text", _flip_text(rng, good), key.public) for _ in range(6)]
    parts = _segments(good)
    index = rng.randrange(3)
    padded = list(parts)
    padded[index] += "=" * rng.choice([1, 2])
    out.append(("pad", ".".join(padded), key.public))
    swapped = good.replace("-", "+").replace("_", "/")
    out.append(("std_alphabet", swapped, key.public))
    cut = rng.randrange(1, len(good) - 1)
    out.append(("truncate", good[:cut], key.public))
    out.append(("trailing", good + rng.choice(["x", ".", ".x", " ", "\n", "A", ".."]), key.public))
    out.append(("pad", good + "==", key.public))  # trailing padding on the signature
    out.append(("leading", rng.choice([" ", "\n", "."]) + good, key.public))
    for alg in ("none", "HS256", "ES384", "RS512", "PS256", "ES256" if key.alg == "RS256" else "RS256"):
        head = {**header, "alg": alg}
        out.append(("alg_swap", forge(head, payload, signature=_decode(parts[2])), key.public))
        out.append(("alg_swap_empty_sig", forge(head, payload, signature=b""), key.public))
    out.append(("crit", sign({**header, "crit": ["exp"], "exp": 1}, payload), key.public))
    out.append(("kid_type", sign({**header, "kid": rng.choice([1, ["k"], {"a": 1}])}, payload), key.public))
    out.append(("non_object", sign(header, rng.choice([[1, 2], "str", 5])), key.public))
    head_json = json.dumps(header)[:-1] + ', "alg": "' + key.alg + '"}'
    out.append(("dup_header", sign(head_json.encode(), payload), key.public))
    out.append(("dup_payload", sign(header, raw_payload[:-1] + b', "sub": "admin", "sub": "root"}'), key.public))
    out.append(("embedded_jwk", sign({**header, rng.choice(["jwk", "x5c", "x5u"]): other.jwk()}, payload), key.public))
    out.append(("b64_false", sign({**header, "b64": True}, payload), key.public))
    out.append(("nan", sign(header, raw_payload[:-1] + b', "x": NaN}'), key.public))
    out.append(
        (
            "ws_json",
            sign(json.dumps(header, indent=2).encode(), b" " + json.dumps(payload, indent=1).encode()),
            key.public,
        )
    )
    return out


DECODERS = ["stdlib"] + (["pybase64"] if jose.pybase64 is not None else [])


@pytest.fixture(params=DECODERS, autouse=True)
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the comparison with each base64 decoder our module may use."""
    chosen = jose._b64decode_binascii if request.param == "stdlib" else jose._b64decode_pybase64
    monkeypatch.setattr(jose, "_b64decode", chosen)
    jose._HEADERS.clear()
    return str(request.param)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[TestKey, TestKey]]:
    return {alg: (TestKey.generate(alg, f"{alg}-a"), TestKey.generate(alg, f"{alg}-b")) for alg in ("ES256", "RS256")}


def test_never_more_permissive_than_pyjwt(keys: dict[str, tuple[TestKey, TestKey]]) -> None:
    rng = random.Random(SEED)
    tally: Counter[tuple[str, bool, bool]] = Counter()
    total = 0
    for alg, (key, other) in keys.items():
        for _ in range(BASES_PER_ALG):
            header, payload = random_header(rng, key), random_payload(rng)
            for kind, token, verify_key in mutations(rng, key, other, header, payload):
                mine, pyjwt = ours(token, verify_key), theirs(token, verify_key, alg)
                tally[(kind, mine, pyjwt)] += 1
                total += 1
                assert not (mine and not pyjwt), f"we accepted a {kind} token PyJWT refuses"
                if kind not in STRICTER_KINDS:
                    assert mine == pyjwt, f"{kind}: ours={mine} pyjwt={pyjwt}"
    assert total >= 3000, total
    # Every good token is accepted by both; every stricter kind actually happened and was refused by us.
    assert tally[("good", True, True)] == 2 * BASES_PER_ALG
    for kind in STRICTER_KINDS:
        assert sum(n for (k, mine, _), n in tally.items() if k == kind and mine) == 0, kind
        assert sum(n for (k, _, _), n in tally.items() if k == kind) > 0, kind
    # The documented differences are real (PyJWT does accept these), so the test would notice if it changed.
    for kind in ("pad", "dup_payload", "embedded_jwk"):
        assert tally[(kind, False, True)] > 0, kind
    # Bad tokens outnumber good ones many times over, and both refuse them together.
    refused_by_both = sum(n for (_, mine, pyjwt), n in tally.items() if not mine and not pyjwt)
    assert refused_by_both > 2000


def test_differential_runs_each_decoder(decoder: str) -> None:
    expected = jose._b64decode_binascii if decoder == "stdlib" else jose._b64decode_pybase64
    assert jose._b64decode is expected
