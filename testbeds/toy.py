"""An isotropic Gaussian-mixture "diffusion model" with everything in closed form.

With x_σ = x0 + σ·ε and x0 ~ Σ_k π_k N(μ_k, s_k² I), the noisy marginal is Σ_k π_k N(μ_k, (s_k² + σ²) I) and
the exact denoiser is E[x0 | x_σ] = Σ_k γ_k(x_σ) (μ_k + s_k²/(s_k² + σ²) (x_σ − μ_k)), γ the posterior
component probabilities. Tilting by a linear reward, p0(x)·exp(λ a·x), gives again a mixture: component k
moves to mean μ_k + λ s_k² a and its weight is multiplied by exp(λ a·μ_k + λ² s_k² |a|² / 2).

This is the test bed for the engine (exact-target and rare-attribute tests), the benchmark and the demo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GaussianMixture:
    weights: torch.Tensor  # [K], sums to 1
    means: torch.Tensor  # [K, D]
    stds: torch.Tensor  # [K]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_σ = x] for a batch x [N, D] and a scalar σ."""
        var = self.stds**2 + sigma**2  # [K]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # [N, K]
        log_resp = torch.log(self.weights) - 0.5 * sq / var - 0.5 * self.dim * torch.log(var)
        resp = torch.softmax(log_resp, dim=1)  # [N, K]
        shrink = (self.stds**2 / var)[None, :, None]  # [1, K, 1]
        per_component = self.means[None] + shrink * (x[:, None, :] - self.means[None])
        return (resp[..., None] * per_component).sum(1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * eps

    def tilted(self, direction: torch.Tensor, lmbda: float) -> "GaussianMixture":
        """The mixture ∝ p0(x)·exp(λ a·x) for a = ``direction``."""
        a = direction.to(self.means.dtype)
        log_w = torch.log(self.weights) + lmbda * (self.means @ a) + 0.5 * lmbda**2 * self.stds**2 * (a @ a)
        return GaussianMixture(torch.softmax(log_w, 0), self.means + lmbda * self.stds[:, None] ** 2 * a, self.stds)

    def projection_tail(self, direction: torch.Tensor, threshold: float) -> float:
        """P(a·x > c) under the mixture (a·x is a 1-D Gaussian mixture)."""
        a = direction.to(self.means.dtype)
        loc = self.means @ a
        scale = self.stds * torch.linalg.vector_norm(a)
        z = (threshold - loc) / scale
        return float((self.weights * 0.5 * torch.erfc(z / math.sqrt(2))).sum())


def two_modes(dim: int, separation: float = 2.0, std: float = 0.5, dtype=torch.float64) -> GaussianMixture:
    """Two equally likely modes at ±separation along the first axis."""
    means = torch.zeros(2, dim, dtype=dtype)
    means[0, 0], means[1, 0] = -separation, separation
    return GaussianMixture(torch.tensor([0.5, 0.5], dtype=dtype), means, torch.tensor([std, std], dtype=dtype))


def karras_sigmas(n: int, sigma_min: float = 0.02, sigma_max: float = 20.0, rho: float = 7.0,
                  dtype=torch.float64) -> torch.Tensor:
    """Karras et al. (2022) noise levels, n steps, ending with 0 (as k-diffusion's get_sigmas_karras)."""
    ramp = torch.linspace(0, 1, n, dtype=dtype)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=dtype)])
