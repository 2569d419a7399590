"""Train a small CNN from scratch on scikit-learn's 8x8 digits, then fine-tune it.

Every convolution, forward and backward, is numbaconv's (``nc.conv2d`` and
``nc.conv_backward``), with the ReLU fused into both: ``activation="relu"``
applies it where the convolution writes its output, and ``conv_backward``
folds its derivative (from the saved output) into its first pass over the
gradient.  Everything else -- max pooling, the linear classifier, softmax
cross-entropy, Adam -- is plain NumPy, written out here.

1. The network: conv 1->16 3x3 (padding 1), ReLU, 2x2 max pool, conv 16->32
   3x3, ReLU, 2x2 max pool, linear 128->10; PyTorch's default
   initialisation (uniform in +-1/sqrt(fan_in) for weights and biases).
2. A gradient check against finite differences (float64) at start-up.
3. Training with Adam, progress per epoch, then ``test accuracy: 0.xxxx`` on
   a held-out 20%.
4. Fine-tuning on a shifted task -- the digits rotated by 30 degrees with
   noise -- training only the last layers (the second convolution and the
   classifier), with the accuracy on the shifted test set before and after.
5. ``train_cnn_digits.png`` in the output directory (``--out DIR``, by
   default ``examples/output/``): the training curves and the learned
   first-layer filters.

Run: ``python examples/train_cnn_digits.py`` (well under two minutes on 2
cores; ``--smoke`` for a short run, as CI does).  Needs the ``examples``
extra: ``pip install 'numbaconv[examples]'``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import numbaconv as nc


#: The examples' output directory, next to them (not the current directory,
#: which is the repository root when they are run as the README says).
OUT = Path(__file__).resolve().parent / "output"


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------

def init_params(rng, dtype=np.float32):
    """PyTorch's defaults: weights and biases uniform in +-1/sqrt(fan_in)
    (kaiming_uniform with a=sqrt(5) for the weights)."""
    def uniform(shape, fan_in):
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(dtype)
    return {
        "w1": uniform((16, 1, 3, 3), 9), "b1": uniform(16, 9),
        "w2": uniform((32, 16, 3, 3), 144), "b2": uniform(32, 144),
        "w3": uniform((128, 10), 128), "b3": uniform(10, 128),
    }


def max_pool(x):
    """2x2 max pooling and the argmax mask for the backward pass."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = windows.max(axis=(3, 5))
    mask = windows == out[:, :, :, None, :, None]
    # one winner per window (ties: the first), so the gradient is not doubled
    flat = mask.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first = np.zeros_like(flat)
    np.put_along_axis(first, flat.argmax(axis=-1)[..., None], True, axis=-1)
    mask = first.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return out, mask


def max_pool_backward(grad, mask):
    return (mask * grad[:, :, :, None, :, None]).reshape(
        mask.shape[0], mask.shape[1], mask.shape[2] * 2, mask.shape[4] * 2)


def forward(p, x):
    """Logits and what the backward pass needs."""
    a1 = nc.conv2d(x, p["w1"], p["b1"], padding=1, activation="relu")
    h1, m1 = max_pool(a1)
    a2 = nc.conv2d(h1, p["w2"], p["b2"], padding=1, activation="relu")
    h2, m2 = max_pool(a2)
    flat = h2.reshape(len(x), -1)
    logits = flat @ p["w3"] + p["b3"]
    return logits, (x, a1, h1, m1, a2, m2, flat)


