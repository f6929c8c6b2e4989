"""Visa ``conditions``: the DNF a visa issuer attaches to a visa, and its evaluation.

Passport 1.2 (Visa Object Claims > conditions, Pattern Matching). A visa that carries
non-empty ``conditions`` is valid only if the conditions are met by *other* valid, trusted
visas of the same passport:

- ``conditions`` is a list of *alternatives* (OR); each alternative is a list of *condition
  clauses* (AND); each clause is an object of *members* ``name: "<prefix>:<suffix>"``.
- A clause is met when ONE single candidate visa matches every member of the clause. Different
  clauses of one alternative may be met by different visas (or the same one).
- ``type`` is compared exactly (no prefix). Every other member carries a match type:
  ``const:`` (case-sensitive full-string equality), ``pattern:`` (full-string glob, see
  :class:`GlobMatcher`) or ``split_pattern:`` (the visa's claim split on ``;``, any piece
  matches). Anything else, or no ``:`` at all, makes the clause fail to match.
- Visas that carry conditions never satisfy another visa's conditions (no loops, no recursion).

In our records ``VisaObject.conditions`` is ``tuple[alternative, ...]`` where an alternative
is ``tuple[clause, ...]`` and a clause is ``tuple[(name, match_spec), ...]``, in the order the
issuer wrote them.

Which clause members exist. The spec restricts clause members to Visa Object claims with
string definitions; of those our :class:`~broker.core.models.VisaObject` keeps ``value``,
``source`` and ``by`` (:data:`CONDITION_MEMBERS`). Any other name (a custom visa object claim
we do not keep, ``iss``, ``sub``, ...) fails to match: we cannot confirm it, so we fail closed.
Local policy rules (not issuer conditions) may opt in to matching the JWT ``iss`` and ``sub``
through ``satisfies_clause(..., members=POLICY_MEMBERS)``.

Everything here is pure: no I/O, no clock, no regex engine. URL-valued claims are compared as
opaque strings and never fetched (Passport 1.2, URL Claims 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from broker.core.models import Visa

if TYPE_CHECKING:
    from broker.core.identity_graph import IdentityGraph

Member = tuple[str, str]
Clause = tuple[Member, ...]
Alternative = tuple[Clause, ...]
Conditions = tuple[Alternative, ...]

# Visa Object claims a condition clause may constrain (besides `type`), as issuers use them.
CONDITION_MEMBERS: frozenset[str] = frozenset({"value", "source", "by"})
# For local policy rules only: also the JWT claims of the visa identity.
POLICY_MEMBERS: frozenset[str] = CONDITION_MEMBERS | {"iss", "sub"}
# Members the spec forbids in a clause ("MUST NOT include conditions", "MUST NOT contain a
# timestamp claim such as asserted"): a clause naming one is malformed.
FORBIDDEN_MEMBERS: frozenset[str] = frozenset({"conditions", "asserted"})

CONST_PREFIX = "const"
PATTERN_PREFIX = "pattern"
SPLIT_PATTERN_PREFIX = "split_pattern"
SPLIT_SEPARATOR = ";"

# Bounds (DESIGN rule 5). Real conditions are a handful of short clauses; these limits only
# stop a hostile or broken issuer from making evaluation expensive.
MAX_PATTERN_LENGTH = 4096  # characters in one glob
MAX_CONDITION_CLAUSES = 64  # clauses over all alternatives of one visa
MAX_CLAUSE_MEMBERS = 16  # members (including `type`) in one clause
PATTERN_CACHE_SIZE = 1024  # compiled globs kept (least recently used evicted)


class Matcher(Protocol):
    """Something that decides whether one claim value matches."""

    def matches(self, value: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ConstMatcher:
    """``const:`` -- case-sensitive full-string equality, no normalization of any kind."""

    expected: str

    def matches(self, value: str) -> bool:
        return isinstance(value, str) and value == self.expected


@dataclass(frozen=True, slots=True)
class GlobTrace:
    """What one glob evaluation did: the answer and how many input characters it consumed."""

    matched: bool
    steps: int


class GlobMatcher:
    """Full-string glob of Passport 1.2 "Pattern Matching": ``?`` is one character, ``*`` any run.

    There is no escape character and no character class: ``?`` and ``*`` are always wildcards and
    every other character (``[``, ``]``, ``\\``, ``!``...) stands for itself, case-sensitively.
    That is why this is not :mod:`fnmatch` (classes, platform case folding) and why "character"
    here means one Python code point, ``\\n`` included.

    Why not a regex: a backtracking engine can take exponential time on globs such as
    ``*a*a*a*a*b`` (ReDoS, THREAT-MODEL GA-15). Instead the glob compiles to a position automaton
    (state ``i`` = "the first ``i`` glob characters have matched the input read so far") that is
    simulated bit-parallel: the set of live states is one Python integer with one bit per glob
    position. Each input character costs a fixed handful of integer operations (mask, shift, or)
    and there is no backtracking, so a match is one left-to-right pass over the value:
    ``len(value)`` steps, each over a state of ``len(glob) + 1`` bits. Consecutive ``*`` collapse
    into one (same language), so a star's epsilon move needs a single shift.
    """

    __slots__ = ("_accept", "_any", "_has_star", "_literal", "_masks", "_min_length", "_star", "glob", "state_bits")

    def __init__(self, glob: str) -> None:
        if not isinstance(glob, str):
            raise TypeError(f"a glob must be a string, not {type(glob).__name__}")
        if len(glob) > MAX_PATTERN_LENGTH:
            raise ValueError(f"glob is {len(glob)} characters long; the limit is {MAX_PATTERN_LENGTH}")
        self.glob = glob
        collapsed: list[str] = []
        for ch in glob:
            if ch == "*" and collapsed and collapsed[-1] == "*":
                continue
            collapsed.append(ch)
        any_mask = star_mask = 0
        literal_masks: dict[str, int] = {}
        for position, ch in enumerate(collapsed):
            bit = 1 << position
            if ch == "*":
                star_mask |= bit
            elif ch == "?":
                any_mask |= bit
            else:
                literal_masks[ch] = literal_masks.get(ch, 0) | bit
        # A literal position accepts its own character; a `?` position accepts every character.
        self._masks = {ch: mask | any_mask for ch, mask in literal_masks.items()}
        self._any = any_mask
        self._star = star_mask
        self._accept = 1 << len(collapsed)
        self._has_star = star_mask != 0
        self._literal = not star_mask and not any_mask
        self._min_length = len(collapsed) - star_mask.bit_count()
        self.state_bits = len(collapsed) + 1

    def __repr__(self) -> str:
        return f"GlobMatcher({self.glob!r})"

    def matches(self, value: str) -> bool:
        return self.trace(value).matched

    def trace(self, value: str) -> GlobTrace:
        """Run the automaton and report the steps taken (the instrumented form of :meth:`matches`).

        ``steps`` is the number of input characters read; it never exceeds ``len(value)``.
        """
        if not isinstance(value, str):
            return GlobTrace(False, 0)
        if self._literal:
            return GlobTrace(value == self.glob, 0)
        if len(value) < self._min_length or (not self._has_star and len(value) != self._min_length):
            return GlobTrace(False, 0)
        star = self._star
        masks = self._masks
        any_mask = self._any
        state = 1 | ((1 & star) << 1)
        for index, ch in enumerate(value):
            # Advance every live state whose glob character accepts `ch`; a live `*` also stays.
            state = ((state & masks.get(ch, any_mask)) << 1) | (state & star)
            # Epsilon move: a live `*` may also match nothing more.
            state |= (state & star) << 1
            if not state:
                return GlobTrace(False, index + 1)
        return GlobTrace(bool(state & self._accept), len(value))


@dataclass(frozen=True, slots=True)
class SplitPatternMatcher:
    """``split_pattern:`` -- split the claim on ``;`` and match if any whole piece matches the glob.

    The split is on the raw claim text: for LinkedIdentities that is the percent-encoded form,
    so the glob must be written in the same encoding the issuer used (SPEC-DIGEST section 11.2).
    """

    pattern: GlobMatcher

    def matches(self, value: str) -> bool:
        if not isinstance(value, str):
            return False
        return any(self.pattern.matches(piece) for piece in value.split(SPLIT_SEPARATOR))


@lru_cache(maxsize=PATTERN_CACHE_SIZE)
def compile_pattern(glob: str) -> GlobMatcher:
    """Compile a Passport glob (``?``, ``*``; nothing else special). Cached, bounded LRU.

    Raises ``ValueError`` for a glob longer than :data:`MAX_PATTERN_LENGTH`.
    """
    return GlobMatcher(glob)


def compile_matcher(spec: str) -> Matcher | None:
    """The matcher for one clause member value ``"<prefix>:<suffix>"``, or ``None`` (never matches).

    The prefix is everything before the FIRST ``:`` (suffixes such as URLs contain colons) and is
    case-sensitive. ``None`` for: no ``:``, an unknown prefix (``regex:``, ``Const:``...), a
    non-string, or a glob over the length limit. Callers treat ``None`` as "this member fails".
    """
    if not isinstance(spec, str):
        return None
    prefix, colon, suffix = spec.partition(":")
    if not colon:
        return None
    if prefix == CONST_PREFIX:
        return ConstMatcher(suffix)
    if prefix not in (PATTERN_PREFIX, SPLIT_PATTERN_PREFIX):
        return None
    try:
        glob = compile_pattern(suffix)
    except ValueError:
        return None  # over-long glob: fails to match, which rejects the conditioned visa
    return glob if prefix == PATTERN_PREFIX else SplitPatternMatcher(glob)


def conditions_from_claim(raw: Any) -> Conditions:
    """Validate the JSON ``conditions`` claim and convert it to the ``VisaObject.conditions`` shape.

    Accepted: a list of non-empty lists of objects whose values are all strings, each object
    having ``type`` and at least one other member, none of them ``conditions`` or ``asserted``.
    ``[]`` returns ``()`` (no conditions: the spec only constrains *non-empty* conditions). An
    empty inner list is refused rather than read as vacuously true. Member order is kept.

    Not checked here, on purpose: member names outside :data:`CONDITION_MEMBERS` and unknown
    match prefixes. The spec says such a clause *fails to match*, which leaves the other
    alternatives free to be met; :func:`satisfies_clause` implements that.

    Raises ``ValueError`` saying where the shape is wrong.
    """
    if not isinstance(raw, list):
        raise ValueError(f"conditions must be an array of arrays of clause objects, not {_json_type(raw)}")
    alternatives: list[Alternative] = []
    clause_count = 0
    for i, alternative in enumerate(raw):
        where = f"conditions[{i}]"
        if not isinstance(alternative, list):
            raise ValueError(f"{where} must be an array of clause objects, not {_json_type(alternative)}")
        if not alternative:
            raise ValueError(f"{where} is an empty array; an alternative needs at least one clause")
        clauses: list[Clause] = []
        for j, clause in enumerate(alternative):
            clause_count += 1
            if clause_count > MAX_CONDITION_CLAUSES:
                raise ValueError(f"conditions has more than {MAX_CONDITION_CLAUSES} clauses")
            clauses.append(_clause_from_claim(clause, f"{where}[{j}]"))
        alternatives.append(tuple(clauses))
    return tuple(alternatives)


def _clause_from_claim(clause: Any, where: str) -> Clause:
    if not isinstance(clause, Mapping):
        raise ValueError(f"{where} must be a clause object, not {_json_type(clause)}")
    if len(clause) > MAX_CLAUSE_MEMBERS:
        raise ValueError(f"{where} has {len(clause)} members; the limit is {MAX_CLAUSE_MEMBERS}")
    members: list[Member] = []
    for name, value in clause.items():
        if not isinstance(name, str):
            raise ValueError(f"{where} has a non-string member name")
        if name in FORBIDDEN_MEMBERS:
            raise ValueError(f"{where} must not constrain {name!r}")
        if not isinstance(value, str):
            raise ValueError(f"{where}.{name} must be a string, not {_json_type(value)}")
        members.append((name, value))
    if "type" not in clause:
        raise ValueError(f"{where} has no 'type' member")
    if len(clause) < 2:
        raise ValueError(f"{where} must constrain at least one visa object claim besides 'type'")
    return tuple(members)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _claim_of(visa: Visa, name: str) -> str | None:
    """The visa's value for a clause member name (``None`` = absent, which never matches)."""
    if name == "value":
        return visa.visa.value
    if name == "source":
        return visa.visa.source
    if name == "by":
        return visa.visa.by  # absent `by` is "unknown" and fails any specific-`by` member
    if name == "iss":
        return visa.iss
    if name == "sub":
        return visa.sub
    return None


