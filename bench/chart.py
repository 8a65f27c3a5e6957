"""The e2e ratios as a chart (an SVG, with matplotlib from the bench dependency group).

One panel per e2e group (flavour x backend, and PostgreSQL behind the latency
proxy): per variant, a box of its per-round ratios to raw SQLAlchemy (the
line inside is the median, the box the middle half of the rounds, the
whiskers the rest but outliers), a dashed line at 1 and a dotted one at
the group's budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .e2e import BASELINE, GroupResult, describe

__all__ = ["write_chart"]

_OURS = ("scope_monitoring_on", "scope_monitoring_off", "with_session")


def write_chart(
    groups: Sequence[GroupResult], path: Path, title: str, budgets: dict[str, float]
) -> str:
    """Write the chart; what happened, for the report (matplotlib may be missing)."""
    try:
        import matplotlib

        matplotlib.use("agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart not written: matplotlib is not installed (it is in the bench group)"
    groups = [g for g in groups if len(g.series) > 1]
    if not groups:
        return "chart not written: no e2e group was measured"
    columns = 2 if len(groups) > 1 else 1
    rows = (len(groups) + columns - 1) // columns
    figure, axes = plt.subplots(
        rows, columns, figsize=(7.5 * columns, 3.3 * rows), squeeze=False, layout="constrained"
    )
    for ax, group in zip(axes.flat, groups, strict=False):
        keys = [key for key in group.series if key != BASELINE and not key.startswith("raw_")]
        keys.reverse()  # the first variant on top
        boxes = ax.boxplot(
            [group.round_ratios(key) for key in keys],
            orientation="horizontal",
            widths=0.6,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 3},
            medianprops={"color": "black"},
        )
        for patch, key in zip(boxes["boxes"], keys, strict=True):
            patch.set_facecolor("#4c72b0" if key in _OURS else "#c8c8c8")
        ax.set_yticks(range(1, len(keys) + 1), [group.series[k].label for k in keys], fontsize=8)
        ax.axvline(1.0, color="black", linestyle="--", linewidth=0.8)
        budget = budgets.get(group.name, budgets.get(group.name.split("@")[0]))
        if budget is not None:
            ax.axvline(budget, color="#c44e52", linestyle=":", linewidth=1.2)
        rounds = len(group.series[BASELINE].values)
        ax.set_title(f"{describe(group.flavour, group.database)}; {rounds} rounds", fontsize=9)
        ax.set_xlabel("time per unit of work / raw SQLAlchemy, per round", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    figure.suptitle(
        title + "\nblue: sessionscope; grey: its peers; dashed: raw SQLAlchemy; "
        "dotted red: the budget; boxes: the middle half of the rounds",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":  # for a quick look; the README shows the SVG
        figure.savefig(path, format="png", dpi=110)
    else:  # no date inside: the same run writes the same file
        figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return f"chart written to {path}"
