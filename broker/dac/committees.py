"""Who governs which dataset, and who may act for whom: the DAC directory.

Built from :class:`~broker.dac.settings.DacSettings` plus the memberships kept in the store
(``dac members add``). Lookups are exact: a dataset id is governed by the DAC that lists it
exactly, else by the one DAC whose glob matches it; when two DACs' globs both match (a
configuration overlap a type check cannot rule out) nobody governs it and every action on it
is refused (fail closed, THREAT-MODEL GA-12).

Dataset ids are checked here (why it is hand-written: they become part of a URL claim and
of store keys, so the accepted alphabet is small and explicit, with a reserved prefix for
the broker's own records).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from broker.core.conditions import compile_pattern
from broker.dac.errors import ValidationError
from broker.dac.settings import (
    DATASET_PLACEHOLDER,
    MAX_URL_CLAIM_CHARS,
    DacEntrySettings,
    DacSettings,
    dataset_id_problem,
    default_dataset_url_template,
)

ROLE_MEMBER = "member"
ROLE_CHAIR = "chair"
ROLES = (ROLE_MEMBER, ROLE_CHAIR)


def check_dataset_id(dataset: object) -> str:
    """``dataset`` if it is an acceptable dataset id, else :class:`ValidationError` (field ``dataset``)."""
    problem = dataset_id_problem(dataset)
    if problem is not None:
        raise ValidationError(problem[0], {"dataset": problem[1]})
    assert isinstance(dataset, str)
    return dataset


@dataclass(frozen=True)
class Committee:
    """One DAC as the services use it."""

    id: str
    name: str
    source: str
    datasets: frozenset[str]
    patterns: tuple[str, ...]
    url_template: str

    def governs(self, dataset: str) -> bool:
        return dataset in self.datasets or any(compile_pattern(p).matches(dataset) for p in self.patterns)

    def dataset_url(self, dataset: str) -> str:
        """The visa ``value`` for ``dataset``: the template with the id percent-encoded."""
        return self.url_template.replace(DATASET_PLACEHOLDER, quote(dataset, safe="-._~:+"))


class Directory:
    """The DACs, their datasets and the site admins; memberships come from ``members_of``."""

    def __init__(self, settings: DacSettings, issuer: str) -> None:
        self.settings = settings
        self.issuer = issuer
        default = settings.dataset_url_template or default_dataset_url_template(issuer)
        self._committees = {entry.id: _committee(entry, default) for entry in settings.committees}
        self._declared = {entry.id: {m.identity: m.role for m in entry.members} for entry in settings.committees}
        self.admins = frozenset(settings.admins)

    def committees(self) -> list[Committee]:
        return list(self._committees.values())

    def get(self, dac_id: str) -> Committee | None:
        return self._committees.get(dac_id) if isinstance(dac_id, str) else None

    def governing(self, dataset: str) -> Committee | None:
        """The one DAC governing ``dataset``; None when none does or when it is ambiguous."""
        for committee in self._committees.values():
            if dataset in committee.datasets:
                return committee
        matching = [c for c in self._committees.values() if c.governs(dataset)]
        return matching[0] if len(matching) == 1 else None

    def declared_members(self, dac_id: str) -> dict[str, str]:
        """identity -> role as written in the settings file."""
        return dict(self._declared.get(dac_id, {}))

    def is_admin(self, identity: str | None) -> bool:
        return identity is not None and identity in self.admins

    def check_dataset_url(self, committee: Committee, dataset: str) -> str:
        url = committee.dataset_url(dataset)
        if len(url) > MAX_URL_CLAIM_CHARS:
            raise ValidationError(
                f"the dataset URL would be longer than {MAX_URL_CLAIM_CHARS} characters",
                {"dataset": "too long for a URL claim"},
            )
        return url


def _committee(entry: DacEntrySettings, default_template: str) -> Committee:
    return Committee(
        id=entry.id,
        name=entry.name or entry.id,
        source=entry.source,
        datasets=frozenset(entry.datasets),
        patterns=tuple(entry.dataset_patterns),
        url_template=entry.dataset_url_template or default_template,
    )


def roles_in(memberships: Iterable[tuple[str, str]]) -> dict[str, str]:
    """dac id -> the highest role in ``(dac id, role)`` pairs (chair over member)."""
    out: dict[str, str] = {}
    for dac_id, role in memberships:
        if role == ROLE_CHAIR or dac_id not in out:
            out[dac_id] = role
    return out
