"""The ``policy:`` settings section, and which rule set a configuration puts in force.

:func:`policy_directory` is the one answer to "which folder": the configured directory, or,
when the default directory does not exist, the embedded empty rule set (every data request
denied) so that a fresh install starts. A configured directory that is missing or broken
stops the broker. :func:`check_policy` loads it once, so ``config check`` refuses a broken
rule set just as start-up does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from broker.core.policy.loader import load_policy
from broker.settings_model import SettingsModel

DEFAULT_DIRECTORY = "policies"
EMBEDDED_POLICIES = Path(__file__).resolve().parent / "embedded"


class PolicySettings(SettingsModel):
    """Where dataset access rules live and whether edits are picked up live."""

    directory: str = Field(
        DEFAULT_DIRECTORY,
        description="The rule files; when the default folder does not exist, no dataset is readable.",
    )
    watch: bool = Field(True, description="Pick up edits of the rule files without a restart.")


def policy_directory(policy: PolicySettings) -> tuple[Path, bool]:
    """The folder of the rules in force, and whether it is the embedded empty rule set."""
    directory = Path(policy.directory)
    if policy.directory == DEFAULT_DIRECTORY and not directory.is_dir():
        return EMBEDDED_POLICIES, True
    return directory, False


def check_policy(policy: PolicySettings) -> None:
    """Load the rules once; :class:`~broker.core.policy.errors.PolicyLoadError` if they cannot be used."""
    load_policy(policy_directory(policy)[0])
