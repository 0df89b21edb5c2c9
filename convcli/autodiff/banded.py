"""Banded storage of an input Jacobian: its diagonals plus the entries padding folds back.

O(k·L_out) memory, so N = 10⁶ fits easily; ``Banded.arrays()`` is the ``.npz`` layout
``jacobian --format banded`` writes (see docs/jacobians.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Banded:
    """An input Jacobian ``[L_out, N]`` stored as diagonals plus the entries padding folds.

    ``J[i, stride·i + offsets[d]] = bands[d, i]`` wherever that column is in ``0 … N−1``
    (``bands`` is 0 where it is not), and ``J[edge_rows[e], edge_cols[e]] = edge_vals[e]``;
    every other entry is 0. The two parts never name the same entry. ``edge_*`` is empty
    for zero padding.

    Shape: ``offsets [D]`` long, ``bands [D, L_out]``, ``edge_rows/edge_cols/edge_vals [E]``.
    """

    offsets: torch.Tensor
    bands: torch.Tensor
    edge_rows: torch.Tensor
    edge_cols: torch.Tensor
    edge_vals: torch.Tensor
    shape: tuple[int, int]
    stride: int

    @property
    def nbytes(self) -> int:
        parts = (self.offsets, self.bands, self.edge_rows, self.edge_cols, self.edge_vals)
        return sum(t.numel() * t.element_size() for t in parts)

    def to_dense(self) -> torch.Tensor:
        """``[L_out, N]``: the densified matrix (what docs/jacobians.md's numpy snippet does)."""
        length, n = self.shape
        out = self.bands.new_zeros(length, n)
        rows = torch.arange(length, device=self.bands.device)
        for offset, band in zip(self.offsets.tolist(), self.bands):
            cols = self.stride * rows + offset
            ok = (cols >= 0) & (cols < n)
            out[rows[ok], cols[ok]] = band[ok]
        out[self.edge_rows, self.edge_cols] = self.edge_vals
        return out

    def block(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """``J[r0:r1, c0:c1]`` densified, without building the whole matrix."""
        (r0, r1), (c0, c1) = rows, cols
        out = self.bands.new_zeros(r1 - r0, c1 - c0)
        local = torch.arange(r1 - r0, device=self.bands.device)
        for offset, band in zip(self.offsets.tolist(), self.bands[:, r0:r1]):
            c = self.stride * (local + r0) + offset - c0
            ok = (c >= 0) & (c < c1 - c0) & (c + c0 < self.shape[1])
            out[local[ok], c[ok]] = band[ok]
        inside = ((self.edge_rows >= r0) & (self.edge_rows < r1)
                  & (self.edge_cols >= c0) & (self.edge_cols < c1))
        out[self.edge_rows[inside] - r0, self.edge_cols[inside] - c0] = self.edge_vals[inside]
        return out

    def arrays(self) -> dict:
        """The numpy arrays of the ``.npz`` file (its layout: docs/jacobians.md)."""
        return {
            "offsets": self.offsets.cpu().numpy(),
            "bands": self.bands.cpu().numpy(),
            "edge_rows": self.edge_rows.cpu().numpy(),
            "edge_cols": self.edge_cols.cpu().numpy(),
            "edge_vals": self.edge_vals.cpu().numpy(),
            "shape": torch.tensor(self.shape).numpy(),
            "stride": torch.tensor(self.stride).numpy(),
        }


def fill_edges(bands: torch.Tensor, offsets: torch.Tensor, stride: int, rows: torch.Tensor,
                cols: torch.Tensor, vals: torch.Tensor):
    """Split coalesced entries of edge rows into band entries (written) and the rest (returned)."""
    position = torch.searchsorted(offsets, cols - stride * rows).clamp(max=offsets.numel() - 1)
    on_band = offsets[position] == cols - stride * rows
    bands[position[on_band], rows[on_band]] = vals[on_band]
    off = ~on_band
    return rows[off], cols[off], vals[off]


def coalesce(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int):
    keys, inverse = torch.unique(rows * n + cols, return_inverse=True)
    summed = vals.new_zeros(keys.numel()).index_add_(0, inverse, vals)
    return keys // n, keys % n, summed


