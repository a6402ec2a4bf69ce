"""safe-exec launcher: the container's PID 1. Receives the program, runs it as a user of its own,
relays its output, enforces its limits and reports how it ended, out of the program's reach.

safe-exec starts every container as root with only CAP_SETUID and CAP_SETGID, running

    python3 -I -S /opt/safe-exec/launch.pyc --uid U --cpu-ms T --wall-ms W --cpus C
        --max-output B --pids P --code-wait S [--memory M]

(launch.pyc is this file, compiled when the image is built.)

Request (protocol version 3), on standard input:

    SAFE-EXEC/3 <key> <nfiles> [<artifact_bytes>]\\n
    nfiles times:  <nbytes> <name>\\n <exactly nbytes>
    <everything after that is the program's own standard input>

The first file is the program (``<name>.py``); the others are placed beside it, read-only to it.
The header and files are read with unbuffered ``os.read`` so not a byte of the program's input is
consumed. The program also finds an empty directory ``out/`` beside itself; with
``artifact_bytes`` above 0, what it leaves there is sent back when it ends (at most that many
bytes, MAX_ARTIFACTS files).

Answer, on standard output: a sequence of frames, ``<tag: 1 byte> <length: 4 bytes, big-endian>
<payload>``, and nothing else:

    R  ready: the launcher is up and waiting for its request (payload: the protocol name)
    S  started: the program exists from now on
    1  bytes the program wrote to its stdout
    2  bytes the program wrote to its stderr
    A  an artifact: its path under out/, a NUL byte, then (a piece of) its bytes; a file may come
       in several frames, in order
    M  the artifacts' manifest (JSON: files with size and whether cut short, files skipped and
       why), after the last A frame
    E  end, the last frame: ``<ending> <n> stop <reason> cpu_ms <n> wall_ms <n> oom <n>
       stdout_bytes <n> stderr_bytes <n> <mac>``
    X  the launcher could not run the program (payload: why); nothing was started

``ending`` is ``exit`` (n is the exit code), ``signal`` (n is the signal) or ``running`` (n is 0:
the launcher stopped it); ``stop`` is ``none``, ``cpu``, ``wall``, ``stdout`` or ``stderr``;
``cpu_ms`` is the CPU time of everything in the container since just before the program's code
was handed to its interpreter (the launcher's own relaying included: what the program's output
costs is its own); ``wall_ms`` runs from that moment to the program's end; ``oom`` counts the kernel's OOM kills in the
container's memory cgroup meanwhile; ``*_bytes`` count what the program wrote. ``mac`` is
HMAC-SHA256 of the words before it under ``key``.

Where the container has no cgroup files (gVisor's user-space kernel shows none), CPU time is the
sum of every process's own and reaped children's times from /proc, and the memory limit ``M``
(given only then; the engine's limit has room for the runtime itself) is watched in the sandbox's
own /proc/meminfo: past it the launcher ends the run as the kernel's OOM killer would have, the
program killed (``signal 9``) and one OOM kill counted.

The interpreter starts before the request. The launcher forks at once, and the child becomes the
program's interpreter: no supplementary groups, its own uid and gid ``U`` (never shared with
another run, so per-user kernel limits such as inotify instances, pending signals or message
queues are its alone), RLIMIT_NPROC ``P`` (the process limit, enforced inside the sandbox), nice
19, OOM score 1000, then exec of ``python3 -u -B -c STUB``. Python's own start-up (tens of
milliseconds, most of a short run) so overlaps the wait for the request, in a warm container and
a cold one alike. The stub says it is ready on one pipe and waits on another for its program's
path; then it runs the program as ``python3 -u -B PATH`` would (the same ``__main__`` globals,
``sys.argv``, ``sys.path[0]``, tracebacks, exit status) and closes both pipes before the
program's first line. The clocks start when the launcher hands the path over, after the
interpreter said it was ready: the limits are the program's, not the interpreter's start-up.

Why the program cannot bend its report. The launcher reads the request and writes the files as
root, then drops to a uid of its own (LAUNCHER_UID) before it hands the program over. So the
program, with a different uid, no capabilities and
no-new-privileges, cannot signal, stop, trace or read the memory of the launcher, which as PID 1
is also shielded by the kernel from signals sent inside its namespace. The program holds only its
own stdin and two pipes into the launcher: it cannot write a frame, and the key never reaches it.
The end belongs to the launcher: when the program exits, or a limit is reached, it takes exactly
what the pipes hold at that moment (FIONREAD), writes the end frame and exits, and since it is PID 1 the kernel then
kills everything left in the container. Nothing the program or its descendants do afterwards can
add time, output or a different ending.

Output is read in batches: after a read the launcher leaves a pipe alone for BATCH seconds, so a
program writing single bytes fills its pipe and waits; the host-side chain (engine, shim, docker
client, safe-exec) handles at most a few hundred frames a second whatever the program does, and
the launcher's own reading is charged to the container's CPU quota.
"""

