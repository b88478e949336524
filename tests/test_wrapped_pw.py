"""pw.x started through a wrapper script, as on clusters: a FAILED run is retried once the wrapper is
fixed, and Ctrl-C ends the run and the program behind the wrapper at once.

Retry: the wrapper is broken ("module not loaded") for every call but the first, so generation 0 ends
FAILED with one finished label; after the fix the same command retries DFT, computes only the labels
that failed, and finishes the run. Interrupt: the wrapper starts its program as a child and waits, so the
program is a grandchild of the task, which the kernel's parent-death signal does not reach: only the end
of its whole process group does.
"""

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from installed import MLIP_AUTO, start_as_from_a_terminal

from autopipe.events import EventStore, fold

pytestmark = [pytest.mark.slow, pytest.mark.qe]

INPUT = """
project: {{name: al}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 3, strained: 0}}
dft: {{command: {command}, pseudopotentials: {{Al: Al.pz-vbc.UPF}}, ecutwfc: 15, kspacing: 0.8, max_attempts: 1}}
training: {{mode: linear, accuracy: fast, functions_per_element: 8, test_fraction: 0}}
exploration: {{temperatures: [300], steps: 20, check_interval: 10, gamma_select: 2.0, gamma_halt: 20.0}}
loop: {{max_generations: 1, dft_budget: 10, seed: 1}}
assess: {{enabled: false}}
"""
WRAPPER = """#!/bin/bash
echo "$PWD" >> {folder}/calls.log
if [ -e {folder}/broken ] && ! mkdir {folder}/first-call 2>/dev/null; then
  echo "pw.x: module quantum-espresso not loaded" >&2; exit 1
fi
exec pw.x "$@"
"""


def run(input_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MLIP_AUTO, "run", str(input_path), "--site", "threads"],
                          capture_output=True, text=True, timeout=600, check=False)


def test_a_failed_run_is_retried_after_the_fix_keeping_every_finished_label(tmp_path):
    wrapper = tmp_path / "pw-wrapper"
    wrapper.write_text(WRAPPER.format(folder=tmp_path))
    wrapper.chmod(0o755)
    (tmp_path / "broken").touch()
    input_path = tmp_path / "input.yaml"
    input_path.write_text(INPUT.format(command=wrapper))

    first = run(input_path)
    assert first.returncode == 1 and "FAILED: too many failed DFT labels" in first.stdout
    with EventStore.open_existing(tmp_path / "al" / "events.sqlite") as store:
        failed = fold(store.events())
    assert len(failed.labels_done()) == 1 and len(failed.labels_failed()) == 3
    finished_label = failed.labels_done()[0].key

    assert run(input_path).returncode == 1  # not fixed yet: retried, fails again, nothing lost
    (tmp_path / "broken").unlink()
    calls_before = (tmp_path / "calls.log").read_text().splitlines()
    fixed = run(input_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "DONE" in fixed.stdout

    with EventStore.open_existing(tmp_path / "al" / "events.sqlite") as store:
        events = store.events()
        state = fold(events)
    retried = [e.payload for e in events if e.kind == "run.retried"]
    assert len(retried) == 2 and all(p["state"] == "DFT" and p["generation"] == 0 for p in retried)
    assert "too many failed DFT labels" in retried[-1]["reason"] and len(retried[-1]["tasks"]) == 3
    assert finished_label not in retried[-1]["tasks"]
    assert len(state.labels_done(0)) == 4 and state.outcome == "done" and 0 in state.models
    new_calls = (tmp_path / "calls.log").read_text().splitlines()[len(calls_before):]
    assert len(new_calls) == 3  # only the failed labels ran again
    assert not any(finished_label in call for call in new_calls)


SLEEPING_WRAPPER = """#!/bin/bash
sleep 600 &
echo $! >> {folder}/programs.pids
wait
"""


@pytest.mark.parametrize("site", ["threads", "local"])
def test_ctrl_c_stops_the_run_and_the_programs_behind_a_wrapper(tmp_path, site):
    wrapper = tmp_path / "pw-wrapper"
    wrapper.write_text(SLEEPING_WRAPPER.format(folder=tmp_path))
    wrapper.chmod(0o755)
    (tmp_path / "input.yaml").write_text(INPUT.format(command=wrapper))
    pids = tmp_path / "programs.pids"
    run = start_as_from_a_terminal("run", str(tmp_path / "input.yaml"), "--site", site)
    try:
        deadline = time.monotonic() + 120
        while not (pids.exists() and len(pids.read_text().split()) >= 2):  # both workers' labels running
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        programs = [int(pid) for pid in pids.read_text().split()]
        start = time.monotonic()
        run.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 130 and "Interrupted" in stderr and "Traceback" not in stderr
        assert time.monotonic() - start < 15
        while any(psutil.pid_exists(pid) for pid in programs) and time.monotonic() - start < 15:
            time.sleep(0.2)
        assert not [pid for pid in programs if psutil.pid_exists(pid)], "a program outlived its run"
    finally:
        if run.poll() is None:  # a failed assertion leaves no run behind (SIGTERM stops it like Ctrl-C)
            run.terminate()
            run.wait(timeout=60)
