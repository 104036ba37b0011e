"""Run the test site's runserver and restart it on SIGHUP, so settings are re-read.

Usage: supervise.py STATE_FILE HOST:PORT

After each start the supervisor waits until /healthz/ returns 200, then writes
STATE_FILE as JSON: supervisor_pid, server_pid and a generation number that
grows by one with every restart. It stops the server and exits on SIGTERM,
SIGINT, or when its standard input closes (the test process is gone).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10

restart_requested = threading.Event()
stop_requested = threading.Event()


def main():
    state_file, address = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGHUP, lambda *_: restart_requested.set())
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
    threading.Thread(target=watch_stdin, daemon=True).start()

    generation = 1
    server = start_server(address, state_file)
    write_state(state_file, {"server_pid": server.pid, "generation": generation})

    while not stop_requested.is_set():
        time.sleep(0.05)
        if server.poll() is not None:
            fail(state_file, f"runserver exited with status {server.returncode}")
        if restart_requested.is_set():
            restart_requested.clear()
            stop_server(server)
            server = start_server(address, state_file)
            generation += 1
            write_state(state_file, {"server_pid": server.pid, "generation": generation})

    stop_server(server)


def watch_stdin():
    while sys.stdin.buffer.read(1024):
        pass
    stop_requested.set()


def start_server(address, state_file):
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", address, "--noreload", "--skip-checks"],
        cwd=PROJECT_DIR,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(state_file, f"runserver exited with status {server.returncode} while starting")
        if is_healthy(address):
            return server
        time.sleep(0.05)
    stop_server(server)
    fail(state_file, f"runserver did not respond to /healthz/ within {START_TIMEOUT_S} s")


def is_healthy(address):
    try:
        with urllib.request.urlopen(f"http://{address}/healthz/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_server(server):
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def write_state(state_file, state):
    state = {"supervisor_pid": os.getpid(), **state}
    temporary = f"{state_file}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(temporary, state_file)


def fail(state_file, message):
    print(f"supervise.py: {message}", file=sys.stderr, flush=True)
    write_state(state_file, {"error": message})
    exit_now(1)


def exit_now(status):
    # os._exit, because a normal exit would wait on the thread blocked on stdin.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
    exit_now(0)
