# safe-exec reports: ok (exit code 0), stdout "Hello from the sandbox!".
print("Hello from the sandbox!")
