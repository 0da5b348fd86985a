"""Learning curves of a training run (``log.csv``) as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_training(run_dir: str, out: str | None = None) -> str:
    """Plot losses, validation MAEs and learning rate against epoch; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gaunt_md.errors import GauntError

    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise GauntError(f"no training log at {path}")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise GauntError(f"{path} holds no epochs yet")
    epoch = [int(r["epoch"]) for r in rows]

    def col(key: str) -> list[float]:
        return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]

    keys = [k for k in rows[-1] if k.startswith("all/") and k.endswith("_mae")]
    fig, axes = plt.subplots(1, 2 + len(keys), figsize=(4.2 * (2 + len(keys)), 3.4))
    axes[0].semilogy(epoch, col("train_loss"), label="train")
    axes[0].semilogy(epoch, col("valid_loss"), label="valid")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    axes[1].semilogy(epoch, col("lr"))
    axes[1].set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    units = {"energy": "meV/atom", "forces": "meV/Å", "stress": "GPa"}
    for ax, key in zip(axes[2:], keys):
        name = key.split("/")[1].replace("_mae", "")
        groups = sorted({k.split("/")[0] for k in rows[-1] if k.endswith(f"/{name}_mae") and not k.startswith("all/")})
        for g in groups:
            ax.semilogy(epoch, col(f"{g}/{name}_mae"), label=g, lw=1)
        ax.semilogy(epoch, col(key), "k", label="all", lw=2)
        ax.set(xlabel="epoch", ylabel=f"MAE ({units.get(name, '')})", title=f"validation {name} MAE")
        ax.legend(fontsize=6)
    fig.tight_layout()
    out_path = Path(out) if out else Path(run_dir) / "training.png"
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return str(out_path)
