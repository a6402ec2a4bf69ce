# Time limit exceeded: never finishes.
while True:
    pass
