# safe-exec reports: memory_limit (exit code 121): the kernel kills the program at the container's memory limit, 128 MiB by default.
x = 'a' * 1000000000
print(len(x))
