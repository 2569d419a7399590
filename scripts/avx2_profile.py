"""Run a command under the AVX2 profile, whatever this machine's CPU.

    python scripts/avx2_profile.py python -m numbaconv bench --shapes public
    python scripts/avx2_profile.py python -m numbaconv bench --nets --net resnet50

numba compiles for Haswell (``NUMBA_CPU_NAME=haswell``, into a cache
directory of its own so the host's compiled kernels are not replaced),
OpenBLAS runs its Haswell kernels (``OPENBLAS_CORETYPE=Haswell``) and
PyTorch its AVX2 ones (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``).  numbaconv's tuning cache and cost-model
constants are kept apart per profile (numbaconv.storage.instruction_profile).
Before the command it checks with scripts/cpu_profile.py that numba and
OpenBLAS really took the profile, and stops if they did not.  On an AVX2
machine the profile is its own instruction set; measure on AVX-512 parts
both ways (docs/benchmarking.md, "Both instruction sets").
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent

PROFILE = {"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell",
           "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def environment(base=None):
    """``base`` (default os.environ) with the AVX2 profile and its own numba cache."""
    env = dict(os.environ if base is None else base)
    env.update(PROFILE)
    cache = pathlib.Path(env.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    env["NUMBA_CACHE_DIR"] = str(cache / "numbaconv-avx2-numba")
    return env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    env = environment()
    check = subprocess.run([sys.executable, str(HERE / "cpu_profile.py"), "--expect", "haswell"],
                           env=env)
    if check.returncode:
        print("avx2_profile: the profile did not take; not running the command", file=sys.stderr)
        return check.returncode
    return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
