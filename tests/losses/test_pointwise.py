"""ranking_jax.losses.pointwise (pointwise MSE and sigmoid cross-entropy) against rax 0.4.0 with the same random
inputs, masks, weights, segments and options, and the checks every ranking loss passes (tests/_ranking_losses.py):
masked inf/NaN never leaks into values or gradients, all-masked lists are left out, jit == eager, vmap == batch,
where == truncation, segments == padded lists, mismatched shapes named."""

import pytest

from _ranking_losses import (POINTWISE, check_masked_inf_nan_never_leaks, check_mismatched_shapes, check_rax_parity,
                             check_structure, rax_case_id, rax_cases)


# ------------------------------------------------------------------------------------------------------------------
# The checks every ranking loss passes (tests/_ranking_losses.py).

@pytest.mark.parametrize("name,options", rax_cases(POINTWISE), ids=rax_case_id)
def test_rax_parity(name, options):
    check_rax_parity(name, options)


@pytest.mark.parametrize("name", POINTWISE)
def test_masked_inf_nan_never_leaks(name):
    check_masked_inf_nan_never_leaks(name)


@pytest.mark.parametrize("name", POINTWISE)
def test_structure(name):
    """jit == eager; all-masked lists left out with zero gradients; vmap == batch; sum(unreduced) == sum;
    leading dims; where == truncation; segments == padded lists."""
    check_structure(name)


@pytest.mark.parametrize("name", POINTWISE)
def test_mismatched_shapes_name_the_function_and_argument(name):
    check_mismatched_shapes(name)
