"""Image quality metrics: PSNR and SSIM on RGB frames.

Both take `(B, 3, H, W)` float tensors in [0, 1] (convert from [-1, 1] with `(x + 1) / 2`)
and return one value per image, `(B,)` float32. SSIM is the standard Gaussian-window SSIM
(Wang et al. 2004: 11x11 window, sigma 1.5, K1 0.01, K2 0.03) computed per channel on the
[0, 1] range and averaged over channels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, `(B,)`; inputs `(B, C, H, W)` in [0, 1]."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / (mse + eps))


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Structural similarity, `(B,)`; inputs `(B, C, H, W)` in [0, 1], H and W >= `window`."""
    pred, target = pred.float(), target.float()
    c = pred.shape[1]
    g = _gaussian(window, sigma, pred.device, pred.dtype)
    kx = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    ky = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1)


def to_unit_tensor(frames: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Frames `(H, W, 3)` uint8 (a list or a `(N, H, W, 3)` array) -> `(N, 3, H, W)` in [0, 1]."""
    arr = np.stack(frames) if isinstance(frames, list) else frames
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


def frame_psnr_ssim(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one pair of `(H, W, 3)` uint8 frames."""
    p, t = to_unit_tensor([pred]), to_unit_tensor([target])
    return float(psnr(p, t)[0]), float(ssim(p, t)[0])
