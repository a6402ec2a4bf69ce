"""safe-exec launcher: receives the program on stdin, runs it, and reports how it ended.

Runs inside the sandbox as the unprivileged user, started by safe-exec as
``python3 -I -S /opt/safe-exec/launch.py --code-wait W --watchdog N --cpu-seconds C``.

Protocol (version 2), on standard input:

    SAFE-EXEC/2 <nbytes> <filename> <key>\n
    <exactly nbytes of UTF-8 source>
    <everything after that is the program's own standard input>

The launcher reads the header and the source with unbuffered ``os.read`` so it
never consumes a byte of the program's stdin, writes the source to
``/tmp/<filename>``, writes the start marker (STARTED) to stderr, and forks
``python3 -u -B /tmp/<filename>``: the program is a real script (``__main__``,
``__file__``, tracebacks with source lines) and inherits fd 0 positioned
exactly at its own input.

When the program ends, the launcher writes one trailer line to stderr,

    \\0safe-exec:end exit <code> oom <count> watchdog <0|1> <mac>\\n
                                     (or: signal <number> ...)

and exits with the code init would have reported (the code, or 128 + the
signal). The exit code alone cannot tell ``sys.exit(137)`` from SIGKILL; the
trailer can, the cgroup's OOM-kill counter is the kernel's own word on a
memory kill, and ``watchdog 1`` says our own timer did the killing. ``mac``
is HMAC-SHA256 of the words before it, keyed with the key safe-exec sent with
the code. The key never reaches the program: it is not in its environment,
arguments or files, the launcher makes itself non-dumpable (``/proc/<pid>/mem``
is closed to the program) and never writes the key anywhere. The program
shares the stderr pipe, so it can read the trailer or print lookalikes, but
it cannot make a valid line for an ending that did not happen; safe-exec also
checks the line against the container's exit code.

Timing. The marker is the first thing on stderr, written before the program
exists, so safe-exec strips it and starts the program's clock when it arrives:
container start-up does not eat into the time limit. Three things bound the
run without safe-exec: the watchdog (N seconds, a little more than the limit)
kills every process of the sandbox user; RLIMIT_CPU (C seconds) lets the
kernel kill a program that spins even if it stops the launcher with SIGSTOP;
and safe-exec's reaper removes the container if safe-exec itself dies.
Waiting for the code is bounded by an alarm (W seconds). Because the code
travels over the container's stdin, no host path is mounted, a remote engine
works, and a container started before its code is known can receive it the
same way.
"""

import os
import resource
import signal
import sys

PROTOCOL = b"SAFE-EXEC/2"
MAX_HEADER = 512
MAX_SOURCE = 4 * 1024 * 1024
WORKDIR = "/tmp"
# Checked by hand, not with `re`: importing it costs more start-up time than the rest.
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
KEY_CHARS = frozenset(b"0123456789abcdef")
# Only these names reach the program; the image's own ENV lines are dropped.
ENV_ALLOWED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
)
PROTOCOL_ERROR = 125
EXEC_FAILED = 127
STARTED = b"\x00safe-exec:started\n"
TRAILER = b"\x00safe-exec:end "
PR_SET_DUMPABLE = 4
# Signals a supervisor might send the launcher; they are meant for the program.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def fail(message):
    os.write(2, ("safe-exec launcher: %s\n" % message).encode())
    os._exit(PROTOCOL_ERROR)


def read_header():
    line = bytearray()
    while True:
        byte = os.read(0, 1)
        if not byte:
            fail("standard input ended before the program header")
        if byte == b"\n":
            return bytes(line)
        line += byte
        if len(line) > MAX_HEADER:
            fail("program header too long")


def read_exactly(count):
    chunks = []
    remaining = count
    while remaining:
        chunk = os.read(0, min(remaining, 65536))
        if not chunk:
            fail("standard input ended inside the program source")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def parse_arguments(argv):
    options = dict(zip(argv[0::2], argv[1::2]))
    try:
        code_wait = int(options["--code-wait"])
        watchdog = float(options["--watchdog"])
        cpu_seconds = int(options["--cpu-seconds"])
    except (KeyError, ValueError):
        fail("usage: launch.py --code-wait SECS --watchdog SECS --cpu-seconds SECS")
    if code_wait <= 0 or not watchdog > 0 or cpu_seconds <= 0:
        fail("--code-wait, --watchdog and --cpu-seconds must be positive")
    return code_wait, watchdog, cpu_seconds


