# safe-exec reports: ok (exit code 0): writes outside /tmp fail (read-only root); /tmp is a small writable tmpfs.
import os

for path in ("/etc/hacked.txt", "/hacked.txt"):
    try:
        with open(path, "w") as f:
            f.write("hacked!")
        print(f"wrote {path}: the root filesystem is writable!")
    except OSError as error:
        print(f"cannot write {path}: {error.strerror}")

with open("/tmp/scratch.txt", "w") as f:
    f.write("scratch space\n")
with open("/tmp/scratch.txt") as f:
    print(f"/tmp works: {f.read().strip()!r}")
stat = os.statvfs("/tmp")
print(f"/tmp holds {stat.f_blocks * stat.f_frsize // (1024 * 1024)} MiB in all and vanishes with the container")
