"""exp, tanh and the gelu factor ``1 + erf(z)`` for the fused epilogue,
in a form LLVM vectorises (Note [vector math]).

Note [vector math]
~~~~~~~~~~~~~~~~~~
numba lowers ``math.exp``, ``math.tanh`` and ``math.erf`` to scalar libm
calls (it vectorises them only through Intel's SVML, which is not a
dependency), so an epilogue of silu, sigmoid, tanh or gelu cost 5 ns per
value: ConvNeXt-T's exact gelu alone took 45 ms of its 108 ms at batch 1
(docs/results-networks.md, "Vector math").  For float32 these functions are
written here in arithmetic only -- a Cody-Waite reduction and a polynomial
for exp, odd polynomials near zero, ``erfc(z) = exp(-z^2) R(z)`` beyond --
which LLVM turns into vector code.  Their coefficients are least-squares fits
in float64 (scripts/gen_vector_math.py), and tests/test_vector_math.py bounds
the error against float64 libm on dense grids: exp 0.93 float32 ulps,
tanh 1.46, ``1 + erf(z)`` 1.63 for ``z >= 0`` and 6.3 for ``z < -0.5``,
where it is ``erfc(-z)``, small, and computed without cancellation.

They are compiled with no fast-math flags and not inlined at numba's level,
so a caller's ``reassoc`` cannot undo the two-constant reduction and the
results are the same bits at every vector width (tests/test_bits.py).
float64 keeps libm: its callers pay for accuracy, and the float64 hashes
stay as they were.  The float32 exp flushes results below 2^-126 to zero
(PyTorch keeps subnormals): an absolute error under 1.2e-38.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# least-squares fits in float64, rounded to float32 (scripts/gen_vector_math.py)
#: erf(z) / z as a polynomial in z^2, |z| <= 0.5 (relative error 1.4e-9)
ERF_SMALL = (1.1283791065216064, -0.37612608075141907, 0.11282819509506226,
             -0.026756972074508667, 0.004717567469924688)
#: below this |z|, ``1 + erf`` uses ERF_SMALL; above, erfc (at -1 the
#: cancellation of ``1 - erf(1)`` cost 8 ulps)
ERF_SMALL_BOUND = 0.5
#: erfc(z) exp(z^2) as a polynomial in t = 1 / (1 + z / 2), 0.5 <= z <= 10
#: (relative error 1.6e-9)
ERFC_SCALED = (4.024785084766336e-06, 0.2819720506668091, 0.28373104333877563,
               0.23428696393966675, 0.2374420315027237, -0.11304865032434464,
               0.4141860008239746, -0.61871337890625, 0.35560691356658936,
               -0.0754767656326294)
#: tanh(x) / x as a polynomial in x^2, |x| <= 0.55 (relative error 9.6e-10)
TANH_SMALL = (1.0, -0.3333331048488617, 0.1333244889974594, -0.05384165421128273,
              0.02103571780025959, -0.006230350583791733)
#: below this, tanh uses TANH_SMALL; above, 1 - 2 / (exp(2x) + 1)
TANH_SMALL_BOUND = 0.55

_F = numba.float32
_LOG2E = _F(1.4426950408889634)
# ln 2 split so that n * _LN2_HIGH is exact for |n| < 2^9
_LN2_HIGH = _F(0.693359375)
_LN2_LOW = _F(-2.1219444005469057e-4)
_EXP_MAX = _F(88.72283)     # exp overflows above
_EXP_MIN = _F(-87.33654)    # below: under 2^-126, flushed to 0
#: exp(r) for |r| <= ln(2) / 2 by its Taylor polynomial of degree 7
#: (truncation 5e-9 relative)
_INV_FACTORIALS = tuple(1.0 / math.factorial(k) for k in range(8))

# contraction only: FMAs (which every AVX2 and AVX-512 part has) but the
# written order of every sum
_JIT: Dict[str, Any] = dict(fastmath={"contract"}, error_model="numpy", boundscheck=False,
                            nogil=True)
# the scalar functions are inlined at numba's level into the loops that call
# them: left to LLVM's inliner, one_plus_erf32 (with its exp) was not
# inlined, and its call kept the loop scalar (13 against 0.9 ns a value)
_INLINE: Dict[str, Any] = dict(_JIT, inline="always")


@intrinsic
def _floor32(typingctx, x):
    """``floor`` of a float32 as a float32 (``llvm.floor``, which
    vectorises; numba's ``math.floor`` returns an int64, which does not on AVX2)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.floor", [ir.FloatType()])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _fma32(typingctx, a, b, c):
    """``a * b + c`` rounded once (``llvm.fma``)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _pow2_32(typingctx, n):
    """2**n for an integral float32 ``-126 <= n <= 127``, from its IEEE
    bits in 32-bit integer arithmetic (which vectorises; numba widens
    integer arithmetic to 64 bits)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return sig, codegen


def _horner(coefficients):
    """A jitted ``p(u)`` for fixed float32 coefficients (lowest first),
    written out so that LLVM sees straight-line code: a loop over a
    10-entry tuple was left rolled and kept the caller's loop scalar."""
    c = tuple(numba.float32(v) for v in coefficients)
    if len(c) == 5:
        def p(u):
            return (((c[4] * u + c[3]) * u + c[2]) * u + c[1]) * u + c[0]
    elif len(c) == 6:
        def p(u):
            return ((((c[5] * u + c[4]) * u + c[3]) * u + c[2]) * u + c[1]) * u + c[0]
    elif len(c) == 8:
        def p(u):
            q = ((((c[7] * u + c[6]) * u + c[5]) * u + c[4]) * u + c[3]) * u + c[2]
            return (q * u + c[1]) * u + c[0]
    elif len(c) == 10:
        def p(u):
            q = ((((c[9] * u + c[8]) * u + c[7]) * u + c[6]) * u + c[5]) * u + c[4]
            return (((q * u + c[3]) * u + c[2]) * u + c[1]) * u + c[0]
    else:  # pragma: no cover - a refit of another degree adds its case
        raise ValueError(f"no Horner form for {len(c)} coefficients")
    return numba.njit(**_INLINE)(p)


_exp_taylor = _horner(_INV_FACTORIALS)
_tanh_small = _horner(TANH_SMALL)
_erf_small = _horner(ERF_SMALL)
_erfc_scaled = _horner(ERFC_SCALED)


@numba.njit(**_INLINE)
def exp32(x):
    """exp of a float32 (module Note).  Branch-free (selects), so that a
    loop calling it vectorises."""
    xc = _EXP_MIN if x < _EXP_MIN else x
    xc = _EXP_MAX if xc > _EXP_MAX else xc
    n = _floor32(xc * _LOG2E + _F(0.5))
    r = (xc - n * _LN2_HIGH) - n * _LN2_LOW
    p = _exp_taylor(r)
    # two factors: n reaches 128 just below the overflow bound
    half = _floor32(n * _F(0.5))
    y = p * _pow2_32(half) * _pow2_32(n - half)
    y = _F(0.0) if x < _EXP_MIN else y
    y = _F(math.inf) if x > _EXP_MAX else y
    return y if x == x else x


@numba.njit(**_INLINE)
def tanh32(x):
    """tanh of a float32 (module Note)."""
    a = abs(x)
    small = x * _tanh_small(x * x)
    large = math.copysign(_F(1.0) - _F(2.0) / (exp32(_F(2.0) * a) + _F(1.0)), x)
    return small if a < _F(TANH_SMALL_BOUND) else large


@numba.njit(**_INLINE)
def one_plus_erf32(z):
    """``1 + erf(z)`` of a float32, accurate relative to its value where it
    is small: ``erfc(-z)`` for ``z <= -0.5`` (module Note)."""
    a = abs(z)
    small = _F(1.0) + z * _erf_small(z * z)
    # erfc is 0 in float32 beyond 10 (and the square's low half of an
    # infinity would be NaN)
    a = _F(10.0) if a > _F(10.0) else a
    # exp(-a^2) with a^2 = square + low exactly: the rounding of a^2 alone
    # would cost up to a^2 ulps
    square = a * a
    low = _fma32(a, a, -square)
    erfc = (exp32(-square) * (_F(1.0) - low)
            * _erfc_scaled(_F(1.0) / (_F(1.0) + _F(0.5) * a)))
    large = _F(2.0) - erfc if z > _F(0.0) else erfc
    return small if a < _F(ERF_SMALL_BOUND) else large


def vector_loop(function):
    """Compile ``function``, a loop over an array that calls the functions
    here, with this module's options: contraction only, so that the inlined
    exp's two-constant reduction keeps its order (a kernel's ``reassoc``
    may fold it into one constant, 35 ulps)."""
    return numba.njit(**_JIT)(function)


def exp_of(v):
    """exp for a :func:`vector_loop`: :func:`exp32` on float32, libm otherwise."""
    return math.exp(v)


def tanh_of(v):
    """tanh for a :func:`vector_loop`: :func:`tanh32` on float32, libm otherwise."""
    return math.tanh(v)


def one_plus_erf_of(v):
    """``1 + erf(v)`` for a :func:`vector_loop`: :func:`one_plus_erf32` on
    float32, ``1 + math.erf`` otherwise."""
    return 1.0 + math.erf(v)


@overload(exp_of, inline="always")
def _exp_of(v):
    if v == types.float32:
        return lambda v: exp32(v)
    return lambda v: math.exp(v)


@overload(tanh_of, inline="always")
def _tanh_of(v):
    if v == types.float32:
        return lambda v: tanh32(v)
    return lambda v: math.tanh(v)


@overload(one_plus_erf_of, inline="always")
def _one_plus_erf_of(v):
    if v == types.float32:
        return lambda v: one_plus_erf32(v)
    return lambda v: 1.0 + math.erf(v)
