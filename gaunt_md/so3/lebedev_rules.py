"""The Lebedev rules of orders 3-31 shipped with the package (``lebedev_rules.npz``).

:class:`~gaunt_md.so3.grid.LebedevGrid` reads these instead of importing
``scipy.integrate`` (which costs ~40 MB of resident memory in every process that evaluates a
model) and so also works without SciPy >= 1.15 up to order 31. The numbers are SciPy's
``scipy.integrate.lebedev_rule`` (SciPy 1.17.1), written by this module::

    python -m gaunt_md.so3.lebedev_rules        # rewrites gaunt_md/so3/lebedev_rules.npz

The file holds one float64 array ``order_<n>`` of shape ``[points, 4]`` (x, y, z, weight) per
order; it is read with ``allow_pickle=False``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

PATH = Path(__file__).with_name("lebedev_rules.npz")
SHIPPED_ORDERS = (3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)


@lru_cache(maxsize=None)
def shipped_rule(order: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(points [G, 3], weights [G])`` of a shipped order (read-only arrays), else ``None``."""
    if order not in SHIPPED_ORDERS or not PATH.is_file():
        return None
    with np.load(PATH, allow_pickle=False) as data:
        table = data[f"order_{order}"]
    points, weights = np.ascontiguousarray(table[:, :3]), np.ascontiguousarray(table[:, 3])
    points.flags.writeable = weights.flags.writeable = False
    return points, weights


def main() -> None:
    from scipy.integrate import lebedev_rule

    tables = {}
    for order in SHIPPED_ORDERS:
        x, w = lebedev_rule(order)  # x [3, G]
        tables[f"order_{order}"] = np.concatenate([x.T, w[:, None]], axis=1).astype(np.float64)
    np.savez_compressed(PATH, **tables)
    sizes = ", ".join(f"{order}: {len(tables['order_' + str(order)])}" for order in SHIPPED_ORDERS)
    print(f"wrote {PATH} (points per order {sizes})")


if __name__ == "__main__":
    main()
