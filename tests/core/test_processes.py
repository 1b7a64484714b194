"""Servers wow starts never outlive the process that started them (wow_core/processes.py)."""
import os
import subprocess
import sys
import time

import pytest

from wow_core.processes import group_alive, start_watched, stop_group

WATCHED_OWNER = """
import subprocess, sys, time
# The watchdog over a command whose own child is a grandchild of the watchdog, as vLLM's engine core is.
from pathlib import Path
from wow_core.processes import start_watched
p = start_watched(["bash", "-c", "sleep 600 & sleep 600"], Path(sys.argv[1]))
print(p.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_owner_leaves_no_process_behind(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", WATCHED_OWNER, str(tmp_path / "log")], stdout=subprocess.PIPE,
                             text=True)
    group = int(owner.stdout.readline())
    time.sleep(1)
    # watchdog, bash, its two sleeps
    assert len(subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()) == 4
    owner.kill()  # SIGKILL: the owner cannot stop anything itself
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the watched group outlived its owner by 10 s")




def test_stop_ends_the_whole_group_and_keeps_its_output(tmp_path):
    log = tmp_path / "out.log"
    process = start_watched(["bash", "-c", "echo started; sleep 600 & sleep 600"], log, secret="started")
    time.sleep(1)
    assert group_alive(process.pid)
    stop_group(process, grace_s=5)
    assert not group_alive(process.pid)
    text = log.read_text()
    assert text.startswith("$ bash -c echo ***; sleep 600") and "\nstarted\n" in text
