r"""Image metrics that work offline: a feature network trained here, feature-FID, precision/recall, class accuracy.

Feature network. :class:`FeatureNet` is a small CNN classifier trained by this project on the data set's
training split (the labels; unlabelled folders learn to predict which of 4 rotations was applied). Its
features are the penultimate layer, 128 numbers per image. :func:`feature_network` trains it once and caches
the weights under ``$XDG_CACHE_HOME/straightflow`` (else ``~/.cache/straightflow``), keyed by a SHA-256 of
the training pixels and labels, so every later call on the same data loads the same network.

Feature-FID. The Frechet distance between Gaussians fitted to the features of two image sets,
    FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}).
This is *not* FID: FID is the same formula on Inception-v3 pool features of 299x299 RGB images (Heusel et al.
2017), and numbers from the two are not comparable. Feature-FID compares models trained on the same data set.
When ``torchmetrics`` or ``clean-fid`` and their Inception weights are installed, :func:`true_fid` gives FID.

Precision and recall (Kynkaanniemi et al. 2019) of the features: :mod:`straightflow.metrics.coverage`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from straightflow.metrics.coverage import precision_recall

__all__ = [
    "FEATURE_NET_VERSION", "FeatureNet", "cache_dir", "data_hash", "feature_network", "extract", "feature_stats",
    "frechet_distance", "feature_fid", "precision_recall", "class_accuracy", "true_fid",
]

FEATURE_NET_VERSION = 1  # bump when the architecture or its training changes: old caches are then ignored
FEATURE_DIM = 128
DEFAULT_FEATURE_STEPS = 1000  # AdamW steps of batch 128 when the network is first trained (then cached)


class FeatureNet(nn.Module):
    """(B, C, H, W) in [-1, 1] -> features (B, 128) -> logits (B, K). Two conv stages, pooled to 2x2."""

    def __init__(self, channels: int, side: int, n_out: int) -> None:
        super().__init__()
        self.channels, self.side, self.n_out = channels, side, n_out
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(),
            nn.AvgPool2d(2) if side > 8 else nn.Identity(),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
        )
        self.fc = nn.Linear(64 * 4, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, n_out)
        self.test_accuracy = float("nan")

    def features(self, x: Tensor) -> Tensor:
        h = F.adaptive_avg_pool2d(self.conv(x), 2).flatten(1)
        return F.silu(self.fc(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/straightflow, else ~/.cache/straightflow."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "straightflow"


def data_hash(source) -> str:
    """SHA-256 of the training levels, labels, level count and the network version (hex)."""
    h = hashlib.sha256()
    h.update(json.dumps([list(source.shape), source.levels, FEATURE_NET_VERSION]).encode())
    h.update(np.ascontiguousarray(source.train.numpy()).tobytes())
    if source.train_labels is not None:
        h.update(np.ascontiguousarray(source.train_labels.numpy()).tobytes())
    return h.hexdigest()


def _targets(source, images: Tensor, labels: Tensor | None, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """(inputs, targets): the labels, or for unlabelled data a random rotation by k * 90 degrees and k."""
    if labels is not None:
        return images, labels
    k = torch.randint(0, 4, (images.shape[0],), generator=g)
    rotated = torch.stack([torch.rot90(img, int(r), dims=(-2, -1)) for img, r in zip(images, k, strict=True)])
    return rotated, k


def _jitter(x: Tensor, g: torch.Generator) -> Tensor:
    """Random translation by up to one pixel (replicate padding), a light augmentation."""
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def train_feature_network(source, steps: int = DEFAULT_FEATURE_STEPS, batch_size: int = 128, seed: int = 0,
                          progress: bool = False) -> FeatureNet:
    """Train a :class:`FeatureNet` on source.train (AdamW, cosine lr); records its test-split accuracy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    labelled = source.train_labels is not None
    if not labelled and source.shape[1] != source.shape[2]:
        raise ValueError(f"unlabelled images must be square for the rotation task, got {source.shape}")
    net = FeatureNet(source.shape[0], source.shape[1], source.n_labels if labelled else 4)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    warm = max(1, steps // 10)  # linear warm-up, then cosine decay to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    from straightflow.progress import progress as reporter

    for _ in reporter(range(steps), desc="feature net (trained once, then cached)", unit="step", enabled=progress):
        index = torch.randint(0, source.train.shape[0], (batch_size,), generator=g)
        x = source.to_pixels(source.train[index])
        x, y = _targets(source, x, source.train_labels[index] if labelled else None, g)
        loss = F.cross_entropy(net(_jitter(x, g)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval().requires_grad_(False)
    x = source.to_pixels(source.test)
    x, y = _targets(source, x, source.test_labels if labelled else None, torch.Generator().manual_seed(seed + 1))
    net.test_accuracy = float((extract(net, x)[1].argmax(1) == y).float().mean())
    return net


def feature_network(
    source, cache: str | Path | None = None, steps: int | None = None, progress: bool = False
) -> FeatureNet:
    """The feature network of an :class:`~straightflow.data.images.ImageSource`: loaded from the cache when
    trained before on the same data (same hash and steps), else trained now and saved there (atomically).
    steps: training steps, default DEFAULT_FEATURE_STEPS."""
    from safetensors.torch import load_file, save_file

    steps = DEFAULT_FEATURE_STEPS if steps is None else int(steps)

    folder = Path(cache) if cache is not None else cache_dir()
    key = data_hash(source)[:20]
    path = folder / f"featurenet-{key}-{steps}.safetensors"
    meta_path = path.with_suffix(".json")
    labelled = source.train_labels is not None
    net = FeatureNet(source.shape[0], source.shape[1], source.n_labels if labelled else 4)
    if path.is_file() and meta_path.is_file():
        net.load_state_dict(load_file(str(path)))
        net.test_accuracy = float(json.loads(meta_path.read_text())["test_accuracy"])
        return net.eval().requires_grad_(False)
    net = train_feature_network(source, steps, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    meta_path.write_text(json.dumps({"data": source.name, "test_accuracy": net.test_accuracy, "steps": steps,
                                     "version": FEATURE_NET_VERSION}))
    return net


@torch.no_grad()
def extract(net: FeatureNet, x: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
    """(features (N, 128) float64, logits (N, K)) of images x: (N, C, H, W), in batches, on the CPU."""
    feats, logits = [], []
    for chunk in x.split(batch):
        f = net.features(chunk.float().cpu())
        feats.append(f.double())
        logits.append(net.head(f))
    return torch.cat(feats), torch.cat(logits)


def feature_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (F,), covariance (F, F)) in float64 of features (N, F), N >= 2 (unbiased covariance)."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"features must be (N, F) with N >= 2, got {tuple(feats.shape)}")
    f = feats.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}), by symmetric eigendecompositions.

    tr (C1 C2)^{1/2} = tr (C1^{1/2} C2 C1^{1/2})^{1/2}: the matrix inside is symmetric PSD, so its square root's
    trace is the sum of the square roots of its eigenvalues (negative round-off clipped to 0).
    """
    mu1, mu2, cov1, cov2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"shapes do not match: means {tuple(mu1.shape)}, {tuple(mu2.shape)}, covariances "
                         f"{tuple(cov1.shape)}, {tuple(cov2.shape)}")
    w, v = torch.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T
    inner = root1 @ cov2 @ root1
    cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(float(value), 0.0)


def feature_fid(x: Tensor, y: Tensor, net: FeatureNet) -> float:
    """Feature-FID between image sets x (N, C, H, W) and y (M, C, H, W) in the features of `net`."""
    return frechet_distance(*feature_stats(extract(net, x)[0]), *feature_stats(extract(net, y)[0]))


def class_accuracy(samples: Tensor, labels: Tensor, net: FeatureNet) -> float:
    """Share of samples (N, C, H, W) that the feature network's classifier assigns to their label (N,)."""
    if labels.shape != (samples.shape[0],):
        raise ValueError(f"need one label per sample, got {tuple(labels.shape)} for {samples.shape[0]} samples")
    return float((extract(net, samples)[1].argmax(1) == labels.cpu()).double().mean())


def _to_uint8_rgb(x: Tensor) -> Tensor:
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def _fid_torchmetrics(samples: Tensor, reference: Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(hub.glob("weights-inception-2015-12-05-*.pth")):
        raise ValueError(f"true FID (torchmetrics) needs the FID Inception weights in {hub} "
                         "(weights-inception-2015-12-05-*.pth); they are not there and nothing is downloaded")
    fid = FrechetInceptionDistance(feature=2048)
    for chunk in reference.split(500):
        fid.update(_to_uint8_rgb(chunk), real=True)
    for chunk in samples.split(500):
        fid.update(_to_uint8_rgb(chunk), real=False)
    return float(fid.compute())


def _fid_cleanfid(samples: Tensor, reference: Tensor) -> float:
    import platform

    from cleanfid import fid as cfid
    from cleanfid.features import build_feature_extractor
    from cleanfid.resize import build_resizer

    weights = Path("./" if platform.system() == "Windows" else "/tmp") / "inception-2015-12-05.pt"
    if not weights.is_file():
        raise ValueError(f"true FID (clean-fid) needs its Inception weights at {weights}; they are not there and "
                         "nothing is downloaded")
    device = torch.device("cpu")
    model = build_feature_extractor("clean", device, use_dataparallel=False)
    resize = build_resizer("clean")

    def feats(x: Tensor) -> np.ndarray:
        out = []
        for chunk in _to_uint8_rgb(x).split(100):
            imgs = [resize(img.permute(1, 2, 0).numpy()) for img in chunk]
            batch = torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2))
            out.append(cfid.get_batch_features(batch, model, device))
        return np.concatenate(out)

    a, b = torch.from_numpy(feats(samples)), torch.from_numpy(feats(reference))
    return frechet_distance(*feature_stats(a), *feature_stats(b))


FID_BACKENDS = ("torchmetrics", "cleanfid")


def true_fid(samples: Tensor, reference: Tensor, backend: str = "auto") -> float:
    """FID (Inception-v3 pool3, 2048 features) between images (N, C, H, W) in [-1, 1], where torchmetrics[image]
    or clean-fid and their Inception weights are already present (never downloads; ValueError otherwise).

    Protocol: pixels -> uint8 [0, 255], grey images repeated to RGB, resized to 299x299 by the backend
    (torchmetrics: bilinear, torch-fidelity's port of the TF Inception; clean-fid: "clean" PIL bicubic),
    reference = the data set's training split, sample sizes as given (state them: FID is biased in N).
    """
    if backend not in ("auto", *FID_BACKENDS):
        raise ValueError(f"unknown FID backend {backend!r}; choose from: auto, {', '.join(FID_BACKENDS)}")
    import importlib.util

    names = FID_BACKENDS if backend == "auto" else (backend,)
    modules = {"torchmetrics": "torchmetrics", "cleanfid": "cleanfid"}
    present = [b for b in names if importlib.util.find_spec(modules[b]) is not None]
    if not present:
        raise ValueError(f"true FID needs {' or '.join(names)} installed with its Inception weights; none is "
                         "importable here, so use feature-FID (the offline metric)")
    run = {"torchmetrics": _fid_torchmetrics, "cleanfid": _fid_cleanfid}[present[0]]
    return run(samples, reference)
