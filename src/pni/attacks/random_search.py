"""Random sampling in the L-inf eps-ball: a gradient-free attack (the audit's item 4).

Athalye et al. (2018): when random points of the eps-ball find adversarial examples that
a gradient attack misses, the gradients are obfuscated. ``random_search`` draws them
(half uniform inside the ball, half at its vertices) and keeps each image's lowest-margin
points for a closer look.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def random_search(model: nn.Module, x: Tensor, y: Tensor, eps: float, samples: int = 1000,
                  candidates: int = 5, batch_size: int = 256,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random points of the L-inf eps-ball around each image (half uniform inside, half
    vertices ``x +- eps``), clipped to [0, 1]. Returns each image's ``candidates``
    lowest-margin points ``(N, candidates, C, H, W)`` and their margins ``(N, candidates)``
    (true logit minus the best other; negative: misclassified in that forward pass)."""
    n_vertex = samples // 2
    best_points, best_margins = [], []
    for i in range(len(y)):
        xi, yi = x[i:i + 1], y[i]
        points_i = torch.empty((0, *xi.shape[1:]), device=x.device)
        margins_i = torch.empty(0, device=x.device)
        for start in range(0, samples, batch_size):
            count = min(batch_size, samples - start)
            u = torch.rand((count, *xi.shape[1:]), generator=generator).to(x.device)
            vertex = (torch.arange(start, start + count, device=x.device) < n_vertex).view(-1, 1, 1, 1)
            delta = torch.where(vertex, torch.sign(u - 0.5), 2 * u - 1) * eps
            pts = (xi + delta).clamp_(0.0, 1.0)
            logits = model(pts)
            true = logits[:, yi].clone()
            logits[:, yi] = -torch.inf
            margin = true - logits.max(1).values
            points_i = torch.cat([points_i, pts])
            margins_i = torch.cat([margins_i, margin])
            keep = torch.argsort(margins_i)[:candidates]
            points_i, margins_i = points_i[keep], margins_i[keep]
        best_points.append(points_i)
        best_margins.append(margins_i)
    return torch.stack(best_points), torch.stack(best_margins)
