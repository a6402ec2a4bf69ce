# Wrong answer on negative numbers: adds absolute values.
import sys

n, *numbers = map(int, sys.stdin.read().split())
print(sum(abs(x) for x in numbers[:n]))
