"""The event log: validation, the hash chain, tamper detection, concurrent readers, the run lock, fold."""

import hashlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from autopipe.errors import EventLogError, UsageError
from autopipe.events import (
    EVENTS_FILE,
    PAYLOADS,
    ZERO_HASH,
    EventStore,
    ModelTrained,
    StateEntered,
    canonical_json,
    event_hash,
    fold,
    run_lock,
)


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / EVENTS_FILE) as store:
        yield store


def submitted(key, generation=0, kind="dft", **extra):
    return "task.submitted", {"key": key, "kind": kind, "generation": generation, **extra}


def completed(key, generation=0, kind="dft", **result):
    return "task.completed", {
        "key": key,
        "kind": kind,
        "generation": generation,
        "result": result,
        "wall_time": 1.5,
    }


def failed(key, generation=0, kind="dft"):
    return "task.failed", {
        "key": key,
        "kind": kind,
        "generation": generation,
        "failure_kind": "scf_not_converged",
        "message": "SCF did not converge",
    }


def entered(state, generation=0):
    return "state.entered", {"state": state, "generation": generation}


def tamper(path, sql, params=()):
    """Change the file behind the store's back, as a user with the sqlite3 shell could."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
        conn.execute(sql, params)
    conn.close()


def fill(store, n):
    store.append_many([submitted(f"k{i}") for i in range(n)])


def test_round_trip_fills_defaults_and_keeps_json_types(store):
    first = store.append("state.entered", StateEntered(state="INIT", generation=0))
    second = store.append(*submitted("abc", label="Al fcc", inputs={"kpts": [4, 4, 4], "ecut": 25.0}))

    assert [first.seq, second.seq] == [1, 2]
    assert first.payload == {"state": "INIT", "generation": 0, "reason": ""}
    assert second.payload["inputs"] == {"kpts": [4, 4, 4], "ecut": 25.0}
    read = store.events()
    assert read == [first, second]
    assert store.events(after_seq=1) == [second]
    assert store.last() == second
    assert first.time.endswith("+00:00")


def test_a_model_instance_and_the_equal_dict_store_the_same_payload(store):
    model = ModelTrained(
        generation=0,
        potential="potentials/gen_000.yaml",
        active_set="potentials/gen_000.asi",
        metrics={"rmse_f": 0.012},
        n_train=20,
        n_validation=4,
    )
    assert (
        store.append("model.trained", model).payload
        == store.append("model.trained", model.model_dump()).payload
    )


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("task.exploded", {}, "unknown event kind 'task.exploded'"),
        ("task.submitted", {"key": "a", "kind": "dft"}, "generation"),
        ("task.submitted", {"key": "a", "kind": "md", "generation": 0}, "kind"),
        ("state.entered", {"state": "INIT", "generation": 0, "colour": "red"}, "colour"),
        ("state.entered", {"state": "RELAX", "generation": 0}, "state"),
        (*completed("a", energy=float("nan")), "not plain JSON"),
        (*completed("a", path=Path("/tmp/x")), "not plain JSON"),
    ],
)
def test_bad_payloads_are_refused_and_write_nothing(store, kind, payload, message):
    store.append(*entered("INIT"))
    with pytest.raises(EventLogError, match=message):
        store.append(kind, payload)
    assert store.append(*entered("DFT")).seq == 2


def test_a_batch_with_one_bad_payload_writes_nothing(store):
    with pytest.raises(EventLogError):
        store.append_many([submitted("a"), ("task.submitted", {"key": "b"})])
    assert store.events() == []


def test_events_are_hash_chained_over_canonical_json(store):
    fill(store, 3)
    events = store.events()
    assert events[0].prev_hash == ZERO_HASH
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        body = {
            "seq": event.seq,
            "time": event.time,
            "kind": event.kind,
            "payload": event.payload,
            "prev_hash": event.prev_hash,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert event.hash == hashlib.sha256(text.encode()).hexdigest()


def test_the_hash_from_the_stored_text_is_the_hash_of_the_canonical_json():
    """The chain is checked from each row's payload text; that must be the same hash for any payload."""
    payload = {"z": [1.5, -0.0, 1e-12, None, True], "a": {"é": "quote \" and \\", "n": {"m": []}}, "€": 3}
    body = {"seq": 7, "time": "2026-12-07T00:00:00+00:00", "kind": "task.completed", "payload": payload,
            "prev_hash": "ab" * 32}
    expected = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert event_hash(7, body["time"], body["kind"], payload, body["prev_hash"]) == expected