def loss_and_grads(p, x, labels):
    """Mean softmax cross-entropy and its gradients (numbaconv's backward
    convolutions for the two conv layers)."""
    logits, (x, a1, h1, m1, a2, m2, flat) = forward(p, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(x)
    loss = -np.log(probs[np.arange(n), labels] + 1e-12).mean()
    g_logits = probs
    g_logits[np.arange(n), labels] -= 1
    g_logits /= n
    grads = {"w3": flat.T @ g_logits, "b3": g_logits.sum(axis=0)}
    g_h2 = (g_logits @ p["w3"].T).reshape(n, 32, 2, 2)
    # the gradients with respect to the ReLUs' outputs; conv_backward folds
    # the ReLU's derivative in from the saved outputs a2 and a1
    g_a2 = max_pool_backward(g_h2, m2)
    g_h1, grads["w2"], grads["b2"] = nc.conv_backward(h1, p["w2"], g_a2, padding=1,
                                                      activation="relu", output=a2)
    g_a1 = max_pool_backward(g_h1, m1)
    _, grads["w1"], grads["b1"] = nc.conv_backward(x, p["w1"], g_a1, padding=1,
                                                   output_mask=(False, True, True),
                                                   activation="relu", output=a1)
    return loss, grads


def accuracy(p, x, labels):
    return float((forward(p, x)[0].argmax(axis=1) == labels).mean())


class Adam:
    def __init__(self, params, lr=3e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads, names):
        self.t += 1
        b1, b2 = self.betas
        for k in names:
            self.m[k] = b1 * self.m[k] + (1 - b1) * grads[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * grads[k] ** 2
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            params[k] -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(params[k].dtype)


# ---------------------------------------------------------------------------
# checks and training
# ---------------------------------------------------------------------------

def gradient_check(rng, x, labels, checks=6):
    """Analytic gradients against central finite differences, in float64."""
    p = init_params(rng, np.float64)
    x = x.astype(np.float64)
    _, grads = loss_and_grads(p, x, labels)
    worst = 0.0
    for name in ("w1", "b1", "w2", "b2", "w3", "b3"):
        for _ in range(checks):
            index = tuple(rng.integers(0, s) for s in p[name].shape)
            saved = p[name][index]
            p[name][index] = saved + 1e-6
            up = loss_and_grads(p, x, labels)[0]
            p[name][index] = saved - 1e-6
            down = loss_and_grads(p, x, labels)[0]
            p[name][index] = saved
            numeric = (up - down) / 2e-6
            error = abs(numeric - grads[name][index]) / max(abs(numeric), 1e-6)
            worst = max(worst, error)
    return worst


def train(p, x, labels, epochs, names, rng, lr=3e-3, batch=64, log=None):
    optimizer = Adam(p, lr=lr)
    history = []
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        for start in range(0, len(x), batch):
            chosen = order[start:start + batch]
            loss, grads = loss_and_grads(p, x[chosen], labels[chosen])
            optimizer.step(p, grads, names)
            losses.append(loss)
        history.append((float(np.mean(losses)), accuracy(p, x, labels)))
        if log is not None:
            log(epoch, *history[-1])
    return history


def shifted(x, rng, degrees=30.0, noise=0.15):
    """The shifted task: digits rotated by ``degrees`` with Gaussian noise."""
    from scipy.ndimage import rotate
    turned = rotate(x, degrees, axes=(2, 3), reshape=False, order=1)
    return (turned + noise * rng.standard_normal(turned.shape)).astype(np.float32)


def save_figure(history, fine_history, w1, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(11, 3.6))
    ax = fig.add_axes([0.05, 0.12, 0.27, 0.76])
    ax.plot([h[0] for h in history], label="from scratch")
    ax.plot(range(len(history), len(history) + len(fine_history)),
            [h[0] for h in fine_history], label="fine-tuning (rotated, noisy)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    ax = fig.add_axes([0.39, 0.12, 0.27, 0.76])
    ax.plot([h[1] for h in history], label="from scratch")
    ax.plot(range(len(history), len(history) + len(fine_history)),
            [h[1] for h in fine_history], label="fine-tuning")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training accuracy")
    ax.legend()
    grid = fig.add_gridspec(4, 4, left=0.71, right=0.97, top=0.88, bottom=0.12, wspace=0.1,
                            hspace=0.1)
    for i in range(16):
        sub = fig.add_subplot(grid[i // 4, i % 4])
        sub.imshow(w1[i, 0], cmap="RdBu_r", vmin=-abs(w1).max(), vmax=abs(w1).max())
        sub.set_xticks([])
        sub.set_yticks([])
    fig.text(0.83, 0.93, "first-layer filters", ha="center")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run (CI)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                        help="where the picture goes (default: examples/output/; "
                             "docs/images/ holds the README's copy)")
    args = parser.parse_args(argv)
    epochs, fine_epochs = (3, 2) if args.smoke else (args.epochs, 15)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]          # (1797, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)

    worst = gradient_check(rng, x_train[:4], y_train[:4])
    print(f"gradient check against finite differences: worst relative error {worst:.1e}")
    assert worst < 1e-5, "analytic and numeric gradients disagree"

    params = init_params(rng)
    everything = list(params)
    print(f"training on {len(x_train)} digits, testing on {len(x_test)}")
    history = train(params, x_train, y_train, epochs, everything, rng,
                    log=lambda e, loss, acc: print(f"epoch {e + 1:3d}  loss {loss:.4f}  "
                                                   f"train accuracy {acc:.4f}"))
    test_accuracy = accuracy(params, x_test, y_test)
    print(f"test accuracy: {test_accuracy:.4f}")

    # fine-tuning: a shifted task, only the last layers learn
    shifted_train = shifted(x_train, rng)
    shifted_test = shifted(x_test, rng)
    before = accuracy(params, shifted_test, y_test)
    last_layers = ["w2", "b2", "w3", "b3"]
    fine_history = train(params, shifted_train, y_train, fine_epochs, last_layers, rng,
                         lr=1e-3)
    after = accuracy(params, shifted_test, y_test)
    print(f"fine-tuning on rotated, noisy digits (conv2 and the classifier only): "
          f"accuracy {before:.4f} before, {after:.4f} after")
    print(f"original test set after fine-tuning: {accuracy(params, x_test, y_test):.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_figure(history, fine_history, params["w1"], args.out / "train_cnn_digits.png")
    print(f"saved {args.out / 'train_cnn_digits.png'}; {time.perf_counter() - started:.1f} s "
          f"in all")
    if not args.smoke:
        assert test_accuracy >= 0.95


if __name__ == "__main__":
    main()
