"""Write sweeps: one pass over a row that writes its softmax, log-softmax or gradient."""

from __future__ import annotations

import numpy as np

from fastxent._config import exact_order, row_helper
from fastxent._simd import exp_nonpositive, inline_into_callers, use_512bit_vectors


@row_helper
def row_exp_scaled_into(row, shift, factor, out):
    """``out = exp(row - shift) * factor``, ``factor`` in the row's dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(row.size):
        out[c] = exp_nonpositive(row[c] - shift) * factor


@row_helper
def row_exp_scaled_in_place(out, shift, factor):
    """:func:`row_exp_scaled_into` with ``out`` as its own input.

    A separate loop because LLVM does not vectorise ``row_exp_scaled_into(x, s, f, x)``:
    its runtime overlap check sends identical input and output to the scalar loop.
    """
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = exp_nonpositive(out[c] - shift) * factor


@row_helper
def row_exp_scaled_minus_into(row, shift, factor, amounts, out):
    """``out = exp(row - shift) * factor - amounts``, ``amounts`` in ``out``'s dtype.

    The gradient with label smoothing in one sweep: a separate pass subtracting float64
    weights would go over every gradient row once more.
    """
    inline_into_callers()
    use_512bit_vectors()
    for c in range(row.size):
        out[c] = exp_nonpositive(row[c] - shift) * factor - amounts[c]


@row_helper
def row_exp_scaled_minus_in_place(out, shift, factor, amounts):
    """:func:`row_exp_scaled_minus_into` with ``out`` as its own input."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = exp_nonpositive(out[c] - shift) * factor - amounts[c]


@exact_order
def row_log_softmax_into(row, top, log_total, out):
    """Write ``(row - top) - log_total`` into ``out``, rounding once (float64 inside).

    Forming ``top + log_total`` first would cost ``ulp(top)`` of accuracy (all of it at
    logits of 1e30), so this loop is compiled without ``reassoc``, which would allow LLVM
    to do exactly that. Inlined like the row helpers (the instructions keep their own
    fast-math flags).
    """
    inline_into_callers()
    use_512bit_vectors()
    top64 = np.float64(top)
    for c in range(row.size):
        out[c] = (np.float64(row[c]) - top64) - log_total


@row_helper
def row_scale(out, factor):
    """Multiply ``out`` by ``factor`` in place."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] *= factor


@row_helper
def row_scale_and_subtract(out, factor, amounts):
    """``out[c] = out[c] * factor - amounts[c]`` in place, ``amounts`` in ``out``'s dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = out[c] * factor - amounts[c]