def test_verify_accepts_a_payload_stored_in_another_json_spelling(store):
    """The text-hash is a shortcut: a row whose payload means the same with other spacing still verifies."""
    fill(store, 3)
    tamper(store.path, "UPDATE events SET payload = replace(payload, ',', ', ') WHERE seq = 2")
    assert store.verify().ok


def test_log_is_durable_wal_and_refuses_update_and_delete(store):
    fill(store, 2)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(store.path)
    for sql in ("UPDATE events SET kind = 'x' WHERE seq = 1", "DELETE FROM events WHERE seq = 2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_verify_accepts_an_intact_log(store):
    assert store.verify().ok and store.verify().n_events == 0
    fill(store, 5)
    report = store.verify()
    assert (report.ok, report.n_events, report.first_bad_seq) == (True, 5, None)


def test_verify_finds_an_edited_payload(store):
    fill(store, 6)
    tamper(store.path, "UPDATE events SET payload = replace(payload, 'k3', 'k9') WHERE seq = 4")
    report = store.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "hash mismatch" in report.reason


def test_verify_finds_an_edit_with_recomputed_hash_by_the_broken_chain(store):
    fill(store, 6)
    event = store.events()[2]
    payload = {**event.payload, "key": "forged"}
    forged = event_hash(event.seq, event.time, event.kind, payload, event.prev_hash)
    tamper(
        store.path, "UPDATE events SET payload = ?, hash = ? WHERE seq = 3", (canonical_json(payload), forged)
    )
    report = store.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "broken chain" in report.reason


def test_verify_finds_a_payload_that_no_longer_validates(store):
    fill(store, 3)
    last = store.events()[-1]
    payload = {"key": "k2", "kind": "dft"}  # generation removed, hash and head forged to match
    forged = event_hash(last.seq, last.time, last.kind, payload, last.prev_hash)
    tamper(
        store.path, "UPDATE events SET payload = ?, hash = ? WHERE seq = 3", (canonical_json(payload), forged)
    )
    tamper(store.path, "UPDATE head SET last_hash = ?", (forged,))
    report = store.verify()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "generation" in report.reason


def test_verify_finds_a_row_deleted_in_the_middle(store):
    fill(store, 8)
    tamper(store.path, "DELETE FROM events WHERE seq = 5")
    report = store.verify()
    assert (report.ok, report.n_events, report.first_bad_seq) == (False, 7, 5)
    assert "event 5 is missing" in report.reason


def test_verify_finds_rows_deleted_from_the_end_and_append_refuses(store):
    fill(store, 8)
    tamper(store.path, "DELETE FROM events WHERE seq > 6")
    report = store.verify()
    assert (report.ok, report.n_events, report.first_bad_seq) == (False, 6, 7)
    assert "truncated" in report.reason and "8" in report.reason
    with pytest.raises(EventLogError, match="damaged"):
        store.append(*entered("INIT"))


def test_open_existing_creates_nothing_for_a_wrong_path(tmp_path):
    missing = tmp_path / "not-a-project" / EVENTS_FILE
    with pytest.raises(UsageError, match="no event log at"):
        EventStore.open_existing(missing)
    with pytest.raises(UsageError, match="no event log at"):
        EventStore.open_existing(tmp_path / EVENTS_FILE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"elements: [Al]\n", None])
def test_open_existing_refuses_a_file_that_is_not_an_event_log(tmp_path, content):
    path = tmp_path / "other.db"
    if content is None:
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match="not an mlip-autopipe event log"):
        EventStore.open_existing(path)


