# safe-exec reports: ok (exit code 0), with each network attempt failing: the container has no network.
import socket

try:
    import requests  # noqa: F401
    print("requests is installed")
except ImportError as error:
    print(f"requests is not installed in the sandbox: {error}")

try:
    socket.create_connection(('example.com', 80), timeout=3)
    print("connected: the sandbox has network access!")
except OSError as error:
    print(f"no network: {type(error).__name__}: {error}")
