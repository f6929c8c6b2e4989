"""Data use terms (GA4GH DUO) on datasets, checked against the purpose a request declares.

Kept apart from visas on purpose (SPEC-DIGEST 10.1): visas say who the researcher is and what
they were granted; DUO says what the data may be used for. A dataset may name one data use
permission term (``data_use: DUO:0000006``). A request for it must then declare a purpose,
itself a term, and the purpose is compatible when the dataset's term is the purpose or one of
its ancestors: DUO queries are written at the most specific level, so a "lung cancer" purpose
fits a dataset for "cancer" research, and both fit "health/medical/biomedical" (HMB) and
"general research use" (GRU) datasets, but an HMB purpose does not fit a disease-specific one.

The hierarchy is not built in: policy files list every term they use under ``data_use_terms``
with its ``parent`` (the shipped ``policies/data_use.yaml`` has GRU > HMB > DS and a few
diseases). Only this subset of DUO is supported: one permission term per dataset and the
ancestor rule. Modifiers (IRB approval, publication, ...) are not checked here; a dataset
that needs one should require a visa for it (e.g. an AcceptedTermsAndPolicies for a DUA).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker.errors import BrokerError


class TermError(BrokerError, ValueError):
    """A mistake in the term hierarchy; ``term`` is the id it is about."""

    status = 400
    code = "invalid_term"

    def __init__(self, term: str, message: str) -> None:
        super().__init__(message)
        self.term = term


@dataclass(frozen=True, slots=True)
class Term:
    id: str
    label: str
    parent: str | None
    ancestors: frozenset[str]  # itself, its parent, the parent's parent, ...


@dataclass(frozen=True, slots=True)
class PurposeCheck:
    """The outcome of checking a purpose: ``code`` is None when compatible."""

    code: str | None
    message: str


class DataUseTerms:
    """The term hierarchy of a policy set, ancestors precomputed (each check is a set lookup)."""

    def __init__(self, terms: Mapping[str, Term]) -> None:
        self.terms = dict(terms)

    @classmethod
    def build(cls, parents: Mapping[str, tuple[str, str | None]]) -> DataUseTerms:
        """From ``{id: (label, parent)}``; raises :class:`TermError` for a cycle or an unknown parent."""
        for term_id, (_, parent) in parents.items():
            if parent is not None and parent not in parents:
                raise TermError(term_id, f"parent {parent} is not defined under data_use_terms")
        terms: dict[str, Term] = {}
        for term_id, (label, parent) in parents.items():
            chain = [term_id]
            seen = {term_id}
            current = parent
            while current is not None:
                if current in seen:
                    raise TermError(term_id, f"its parents form a cycle ({' > '.join([*chain, current])})")
                seen.add(current)
                chain.append(current)
                current = parents[current][1]
            terms[term_id] = Term(term_id, label, parent, frozenset(chain))
        return cls(terms)

    def __contains__(self, term_id: object) -> bool:
        return term_id in self.terms

    def label(self, term_id: str) -> str:
        term = self.terms.get(term_id)
        return f"{term_id} ({term.label})" if term else term_id

    def check(self, dataset_term: str, purpose: str | None) -> PurposeCheck:
        """Is the declared ``purpose`` compatible with a dataset limited to ``dataset_term``?"""
        if purpose is None or purpose == "":
            return PurposeCheck(
                "purpose_missing",
                f"this dataset may only be used for {self.label(dataset_term)}; the request must declare its purpose",
            )
        term = self.terms.get(purpose)
        if term is None:
            return PurposeCheck("purpose_unknown", f"purpose {purpose!r} is not a data use term this broker knows")
        if dataset_term not in term.ancestors:
            return PurposeCheck(
                "purpose_incompatible", f"purpose {self.label(purpose)} is not within {self.label(dataset_term)}"
            )
        return PurposeCheck(None, f"purpose {self.label(purpose)} is within {self.label(dataset_term)}")
