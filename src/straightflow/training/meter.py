"""What the training loop measures between two host reads: losses, their logs and gradient norms.

Everything is summed on the training device; the host reads once per window (every `train.log_every` steps):
no host-device sync in the step. A NaN or Inf loss is recorded on the device with its step and raised at the
read, before any checkpoint is written, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import time

import torch

from straightflow.training.distributed import DistInfo, all_reduce_mean, all_reduce_min

__all__ = ["LossMeter", "NonFiniteLossError", "grad_norm"]

_NO_BAD = 2**62  # "no non-finite loss yet": larger than any step, so the first bad step is a min-reduction


class NonFiniteLossError(RuntimeError):
    pass


def grad_norm(parameters) -> torch.Tensor:
    """Global L2 norm of the gradients, sqrt(sum_p |g_p|^2), as a 0-dim tensor on their device (no host read)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class LossMeter:
    """Sums of one window of steps on `device`: the loss, each extra log (B,) or scalar, the first bad step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.extra_sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.first_bad = torch.full((), _NO_BAD, device=self.device, dtype=torch.long)
        self.started = time.perf_counter()  # host clock at the window's start (steps/s); pauses are added to it

    def add(self, step: int, loss: torch.Tensor, logs: dict[str, torch.Tensor]) -> None:
        """Add one step's mean loss (0-dim) and logs, without reading them. A non-finite "grad_norm" log counts as
        a bad step too: a run can diverge with a finite but huge loss whose gradient overflows."""
        bad = ~torch.isfinite(loss)
        if "grad_norm" in logs:
            bad = bad | ~torch.isfinite(logs["grad_norm"].to(bad.device))
        self.first_bad = torch.where(bad, torch.clamp(self.first_bad, max=step), self.first_bad)
        self.loss_sum += loss.detach()
        for k, v in logs.items():
            self.extra_sums[k] = self.extra_sums.get(k, 0) + v.detach().float().mean()
        self.count += 1

    def read(self, step: int, lr: float, batch_size: int, dist: DistInfo, where: object) -> dict[str, float]:
        """The window's record (means over its steps and over ranks, steps/s, examples/s), then a new window.

        Raises NonFiniteLossError naming the first non-finite step on any rank (`where`: the run folder)."""
        if dist.enabled:
            packed = all_reduce_mean(torch.stack([self.loss_sum, *self.extra_sums.values()]))
            self.loss_sum, self.extra_sums = packed[0], dict(zip(self.extra_sums, packed[1:], strict=True))
            self.first_bad = all_reduce_min(self.first_bad)
        first_bad = int(self.first_bad)
        if first_bad != _NO_BAD:
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {first_bad} (the run diverged); stopped, the last good "
                f"checkpoint in {where} is kept; try a lower optim.lr, or method.weight_power > 0 for MeanFlow"
            )
        record = {"step": step, "loss": float(self.loss_sum) / self.count, "lr": lr}
        record.update({k: float(v) / self.count for k, v in self.extra_sums.items()})
        seconds = max(time.perf_counter() - self.started, 1e-9)
        record.update(steps_per_s=self.count / seconds, examples_per_s=self.count * batch_size / seconds)
        self.reset()
        return record
