"""safe-exec doctor's probe: run as an ordinary program through the real supervisor, it looks at
its own sandbox from the inside and prints one JSON object of raw findings. It judges nothing:
src/doctor/probe.rs compares the findings with what safe-exec asked the engine for.

Standard library only (the image's Python, whatever its base), no network, nothing left behind but
one file in /tmp (removed with the container).
"""

import errno
import json
import os
import time


def errno_name(error):
    return errno.errorcode.get(error.errno, str(error.errno))


def read(path):
    """The file's text, stripped; None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def status_fields(path):
    """`Name: value` lines of a /proc/PID/status file."""
    fields = {}
    for line in (read(path) or "").splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def try_create(path):
    """'ok' when a new file can be created at path (it is removed again), else the errno name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    except OSError as error:
        return errno_name(error)
    os.close(fd)
    os.unlink(path)
    return "ok"


def try_exec_in_tmp():
    """Write an executable script to /tmp and try to exec it: 'ok', or the errno name (the
    child sends it back through a pipe)."""
    path = "/tmp/safe-exec-doctor-exec"
    try:
        with open(path, "w") as script:
            script.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    except OSError as error:
        return "cannot write: " + errno_name(error)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.execv(path, [path])
        except OSError as error:
            os.write(write_end, errno_name(error).encode())
        os._exit(1)
    os.close(write_end)
    reason = os.read(read_end, 100).decode()
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if reason:
        return reason
    return "ok" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else "failed"


def mount_options():
    """Mount point -> options, for / and /tmp (the last entry for a point is the visible one)."""
    options = {}
    for line in (read("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] in ("/", "/tmp"):
            options[fields[1]] = fields[3].split(",")
    return options


def interfaces():
    names = []
    for line in (read("/proc/net/dev") or "").splitlines()[2:]:
        name, _, _ = line.partition(":")
        names.append(name.strip())
    return sorted(names)


def cgroup():
    """The limits the container's cgroups hold, as the files say them."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        found = {
            "version": 2,
            "memory_max": read("/sys/fs/cgroup/memory.max"),
            "swap_max": read("/sys/fs/cgroup/memory.swap.max"),
            "pids_max": read("/sys/fs/cgroup/pids.max"),
            "cpu_max": read("/sys/fs/cgroup/cpu.max"),
        }
    else:
        quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        found = {
            "version": 1,
            "memory_max": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "swap_max": read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "pids_max": read("/sys/fs/cgroup/pids/pids.max"),
            "cpu_max": None if quota is None or period is None else quota + " " + period,
        }
    # The launcher's CPU counters, in its order (runner_image/launch.py, CGROUP_CPU).
    found["cpu_counter"] = None
    found["cpu_counter_value"] = None
    for path in (
        "/sys/fs/cgroup/cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu.stat",
    ):
        text = read(path)
        if text is not None:
            found["cpu_counter"] = path
            found["cpu_counter_value"] = text.splitlines()[0] if text else ""
            break
    return found


def swap_total_kb():
    for line in (read("/proc/meminfo") or "").splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1])
    return None


def main():
    own = status_fields("/proc/self/status")
    launcher = status_fields("/proc/1/status")
    findings = {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "groups": os.getgroups(),
        "status": {name: own.get(name) for name in ("CapEff", "CapPrm", "CapAmb", "CapBnd", "NoNewPrivs", "Seccomp")},
        "launcher": {name: launcher.get(name) for name in ("Uid", "Gid", "CapEff")},
        "interfaces": interfaces(),
        "root_write": try_create("/safe-exec-doctor"),
        "var_tmp_write": try_create("/var/tmp/safe-exec-doctor"),
        "tmp_write": try_create("/tmp/safe-exec-doctor-write"),
        "tmp_exec": try_exec_in_tmp(),
        "mounts": mount_options(),
        "cgroup": cgroup(),
        "swap_total_kb": swap_total_kb(),
    }
    # Some CPU of our own, so the run's reported CPU time shows whether the launcher can count it.
    while time.process_time() < 0.03:
        pass
    print(json.dumps(findings))


main()
