"""The kernel layer: numba CPU kernels (``*_cpu.py``, ``direct_*.py``) and
numba.cuda GPU kernels (``*_cuda.py``) on canonical arrays.  Kernels import
only from this package, :mod:`numbaconv.cuda` and the modules below them
(spec, padding, context), never from the algorithms or the API above.

Note [no bias]
~~~~~~~~~~~~~~
Every kernel that adds a bias takes it as an array: ``(C_out,)``, or
zero-length for none (no ``None`` reaches compiled code, so one compiled
kernel serves both).  Where a kernel has no bias it uses ``+0.0`` in its
place (the direct kernels: their sums started from an array of zeros
before, and still give those bits: ``-0.0 + 0.0`` is ``+0.0``), or skips
the add where it always did (im2col's BLAS products, the GPU kernels).
The GPU launchers also take ``None``.
"""
