"""Closed-form marginals of the linear path from N(0, I) to an isotropic Gaussian mixture.

Source x0 ~ N(0, I_D); target x1 ~ sum_k pi_k N(m_k, s_k^2 I_D); path x_t = t x1 + (1 - t) x0.
Conditioned on component k, x_t is Gaussian:

    x_t | k ~ N(t m_k, var_k(t) I),   var_k(t) = (1 - t)^2 + t^2 s_k^2,   var_k'(t) = -2 (1 - t) + 2 t s_k^2,

so the marginal p_t is the mixture sum_k pi_k N(t m_k, var_k(t) I). The marginal velocity is the
posterior mean of the conditional velocity x1 - x0 (Lipman et al. 2023, eq. 8):

    v(x, t) = sum_k w_k(x, t) v_k(x, t),   w_k(x, t) = pi_k N(x; t m_k, var_k I) / p_t(x),
    v_k(x, t) = E[x1 - x0 | x_t = x, k] = m_k + var_k'(t) / (2 var_k(t)) (x - t m_k),

the last because x1 - x0 and x_t are jointly Gaussian given k with Cov(x1 - x0, x_t) = (t s_k^2 - (1 - t)) I
= var_k'/2 I. For K = 1 the flow of v is the affine map x_t = t m + sqrt(var(t)) x0.
This module is a test oracle: everything is exact up to floating point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GaussianMixture"]


class GaussianMixture:
    """Isotropic Gaussian mixture target with closed-form linear-path marginals.

    weights: (K,) non-negative (normalised to sum 1); means: (K, D); stds: (K,) positive.
    All computations use the dtype and device of ``means``.
    """

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor) -> None:
        if means.dim() != 2:
            raise ValueError(f"means must be (K, D), got shape {tuple(means.shape)}")
        k = means.shape[0]
        if weights.shape != (k,) or stds.shape != (k,):
            raise ValueError(
                f"weights and stds must be ({k},) to match means, got {tuple(weights.shape)} and "
                f"{tuple(stds.shape)}"
            )
        if bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights.tolist()}")
        if bool((stds <= 0).any()):
            raise ValueError(f"stds must be positive, got {stds.tolist()}")
        self.means = means
        self.weights = (weights / weights.sum()).to(means)
        self.stds = stds.to(means)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def _component_terms(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-component (B, K) log(pi_k N(x; t m_k, var_k I)), var_k, and (B, K, D) residual x - t m_k."""
        if x.dim() != 2 or x.shape[1] != self.dim or t.shape != (x.shape[0],):
            raise ValueError(
                f"expected x (B, {self.dim}) and t (B,), got {tuple(x.shape)} and {tuple(t.shape)}"
            )
        t = t.to(self.means)[:, None]  # (B, 1) against the (K,) component axis
        var = (1 - t) ** 2 + t**2 * self.stds**2  # (B, K)
        d_var = -2 * (1 - t) + 2 * t * self.stds**2  # (B, K)
        resid = x[:, None, :] - t[:, :, None] * self.means[None]  # (B, K, D)
        log_comp = (
            torch.log(self.weights)
            - 0.5 * (resid**2).sum(-1) / var
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
        )
        return log_comp, var, d_var, resid

    def marginal_log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x) = logsumexp_k [log pi_k + log N(x; t m_k, var_k(t) I)]; x (B, D), t (B,) -> (B,)."""
        log_comp, _, _, _ = self._component_terms(x, t)
        return torch.logsumexp(log_comp, dim=1)

    def marginal_velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """v(x, t) = sum_k w_k (m_k + var_k' / (2 var_k) (x - t m_k)); x (B, D), t (B,) -> (B, D)."""
        log_comp, var, d_var, resid = self._component_terms(x, t)
        w = torch.softmax(log_comp, dim=1)  # posterior responsibilities, (B, K)
        v_k = self.means[None] + (d_var / (2 * var))[:, :, None] * resid  # (B, K, D)
        return (w[:, :, None] * v_k).sum(1)

    def log_prob(self, x: Tensor) -> Tensor:
        """log density of the target (t = 1); x (B, D) -> (B,)."""
        return self.marginal_log_prob(x, torch.ones(x.shape[0], dtype=self.means.dtype, device=x.device))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples (n, D) of the target: k ~ Categorical(pi), x1 = m_k + s_k z, z ~ N(0, I)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:  # torch.multinomial refuses zero draws
            return self.means.new_zeros(0, self.dim)
        dev = generator.device if generator is not None else self.means.device
        k = torch.multinomial(self.weights.to(dev), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, device=dev, dtype=self.means.dtype)
        k, z = k.to(self.means.device), z.to(self.means.device)
        return self.means[k] + self.stds[k, None] * z
