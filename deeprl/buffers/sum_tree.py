"""A sum tree over non-negative priorities, vectorized in torch (for prioritized replay).

The tree is a binary heap in one tensor: node 1 is the root, node i has children 2i and 2i+1, and
the ``P`` leaves (capacity rounded up to a power of two) are nodes P .. 2P-1. Batched updates
rewrite the changed leaves and then recompute their ancestors level by level (or the whole tree,
for bulk writes); batched sampling descends all queries together, one level per step, and can be
restricted to a circular range of items, whose mass comes from the left siblings on the paths to
its two ends. Sums are float64 and recomputed from the children (never incremented), so they do
not drift.
"""

from __future__ import annotations

import torch


class SumTree:
    """Priorities of ``capacity`` items on ``device``, with proportional sampling."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        self.capacity = capacity
        self.depth = max(1, (capacity - 1).bit_length())
        self.num_leaves = 1 << self.depth
        self.tree = torch.zeros(2 * self.num_leaves, dtype=torch.float64, device=device)

    @staticmethod
    def nbytes(capacity: int) -> int:
        """Memory the tree of ``capacity`` items takes."""
        return 2 * (1 << max(1, (capacity - 1).bit_length())) * 8

    @property
    def total(self) -> torch.Tensor:
        return self.tree[1]

    @property
    def leaves(self) -> torch.Tensor:
        """Priorities (capacity,) as a view."""
        return self.tree[self.num_leaves : self.num_leaves + self.capacity]

    def update(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set the priorities of items ``indices`` (K,) to ``priorities`` (K,)."""
        nodes = indices.long() + self.num_leaves
        self.tree[nodes] = priorities.to(self.tree.dtype)
        if len(nodes) * self.depth > self.num_leaves:  # bulk writes: one pass over the tree
            self.rebuild()
            return
        for _ in range(self.depth):
            nodes = nodes // 2
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves (after loading leaves in bulk)."""
        size = self.num_leaves
        while size > 1:
            level = self.tree[size : 2 * size]
            self.tree[size // 2 : size] = level[0::2] + level[1::2]
            size //= 2

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """Items (B,) whose cumulative-priority interval contains ``mass`` (B,) in [0, total).

        Only subtrees with positive mass are entered, so zero-priority items are never returned.
        """
        mass = mass.to(self.tree.dtype).clone()
        nodes = torch.ones_like(mass, dtype=torch.long)
        for _ in range(self.depth):
            left = self.tree[2 * nodes]
            go_right = (mass >= left) & (self.tree[2 * nodes + 1] > 0)
            mass = torch.where(go_right, mass - left, mass)
            nodes = 2 * nodes + go_right.long()
        return nodes - self.num_leaves

    def _left_siblings(self, index: int) -> list[int]:
        """Nodes whose sums add up to the priorities of items [0, index): the left siblings on
        the path from leaf ``index`` up to the root (the root if index = capacity, the unused
        node 0, which holds zero, if index = 0)."""
        if index >= self.capacity:
            return [1]
        node, nodes = index + self.num_leaves, []
        while node > 1:
            if node % 2:
                nodes.append(node - 1)
            node //= 2
        return nodes or [0]

    def prefix(self, *indices: int) -> torch.Tensor:
        """Sums (K,) of the priorities of items [0, index) for each of ``indices`` in
        [0, capacity]. The nodes are views picked by host-side indices: no transfer, no sync."""
        return torch.stack(
            [torch.stack([self.tree[n] for n in self._left_siblings(i)]).sum() for i in indices]
        )

    def sample_range(
        self,
        batch_size: int,
        start: int,
        count: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stratified proportional sampling among the items of the circular range
        [start, start + count) mod capacity: one item from each of ``batch_size`` equal slices of
        the range's mass (Schaul et al. 2016, Appendix B.2.1).

        Returns the items (B,) and the range's total priority (), for probabilities.
        """
        end = start + count
        wraps = end > self.capacity
        below_start, below_end = self.prefix(start, end - self.capacity if wraps else end)
        mass = below_end - below_start + (self.total if wraps else 0.0)
        u = torch.rand(
            batch_size, dtype=self.tree.dtype, device=self.tree.device, generator=generator
        )
        strata = torch.arange(batch_size, dtype=self.tree.dtype, device=self.tree.device)
        target = below_start + (strata + u) * (mass / batch_size)
        target = torch.where(target >= self.total, target - self.total, target)
        found = self.find(target)
        # Rounding in the sums may step one item past either end: clamp into the range.
        offset = (found - start) % self.capacity
        outside = offset >= count
        before = offset >= count + (self.capacity - count) // 2
        offset = torch.where(outside, torch.where(before, 0, count - 1), offset)
        return (start + offset) % self.capacity, mass

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stratified proportional sampling over all items (see :meth:`sample_range`)."""
        return self.sample_range(batch_size, 0, self.capacity, generator)[0]
