"""Restart the test site run by supervise.py and wait until it serves requests again.

Usage: restart.py STATE_FILE

Exits 0 once the new server returns 200 from /healthz/, or 1 with the reason.
"""

import json
import os
import signal
import sys
import time

TIMEOUT_S = 30


def read_state(state_file):
    with open(state_file, encoding="utf-8") as handle:
        return json.load(handle)


def main():
    state_file = sys.argv[1]
    state = read_state(state_file)
    if "error" in state:
        sys.exit(f"restart.py: the supervisor failed earlier: {state['error']}")

    generation = state["generation"]
    os.kill(state["supervisor_pid"], signal.SIGHUP)

    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
        state = read_state(state_file)
        if "error" in state:
            sys.exit(f"restart.py: restart failed: {state['error']}")
        if state["generation"] > generation:
            print(f"restarted the test site: server pid {state['server_pid']}")
            return
    sys.exit(f"restart.py: the server did not come back within {TIMEOUT_S} s")


if __name__ == "__main__":
    main()
