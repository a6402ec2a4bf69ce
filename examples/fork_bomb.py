# safe-exec reports: timeout (exit code 124): forks fail at the pids limit (64) and the rest is killed at the time limit.
import os

children = 0
failures = 0
while True:
    try:
        if os.fork() == 0:
            while True:
                pass
        children += 1
    except OSError:
        failures += 1
        if failures == 1:
            print(f"fork failed after {children} children: the pids limit holds", flush=True)
