"""The kernel layer: numba CPU kernels (``*_cpu.py``, ``direct_*.py``) and
numba.cuda GPU kernels (``*_cuda.py``) on canonical arrays.  Kernels import
only from this package, :mod:`numbaconv.cuda` and the modules below them
(spec, padding, context), never from the algorithms or the API above.

Note [no bias]
~~~~~~~~~~~~~~
Every kernel that adds a bias takes it as an array: ``(C_out,)``, or
zero-length for none (no ``None`` reaches compiled code, so one compiled
kernel serves both); the GPU launchers also take ``None``.  Without a bias
each kernel does what it did before: the direct kernels (whose "no bias"
was an array of zeros) use ``+0.0`` in its place, so their bits are
unchanged (a sum that came out ``-0.0`` still becomes ``+0.0``), and the
others add ``+0.0`` or skip the add as they always have.
"""
