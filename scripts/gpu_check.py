"""The GPU checks that need a real GPU: interop, correctness at full size, speed.

Run on a machine with an NVIDIA GPU and ``pip install '.[cuda]'`` (plus
CuPy and/or PyTorch with CUDA for the interop and comparison rows)::

    python scripts/gpu_check.py            # everything, a few minutes
    python scripts/gpu_check.py --quick    # smaller shapes

It prints, per benchmark shape and GPU algorithm: the max error against the
float64 CPU reference (relative to the output's largest magnitude), the
median time of 10 calls (synchronised), the one-thread-per-output direct
baseline beside the tiled kernel, and PyTorch's CUDA convolution when
installed; then, per shape, algorithm and activation (relu, gelu), the fused
epilogue (``activation=``, ``residual=``: Note [GPU epilogue] in
numbaconv/kernels/epilogue_cuda.py) against the same call unfused (the
bias-only convolution, then ``apply_epilogue`` as a separate pass over the
output): both times, the bias-only time beside them, the fused result's
error against the float64 reference and its largest difference from the
unfused one (and PyTorch's ``act(conv(x, w, b) + r)`` when installed); then,
per shape and algorithm, a channels-last input (packed on the device: Note
[GPU memory format] in numbaconv/cuda/arrays.py) against the contiguous
one: both times, the two transposing copies' share, and whether the results
are bit-identical (they must be); then checks that CuPy arrays and PyTorch
CUDA tensors (channels_last ones too) go in and come out without a copy
(``__cuda_array_interface__``).  The CI cannot
run any of this: it has no GPU (the simulator tests and the PTX compiles
are what CI checks).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


SHAPES = [  # name, input, weight, kwargs
    ("resnet3x3", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("s2_3x3", (8, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)),
    ("pw1x1", (8, 256, 28, 28), (128, 256, 1, 1), {}),
    ("depthwise", (8, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256)),
    ("bigk2d", (2, 8, 256, 256), (8, 8, 21, 21), dict(padding=10)),
    ("vol3x3", (2, 16, 32, 32, 32), (32, 16, 3, 3, 3), dict(padding=1)),
]


def _time(fn, cuda, repeats=10):
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


#: the fused-epilogue rows' activations: the cheapest, and erf's
EPILOGUE_ACTIVATIONS = ("relu", "gelu")


def _epilogue_rows(name, f, dx, dw, kw, ref, spec, rng, has_torch, cuda):
    """Fused against unfused epilogue for one shape (module docstring)."""
    from numbaconv.algorithms import algorithm_names, get_algorithm
    from numbaconv.epilogue import ACTIVATION_CODES, activate
    from numbaconv.kernels.epilogue_cuda import apply_epilogue

    b = rng.standard_normal(ref.shape[1]).astype(np.float32)
    r = rng.standard_normal(ref.shape).astype(np.float32)
    db, dr = cuda.to_device(b), cuda.to_device(r)
    pre = ref + b.reshape((1, -1) + (1,) * (ref.ndim - 2)) + r

    for activation in EPILOGUE_ACTIVATIONS:
        expected = activate(activation, pre)
        scale = np.abs(expected).max()
        row = [f"{name} {activation}+residual"]
        for algorithm in algorithm_names("cuda")[1:]:
            if get_algorithm(algorithm, "cuda").unsupported_reason(spec) is not None:
                continue

            def fused():
                return f(dx, dw, db, algorithm=algorithm, activation=activation, residual=dr,
                         **kw)

            def unfused():
                y = f(dx, dw, db, algorithm=algorithm, **kw)
                return apply_epilogue(y, dr, ACTIVATION_CODES[activation], 0.01, 0)

            y_fused, y_unfused = fused().copy_to_host(), unfused().copy_to_host()
            err = np.abs(y_fused - expected).max() / scale
            diff = np.abs(y_fused - y_unfused).max() / scale
            t_bias = _time(lambda: f(dx, dw, db, algorithm=algorithm, **kw), cuda)
            t_fused, t_unfused = _time(fused, cuda), _time(unfused, cuda)
            row.append(f"{algorithm} bias-only {t_bias * 1e3:.3f} ms fused "
                       f"{t_fused * 1e3:.3f} ms unfused {t_unfused * 1e3:.3f} ms "
                       f"err {err:.1e} |fused-unfused| {diff:.1e}")
        if has_torch:
            import torch
            tf = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
                  3: torch.nn.functional.conv3d}[ref.ndim - 2]
            act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[activation]
            tx, tw = torch.as_tensor(dx, device="cuda"), torch.as_tensor(dw, device="cuda")
            tb, tr = torch.as_tensor(db, device="cuda"), torch.as_tensor(dr, device="cuda")
            t = _time(lambda: act(tf(tx, tw, tb, **kw) + tr), torch.cuda)
            row.append(f"torch act(conv + r) {t * 1e3:.3f} ms")
        print(" | ".join(row), flush=True)


def _channels_last_rows(name, f, x, dx, dw, kw, spec, cuda):
    """A channels-last input against the contiguous one, per algorithm
    (module docstring)."""
    from numbaconv.algorithms import algorithm_names, get_algorithm
    from numbaconv.cuda import arrays

    ndim = x.ndim - 2
    memory = cuda.to_device(np.ascontiguousarray(np.moveaxis(x, 1, -1)))
    st = tuple(memory.strides)
    dx_cl = arrays.strided_view(memory, x.shape, st[:1] + st[-1:] + st[1:-1])
    row = [f"{name} channels-last"]
    for algorithm in algorithm_names("cuda")[1:]:
        if get_algorithm(algorithm, "cuda").unsupported_reason(spec) is not None:
            continue
        y = f(dx_cl, dw, algorithm=algorithm, **kw)
        assert arrays.is_channels_last(y, ndim), "channels-last output"
        same = np.array_equal(y.copy_to_host(), f(dx, dw, algorithm=algorithm, **kw).copy_to_host())
        t_cl = _time(lambda: f(dx_cl, dw, algorithm=algorithm, **kw), cuda)
        t = _time(lambda: f(dx, dw, algorithm=algorithm, **kw), cuda)
        row.append(f"{algorithm} {t_cl * 1e3:.3f} ms (contiguous {t * 1e3:.3f} ms, copies "
                   f"{(t_cl - t) / t_cl:.0%}) bit-identical {'yes' if same else 'NO'}")
    print(" | ".join(row), flush=True)


def main(quick):
    from numba import cuda

    import numbaconv as nc
    from numbaconv.algorithms import algorithm_names, get_algorithm
    from numbaconv.algorithms.gpu import GPU_DIRECT
    from numbaconv.spec import problem_spec

    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    print(f"GPU: {cuda.get_current_device().name}")
    conv = {2: nc.conv2d, 3: nc.conv3d}
    rng = np.random.default_rng(0)
    for name, xs, ws, kw in SHAPES:
        if quick:
            xs = (1,) + xs[1:]
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        ref = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), **kw)
        dx, dw = cuda.to_device(x), cuda.to_device(w)
        spec = problem_spec(xs, ws, **kw)
        flops = spec.flops
        row = [name]
        for algorithm in algorithm_names("cuda")[1:]:
            if get_algorithm(algorithm, "cuda").unsupported_reason(spec) is not None:
                continue
            f = conv[len(xs) - 2]
            y = f(dx, dw, algorithm=algorithm, **kw).copy_to_host()
            err = np.abs(y - ref).max() / np.abs(ref).max()
            t = _time(lambda: f(dx, dw, algorithm=algorithm, **kw), cuda)
            row.append(f"{algorithm} {t * 1e3:.3f} ms {flops / t / 1e12:.1f} TFLOP/s "
                       f"err {err:.1e}")
        if GPU_DIRECT.plan(spec).path == "shared-memory tiles":
            from numbaconv.kernels import direct_cuda
            from numbaconv.algorithms.gpu import device_maps
            out = cuda.device_array(spec.output_shape[:2] + spec.output_size3, np.float32)
            x3 = dx.reshape(spec.input_shape[:2] + spec.input_size3)
            w3 = dw.reshape(spec.weight_shape[:2] + (1,) * (3 - spec.ndim) + spec.kernel_size)
            t = _time(lambda: direct_cuda.conv_forward(
                x3, device_maps(spec), w3, None, out, spec.groups, spec.stride3,
                spec.dilation3, 0, tiled=False), cuda)
            row.append(f"direct one-thread-per-output baseline {t * 1e3:.3f} ms")
        if has_torch:
            tf = {2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[len(xs) - 2]
            tx, tw = torch.as_tensor(x, device="cuda"), torch.as_tensor(w, device="cuda")
            t = _time(lambda: tf(tx, tw, **kw), torch.cuda)
            row.append(f"torch {t * 1e3:.3f} ms")
        print(" | ".join(row), flush=True)
        _epilogue_rows(name, conv[len(xs) - 2], dx, dw, kw, ref, spec, rng, has_torch, cuda)
        _channels_last_rows(name, conv[len(xs) - 2], x, dx, dw, kw, spec, cuda)

    # interop: no copies in, none out
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    ref = nc.conv2d(x, w, padding=1)
    if has_torch:
        tx, tw = torch.as_tensor(x, device="cuda"), torch.as_tensor(w, device="cuda")
        y = nc.conv2d(tx, tw, padding=1)
        back = torch.as_tensor(y, device="cuda")
        assert np.allclose(back.cpu().numpy(), ref, atol=1e-4), "torch interop"
        gi, gw, gb = nc.conv_backward(tx, tw, torch.as_tensor(ref, device="cuda"), padding=1)
        tx_cl = tx.to(memory_format=torch.channels_last)
        back = torch.as_tensor(nc.conv2d(tx_cl, tw, padding=1), device="cuda")
        assert back.is_contiguous(memory_format=torch.channels_last), "channels-last out"
        assert np.allclose(back.cpu().numpy(), ref, atol=1e-4), "torch channels_last"
        print("torch interop: ok (in, out, conv_backward, channels_last)")
    try:
        import cupy
        cx, cw = cupy.asarray(x), cupy.asarray(w)
        y = nc.conv2d(cx, cw, padding=1)
        assert np.allclose(cupy.asnumpy(cupy.asarray(y)), ref, atol=1e-4), "cupy interop"
        y = nc.conv2d(cx, cw, padding=1, algorithm="fft")
        assert np.allclose(cupy.asnumpy(cupy.asarray(y)), ref, atol=1e-3), "cupy fft"
        print("cupy interop and the cuFFT algorithm: ok")
    except ImportError:
        print("cupy: not installed (the gpu-fft extra)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 shapes")
    main(parser.parse_args().quick)
