"""numbaconv in five minutes: PyTorch-style convolutions on NumPy arrays.

Run with ``python examples/quickstart.py``.  The first run compiles the
kernels it uses (a few seconds each); later runs load them from the cache.
"""

import time

import numpy as np

import numbaconv as nc

rng = np.random.default_rng(0)

# A ResNet-style 3x3 layer: N, C, H, W input and C_out, C_in, kH, kW weight.
x = rng.standard_normal((4, 64, 56, 56), dtype=np.float32)
w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
b = rng.standard_normal(64, dtype=np.float32)

y = nc.conv2d(x, w, b, padding=1)                 # same as torch.nn.functional.conv2d
print("conv2d", x.shape, "x", w.shape, "->", y.shape, y.dtype)

start = time.perf_counter()
nc.conv2d(x, w, b, padding=1)
print(f"  second call: {(time.perf_counter() - start) * 1e3:.1f} ms (compiled code is reused)")

# Every result can be checked against the float64 NumPy reference.
reference = nc.conv_reference(x, w, b, padding=1)
print(f"  max relative error vs float64 reference: "
      f"{np.abs(y - reference).max() / np.abs(reference).max():.1e}")

# Depthwise, strided, dilated, "same" padding and the padding modes of torch.nn.Conv2d.
depthwise = nc.conv2d(x, rng.standard_normal((64, 1, 3, 3), dtype=np.float32),
                      padding="same", groups=64)
strided = nc.conv2d(x, w, stride=2, padding=1, padding_mode="reflect")
dilated = nc.conv2d(x, w, padding=2, dilation=2)
print("depthwise", depthwise.shape, "| strided reflect", strided.shape, "| dilated", dilated.shape)

# 1-D and 3-D, unbatched input, float16 (computed in float32, returned as float16).
signal = rng.standard_normal((16, 1000)).astype(np.float16)          # (C, W): unbatched
weight16 = rng.standard_normal((8, 16, 9)).astype(np.float16)
print("conv1d float16 unbatched ->", nc.conv1d(signal, weight16).shape)
volume = rng.standard_normal((1, 4, 16, 16, 16), dtype=np.float32)
weight3d = rng.standard_normal((8, 4, 3, 3, 3), dtype=np.float32)
print("conv3d ->", nc.conv3d(volume, weight3d, padding=1).shape)

# Write into a preallocated output, and pick the algorithm explicitly.  y came
# from "auto", which picks winograd for this layer: compare out= with a direct
# call (same algorithm, same bits), and auto with direct within float32
# rounding (other algorithms sum in another order).
out = np.empty_like(y)
result = nc.conv2d(x, w, b, padding=1, out=out, algorithm="direct")
direct = nc.conv2d(x, w, b, padding=1, algorithm="direct")
print("out= filled in place:", result is out and np.array_equal(out, direct),
      "| algorithms:", nc.algorithm_names())
auto = nc.choose_algorithm(x.shape, w.shape, padding=1).algorithm
print(f"  direct and auto ({auto}) agree within 1e-5 of the largest output:",
      bool(np.abs(direct - y).max() <= 1e-5 * np.abs(y).max()))

# Transposed convolution (a decoder's upsampling) and the gradients of a layer,
# with torch.nn.functional's and torch.nn.grad's names and arguments.
up = nc.conv_transpose2d(y, rng.standard_normal((64, 32, 4, 4), dtype=np.float32),
                         stride=2, padding=1)
grad_y = np.ones_like(y)                                   # dLoss/dy of loss = y.sum()
grad_x = nc.grad.conv2d_input(x.shape, w, grad_y, padding=1)
grad_w = nc.grad.conv2d_weight(x, w.shape, grad_y, padding=1)
_, _, grad_b = nc.conv_backward(x, w, grad_y, padding=1, output_mask=(False, False, True))
print("conv_transpose2d ->", up.shape, "| grad_input", grad_x.shape, "| grad_weight",
      grad_w.shape, "| grad_bias", grad_b.shape)

# Bad arguments say what was wrong.
try:
    nc.conv2d(x, w, groups=3)
except ValueError as error:
    print("ValueError:", error)