import errno
import fcntl
import os
import resource
import select
import struct
import sys
import termios
import time

# Start-up time is most of a short run's cost to the machine, so the launcher imports only C
# modules: `signal` wraps `_signal` in enums (importing `enum` costs more than everything else
# here), `hmac` and `json` bring `hashlib` (OpenSSL), `re` and `enum`.
import _signal as signal

try:
    from _sha2 import sha256  # Python 3.12 and later
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

PROTOCOL = b"SAFE-EXEC/3"
WORKDIR = "/tmp"
# The launcher's own uid after the fork: never a program's (safe-exec picks those from a range
# that excludes it).
LAUNCHER_UID = 10001
MAX_HEADER = 512
MAX_FILES = 64
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_FRAME = 64 * 1024
# Artifacts: most files, deepest directory, most bytes asked for (the host asks for less).
MAX_ARTIFACTS = 64
MAX_ARTIFACT_DEPTH = 4
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
OUT = "out"
# Copied into the working directory for every program, when the image has it.
SEED = "/opt/safe-exec/seed"
# The program's pipes are this big (unprivileged processes may go up to 1 MiB) and read whole.
PIPE_BYTES = 256 * 1024
# Seconds a pipe is left alone after a read, and the longest output waits before it is sent.
BATCH = 0.005
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
    "MPLBACKEND",
    "MPLCONFIGDIR",
)
LAUNCHER_FAILED = 125
EXEC_FAILED = 127
CGROUP_CPU = (
    ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1),  # v1, nanoseconds
    ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", 1),
    ("/sys/fs/cgroup/cpu.stat", 1000),  # v2: usage_usec
)
CGROUP_OOM = (
    "/sys/fs/cgroup/memory/memory.oom_control",  # v1
    "/sys/fs/cgroup/memory.events",  # v2
)
# Without cgroup files (gVisor): how often the sandbox's memory use is read against --memory.
MEMORY_POLL = 0.005
# The descriptors the stub finds its two pipes on: the path comes in on GO_FD, and it says it is
# ready on READY_FD.
GO_FD = 3
READY_FD = 4
# The program's interpreter until it is handed its program. Written as a function so that
# clearing __main__'s globals for the program leaves the stub's own names (locals) alone; it
# imports nothing Python's start-up has not imported already. What differs from `python3 PATH`:
# /proc/self/cmdline and sys.orig_argv show the stub, and the program runs two frames deeper.
STUB = '''
def _start():
    import os, sys
    os.write(%(ready)d, b"r")
    os.close(%(ready)d)
    path = b""
    while True:
        chunk = os.read(%(go)d, 4096)
        if not chunk:
            break
        path += chunk
    os.close(%(go)d)
    if not path:
        os._exit(%(failed)d)
    path = path.decode()
    scope = sys.modules["__main__"].__dict__
    scope.clear()
    scope.update(
        __name__="__main__",
        __doc__=None,
        __package__=None,
        __spec__=None,
        __loader__=sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path),
        __file__=path,
        __cached__=None,
        __builtins__=sys.modules["builtins"],
        __annotations__={},
    )
    sys.argv[:] = [path]
    sys.path[0] = os.path.dirname(path)
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec", dont_inherit=True)
    except BaseException as error:
        # As Python reports a script it cannot compile: the error alone, no traceback.
        sys.excepthook(type(error), error.with_traceback(None), None)
        raise SystemExit(1) from None
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as error:
        # The traceback starts at the program's first frame, as for `python3 PATH`.
        program_frames = error.__traceback__.tb_next
        sys.excepthook(type(error), error.with_traceback(program_frames), program_frames)
        if isinstance(error, KeyboardInterrupt):
            import signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None
_start()
''' % {"go": GO_FD, "ready": READY_FD, "failed": 127}


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) of `message` under `key`, in lowercase hex, as
    ``hmac.new(key, message, "sha256").hexdigest()``."""
    block = 64
    if len(key) > block:
        key = sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = sha256(bytes(byte ^ 0x36 for byte in key) + message).digest()
    return sha256(bytes(byte ^ 0x5C for byte in key) + inner).hexdigest()


# How JSON escapes these characters; every other one outside printable ASCII is \uXXXX.
JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_char(char):
    escaped = JSON_ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if " " <= char <= "~":
        return char
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF))
    return "\\u%04x" % code


def json_text(value):
    """`value` (dicts, lists, strings, integers, booleans) as ``json.dumps(value,
    sort_keys=True)`` writes it."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(json_char(char) for char in value) + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(json_text(key) + ": " + json_text(value[key]) for key in sorted(value)) + "}"
    return "[" + ", ".join(json_text(item) for item in value) + "]"


