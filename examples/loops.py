# safe-exec reports: ok (exit code 0), the squares, a countdown and the first primes.
squares = [n * n for n in range(1, 6)]
for n, square in zip(range(1, 6), squares):
    print(f"{n} squared is {square}")

count = 3
while count > 0:
    print(f"countdown {count}")
    count -= 1

primes = []
candidate = 2
while len(primes) < 10:
    if all(candidate % p for p in primes if p * p <= candidate):
        primes.append(candidate)
    candidate += 1
print("first ten primes:", primes, "sum", sum(primes))
