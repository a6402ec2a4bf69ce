# Run with the data-science image and the data file beside it:
#   safe-exec run --image ds --file examples/scores.csv examples/average.py
import pandas as pd

scores = pd.read_csv("scores.csv")
print(f"{len(scores)} scores, mean {scores['score'].mean():.1f}, best {scores.loc[scores['score'].idxmax(), 'name']}")