def test_appends_from_several_threads_keep_one_chain(store):
    def work(thread):
        for i in range(25):
            store.append(*submitted(f"t{thread}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.verify().ok and store.verify().n_events == 100


WRITER = textwrap.dedent(
    """
    import sys, time
    from autopipe.events import EventStore
    store = EventStore(sys.argv[1])
    for i in range(int(sys.argv[2])):
        store.append("task.submitted", {"key": f"w{i}", "kind": "dft", "generation": 0})
        time.sleep(0.002)
    """
)


def test_a_reader_sees_consistent_prefixes_while_another_process_appends(tmp_path):
    path, n = tmp_path / EVENTS_FILE, 300
    EventStore(path).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
    seen = []
    with EventStore.open_existing(path) as reader:
        while writer.poll() is None:
            events = reader.events()
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
            seen.append(len(events))
        assert writer.returncode == 0
        assert len(reader.events()) == n and reader.verify().ok
    assert seen == sorted(seen)
    assert any(0 < k < n for k in seen), f"no read overlapped the writer: {seen[:5]}...{seen[-5:]}"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from autopipe.events import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_the_run_lock_refuses_a_second_process_until_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(UsageError, match=f"already being run by process {holder.pid}"),
            run_lock(tmp_path),
        ):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path) as lock_path:
        assert lock_path.read_text().strip() == str(os.getpid())
        with pytest.raises(UsageError, match="already being run"), run_lock(tmp_path):
            pass
    with run_lock(tmp_path):  # released on leaving the block
        pass


def test_run_lock_names_a_missing_project(tmp_path):
    with pytest.raises(UsageError, match="does not exist"), run_lock(tmp_path / "nope"):
        pass


def a_run_with_every_event_kind():
    """Two generations; b fails, c is resubmitted on resume, d is left in flight at the end."""
    return [
        (
            "run.started",
            {
                "config_hash": "h1",
                "config": {"elements": ["Al"]},
                "autopipe_version": "0.1.0",
                "site": "local",
            },
        ),
        entered("INIT"),
        ("structures.added", {"generation": 0, "config_type": "rattled", "uuids": ["u1", "u2"]}),
        ("structures.added", {"generation": 0, "config_type": "strained", "uuids": ["u3"]}),
        ("structures.added", {"generation": 0, "config_type": "rattled", "uuids": ["u4"]}),
        entered("DFT"),
        submitted("a", label="u1"),
        submitted("b", label="u2"),
        submitted("c", label="u3"),
        completed("a", energy=-1.0),
        failed("b"),
        ("run.resumed", {"config_hash": "h1", "site": "local", "pending_tasks": 1}),
        ("task.retried", {"key": "c", "kind": "dft", "generation": 0, "reason": "resumed"}),
        completed("c", energy=-2.0),
        ("dataset.extended", {"generation": 0, "n_new": 2, "n_total": 2}),
        entered("TRAIN"),
        submitted("fit0", kind="train"),
        completed("fit0", kind="train"),
        (
            "model.trained",
            {
                "generation": 0,
                "potential": "gen_000.yaml",
                "active_set": "gen_000.asi",
                "metrics": {"rmse_f": 0.02},
                "n_train": 2,
                "n_validation": 0,
            },
        ),
        entered("EXPLORE"),
        (
            "exploration.finished",
            {"generation": 0, "n_walkers": 2, "n_candidates": 5, "max_gamma": 12.5, "halted": 1},
        ),
        entered("SELECT"),
        ("selection.made", {"generation": 0, "uuids": [], "n_candidates": 5}),
        entered("ASSESS"),
        (
            "assessment.finished",
            {"generation": 0, "round": 0, "source": "run", "usable": False, "reason": "a0 +2.0%",
             "failing": ["eos"], "rows": [{"name": "a0", "passed": False}], "reference_volume": 16.2,
             "dft_volume": 16.3, "potential_volume": 17.0, "n_references": 14},
        ),
        entered("EXPLORE"),
        (
            "exploration.finished",
            {"generation": 0, "n_walkers": 2, "n_candidates": 3, "max_gamma": 2.5, "halted": 0, "round": 1},
        ),
        entered("SELECT"),
        ("selection.made", {"generation": 0, "uuids": ["u5"], "n_candidates": 3, "round": 1}),
        entered("DFT", 1),
        submitted("d", generation=1, label="u5"),
        ("run.finished", {"outcome": "failed", "reason": "interrupted", "generation": 1}),
    ]


