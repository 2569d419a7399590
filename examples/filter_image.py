"""Classic image filters as convolutions, on a photograph that ships with scikit-image.

Four filters on ``skimage.data.astronaut()`` (512 x 512 RGB), each run with
``algorithm="auto"``; for each the script prints which algorithm the
dispatcher picks and why (``nc.choose_algorithm``, the decision
``nc.explain`` prints in full), checks the result against SciPy, and the
four results go into one PNG grid (``filter_image.png`` in the output
directory: ``--out DIR``, by default ``examples/output/``):

1. a Gaussian blur (sigma 2, 13 x 13), one kernel per colour channel
   (``groups=3``), reflect padding -- against ``scipy.ndimage.correlate``;
2. Sobel edges of the luminance: a 1x1 convolution mixes the colours, two
   3x3 kernels give the gradients -- against ``scipy.signal.correlate2d``;
3. a large box blur (41 x 41) -- against ``scipy.signal.fftconvolve``;
4. a depthwise colour filter: a different kernel per channel (red
   sharpened, green kept, blue blurred with a 9 x 9 disk) -- against
   ``scipy.ndimage.correlate`` per channel.

The photograph is an (H, W, 3) array, channels last.  It goes into
numbaconv as the logical (1, 3, H, W) view ``photo.transpose(2, 0, 1)[None]``
-- no transposing copy: numbaconv reads channels-last memory as it is and
returns channels-last results (the memory format follows the input, as
PyTorch's ``channels_last``; docs/semantics.md, "Memory format"), so
``y[0].transpose(1, 2, 0)`` is again a plain (H, W, C) image.

Run: ``python examples/filter_image.py`` (seconds; ``--smoke`` uses a 128 x
128 crop).  Needs the ``examples`` extra: ``pip install 'numbaconv[examples]'``.
"""

import argparse
from pathlib import Path

import numpy as np

import numbaconv as nc


#: The examples' output directory, next to them (not the current directory,
#: which is the repository root when they are run as the README says).
OUT = Path(__file__).resolve().parent / "output"


def gaussian(size, sigma):
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def disk(radius):
    r = np.arange(-radius, radius + 1)
    d = (r[:, None] ** 2 + r[None, :] ** 2 <= radius ** 2).astype(float)
    return d / d.sum()


def run(name, x, w, reference, **kwargs):
    """Convolve with "auto", report the pick and the difference from SciPy."""
    choice = nc.choose_algorithm(x, w, **kwargs)         # arrays: their format counts
    y = nc.conv2d(x, w, **kwargs)
    error = np.abs(y - reference).max() / np.abs(reference).max()
    print(f"{name}: auto picks {choice.algorithm} ({choice.path}) -- {choice.reason}")
    print(f"    max relative difference from SciPy {error:.1e}")
    assert error < 1e-5, name
    return y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a 128 x 128 crop (CI)")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                        help="where the picture goes (default: examples/output/; "
                             "docs/images/ holds the README's copy)")
    args = parser.parse_args(argv)

    from scipy import ndimage, signal
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0          # (512, 512, 3)
    if args.smoke:
        photo = np.ascontiguousarray(photo[100:228, 180:308])     # still an (H, W, 3) image
    x = photo.transpose(2, 0, 1)[None]           # (1, 3, H, W) view of HWC memory: no copy
    results = {"original": photo}

    # 1. Gaussian blur, one kernel per channel, reflect padding (scipy: "mirror")
    g = gaussian(13, 2.0).astype(np.float32)
    blur_w = np.repeat(g[None, None], 3, axis=0)                  # (3, 1, 13, 13)
    reference = np.stack([ndimage.correlate(x[0, c], g, mode="mirror") for c in range(3)])
    y = run("gaussian blur 13x13", x, blur_w, reference[None], padding=6, groups=3,
            padding_mode="reflect")
    results["gaussian blur (depthwise 13x13)"] = y[0].transpose(1, 2, 0)
    # the memory format followed the input: y is a view of (H, W, 3) memory
    print(f"  result channels-last: {y[0].transpose(1, 2, 0).flags.c_contiguous}")

    # 2. Sobel edges of the luminance (zero padding, scipy: boundary "fill")
    luminance_w = np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)
    gray = nc.conv2d(x, luminance_w)
    sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    sobel_w = np.stack([sobel_x, sobel_x.T])[:, None]             # (2, 1, 3, 3)
    reference = np.stack([signal.correlate2d(gray[0, 0], k, mode="same", boundary="fill")
                          for k in (sobel_x, sobel_x.T)])
    edges = run("sobel 3x3", gray, sobel_w, reference[None], padding=1)
    magnitude = np.hypot(edges[0, 0], edges[0, 1])
    results["sobel edge magnitude"] = magnitude / (0.5 * magnitude.max())

    # 3. a large box blur of the luminance ("valid" part, scipy: fftconvolve)
    box = np.full((41, 41), 1 / 41 ** 2, np.float32)
    reference = signal.fftconvolve(gray[0, 0], box[::-1, ::-1], mode="valid")
    y = run("box blur 41x41", gray, box[None, None], reference[None, None])
    results["box blur 41x41 (valid part)"] = y[0, 0]

    # 4. a depthwise colour filter: sharpen red, keep green, blur blue
    identity = np.zeros((9, 9))
    identity[4, 4] = 1
    sharpen = 2 * identity - gaussian(9, 1.5)
    color_w = np.stack([sharpen, identity, disk(4)])[:, None].astype(np.float32)
    reference = np.stack([ndimage.correlate(x[0, c], color_w[c, 0], mode="constant")
                          for c in range(3)])
    y = run("depthwise colour filter 9x9", x, color_w, reference[None], padding=4, groups=3)
    results["depthwise colour filter"] = np.clip(y[0].transpose(1, 2, 0), 0, 1)

    print()
    print(nc.explain(x, blur_w, padding=6, groups=3, padding_mode="reflect"))
    args.out.mkdir(parents=True, exist_ok=True)
    save_grid(results, args.out / "filter_image.png")
    print(f"\nsaved {args.out / 'filter_image.png'}")


def save_grid(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.6))
    for ax, (title, image) in zip(axes, results.items()):
        ax.imshow(np.clip(image, 0, 1) if image.ndim == 3 else image,
                  cmap=None if image.ndim == 3 else "gray")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