def satisfies_clause(clause: Clause, visa: Visa, *, members: frozenset[str] = CONDITION_MEMBERS) -> bool:
    """True when this one visa matches every member of the clause.

    ``type`` is compared exactly (an issuer writing ``"type": "const:X"`` gets a literal compare
    that fails). Every other member needs a known prefix and a name in ``members``. A clause
    without ``type`` or without any other member is incorrect and never matches. Whether the
    visa itself carries conditions is not looked at here (see :func:`evaluate_conditions`).
    """
    has_type = has_other = False
    for name, spec in clause:
        if name == "type":
            if visa.visa.type != spec:
                return False
            has_type = True
    if not has_type:
        return False
    for name, spec in clause:
        if name == "type":
            continue
        if name not in members:
            return False
        actual = _claim_of(visa, name)
        if actual is None:
            return False
        matcher = compile_matcher(spec)
        if matcher is None or not matcher.matches(actual):
            return False
        has_other = True
    return has_other


def evaluate_conditions(
    visa: Visa, candidates: Sequence[Visa], *, graph: IdentityGraph | None = None, same_sub: str | None = None
) -> tuple[bool, tuple[Visa, ...]]:
    """Decide whether ``visa``'s conditions are met; return ``(met, visas used)``.

    ``candidates`` are the other visas of the same passport that passed every validity and trust
    check. Candidates that carry conditions themselves are skipped, as is ``visa``. A visa
    without conditions (absent or ``[]``) is met with nothing used.

    Identity (Passport 1.2 General Requirements 8.4): a candidate counts only when its visa
    identity ``(iss, sub)`` is ``visa``'s own or is linked to it by ``graph``, and the
    LinkedIdentities visas that link a used candidate are part of the visas used. Without
    ``graph`` nothing is linked (the same as an empty graph): only candidates of exactly
    ``visa``'s identity count. That default is the safe one on purpose: a caller that forgets
    the graph gets too few matches (a denial), never another person's visas (THREAT-MODEL
    JWT-17). Pass ``IdentityGraph.from_visas(<trusted LinkedIdentities visas>)`` to combine
    identities. ``same_sub`` (the passport's ``sub`` when its broker's identity binding is
    ``same_sub``, see :class:`~broker.core.models.IdentityBinding`): when ``visa`` has that
    exact ``sub``, so does every candidate that counts without a link, whatever its ``iss``.

    The visas used are the caller's input to the effective expiry (the minimum ``exp`` over every
    visa used). When several candidates or alternatives would do, we pick, per clause, the
    candidate whose (link-inclusive) ``exp`` is latest and the alternative whose earliest such
    ``exp`` is latest, ties going to the first in order; so the expiry is as long as the
    passport allows, deterministically. An unmet result uses nothing.
    """
    conditions = visa.visa.conditions
    if not conditions:
        return True, ()
    pool: list[tuple[Visa, tuple[Visa, ...], int]] = []
    for candidate in candidates:
        if candidate is visa or candidate.conditioned:
            continue
        links: tuple[Visa, ...] = ()
        if (candidate.iss != visa.iss or candidate.sub != visa.sub) and not (
            same_sub is not None and visa.sub == same_sub and candidate.sub == same_sub
        ):
            if graph is None or not graph.linked(visa.identity, candidate.identity):
                continue  # another identity, and nothing (trusted) says it is the same person
            links = graph.link_visas(visa.identity, candidate.identity)
        pool.append((candidate, links, min([candidate.exp, *(link.exp for link in links)])))

    best: tuple[int, list[Visa]] | None = None
    for alternative in conditions:
        if not alternative:
            continue  # malformed (conditions_from_claim refuses it); never vacuously true
        used: list[Visa] = []
        earliest: int | None = None
        for clause in alternative:
            pick: tuple[Visa, tuple[Visa, ...], int] | None = None
            for entry in pool:
                if (pick is None or entry[2] > pick[2]) and satisfies_clause(clause, entry[0]):
                    pick = entry
            if pick is None:
                break
            used.append(pick[0])
            used.extend(pick[1])
            earliest = pick[2] if earliest is None else min(earliest, pick[2])
        else:
            if earliest is not None and (best is None or earliest > best[0]):
                best = (earliest, used)
    if best is None:
        return False, ()
    return True, tuple(dict.fromkeys(best[1]))
