"""Ranking, distillation, contrastive, metric-learning and preference losses as pure JAX functions.

Rax-compatible: every loss that Rax exports keeps its name and signature; arrays are
``[..., list_size]``, options keyword-only, padding masked with ``where=``.
"""

from ranking_jax.losses import (contrastive, debiasing, distill, lambdaweights, listwise, metric_learning,
                                pairwise, pointwise, preference, t12n)
from ranking_jax.losses.contrastive import *  # noqa: F401,F403
from ranking_jax.losses.debiasing import *  # noqa: F401,F403
from ranking_jax.losses.distill import *  # noqa: F401,F403
from ranking_jax.losses.lambdaweights import *  # noqa: F401,F403
from ranking_jax.losses.listwise import *  # noqa: F401,F403
from ranking_jax.losses.metric_learning import *  # noqa: F401,F403
from ranking_jax.losses.pairwise import *  # noqa: F401,F403
from ranking_jax.losses.pointwise import *  # noqa: F401,F403
from ranking_jax.losses.preference import *  # noqa: F401,F403
from ranking_jax.losses.t12n import *  # noqa: F401,F403

__all__ = sorted({name for module in (contrastive, debiasing, distill, lambdaweights, listwise, metric_learning,
                                      pairwise, pointwise, preference, t12n) for name in module.__all__})
