"""The DAC services of one process, built together from what they need (no root settings, no locator).

The command line, the REST API, the pages and the visa minter all use the same objects, so a
rule (who may grant, what is audited) holds the same whichever way a change comes in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.dac.applications import ApplicationService, NoticeHook
from broker.dac.committees import Directory
from broker.dac.grants import GrantService, RevokeHook
from broker.dac.identities import IdentityLookup
from broker.dac.members import MemberService, Roles
from broker.dac.notify import EmailNotifier, notifiers
from broker.dac.registered import RegisteredAccessService
from broker.dac.repository import DacRepository
from broker.dac.settings import DacSettings, check_dac_settings
from broker.store.kernel import Kernel


@dataclass(frozen=True)
class DacServices:
    """Directory, roles, grants, members and registered access over one repository."""

    directory: Directory
    repository: DacRepository
    roles: Roles
    grants: GrantService
    members: MemberService
    registered: RegisteredAccessService
    applications: ApplicationService
    notifiers: tuple[EmailNotifier, ...] = ()


def build_services(
    dac: DacSettings,
    issuer: str,
    kernel: Kernel,
    identities: IdentityLookup,
    *,
    clock: Callable[[], float] = time.time,
    on_revoke: Sequence[RevokeHook] = (),
    notify: Sequence[NoticeHook] = (),
    product: str = "GA4GH broker",
) -> DacServices:
    """The services for the ``dac:`` settings and our ``issuer``, checked first (SettingsProblem).

    ``identities.get(id)`` says whether a broker identity exists. ``on_revoke(record_id)`` hooks
    run in this process after every revocation of a grant or registered-access record (and
    for a registered-access record a new decision supersedes): the verifier / gateway cache
    eviction. Other processes learn of revocations from the audit log (RevocationWatcher).
    ``notify(notice)`` hooks hear of application events after they committed; with an SMTP host in
    ``dac.notifications`` an :class:`EmailNotifier` is one of them (``product`` names us in subjects).
    """
    check_dac_settings(dac, issuer)
    directory = Directory(dac, issuer)
    repository = DacRepository(kernel)
    roles = Roles(repository, directory)
    grants = GrantService(repository, directory, roles, identities, clock=clock, on_revoke=on_revoke)
    mailers = tuple(notifiers(dac.notifications, issuer, roles, identities, product))
    return DacServices(
        directory=directory,
        repository=repository,
        roles=roles,
        grants=grants,
        applications=ApplicationService(
            repository, directory, roles, grants, identities, clock=clock, notify=(*notify, *mailers)
        ),
        notifiers=mailers,
        members=MemberService(repository, directory, roles, identities, clock=clock),
        registered=RegisteredAccessService(repository, directory, roles, identities, clock=clock, on_revoke=on_revoke),
    )
