# Run with the data-science image: safe-exec run --image ds examples/plot.py --artifacts plots/
# plt.show() saves the figure into out/ (there is no screen), and out/ comes back as artifacts.
import matplotlib.pyplot as plt

xs = list(range(1, 11))
plt.plot(xs, [x * x for x in xs], marker="o")
plt.title("Squares")
plt.show()
print("drew", len(xs), "points")
