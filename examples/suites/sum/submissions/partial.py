# Only reads the first line of numbers: right on small cases, wrong on the large ones.
n = int(input())
print(sum(map(int, input().split())))
