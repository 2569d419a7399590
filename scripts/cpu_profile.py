"""Print what a run's CPU profile actually selects: numba's target CPU and
OpenBLAS's kernels (docs/ci.md, "The AVX2 profile").

``--expect haswell`` exits non-zero unless numba compiles for Haswell and
every OpenBLAS threadpoolctl sees runs its Haswell kernels, so that CI's
AVX2 stage cannot silently test the host's own instruction set.
"""

from __future__ import annotations

import argparse
import platform
import sys


def profile():
    """``(host CPU, numba's target CPU, [(library, OpenBLAS kernels)])``."""
    import llvmlite.binding as llvm
    import numba
    from threadpoolctl import threadpool_info

    import numbaconv.kernels.blas as blas

    blas.find_gemm()                    # loads SciPy's BLAS too, as a call does
    target = numba.config.CPU_NAME or llvm.get_host_cpu_name()
    kernels = [(lib["filepath"].rsplit("/", 1)[-1], lib.get("architecture"))
               for lib in threadpool_info() if lib["internal_api"] == "openblas"]
    return llvm.get_host_cpu_name(), target, kernels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", metavar="CPU",
                        help="fail unless numba targets CPU and OpenBLAS runs its CPU "
                             "kernels (e.g. haswell)")
    args = parser.parse_args(argv)
    host, target, kernels = profile()
    print(f"host CPU (LLVM): {host}; numba compiles for: {target}")
    for name, arch in kernels:
        print(f"OpenBLAS {name}: {arch} kernels")
    if args.expect:
        want = args.expect.lower()
        wrong = [f"numba targets {target}"] if target.lower() != want else []
        wrong += [f"{name} runs {arch} kernels" for name, arch in kernels
                  if str(arch).lower() != want]
        if platform.machine() not in ("x86_64", "AMD64"):
            print(f"not an x86-64 machine ({platform.machine()}): profile not checked")
        elif wrong:
            print(f"expected the {args.expect} profile, but: " + "; ".join(wrong))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
