"""One style for every page and notebook: figures with labelled axes and a title that states the finding; tables."""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

COLORS = ["#1f5fa8", "#d1495b", "#2e8b57", "#edae49", "#6a4c93", "#00798c", "#8c564b"]


def use_course_style() -> None:
    """Apply the course's matplotlib style (readable fonts, light grid, colour-blind-safe cycle)."""
    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (6.4, 3.6), "axes.grid": True,
        "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
        "axes.titlesize": 11, "axes.titleweight": "bold", "legend.frameon": False,
        "axes.prop_cycle": mpl.cycler(color=COLORS),
    })


def label(ax, title: str, xlabel: str, ylabel: str, legend: bool = False):
    """Set a finding-stating title and axis labels (with units) on ``ax``; add a legend if asked."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend()
    return ax


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.6):
    """A new figure in the course style; returns (fig, axes)."""
    use_course_style()
    return plt.subplots(nrows, ncols, figsize=(width, height), constrained_layout=True)


def show_table(rows: list[dict], precision: int = 3) -> None:
    """Display a list of dicts as a table in a notebook: no index, text left-aligned, floats rounded."""
    import pandas as pd
    from IPython.display import display

    style = pd.DataFrame(rows).style.hide(axis="index").format(precision=precision)
    display(style.set_properties(**{"text-align": "left", "vertical-align": "top", "padding": "3px 8px"}))


def quote(name: str, value) -> None:
    """Keep a number that the text quotes: pasted into the book's prose (myst-nb ``glue``) and printed as name = value.

    In Colab or Jupyter the text shows the name, and this printed line gives its value.
    """
    if type(value).__module__ in ("numpy", "torch") and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy or torch scalar as a Python number: glue formats it like one ("np.float64(...)" otherwise)
    try:
        from myst_nb import glue
    except ImportError:  # no book build here: printing is all there is to do
        glue = None
    if glue is not None:
        glue(name, value, display=False)
    shown = f"{value:.4g}" if isinstance(value, float) else value
    print(f"  \u21b3 {name} = {shown}")
