# Accepted: reads every number, whatever the line breaks.
import sys

n, *numbers = map(int, sys.stdin.read().split())
print(sum(numbers[:n]))
