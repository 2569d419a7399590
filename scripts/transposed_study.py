"""Transposed convolutions of GAN generators and decoders: numbaconv before and
after the transposed GEMM, against PyTorch (docs/results-transposed.md).

Run from the repository root with the base commit unpacked as a second
package (``numbaconv_base``) on ``PYTHONPATH``::

    mkdir -p /tmp/ncbase && git archive <base> numbaconv | tar -x -C /tmp/ncbase
    mv /tmp/ncbase/numbaconv /tmp/ncbase/numbaconv_base
    PYTHONPATH=/tmp/ncbase:. python scripts/transposed_study.py --rounds 5

Every variant of a layer is timed in turns within one process (each turn
the median of ``--calls`` calls), and the table gives the median over the
rounds, in ms.  ``ratio`` is after / PyTorch's faster format (``ratio
CL``: after on channels-last input / the same); the path is what "auto"
picks for the channels-first call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def layers(select=None):
    from numbaconv.bench.networks import NETWORKS
    rows = []
    for net, names in (("pix2pix", ("up8", "up7", "up6", "up5", "up4", "up3", "up2", "up1")),
                       ("unet2d", ("up4.upconv", "up3.upconv", "up2.upconv", "up1.upconv")),
                       ("unet3d", ("up3.upconv", "up2.upconv"))):
        by_name = {layer.name: layer for layer in NETWORKS[net].layers}
        for name in names:
            layer = by_name[name]
            kw = dict(stride=layer.stride, padding=layer.padding)
            batches = (1, 8) if net == "pix2pix" else (1,)
            for batch in batches:
                rows.append((f"{net} {name}", batch, layer.input_shape, layer.weight_shape, kw,
                             layer.activation))
    for batch in (1, 8):
        rows.append(("dcgan 100->1024 1x1", batch, (1, 100, 1, 1), (100, 1024, 4, 4),
                     dict(stride=1, padding=0), "relu"))
        rows.append(("proj 512->512 1x1", batch, (1, 512, 1, 1), (512, 512, 4, 4),
                     dict(stride=1, padding=0), "relu"))
    rows.append(("up4x4 (public)", 4, (4, 128, 28, 28), (128, 64, 4, 4),
                 dict(stride=2, padding=1), None))
    if select:
        rows = [r for r in rows if any(s in f"{r[0]} b{r[1]}" for s in select)]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--select", nargs="*")
    parser.add_argument("--no-base", action="store_true")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time numbaconv on channels-last input")
    args = parser.parse_args(argv)
    import numba
    import torch
    import numbaconv as new
    torch.set_num_threads(2)
    old = None
    if not args.no_base:
        import numbaconv_base as old
    rng = np.random.default_rng(0)
    print(f"numba threads {numba.get_num_threads()}, torch threads {torch.get_num_threads()}")
    header = ("layer", "N", "torch", "torch CL", "before", "after", "before CL", "after CL",
              "ratio", "ratio CL", "path")
    print(" | ".join(header))
    for name, batch, xs, ws, kw, act in layers(args.select):
        xs = (batch,) + tuple(xs[1:])
        ndim = len(ws) - 2
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32) * 0.05
        xcl = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
        txc = tx.contiguous(memory_format=fmt)
        tfn = getattr(torch.nn.functional, f"conv_transpose{ndim}d")
        tact = {None: lambda y: y, "relu": torch.relu, "tanh": torch.tanh}[act]
        fns = {"torch": lambda: tact(tfn(tx, tw, **kw)),
               "torch CL": lambda: tact(tfn(txc, tw, **kw)),
               "after": lambda: getattr(new, f"conv_transpose{ndim}d")(x, w, activation=act,
                                                                      **kw)}
        if old is not None:
            fns["before"] = lambda: getattr(old, f"conv_transpose{ndim}d")(x, w, activation=act,
                                                                           **kw)
        if args.channels_last:
            fns["after CL"] = lambda: getattr(new, f"conv_transpose{ndim}d")(
                xcl, w, activation=act, **kw)
            if old is not None:
                fns["before CL"] = lambda: getattr(old, f"conv_transpose{ndim}d")(
                    xcl, w, activation=act, **kw)
        ref = np.asarray(fns["torch"]())
        for key, fn in fns.items():
            y = np.asarray(fn())
            err = np.abs(y - ref).max() / max(1e-30, np.abs(ref).max())
            assert err < 1e-4, (name, key, err)
        times = {k: [] for k in fns}
        keys = list(fns)
        for r in range(args.rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for key in order:
                ts = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    fns[key]()
                    ts.append(time.perf_counter() - t0)
                times[key].append(statistics.median(ts))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        best_torch = min(med["torch"], med["torch CL"])
        choice = new.choose_algorithm(xs, ws, transposed=True, **kw)
        cells = [name, str(batch)] + [f"{med[k]:.2f}" if k in med else "-" for k in
                                       ("torch", "torch CL", "before", "after", "before CL",
                                        "after CL")]
        cells += [f"{med['after'] / best_torch:.2f}",
                  f"{med['after CL'] / best_torch:.2f}" if "after CL" in med else "-",
                  f"{choice.algorithm}: {choice.path}"]
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
