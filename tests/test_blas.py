"""``fastxent._blas.add_product``: ``out += a @ b`` through NumPy's OpenBLAS, and without it."""

from __future__ import annotations

import numpy as np
import pytest

from fastxent import _blas


def layouts(rng, shape, dtype):
    """The same matrix as C order, as a transposed C array, and as a column slice."""
    base = rng.standard_normal(shape).astype(dtype)
    wide = np.zeros((shape[0], shape[1] + 7), dtype)
    wide[:, 3 : 3 + shape[1]] = base
    return {
        "c": base,
        "transposed": np.ascontiguousarray(base.T).T,
        "column-slice": wide[:, 3 : 3 + shape[1]],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "fallback"])
@pytest.mark.parametrize("a_layout", ["c", "transposed", "column-slice"])
@pytest.mark.parametrize("b_layout", ["c", "transposed", "column-slice"])
def test_add_product_matches_numpy(rng, dtype, blas, a_layout, b_layout):
    a = layouts(rng, (37, 53), dtype)[a_layout]
    b = layouts(rng, (53, 29), dtype)[b_layout]
    start = rng.standard_normal((37, 29)).astype(dtype)
    out = start.copy()
    _blas.add_product(a, b, out, block_rows=5, blas=blas)
    exact = start.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, exact, rtol=rtol, atol=rtol * np.abs(exact).max())


def test_add_product_into_a_row_slice(rng):
    """The weight gradient's blocks: ``out`` a slice of rows of a larger array."""
    whole = np.zeros((50, 8))
    a = rng.standard_normal((20, 4))
    b = rng.standard_normal((4, 8))
    _blas.add_product(a, b, whole[10:30], block_rows=3)
    np.testing.assert_allclose(whole[10:30], a @ b, rtol=1e-13)
    assert not whole[:10].any() and not whole[30:].any()


def test_empty_products_add_nothing():
    out = np.ones((3, 2))
    _blas.add_product(np.zeros((3, 0)), np.zeros((0, 2)), out, block_rows=2)
    assert np.array_equal(out, np.ones((3, 2)))


def test_numpys_openblas_is_used_where_numpy_ships_it():
    """NumPy's wheels bundle scipy-openblas64: then the accumulating path must be found."""
    config = np.__config__.CONFIG["Build Dependencies"]["blas"]
    if config.get("name") != "scipy-openblas" or not _blas._library_paths():
        pytest.skip(f"NumPy is built with {config.get('name')!r}, not its bundled OpenBLAS")
    for dtype in (np.float32, np.float64):
        assert _blas._gemm(np.dtype(dtype)) is not None
