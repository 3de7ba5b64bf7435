"""A personal head: softmax regression on a model's penultimate features, fitted in numpy.

The backbone stays as it is; only the last layer (features -> 6 logits) is fitted,
on the dequantized features the int8 model gives for a few frames of each sign.
The loss is the mean cross-entropy plus an L2 penalty on the weights, toward the
original head's weights (``prior``: a few frames move it only as far as they must)
or toward zero. Frames of SIGNS may be mixed in with a set share of the loss, so the
six signs as SIGNS shows them are not forgotten.

The solver is Nesterov's accelerated gradient with adaptive restart on centred
features (centring removes the large common direction of non-negative ReLU
features, so steps can be long); its step is 1 / the gradient's Lipschitz bound.
It works in the frames' coordinates (the weights move only within the frames'
span), so a step costs frames^2 x classes, not features x frames x classes.
The penalty is scaled by the features' mean square, so one ``l2`` suits a 64-value
and a 2,048-value backbone alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_signs import config
from edge_signs.errors import EdgeSignsError


@dataclass
class SoftmaxHead:
    """logits = features @ weights.T + bias; probabilities = softmax(logits)."""

    weights: np.ndarray  # float32 (classes, features)
    bias: np.ndarray  # float32 (classes,)
    steps: int = 0  # the solver's steps that fitted it

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float32) @ self.weights.T + self.bias

    def probs(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.logits(features))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(features), axis=-1)


@dataclass(frozen=True)
class FitOptions:
    l2: float = config.TEACH_L2  # penalty strength, in units of the features' mean square
    prior: bool = config.TEACH_PRIOR  # penalize the distance to the original head (True) or to zero
    signs_share: float = config.TEACH_SIGNS_SHARE  # of the loss, when SIGNS features are given
    iterations: int = config.TEACH_ITERATIONS  # at most
    tolerance: float = config.TEACH_TOLERANCE  # stop when the gradient's norm is this share of where it started
    min_per_sign: int = config.TEACH_MIN_PER_SIGN


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check_frames(labels: np.ndarray, minimum: int = config.TEACH_MIN_PER_SIGN, what: str = "teach") -> None:
    """Every sign shown at least ``minimum`` times, or one line saying which are short."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=config.NUM_CLASSES)
    short = [f"{config.LABELS[k]}: {n}" for k, n in enumerate(counts) if n < minimum]
    if short:
        raise EdgeSignsError(f"{what} needs at least {minimum} frames of every sign ({', '.join(config.LABELS)}); "
                             f"too few of {', '.join(short)}")


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    original: SoftmaxHead | None = None,
    signs: tuple[np.ndarray, np.ndarray] | None = None,
    options: FitOptions = FitOptions(),
    fit_bias: bool = True,
) -> SoftmaxHead:
    """The head that minimizes the weighted cross-entropy plus the L2 penalty (see the module's notes).

    ``original``: the file's own head, the prior when ``options.prior`` (and where the
    bias starts). ``signs``: SIGNS (features, labels), given ``options.signs_share`` of
    the loss. ``fit_bias`` False keeps the bias at zero (a file whose converter left
    the bias out).
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    check_frames(labels, options.min_per_sign)
    x, y, w = _weighted(features, labels, signs, options.signs_share)
    classes = config.NUM_CLASSES
    if original is not None and original.weights.shape != (classes, x.shape[1]):
        raise EdgeSignsError(f"the original head is {original.weights.shape}, the features have {x.shape[1]} values")
    prior = original.weights.astype(np.float64) if (original is not None and options.prior) else np.zeros((classes, x.shape[1]))
    mean = (w[:, None] * x).sum(0, dtype=np.float64) if fit_bias else np.zeros(x.shape[1])
    xc = x.astype(np.float64) - mean
    lam = options.l2 * (float(np.mean(np.square(x, dtype=np.float64))) or 1.0)
    # The weights stay prior + B.T @ xc (the gradient always lies in the frames' span), so the solver
    # works on B (frames x classes) through the frames' Gram matrix: a few frames, not 2,048 features.
    gram = xc @ xc.T
    base = xc @ prior.T  # the prior's logits
    bias0 = (original.bias.astype(np.float64) + prior @ mean) if original is not None else np.zeros(classes)  # the start: the prior's logits
    b, c, steps = _solve(gram, base, np.eye(classes)[y], w, lam, bias0 if fit_bias else np.zeros(classes), fit_bias, options)
    weights = prior + b.T @ xc
    bias = c - weights @ mean if fit_bias else np.zeros(classes)
    return SoftmaxHead(weights.astype(np.float32), bias.astype(np.float32), steps)


def _solve(gram, base, onehot, w, lam, c, fit_bias, options) -> tuple[np.ndarray, np.ndarray, int]:
    """Nesterov's accelerated gradient with adaptive restart, in the frames' coordinates; (B, centred bias, steps).

    It stops when the gradient's norm is ``options.tolerance`` of where it started.
    """
    step = 1.0 / max(0.5 * _top_eigenvalue(gram, w, fit_bias) + lam, 1e-12)
    wcol = w[:, None]

    def gradient(b, c):  # of the primal loss, as coefficients over the frames (G = g.T @ xc), and of the bias
        r = (softmax(base + gram @ b + c) - onehot) * wcol
        return r + lam * b, r.sum(0) if fit_bias else np.zeros_like(c)

    b = np.zeros_like(onehot)
    prev_b, prev_c, look_b, look_c, t = b, c, b, c, 1.0
    first = None
    for k in range(options.iterations):
        gb, gc = gradient(look_b, look_c)
        kg = gram @ gb
        norm = np.sqrt(max(float(np.sum(gb * kg)), 0.0) + float(gc @ gc))  # the primal gradient's norm
        first = norm if first is None else first
        if norm <= options.tolerance * first:
            return look_b, look_c, k
        b, c = look_b - step * gb, look_c - step * gc
        if float(np.sum(kg * (b - prev_b)) + gc @ (c - prev_c)) > 0:  # the step goes uphill: restart the momentum
            t = 1.0
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        look_b, look_c = b + beta * (b - prev_b), c + beta * (c - prev_c)
        prev_b, prev_c, t = b, c, t_next
    return b, c, options.iterations


def _weighted(features, labels, signs, share) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All frames and their loss weights (summing to 1): the user's frames alone, or with SIGNS' at ``share``."""
    own_w = np.full(len(labels), 1.0 / len(labels), np.float32)
    if signs is None or len(signs[1]) == 0 or share <= 0:
        return features, labels, own_w
    sx, sy = np.asarray(signs[0], np.float32), np.asarray(signs[1], np.int64)
    if sx.shape[1] != features.shape[1]:
        raise EdgeSignsError(f"SIGNS features have {sx.shape[1]} values, the frames' {features.shape[1]}: features of another model")
    weights = np.concatenate([own_w * (1 - share), np.full(len(sy), share / len(sy), np.float32)])
    return np.concatenate([features, sx]), np.concatenate([labels, sy]), weights


def _top_eigenvalue(gram: np.ndarray, w: np.ndarray, with_bias: bool, rounds: int = 50) -> float:
    """The largest eigenvalue of the weighted second moment of the centred frames: the curvature bound, by power iteration."""
    root = np.sqrt(w)
    m = root[:, None] * gram * root[None, :]  # the same nonzero eigenvalues as xc.T @ diag(w) @ xc
    v = np.random.default_rng(0).standard_normal(len(w))
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(rounds):
        u = m @ v
        value = float(np.linalg.norm(u))
        if value == 0.0:
            break
        v = u / value
    # Power iteration approaches the top from below: a margin keeps the step safe. Centred, the bias
    # column is orthogonal to the features, and its own eigenvalue is the weights' sum (1).
    return max(1.1 * value, 1.0 if with_bias else 0.0)
