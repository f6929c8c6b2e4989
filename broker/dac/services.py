"""The DAC services of one process, built together from settings and a store.

The command line, the REST API and the passport builder all use the same objects, so a
rule (who may grant, what is audited) holds the same whichever way a change comes in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.dac.committees import Directory
from broker.dac.grants import GrantService
from broker.dac.members import MemberService
from broker.dac.registered import RegisteredAccessService
from broker.dac.settings import DacSettings, check_dac_settings
from broker.store.base import Grant, Store

if TYPE_CHECKING:
    from broker.settings import Settings


@dataclass
class DacServices:
    """Directory, grants, members and registered access over one store."""

    directory: Directory
    grants: GrantService
    members: MemberService
    registered: RegisteredAccessService


def build_services(
    settings: Settings,
    store: Store,
    *,
    dac: DacSettings | None = None,
    on_revoke: Callable[[Grant], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> DacServices:
    """The services for ``settings`` (``dac`` overrides ``settings.dac``), checked first.

    ``on_revoke(grant)`` is called after every revocation of a grant or registered-access
    record (the gateway / verifier cache hook).
    """
    dac = dac if dac is not None else settings.dac
    check_dac_settings(dac, settings.issuer)
    directory = Directory(dac, settings.issuer)
    return DacServices(
        directory=directory,
        grants=GrantService(store, directory, clock=clock, on_revoke=on_revoke),
        members=MemberService(store, directory, clock=clock),
        registered=RegisteredAccessService(store, directory, clock=clock, on_revoke=on_revoke),
    )