def frame(tag, payload):
    return struct.pack(">cI", tag, len(payload)) + payload


def send(data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(1, view):]
        except InterruptedError:
            continue


def fail(message):
    """Nothing was started: say why in an X frame (and on stderr, for an older supervisor)."""
    text = ("safe-exec launcher: %s" % message).encode()
    try:
        send(frame(b"X", text))
        os.write(2, text + b"\n")
    finally:
        os._exit(LAUNCHER_FAILED)


def parse_arguments(argv):
    options = dict(zip(argv[0::2], argv[1::2]))
    names = ("--uid", "--cpu-ms", "--wall-ms", "--max-output", "--pids", "--code-wait")
    try:
        values = [int(options[name]) for name in names]
        cpus = float(options["--cpus"])
        memory = int(options.get("--memory", "1"))
    except (KeyError, ValueError):
        fail("usage: launch.py --uid U --cpu-ms T --wall-ms W --cpus C --max-output B --pids P --code-wait S [--memory M]")
    if min(values) <= 0 or memory <= 0 or not cpus > 0 or values[0] == LAUNCHER_UID:
        fail("every limit must be positive and the uid not the launcher's")
    return values, cpus, (memory if "--memory" in options else None)


def read_line():
    line = bytearray()
    while True:
        byte = os.read(0, 1)
        if not byte:
            fail("standard input ended before the request was complete")
        if byte == b"\n":
            return bytes(line)
        line += byte
        if len(line) > MAX_HEADER:
            fail("request header too long")


def read_exactly(count):
    chunks = []
    remaining = count
    while remaining:
        chunk = os.read(0, min(remaining, 65536))
        if not chunk:
            fail("standard input ended inside a file")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def valid_name(name, program=False):
    # [A-Za-z0-9_][A-Za-z0-9_.-]{0,99}, without "..", not "out", and the program's ending in .py.
    return (
        1 <= len(name) <= 100
        and (name[0].isascii() and (name[0].isalnum() or name[0] == "_"))
        and NAME_CHARS.issuperset(name)
        and ".." not in name
        and name != OUT
        and (not program or (name.endswith(".py") and len(name) > 3))
    )


