# Run-time error: indexes past the end of the list.
import sys

n, *numbers = map(int, sys.stdin.read().split())
print(numbers[n])
