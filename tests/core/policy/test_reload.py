"""PolicyStore: atomic reload, last good rules kept on a broken edit, SIGHUP and the file watcher."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from broker.core.policy.compile import PolicySet
from broker.core.policy.errors import PolicyLoadError
from broker.core.policy.loader import load_policy
from broker.core.policy.reload import PolicyStore
from tests.core.policy.support import GRANT_DATASET, HOLDER, LISTS, NOW, visa, write

OTHER = GRANT_DATASET.replace("EGAD0001", "EGAD0002")


def grant(dataset: str) -> object:
    return visa(value=f"https://ega.example/datasets/{dataset}")


def allowed(store: PolicyStore, dataset: str) -> bool:
    return store.decide([grant(dataset)], None, dataset, holder=HOLDER, now=NOW).allow


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_open_refuses_a_broken_directory(tmp_path: Path) -> None:
    write(tmp_path, {"d.yaml": "datasets: [oops]\n"})
    with pytest.raises(PolicyLoadError):
        PolicyStore.open(tmp_path)


def test_reload_swaps_in_new_rules(tmp_path: Path) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    store = PolicyStore.open(directory)
    before = store.current
    assert allowed(store, "EGAD0001") and not allowed(store, "EGAD0002")
    (directory / "datasets.yaml").write_text(OTHER)
    result = store.reload()
    assert result.ok and result.changed and result.version == store.current.version != before.version
    assert allowed(store, "EGAD0002") and not allowed(store, "EGAD0001")
    assert before.resolve("EGAD0001")[0] is not None  # the old set is untouched: a swap, not an edit
    assert store.reload_if_changed() is None


def test_broken_edit_keeps_the_last_good_rules_and_logs_where(tmp_path: Path, caplog) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    store = PolicyStore.open(directory)
    good = store.current
    (directory / "datasets.yaml").write_text(GRANT_DATASET.lstrip().replace("list:trusted_dacs", "list:trusted_dac"))
    with caplog.at_level(logging.ERROR, logger="broker.core.policy.reload"):
        result = store.reload()
    assert not result.ok and result.version == good.version and store.current is good
    assert store.last_error is not None and store.failed_reloads == 1
    assert "datasets.yaml:8: datasets.EGAD0001.read.visa.source: list 'trusted_dac' is not defined" in caplog.text
    assert allowed(store, "EGAD0001")
    # Fixing the file recovers.
    (directory / "datasets.yaml").write_text(GRANT_DATASET)
    assert store.reload().ok and store.last_error is None


def test_unexpected_loader_failure_keeps_the_last_good_rules(tmp_path: Path, caplog) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    calls = {"n": 0}

    def flaky(path: str | Path) -> PolicySet:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk went away")
        return load_policy(path)

    store = PolicyStore.open(directory, loader=flaky)
    good = store.current
    with caplog.at_level(logging.ERROR, logger="broker.core.policy.reload"):
        result = store.reload()
    assert not result.ok and store.current is good and "OSError" in caplog.text


def test_decisions_during_reloads_always_see_one_whole_rule_set(tmp_path: Path) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    store = PolicyStore.open(directory)
    stop = threading.Event()
    seen: list[tuple[bool, bool]] = []

    def decide_loop() -> None:
        while not stop.is_set():
            policy = store.current
            one = policy.decide([grant("EGAD0001")], None, "EGAD0001", holder=HOLDER, now=NOW).allow
            two = policy.decide([grant("EGAD0002")], None, "EGAD0002", holder=HOLDER, now=NOW).allow
            seen.append((one, two))

    thread = threading.Thread(target=decide_loop)
    thread.start()
    try:
        for text in (OTHER, GRANT_DATASET, OTHER, GRANT_DATASET):
            (directory / "datasets.yaml").write_text(text)
            assert store.reload().ok
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) <= {(True, False), (False, True)}


def test_watcher_reloads_on_file_change_and_stops(tmp_path: Path) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    store = PolicyStore.open(directory)
    assert store._watcher is None  # nothing starts by itself
    store.start_watching(interval=0.05)
    try:
        (directory / "datasets.yaml").write_text(OTHER)
        assert wait_for(lambda: allowed(store, "EGAD0002"))
        (directory / "datasets.yaml").write_text("datasets: [broken]\n")
        assert wait_for(lambda: store.failed_reloads == 1)
        assert allowed(store, "EGAD0002")  # still the last good rules
        (directory / "extra.yaml").write_text(GRANT_DATASET.replace("EGAD0001", "EGAD0003"))
        (directory / "datasets.yaml").write_text(OTHER)
        assert wait_for(lambda: allowed(store, "EGAD0003"))
    finally:
        store.stop_watching()
    assert store._watcher is None


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sighup_reloads(tmp_path: Path) -> None:
    directory = write(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    store = PolicyStore.open(directory)
    previous = store.install_sighup()
    try:
        (directory / "datasets.yaml").write_text(OTHER)
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: allowed(store, "EGAD0002"))
        assert store.reloads == 1
    finally:
        signal.signal(signal.SIGHUP, previous)