def read_request():
    parts = read_line().split(b" ")
    if not parts or parts[0] != PROTOCOL:
        fail("unsupported protocol (expected %s): rebuild the runner image" % PROTOCOL.decode())
    # The artifact budget is optional (a request without it asks for none).
    if len(parts) == 3:
        parts.append(b"0")
    if len(parts) != 4 or len(parts[1]) != 32 or not KEY_CHARS.issuperset(parts[1]):
        fail("malformed request header")
    if not parts[2].isdigit() or not 1 <= int(parts[2]) <= MAX_FILES:
        fail("malformed request header")
    if not parts[3].isdigit() or int(parts[3]) > MAX_ARTIFACT_BYTES:
        fail("malformed request header")
    files = []
    for index in range(int(parts[2])):
        entry = read_line().split(b" ")
        try:
            size, name = int(entry[0]), entry[1].decode("ascii")
        except (ValueError, IndexError, UnicodeDecodeError):
            fail("malformed file header")
        if len(entry) != 2 or not 0 <= size <= MAX_FILE_BYTES or not valid_name(name, index == 0):
            fail("malformed file header")
        if any(name == seen for seen, _ in files):
            fail("duplicate file name")
        files.append((name, read_exactly(size)))
    return parts[1], files, int(parts[3])


def write_files(files):
    # Root owns them and the program may only read them: it cannot change its own source.
    for name, content in files:
        fd = os.open(os.path.join(WORKDIR, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.close(fd)
    return os.path.join(WORKDIR, files[0][0])


def open_counter(candidates):
    for path, scale in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        return fd, scale
    return None, 1


def proc_cpu_ns():
    """Without a cgroup counter: every process's user and system time, its reaped children's
    included (PID 1 reaps the orphans), from /proc."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += sum(int(value) for value in fields[11:15])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def memory_used():
    """Without a cgroup: the sandbox's memory in use, by its own kernel's account (bytes)."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            fields = dict(line.split(b":", 1) for line in meminfo.read().splitlines() if b":" in line)
        return (int(fields[b"MemTotal"].split()[0]) - int(fields[b"MemFree"].split()[0])) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 0


def cpu_ns(counter):
    """CPU time of everything in the container, in nanoseconds."""
    fd, scale = counter
    if fd is None:
        return proc_cpu_ns()
    try:
        text = os.pread(fd, 4096, 0)
    except OSError:
        return 0
    if scale == 1:
        return int(text.split()[0])
    for line in text.split(b"\n"):
        fields = line.split()
        if len(fields) == 2 and fields[0] == b"usage_usec":
            return int(fields[1]) * scale
    return 0


def oom_kills(fd):
    """The kernel's count of OOM kills in this container's memory cgroup."""
    if fd is None:
        return 0
    try:
        text = os.pread(fd, 4096, 0)
    except OSError:
        return 0
    for line in text.split(b"\n"):
        fields = line.split()
        if len(fields) == 2 and fields[0] == b"oom_kill":
            return int(fields[1])
    return 0


def plant_seed():
    """Copy the image's seed (SEED, when there is one) into the working directory as the program's
    own files: caches a library wants writable, such as matplotlib's font list, built once into
    the image instead of in every container."""
    for root, _, names in os.walk(SEED):
        target = os.path.join(WORKDIR, os.path.relpath(root, SEED))
        os.makedirs(target, exist_ok=True)
        for name in names:
            with open(os.path.join(root, name), "rb") as source:
                data = source.read()
            with open(os.path.join(target, name), "wb") as copy:
                copy.write(data)


def become_program(uid, pids, cpu_seconds, stdout, stderr, go, ready):
    """In the child: drop everything, then exec the stub that becomes the program. Never returns."""
    try:
        # First of all: in too little memory the kernel must pick this process, never the
        # launcher (which would leave no report).
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write("1000")
        # Above every descriptor in use first, so that placing them cannot close one another.
        go, ready = fcntl.fcntl(go, fcntl.F_DUPFD, 100), fcntl.fcntl(ready, fcntl.F_DUPFD, 100)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.dup2(go, GO_FD)
        os.dup2(ready, READY_FD)
        os.closerange(READY_FD + 1, 65536)
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (pids, pids))
        # The program's own, empty: what it leaves here may come back as artifacts.
        os.mkdir(os.path.join(WORKDIR, OUT), 0o755)
        plant_seed()
        env = {name: os.environ[name] for name in ENV_ALLOWED if name in os.environ}
        os.execve(sys.executable, [sys.executable, "-u", "-B", "-c", STUB], env)
    finally:
        os._exit(EXEC_FAILED)


class Relay:
    """The program's two pipes, read in batches into frames, with the per-stream cap."""

    def __init__(self, stdout, stderr, cap):
        self.streams = {stdout: b"1", stderr: b"2"}
        self.cap = cap
        self.sent = {b"1": 0, b"2": 0}
        self.seen = {b"1": 0, b"2": 0}
        self.pending = []
        self.pending_since = None
        self.resting = {}
        self.over = None
        for fd in self.streams:
            os.set_blocking(fd, False)
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass

    def watched(self, now):
        """The pipes to watch now: open ones whose rest after the last small read is over."""
        return [fd for fd in self.streams if self.resting.get(fd, 0) <= now]

    def next_wake(self):
        times = list(self.resting.values())
        if self.pending_since is not None:
            times.append(self.pending_since + BATCH)
        return min(times) if times else None

    def read(self, fd, now, size=PIPE_BYTES):
        """One read of `fd`; returns how many bytes came. A read that does not fill the buffer
        means a slow or small writer: its pipe is left alone for BATCH so its writes pile up."""
        tag = self.streams[fd]
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return 0
        if not data:
            os.close(fd)
            del self.streams[fd]
            self.resting.pop(fd, None)
            return 0
        self.seen[tag] += len(data)
        room = self.cap - self.sent[tag]
        if len(data) > room and self.over is None:
            self.over = tag
        kept = data[:room]
        if kept:
            self.sent[tag] += len(kept)
            if self.pending and self.pending[-1][0] == tag:
                self.pending[-1][1].extend(kept)
            else:
                self.pending.append((tag, bytearray(kept)))
            if self.pending_since is None:
                self.pending_since = now
        if len(data) < PIPE_BYTES:
            self.resting[fd] = now + BATCH
        else:
            self.resting.pop(fd, None)
        return len(data)

    def drain(self):
        """Exactly what the pipes hold at this moment: the program's last words. Descendants may
        still be alive and writing; what they write from now on is not the program's run."""
        held = {}
        for fd in self.streams:
            count = bytearray(4)
            try:
                fcntl.ioctl(fd, termios.FIONREAD, count, True)
            except OSError:
                continue
            held[fd] = int.from_bytes(count, sys.byteorder)
        for fd, left in held.items():
            while left > 0 and fd in self.streams:
                got = self.read(fd, 0.0, min(left, PIPE_BYTES))
                if not got:
                    break
                left -= got

    def flush(self, now, force=False):
        if not self.pending or (not force and now < self.pending_since + BATCH):
            return
        chunks = []
        for tag, data in self.pending:
            for start in range(0, len(data), MAX_FRAME):
                chunks.append(frame(tag, bytes(data[start:start + MAX_FRAME])))
        self.pending = []
        self.pending_since = None
        send(b"".join(chunks))


def collect_artifacts(budget):
    """Send what the program left in out/: regular files only, never through a link (every name
    opened relative to its directory with O_NOFOLLOW), at most MAX_ARTIFACTS files and `budget`
    bytes, each file read only as far as the size it had when opened; then the manifest. Runs
    after the end was decided, as the last of the program's processes are being stopped."""
    import stat

    manifest = {"files": [], "skipped": [], "truncated": False}
    state = {"left": budget, "count": 0}

    def skip(name, reason):
        if len(manifest["skipped"]) < MAX_ARTIFACTS:
            manifest["skipped"].append({"name": name, "reason": reason})

    def walk(directory, prefix, depth):
        try:
            entries = sorted(entry.name for entry in os.scandir(directory))
        except OSError as error:
            skip(prefix.rstrip("/") or OUT, "cannot be listed (%s)" % error.strerror)
            return
        for name in entries:
            path = prefix + name
            if not valid_name(name) and name != OUT:
                skip(path, "a name outside [A-Za-z0-9_.-]")
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
            except OSError as error:
                reason = "a symbolic link" if error.errno == errno.ELOOP else "not readable"
                skip(path, "%s (%s)" % (reason, error.strerror))
                continue
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    if depth >= MAX_ARTIFACT_DEPTH:
                        skip(path, "nested too deep")
                    else:
                        walk(fd, path + "/", depth + 1)
                elif not stat.S_ISREG(info.st_mode):
                    skip(path, "not a regular file")
                elif state["count"] >= MAX_ARTIFACTS:
                    manifest["truncated"] = True
                    skip(path, "more than %d files" % MAX_ARTIFACTS)
                else:
                    state["count"] += 1
                    send_file(fd, path, info.st_size)
            except OSError as error:
                skip(path, "could not be read (%s)" % error.strerror)
            finally:
                os.close(fd)

    def send_file(fd, path, size):
        take = min(size, state["left"])
        header = path.encode() + b"\0"
        sent = 0
        while True:
            data = os.read(fd, min(take - sent, MAX_FRAME - len(header))) if take > sent else b""
            sent += len(data)
            if data or sent == 0:
                send(frame(b"A", header + data))
            if not data or sent >= take:
                break
        state["left"] -= sent
        cut = sent < size
        manifest["truncated"] = manifest["truncated"] or cut
        manifest["files"].append({"name": path, "size": size, "sent": sent, "truncated": cut})

    try:
        root = os.open(os.path.join(WORKDIR, OUT), os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
    except OSError:
        skip(OUT, "out/ is gone or no longer a directory")
    else:
        try:
            walk(root, "", 0)
        finally:
            os.close(root)
    send(frame(b"M", json_text(manifest).encode()))


def reap(pid):
    """Reap every child that has ended (PID 1 inherits the program's orphans); the program's own
    wait status when it is among them."""
    status_of_program = None
    while True:
        try:
            reaped, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status_of_program
        if reaped == 0:
            return status_of_program
        if reaped == pid:
            status_of_program = status


def main():
    (uid, cpu_ms, wall_ms, max_output, pids, code_wait), cpus, memory = parse_arguments(sys.argv[1:])
    if os.getuid() != 0:
        fail("the launcher must start as root to give the program a user of its own: "
             "run it through safe-exec (docker create --user 0:0 --cap-add SETUID --cap-add SETGID)")
    os.umask(0o022)
    cpu_counter = open_counter(CGROUP_CPU)
    oom_fd = open_counter([(candidate, 1) for candidate in CGROUP_OOM])[0]
    # The kernel counts OOM kills where there is a cgroup; elsewhere the launcher watches memory.
    memory_limit = memory if oom_fd is None else None
    memory_oom = 0
    # Counted from before the interpreter starts: too little memory to start is the program's.
    oom_before = oom_kills(oom_fd)
    # The kernel's own backstop, per process, should the launcher ever be unable to act.
    cpu_seconds = int(cpu_ms * max(cpus, 1.0) / 1000) + 2
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame_: None)
    signal.set_wakeup_fd(wake_w)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    # The interpreter starts now, while the request is on its way (see the module docs).
    pid = os.fork()
    if pid == 0:
        become_program(uid, pids, cpu_seconds, out_w, err_w, go_r, ready_w)
    for fd in (out_w, err_w, go_r, ready_w):
        os.close(fd)
    # Nobody sends the request (its supervisor died): SIGALRM's default action ends us.
    signal.alarm(code_wait)
    send(frame(b"R", PROTOCOL))
    key, files, artifact_bytes = read_request()
    signal.alarm(0)
    path = write_files(files)
    os.chdir(WORKDIR)
    os.setgroups([])
    os.setresgid(LAUNCHER_UID, LAUNCHER_UID, LAUNCHER_UID)
    os.setresuid(LAUNCHER_UID, LAUNCHER_UID, LAUNCHER_UID)
    # Nothing to read means the interpreter is gone before it was ready (it could not start,
    # say in too little memory): the loop below reaps it and reports how it ended.
    interpreter_ready = os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    cpu_before = cpu_ns(cpu_counter)
    started = time.monotonic()
    if interpreter_ready:
        try:
            os.write(go_w, path.encode())
        except OSError:
            pass
    os.close(go_w)
    send(frame(b"S", b""))
    relay = Relay(out_r, err_r, max_output)
    wall_deadline = started + wall_ms / 1000.0
    cpu_limit_ns = cpu_ms * 1_000_000
    # CPU time grows at most this fast (a quota is enforced per period, so a burst may use every
    # core for a moment): no need to look again before the limit could have been reached.
    cpu_rate = max(cpus, float(os.cpu_count() or 1)) * 1e9
    next_cpu_check = started
    ending, number, stop = None, 0, "none"
    cpu_end = ended = None
    poller = select.poll()
    watched = set()
    while ending is None:
        now = time.monotonic()
        if now >= next_cpu_check:
            used = cpu_ns(cpu_counter) - cpu_before
            if used > cpu_limit_ns:
                ending, stop, ended, cpu_end = "running", "cpu", now, used
                break
            next_cpu_check = now + max((cpu_limit_ns - used) / cpu_rate, 0.001)
        if now >= wall_deadline:
            ending, stop, ended = "running", "wall", now
            break
        if memory_limit is not None and memory_used() > memory_limit:
            ending, number, ended, memory_oom = "signal", signal.SIGKILL, now, 1
            break
        if relay.over is not None:
            ending, stop, ended = "running", "stdout" if relay.over == b"1" else "stderr", now
            break
        relay.flush(now)
        wanted = set(relay.watched(now)) | {wake_r}
        for fd in watched - wanted:
            poller.unregister(fd)
        for fd in wanted - watched:
            poller.register(fd, select.POLLIN)
        watched = wanted
        wake = min(wall_deadline, next_cpu_check)
        if memory_limit is not None:
            wake = min(wake, now + MEMORY_POLL)
        batch_wake = relay.next_wake()
        if batch_wake is not None:
            wake = min(wake, batch_wake)
        for fd, _ in poller.poll(max(0.0, (wake - now) * 1000.0)):
            now = time.monotonic()
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                status = reap(pid)
                if status is not None:
                    ended, cpu_end = now, cpu_ns(cpu_counter) - cpu_before
                    if os.WIFSIGNALED(status):
                        ending, number = "signal", os.WTERMSIG(status)
                    else:
                        ending, number = "exit", os.WEXITSTATUS(status)
            elif fd in relay.streams:
                relay.read(fd, now)

    if cpu_end is None:
        cpu_end = cpu_ns(cpu_counter) - cpu_before
    oom = max(0, oom_kills(oom_fd) - oom_before) + memory_oom
    relay.drain()
    if relay.over is not None and stop == "none":
        ending, number, stop = "running", 0, "stdout" if relay.over == b"1" else "stderr"
    cpu_used_ms = max(0, cpu_end) // 1_000_000
    wall_used_ms = int((ended - started) * 1000)
    # A stop is decided on a reading past the limit: the report says so to the millisecond.
    if stop == "cpu":
        cpu_used_ms = max(cpu_used_ms, cpu_ms + 1)
    if stop == "wall":
        wall_used_ms = max(wall_used_ms, wall_ms + 1)
    words = b"%s %d stop %s cpu_ms %d wall_ms %d oom %d stdout_bytes %d stderr_bytes %d" % (
        ending.encode(),
        number,
        stop.encode(),
        cpu_used_ms,
        wall_used_ms,
        oom,
        relay.seen[b"1"],
        relay.seen[b"2"],
    )
    mac = hmac_sha256(key, words).encode()
    relay.flush(0.0, force=True)
    if artifact_bytes:
        collect_artifacts(artifact_bytes)
    send(frame(b"E", words + b" " + mac))
    # PID 1 leaving takes every process left in the container with it.
    if ending == "exit":
        os._exit(number)
    os._exit(128 + (number if ending == "signal" else signal.SIGKILL))


if __name__ == "__main__":
    main()
