"""The GPU backend: ``numba.cuda`` kernels behind the same algorithms table.

Imported only when a call gets a GPU array (:mod:`numbaconv.devices`), so a
CPU-only ``import numbaconv`` never loads ``numba.cuda``.

* :mod:`.launch` -- block and tile sizes, in one place (the tests shrink
  them so that tiny inputs span several blocks);
* :mod:`.arrays` -- accepting device arrays, casting, results, streams;
* :mod:`.info` -- the devices ``numbaconv info`` lists.

The kernels are in ``numbaconv/kernels/*_cuda.py``, the algorithms that run
them in ``numbaconv/algorithms/gpu.py``.
"""
