"""safe-exec launcher: receives the program on stdin, then becomes it.

Runs inside the sandbox as the unprivileged user, started by safe-exec as
``python3 -I -S /opt/safe-exec/launch.py --code-wait W --watchdog N``.

Protocol (version 1), on standard input:

    SAFE-EXEC/1 <nbytes> <filename>\n
    <exactly nbytes of UTF-8 source>
    <everything after that is the program's own standard input>

The launcher reads the header and the source with unbuffered ``os.read`` so it
never consumes a byte of the program's stdin, writes the source to
``/tmp/<filename>``, writes the start marker (STARTED below) to stderr, and
``execve``s ``timeout --signal=KILL N python3 -u -B /tmp/<filename>``: the
program is a real script (``__main__``, ``__file__``, tracebacks with source
lines) and inherits fd 0 positioned exactly at its own input.

Timing. The marker is the first thing on stderr, written before the program
exists, so safe-exec strips it and starts the program's clock when it arrives:
container start-up does not eat into the time limit. The watchdog (``timeout``,
N seconds, a little more than the limit) ends the container by itself even if
safe-exec is killed: it is the init process's only child, so if the program
kills it, init exits and takes every process with it. Waiting for the code is
bounded by an alarm (W seconds). Because the code travels over the
container's stdin, no host path is mounted, a remote engine works, and a
container started before its code is known can receive it the same way.
"""

import os
import re
import signal
import sys

PROTOCOL = b"SAFE-EXEC/1"
MAX_HEADER = 512
MAX_SOURCE = 4 * 1024 * 1024
WORKDIR = "/tmp"
FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py$")
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
STARTED = b"\x00safe-exec:started\n"


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
    except (KeyError, ValueError):
        fail("usage: launch.py --code-wait SECS --watchdog SECS")
    if code_wait <= 0 or not watchdog > 0:
        fail("--code-wait and --watchdog must be positive")
    return code_wait, "%g" % watchdog


def main():
    code_wait, watchdog = parse_arguments(sys.argv[1:])
    # Nobody sends the code (its supervisor died): SIGALRM's default action ends us.
    signal.alarm(code_wait)
    parts = read_header().split(b" ")
    if len(parts) != 3 or parts[0] != PROTOCOL:
        fail("unsupported protocol (expected %s): rebuild the runner image" % PROTOCOL.decode())
    if not parts[1].isdigit():
        fail("malformed program header")
    try:
        size = int(parts[1])
        filename = parts[2].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        fail("malformed program header")
    if not 0 <= size <= MAX_SOURCE or not FILENAME.match(filename) or ".." in filename:
        fail("malformed program header")
    source = read_exactly(size)
    path = os.path.join(WORKDIR, filename)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    view = memoryview(source)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)
    env = {name: os.environ[name] for name in ENV_ALLOWED if name in os.environ}
    os.chdir(WORKDIR)
    signal.alarm(0)
    os.write(2, STARTED)
    command = ["timeout", "--signal=KILL", watchdog, sys.executable, "-u", "-B", path]
    os.execvpe("timeout", command, env)


main()
