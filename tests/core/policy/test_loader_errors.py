"""Mistakes in policy files are reported as file, line, field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.policy.errors import PolicyError, PolicyLoadError
from tests.core.policy.support import GRANT_DATASET, LISTS, load


def errors_of(tmp_path: Path, files: dict[str, str]) -> list[PolicyError]:
    with pytest.raises(PolicyLoadError) as caught:
        load(tmp_path, files)
    return list(caught.value.errors)


def only_error(tmp_path: Path, files: dict[str, str]) -> PolicyError:
    errors = errors_of(tmp_path, files)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_unknown_field_names_file_line_field_and_suggests_the_right_one(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: typo in a visa requirement
            read:
              visa:
                type: ResearcherStatus
                valu: const:https://x/
        """
        },
    )
    assert error.file.endswith("d.yaml")
    assert error.line == 7
    assert error.field == "datasets.A.read.visa.valu"
    assert "unknown field 'valu'" in error.message and "did you mean 'value'" in error.message
    assert str(error).startswith(f"{error.file}:7: datasets.A.read.visa.valu: ")


def test_unknown_top_level_section(tmp_path: Path) -> None:
    error = only_error(tmp_path, {"d.yaml": "dataset:\n  A: {}\n"})
    assert (error.line, error.field) == (1, "dataset")
    assert "did you mean 'datasets'" in error.message


def test_undefined_list_is_an_error_where_it_is_used(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: uses a list nobody defined
            read:
              visa:
                type: ControlledAccessGrants
                value: const:https://x/A
                source: list:trusted_dac
        """
        },
    )
    assert (error.line, error.field) == (8, "datasets.A.read.visa.source")
    assert "list 'trusted_dac' is not defined" in error.message


def test_undefined_rule_and_unknown_with_variable(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "rules.yaml": """
        rules:
          grant:
            description: a grant
            rule: {visa: {type: ControlledAccessGrants, value: "const:https://x/${dataset}", by: dac}}
        """,
            "d.yaml": """
        datasets:
          A:
            description: undefined rule
            read: {rule: grnat}
          B:
            description: a variable the rule does not have
            read: {rule: grant, with: {dac: X}}
        """,
        },
    )
    messages = {(e.line, e.message) for e in errors}
    assert any(line == 4 and "rule 'grnat' is not defined" in m for line, m in messages)
    assert any(line == 7 and "rule 'grant' has no variable ${dac}" in m for line, m in messages)


def test_rule_that_uses_itself(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "rules.yaml": """
        rules:
          a:
            description: uses b
            rule: {rule: b}
          b:
            description: uses a
            rule: {any_of: [{rule: a}]}
        """,
            "d.yaml": """
        datasets:
          A: {description: loops, read: {rule: a}}
        """,
        },
    )
    assert any("uses itself (a > b > a)" in e.message for e in errors)


def test_unbound_variable_in_a_dataset_and_in_a_pattern_template(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "rules.yaml": """
        rules:
          by_dac:
            description: needs ${dac}
            rule: {visa: {type: ControlledAccessGrants, value: "const:https://x/${dataset}",
                          source: "const:https://dacs/${dac}", by: dac}}
        """,
            "d.yaml": """
        datasets:
          A: {description: no dac here, read: {rule: by_dac}}
        templates:
          range:
            description: a pattern template defines only ${dataset}
            dataset_pattern: R*
            read: {rule: by_dac}
        """,
        },
    )
    texts = [str(e) for e in errors]
    assert any("${dac} has no value for dataset A" in t and "rules.yaml:4" in t for t in texts), texts
    assert any("${dac} has no value: template range covers a dataset_pattern" in t for t in texts), texts


def test_template_bindings_missing_unused_and_widening(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "t.yaml": """
        templates:
          studies:
            description: per-dataset dac
            datasets:
              S1: {dac: D1}
              S2: {}
              S3: {dac: D3, extra: x}
              S4: {dac: "D*"}
            read:
              visa: {type: ControlledAccessGrants, value: "const:urn:${dataset}", source: "pattern:urn:${dac}:*",
                     by: dac}
        """
        },
    )
    by_line = {e.line: e.message for e in errors}
    assert "dataset S2 gives no value for ${dac}" in by_line[6]
    assert "does not use ${extra}" in by_line[7]
    assert "used in a pattern, so its value cannot contain * or ?" in by_line[8]
    assert 5 not in by_line


def test_dataset_defined_twice_across_files_names_both_places(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "a.yaml": """
        datasets:
          A: {description: first, read: {registered_access: }}
        """,
            "b.yaml": """
        templates:
          t:
            description: lists A again
            datasets: [B, A]
            read: {registered_access: }
        """,
        },
    )
    assert len(errors) == 1
    assert errors[0].file.endswith("b.yaml") and errors[0].line == 4
    assert "dataset A is already defined at" in errors[0].message and "a.yaml:2" in errors[0].message


def test_duplicate_key_in_one_mapping_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A: {description: first, read: {registered_access: }}
          A: {description: second, read: {registered_access: }}
        """
        },
    )
    assert error.line == 3 and "'A' is written twice (first on line 2)" in error.message


def test_visa_type_typo_and_linked_identities_are_refused(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: typo
            read: {visa: {type: ControlledAccessGrant, value: const:x}}
          B:
            description: linked identities cannot grant
            read: {visa: {type: LinkedIdentities, value: "pattern:*"}}
        """
        },
    )
    by_line = {e.line: e for e in errors}
    assert "unknown visa type 'ControlledAccessGrant'" in by_line[4].message
    assert by_line[4].field == "datasets.A.read.visa.type"
    assert "cannot be required" in by_line[7].message


def test_url_without_prefix_suggests_const(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: missing const
            read: {visa: {type: ResearcherStatus, value: "https://doi.org/10.1038/s41431-018-0219-y"}}
        """
        },
    )
    assert error.field == "datasets.A.read.visa.value"
    assert "write 'const:https://doi.org/10.1038/s41431-018-0219-y'" in error.message


