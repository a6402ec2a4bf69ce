# safe-exec reports: ok (exit code 0), answering from stdin, e.g. `printf 'Ada\n3 4 5\n' | safe-exec run examples/input.py`.
import sys

name = sys.stdin.readline().strip() or "stranger"
numbers = [float(word) for line in sys.stdin for word in line.split()]
print(f"Hello, {name}!")
if numbers:
    print(f"You gave me {len(numbers)} numbers: sum {sum(numbers):g}, mean {sum(numbers) / len(numbers):g}, max {max(numbers):g}")
else:
    print("You gave me no numbers.")
