"""The required-visas document: what a dataset needs, machine-readable, from the compiled rule.

A client reads it to tell a researcher what to apply for (GA4GH DRS issues #339, #352 ask for
such a thing); the gateway serves it and ``policy required`` / ``policy explain`` print it.
It is produced from the same compiled rule the decisions use, with the dataset's variables
filled in, so it cannot drift from what is enforced. Shape (``format`` names the version)::

    {"format": "ga4gh-broker.required-visas/v1", "dataset": "...", "description": "...",
     "action": "read", "policy_version": "sha256:...",
     "requires": {"any_of": [ {"visa": {"type": "ControlledAccessGrants",
                                        "value": {"one_of": ["https://.../EGAD1"]},
                                        "source": {"one_of": [...], "lists": ["trusted_dacs"]},
                                        "by": {"one_of": ["dac"]},
                                        "issuers": {"one_of": ["https://..."]}}}, {"all_of": [...]} ]},
     "data_use": {"term": "DUO:0000007", "label": "...", "purpose_required": true,
                  "compatible_purposes": ["DUO:0000007", "MONDO:..."]} | null,
     "max_assertion_age_seconds": null, "identity": "..."}

Each matcher is ``one_of`` (exact values), ``patterns`` / ``split_patterns`` (Passport globs),
and ``lists`` (names of the lists the exact values came from). ``issuers`` is
``{"any_trusted": true}`` when the rule accepts every issuer the broker's trust settings accept.
"""

from __future__ import annotations

from typing import Any

from broker.core.policy.compile import PolicySet
from broker.core.policy.matchers import Env
from broker.core.policy.nodes import READ, AllOfNode, Compiled, Requirement
from broker.errors import BrokerError

FORMAT = "ga4gh-broker.required-visas/v1"
IDENTITY_NOTE = (
    "all visas used must belong to the passport holder's identity, or to identities linked to it "
    "by LinkedIdentities visas from trusted issuers (or, in passports of a broker trusted to vouch "
    "for its sub, carry the holder's exact sub)"
)


class UnknownDataset(BrokerError, LookupError):
    """No dataset (or template) covers this id, or the dataset grants no such action."""

    status = 404
    code = "unknown_dataset"


def required_visas(policy: PolicySet, dataset: str, action: str = READ) -> dict[str, Any]:
    """The document for ``dataset``; raises :class:`UnknownDataset` when there is none."""
    resolved, why = policy.resolve(dataset)
    if resolved is None:
        raise UnknownDataset(why.message if why else f"no dataset {dataset!r}")
    entry = resolved.entry
    rule = entry.rules.get(action)
    if rule is None:
        raise UnknownDataset(f"dataset {dataset} grants only: {', '.join(sorted(entry.rules))}")
    data_use = None
    if entry.data_use is not None:
        term = entry.data_use.render(resolved.env)
        compatible = sorted(t.id for t in policy.terms.terms.values() if term in t.ancestors)
        data_use = {
            "term": term,
            "label": policy.terms.terms[term].label if term in policy.terms else None,
            "purpose_required": True,
            "compatible_purposes": compatible,
        }
    return {
        "format": FORMAT,
        "dataset": dataset,
        "description": entry.description,
        "action": action,
        "policy_version": policy.version,
        "requires": node_json(rule, resolved.env),
        "data_use": data_use,
        "max_assertion_age_seconds": entry.max_assertion_age,
        "identity": IDENTITY_NOTE,
    }


def node_json(node: Compiled, env: Env) -> dict[str, Any]:
    """One compiled rule node as required-visas JSON (variables filled from ``env``)."""
    if isinstance(node, Requirement):
        visa: dict[str, Any] = {"id": node.id, "type": node.type}
        if node.label:
            visa["description"] = node.label
        for name, matcher in node.checks:
            visa[name] = matcher.to_json(env)
        visa["issuers"] = node.issuers.to_json(env) if node.issuers is not None else {"any_trusted": True}
        return {"visa": visa}
    key = "all_of" if isinstance(node, AllOfNode) else "any_of"
    out: dict[str, Any] = {key: [node_json(child, env) for child in node.children], "id": node.id}
    if node.label:
        out["description"] = node.label
    return out
