"""safe-exec launcher: receives the program on stdin, then becomes it.

Runs inside the sandbox as the unprivileged user, started by safe-exec as
``timeout --signal=KILL N python3 -I -S /opt/safe-exec/launch.py``.

Protocol (version 1), on standard input:

    SAFE-EXEC/1 <nbytes> <filename>\n
    <exactly nbytes of UTF-8 source>
    <everything after that is the program's own standard input>

The launcher reads the header and the source with unbuffered ``os.read`` so it
never consumes a byte of the program's stdin, writes the source to
``/tmp/<filename>`` and ``execve``s Python on it: the program is a real script
(``__main__``, ``__file__``, tracebacks with source lines) and inherits fd 0
positioned exactly at its own input. Because the code travels over the
container's stdin, no host path is mounted, a remote engine works, and a
container started before its code is known can receive it the same way.
"""

import os
import re
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


def main():
    parts = read_header().split(b" ")
    if len(parts) != 3 or parts[0] != PROTOCOL:
        fail("unsupported protocol (expected %s): rebuild the runner image" % PROTOCOL.decode())
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
    os.execve(sys.executable, [sys.executable, "-u", "-B", path], env)


main()
