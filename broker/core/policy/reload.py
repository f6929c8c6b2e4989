"""The rules in force, and reloading them atomically on SIGHUP or when a policy file changes.

:class:`PolicyStore` holds the current :class:`~broker.core.policy.compile.PolicySet`. A reload
builds a complete new set from the directory and then swaps one reference, so a decision
always sees either the old rules or the new ones, never a mix. If the edited rules do not
load, the last good set stays in force, the mistakes are logged (each as file:line: field:
message) and :attr:`PolicyStore.last_error` keeps them for health checks and metrics. The first
load is different: with no last good set, :meth:`PolicyStore.open` raises, so the broker does
not start on broken rules.

Triggers, both opt-in (nothing starts at import or construction):

- :meth:`PolicyStore.install_sighup` installs a SIGHUP handler (main thread only) that runs the
  reload on a short-lived thread, so the signal handler never blocks or re-enters a reload;
- :meth:`PolicyStore.start_watching` starts a daemon thread that polls the directory's policy
  files (names and content hashes) every ``interval`` seconds and reloads when they change;
  :meth:`PolicyStore.stop_watching` stops it. ``PolicySettings.watch`` says whether the app
  starts it.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.core.policy.compile import PolicySet
from broker.core.policy.errors import PolicyLoadError
from broker.core.policy.loader import load_policy, policy_files

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did: ``ok`` and the version in force afterwards, or the load error."""

    ok: bool
    version: str
    changed: bool
    error: PolicyLoadError | None = None


class PolicyStore:
    """The current policy set of one directory, swapped atomically on reload."""

    def __init__(
        self, directory: str | Path, policy: PolicySet, loader: Callable[[str | Path], PolicySet] = load_policy
    ) -> None:
        self.directory = Path(directory)
        self._current = policy
        self._loader = loader
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._fingerprint = self.fingerprint()
        self.last_error: PolicyLoadError | None = None
        self.reloads = 0
        self.failed_reloads = 0

    @classmethod
    def open(cls, directory: str | Path, loader: Callable[[str | Path], PolicySet] = load_policy) -> PolicyStore:
        """Load the directory; raises :class:`PolicyLoadError` when it cannot be used."""
        return cls(directory, loader(directory), loader)

    @property
    def current(self) -> PolicySet:
        """The rules in force (read the attribute once per decision and use that object)."""
        return self._current

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        """``current.decide(...)``: one decision against the rules in force."""
        return self._current.decide(*args, **kwargs)

    def fingerprint(self) -> Fingerprint:
        """Name, size and SHA-256 of each policy file (empty if the directory cannot be read).

        Contents, not modification times: an edit within the file system's timestamp granularity
        that keeps the size (``EGAD0001`` to ``EGAD0002``) must still be seen. Hashing a policy
        directory, even one with 10,000 datasets, takes milliseconds.
        """
        try:
            out = []
            for path in policy_files(self.directory):
                data = path.read_bytes()
                out.append((path.name, len(data), hashlib.sha256(data).hexdigest()))
            return tuple(out)
        except OSError:
            return ()

    def reload(self) -> ReloadResult:
        """Build the rules again and swap them in; on failure keep the last good rules and log."""
        with self._reload_lock:
            fingerprint = self.fingerprint()
            old = self._current
            try:
                new = self._loader(self.directory)
            except PolicyLoadError as exc:
                self._fingerprint = fingerprint
                self.last_error = exc
                self.failed_reloads += 1
                log.error(
                    "policy reload of %s failed; keeping %s in force:\n%s", self.directory, old.version, exc.report()
                )
                return ReloadResult(False, old.version, False, exc)
            except Exception as exc:  # an unexpected failure must not take the last good rules away either
                self._fingerprint = fingerprint
                self.last_error = PolicyLoadError([])
                self.failed_reloads += 1
                log.exception(
                    "policy reload of %s failed unexpectedly (%s); keeping %s in force",
                    self.directory,
                    exc.__class__.__name__,
                    old.version,
                )
                return ReloadResult(False, old.version, False, self.last_error)
            self._current = new  # the atomic swap: one reference assignment
            self._fingerprint = fingerprint
            self.last_error = None
            self.reloads += 1
            changed = new.version != old.version
            log.info("policy reloaded from %s: %s%s", self.directory, new.version, "" if changed else " (unchanged)")
            for warning in new.warnings:
                log.warning("policy: %s", warning)
            return ReloadResult(True, new.version, changed)

    def reload_if_changed(self) -> ReloadResult | None:
        """Reload when the files changed since the last (attempted) load; None when they did not."""
        if self.fingerprint() == self._fingerprint:
            return None
        return self.reload()

    # ------------------------------------------------------------------ triggers

    def install_sighup(self) -> Callable[..., Any] | int | None:
        """Reload on SIGHUP; returns the previous handler. Must be called from the main thread."""

        def on_sighup(signum: int, frame: Any) -> None:
            threading.Thread(target=self.reload, name="policy-reload", daemon=True).start()

        return signal.signal(signal.SIGHUP, on_sighup)

    def start_watching(self, interval: float = 2.0) -> None:
        """Start the daemon thread that reloads when policy files change (idempotent)."""
        if self._watcher is not None and self._watcher.is_alive():
            return
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, args=(interval,), name="policy-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
            self._watcher = None

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reload_if_changed()
            except Exception:  # the watcher must outlive any one bad poll; the failure is logged
                log.exception("policy watcher: checking %s failed", self.directory)