def test_requirement_without_value_is_refused_since_any_grant_would_do(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: no value
            read: {visa: {type: ControlledAccessGrants, by: dac}}
        """
        },
    )
    assert "needs 'value'" in error.message and "any ControlledAccessGrants visa would do" in error.message


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        ("{visa: {type: ResearcherStatus, value: const:x, by: dacs}}", "'dacs' is not a 'by' value"),
        ("{visa: {type: ResearcherStatus, role: faculty}}", "role and affiliation are parts of an AffiliationAndRole"),
        ("{visa: {type: AffiliationAndRole, value: const:a@b, role: a}}", "either 'value' or 'role'/'affiliation'"),
        ("{any_of: []}", "any_of needs at least one rule"),
        ("{visa: {type: ResearcherStatus, value: const:x}, any_of: []}", "exactly one of"),
        ("{visa: {type: ResearcherStatus, value: 'const:'}}", "matches only empty text"),
        ("{visa: {type: ResearcherStatus, value: regex:.*}}", "does not start with const:, pattern:"),
        ("{visa: {type: ResearcherStatus, value: const:x, issuers: 'pattern:https://*'}}", "patterns are not allowed"),
        ("{visa: {type: ResearcherStatus, value: true}}", "got the boolean true (put it in quotes"),
        ("{visa: {type: ResearcherStatus, value: 'const:${data set}'}}", "is not a variable name"),
        ("{visa: {type: ResearcherStatus, value: 'const:${dataset'}}", "needs a closing '}'"),
        ("{rule: x, with: {}, visa: {}}", "exactly one of"),
        ("[a, b]", "expected a rule"),
    ],
)
def test_rule_shape_mistakes(tmp_path: Path, read: str, expected: str) -> None:
    errors = errors_of(tmp_path, {"d.yaml": f"datasets:\n  A:\n    description: x\n    read: {read}\n"})
    assert any(expected in e.message for e in errors), [str(e) for e in errors]
    assert all(e.line == 4 for e in errors)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("datasets:\n  A: {read: {registered_access: }}\n", 2, "missing required field 'description'"),
        ("datasets:\n  'a b': {description: x, read: {registered_access: }}\n", 2, "not a usable dataset id"),
        (
            "datasets:\n  A: {description: x, read: {registered_access: }, max_assertion_age: 10 days}\n",
            2,
            "expected a duration",
        ),
        ("lists:\n  l: []\n", 2, "needs at least one value"),
        ("lists:\n  l: [a, a]\n", 2, "'a' is listed twice"),
        ("lists:\n  1l: [a]\n", 2, "not a usable name"),
        (
            "templates:\n  t: {description: x, dataset_pattern: '*', read: {registered_access: }}\n",
            2,
            "must start with literal text",
        ),
        ("templates:\n  t: {description: x, read: {registered_access: }}\n", 2, "exactly one of 'datasets'"),
        (
            "templates:\n  t: {description: x, dataset_pattern: EGAD, read: {registered_access: }}\n",
            2,
            "needs a * or ?",
        ),
        (
            "datasets:\n  A: {description: x, read: {registered_access: }, data_use: DUO:1}\n",
            2,
            "data use term DUO:1 is not defined",
        ),
        ("data_use_terms:\n  DUO:1: {label: a, parent: DUO:2}\n", 2, "parent DUO:2 is not defined"),
        ("data_use_terms:\n  DUO:1: {label: a, parent: DUO:2}\n  DUO:2: {label: b, parent: DUO:1}\n", 2, "cycle"),
        ("datasets: [a, b]\n", 1, "expected a mapping of dataset ids"),
        ("a: [b\n", 2, "invalid YAML"),
        ("lists:\n  base: &b {values: [x]}\n  other:\n    <<: *b\n", 4, "merge keys (<<) are not supported"),
    ],
)
def test_section_mistakes(tmp_path: Path, text: str, line: int, expected: str) -> None:
    errors = errors_of(tmp_path, {"d.yaml": text})
    assert any(expected in e.message and e.line == line for e in errors), [str(e) for e in errors]


def test_overlapping_dataset_patterns_are_an_error(tmp_path: Path) -> None:
    error = only_error(
        tmp_path,
        {
            "t.yaml": """
        templates:
          a: {description: a, dataset_pattern: EGAD5*, read: {registered_access: }}
          b: {description: b, dataset_pattern: EGAD?1*, read: {registered_access: }}
        """
        },
    )
    assert error.line == 3 and "can cover the same ids as 'EGAD5*'" in error.message


def test_every_mistake_in_every_file_is_reported_in_one_load(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "datasets.yaml": GRANT_DATASET,
            "a.yaml": """
        datasets:
          B: {description: x, read: {visa: {type: Nope, value: const:x}}}
          C: {description: x, read: {rule: missing}}
        """,
            "b.yaml": "lists:\n  empty: []\n",
        },
    )
    assert [(Path(e.file).name, e.line) for e in errors] == [("a.yaml", 2), ("a.yaml", 3), ("b.yaml", 2)]


def test_unused_lists_and_rules_are_warnings_not_errors(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "datasets.yaml": GRANT_DATASET,
            "r.yaml": """
        rules:
          spare: {description: unused, rule: {registered_access: }}
        """,
        },
    )
    assert any("list 'ls_login' is not used" in w for w in policy.warnings)
    assert any("rule 'spare' is not used" in w for w in policy.warnings)