def test_fold_rebuilds_the_run_state(store):
    items = a_run_with_every_event_kind()
    assert {kind for kind, _ in items} | {"run.retried"} == set(PAYLOADS)  # retried: the test below
    store.append_many(items)
    run = fold(store.events())

    assert (run.state, run.generation, run.config_hash, run.site) == ("DFT", 1, "h1", "local")
    assert run.config == {"elements": ["Al"]}
    assert (run.n_events, run.last_seq, run.n_resumes) == (len(items), len(items), 1)
    assert run.completed_keys == {"a", "c", "fit0"}
    assert run.pending_keys == ["d"]
    assert {key: task.submissions for key, task in run.tasks.items()} == {
        "a": 1,
        "b": 1,
        "c": 2,
        "fit0": 1,
        "d": 1,
    }
    assert run.tasks["c"].result == {"energy": -2.0}
    assert run.tasks["b"].failure_kind == "scf_not_converged"
    assert [t.key for t in run.labels_done()] == ["a", "c"]
    assert [t.key for t in run.labels_done(generation=1)] == []
    assert [t.label for t in run.labels_failed(generation=0)] == ["u2"]
    assert run.structures == {0: {"rattled": ["u1", "u2", "u4"], "strained": ["u3"]}}
    assert run.datasets[0]["n_total"] == 2
    assert run.models[0]["potential"] == "gen_000.yaml"
    assert run.explorations[0]["max_gamma"] == 2.5 and run.explorations[0]["round"] == 1  # the aimed round
    assert run.selections[0]["uuids"] == ["u5"]
    assert run.failed_rounds() == 1 and run.aim(0) == (1, run.assessments[0]) and run.aim(1) == (0, None)
    assert run.verdict is None  # states were entered since
    assert (run.finished, run.outcome, run.reason) == (True, "failed", "interrupted")


def test_fold_is_pure_and_resume_clears_the_finish(store):
    store.append_many(a_run_with_every_event_kind())
    events = store.events()
    before = [e.model_dump() for e in events]
    assert fold(events) == fold(events)
    assert [e.model_dump() for e in events] == before

    store.append("run.resumed", {"config_hash": "h1", "site": "local", "pending_tasks": 1})
    run = fold(store.events())
    assert (run.finished, run.outcome, run.n_resumes) == (False, None, 2)


def test_a_retry_reopens_a_failed_run_and_forgets_only_the_retried_tasks(store):
    store.append_many(a_run_with_every_event_kind())
    store.append_many([
        entered("FAILED", 1),
        ("run.finished", {"outcome": "failed", "reason": "too many failed DFT labels", "generation": 1}),
        ("run.retried", {"state": "DFT", "generation": 0, "reason": "retrying DFT", "tasks": ["b"]}),
        entered("DFT", 0),
    ])
    run = fold(store.events())
    assert (run.finished, run.outcome, run.state, run.generation) == (False, None, "DFT", 0)
    assert "b" not in run.tasks and run.completed_keys == {"a", "c", "fit0"}  # finished work is kept
    assert 0 not in run.datasets and run.models[0]["potential"] == "gen_000.yaml"


def test_folding_event_by_event_from_a_start_equals_one_replay(store):
    store.append_many(a_run_with_every_event_kind())
    events = store.events()
    run = fold([])
    for event in events:
        run = fold([event], run)
    assert run == fold(events)


def test_fold_of_nothing_is_a_run_not_started():
    run = fold([])
    assert (run.state, run.generation, run.n_events, run.tasks, run.pending_keys) == (None, 0, 0, {}, [])