def read_program():
    parts = read_header().split(b" ")
    if len(parts) != 4 or parts[0] != PROTOCOL:
        fail("unsupported protocol (expected %s): rebuild the runner image" % PROTOCOL.decode())
    if not parts[1].isdigit() or len(parts[3]) != 32 or not KEY_CHARS.issuperset(parts[3]):
        fail("malformed program header")
    try:
        size = int(parts[1])
        filename = parts[2].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        fail("malformed program header")
    if not 0 <= size <= MAX_SOURCE or not valid_filename(filename):
        fail("malformed program header")
    return read_exactly(size), filename, parts[3]


def valid_filename(name):
    # [A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py, without "..".
    stem = name[:-3]
    return (
        name.endswith(".py")
        and 1 <= len(stem) <= 100
        and (stem[0].isascii() and (stem[0].isalnum() or stem[0] == "_"))
        and NAME_CHARS.issuperset(stem)
        and ".." not in name
    )


def write_source(source, filename):
    path = os.path.join(WORKDIR, filename)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    view = memoryview(source)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)
    return path


def set_dumpable(flag):
    # Undumpable, the launcher's /proc/<pid>/mem is closed to the program, which runs as the
    # same user and would otherwise read the key there. Fails closed: no protection, no run.
    try:
        import ctypes

        result = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, flag, 0, 0, 0)
    except Exception as error:
        fail("cannot set PR_SET_DUMPABLE (%s): rebuild the runner image" % error)
    if result != 0:
        fail("cannot set PR_SET_DUMPABLE: rebuild the runner image")


def oom_kills():
    """The kernel's count of OOM kills in this container's memory cgroup (v1 or v2)."""
    for path, key in (
        ("/sys/fs/cgroup/memory/memory.oom_control", b"oom_kill"),
        ("/sys/fs/cgroup/memory.events", b"oom_kill"),
    ):
        try:
            with open(path, "rb") as counters:
                for line in counters:
                    fields = line.split()
                    if len(fields) == 2 and fields[0] == key:
                        return int(fields[1])
        except (OSError, ValueError):
            continue
    return 0


watchdog_fired = False


def kill_everything(signum=None, frame=None):
    # The deadline passed and the supervisor has not ended us: every process of the sandbox
    # user but this one goes (init ignores signals from inside its namespace).
    global watchdog_fired
    watchdog_fired = True
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def prefer_as_oom_victim():
    # Out of memory, the kernel should kill the program (and what it starts), never the
    # launcher that reports how the run ended. Raising one's own score needs no privilege,
    # but an undumpable process's /proc files belong to root: the child, about to become the
    # program, is made dumpable again first. Until its execve it still holds the key, but no
    # other process of the sandbox user exists yet to read it.
    set_dumpable(1)
    try:
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write("1000")
    except OSError:
        pass


def run_program(path, env, cpu_seconds):
    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
            prefer_as_oom_victim()
            # Its own process group: a killpg(0) by the program does not reach the launcher.
            os.setpgid(0, 0)
            for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGALRM) + FORWARDED:
                signal.signal(signum, signal.SIG_DFL)
            os.execve(sys.executable, [sys.executable, "-u", "-B", path], env)
        finally:
            os._exit(EXEC_FAILED)
    return pid


def main():
    code_wait, watchdog, cpu_seconds = parse_arguments(sys.argv[1:])
    # Nobody sends the code (its supervisor died): SIGALRM's default action ends us.
    signal.alarm(code_wait)
    source, filename, key = read_program()
    path = write_source(source, filename)
    env = {name: os.environ[name] for name in ENV_ALLOWED if name in os.environ}
    os.chdir(WORKDIR)
    signal.alarm(0)
    set_dumpable(0)
    oom_before = oom_kills()
    signal.signal(signal.SIGALRM, kill_everything)
    os.write(2, STARTED)
    pid = run_program(path, env, cpu_seconds)
    signal.setitimer(signal.ITIMER_REAL, watchdog)
    # Loaded while the program starts up, so report_end finds it ready.
    import hmac  # noqa: F401

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    _, status = os.waitpid(pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    for signum in FORWARDED:
        signal.signal(signum, signal.SIG_IGN)
    if os.WIFSIGNALED(status):
        how, number, code = b"signal", os.WTERMSIG(status), 128 + os.WTERMSIG(status)
    else:
        how, number, code = b"exit", os.WEXITSTATUS(status), os.WEXITSTATUS(status)
    try:
        report_end(key, how, number, oom_kills() - oom_before)
    finally:
        os._exit(code)


def report_end(key, how, number, oom):
    import hmac

    words = b"%s %d oom %d watchdog %d" % (how, number, oom, int(watchdog_fired))
    mac = hmac.new(key, words, "sha256").hexdigest().encode()
    line = memoryview(b"%s%s %s\n" % (TRAILER, words, mac))
    # The program shares this pipe's file description and may have left it non-blocking.
    os.set_blocking(2, True)
    while line:
        line = line[os.write(2, line):]


main()
