"""ranking_jax.losses.pointwise (pointwise MSE and sigmoid cross-entropy) against rax 0.4.0 with the same random
inputs, masks, weights, segments and options, and the checks every ranking loss passes (tests/_ranking_losses.py):
masked inf/NaN never leaks into values or gradients, all-masked lists are left out, jit == eager, vmap == batch,
where == truncation, segments == padded lists, mismatched shapes named."""

from _ranking_losses import POINTWISE, ranking_checks


# ------------------------------------------------------------------------------------------------------------------
# The checks every ranking loss passes (tests/_ranking_losses.py).

(test_rax_parity, test_masked_inf_nan_never_leaks, test_structure,
 test_mismatched_shapes_name_the_function_and_argument) = ranking_checks(POINTWISE)
