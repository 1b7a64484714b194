"""Child processes that never outlive their owner: a server wow starts (a vLLM engine, a temporary
Prefect server) runs in a process group of its own under a small watchdog, which stops the group when
the owner's process disappears, SIGKILL included. Without it, a killed owner leaves its server holding
a port, memory and (on a GPU) the device until someone finds it.

    python -m wow_core.processes watch OWNER_PID -- COMMAND...
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 30.0  # SIGTERM first; SIGKILL what is left after this


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_watched(command: list[str], log_path: Path, env: dict[str, str] | None = None,
                  secret: str | None = None) -> subprocess.Popen:
    """Start `command` as a new session under the watchdog, its output appended to `log_path` (after
    the command line, with `secret` masked). The returned process is the watchdog, the group's leader."""
    with log_path.open("ab") as out:
        line = " ".join(command)
        out.write(f"$ {line.replace(secret, '***') if secret else line}\n".encode())
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "wow_core.processes", "watch", str(os.getpid()), "--", *command],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """Stop the process group `process` leads: SIGTERM, then SIGKILL whatever is left after `grace_s`."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (process.poll() is None or group_alive(process.pid)):
            time.sleep(0.2)
        if process.poll() is not None and not group_alive(process.pid):
            break
    process.poll()


def watch(owner: int, command: list[str]) -> int:
    """Run `command` in this process group; stop the group if `owner` dies first. Ends with it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop signals the group: end when the command has
    child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    orphaned_at = None
    while child.poll() is None:
        if orphaned_at is None and os.getppid() != owner:
            orphaned_at = time.monotonic()
            os.killpg(0, signal.SIGTERM)
        elif orphaned_at is not None and time.monotonic() - orphaned_at > GRACE_S:
            os.killpg(0, signal.SIGKILL)
        time.sleep(0.5)
    return child.returncode


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "watch" or sys.argv[3] != "--":
        raise SystemExit("usage: python -m wow_core.processes watch OWNER_PID -- COMMAND...")
    sys.exit(watch(int(sys.argv[2]), sys.argv[4:]))
