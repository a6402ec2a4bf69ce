# Memory limit exceeded: allocates far more than the problem's 64 MiB.
blob = b"x" * (512 * 1024 * 1024)
print(len(blob))
