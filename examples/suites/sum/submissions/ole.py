# Output limit exceeded: prints without end.
while True:
    print("spam " * 1000)
