"""A matplotlib backend for safe-exec: Agg (headless), and `plt.show()` saves every open figure
into out/ as figure-<number>.png, where safe-exec collects it as an artifact.

Chosen with MPLBACKEND=module://safe_exec_plots, which safe-exec sets for every program; it only
matters to a program that imports matplotlib.
"""

import os

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
OUT = "out"


def save_open_figures():
    """Save every open figure as out/figure-<number>.png; returns the paths."""
    os.makedirs(OUT, exist_ok=True)
    saved = []
    for manager in Gcf.get_all_fig_managers():
        path = os.path.join(OUT, "figure-%s.png" % manager.num)
        manager.canvas.figure.savefig(path)
        saved.append(path)
    return saved


class FigureManager(FigureManagerBase):
    @classmethod
    def pyplot_show(cls, *args, **kwargs):
        save_open_figures()


def show(*args, **kwargs):
    save_open_figures()
