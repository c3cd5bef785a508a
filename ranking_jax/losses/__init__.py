"""Ranking, distillation, contrastive, metric-learning and preference losses as pure JAX functions.

Rax-compatible: every loss that Rax exports keeps its name and signature; arrays are
``[..., list_size]``, options keyword-only, padding masked with ``where=``. Every loss registers itself
(``losses.<name>``) with the view it reads (:mod:`ranking_jax.views`), so a config reaches it by name; the public
names that are not losses are listed in :data:`HELPERS` with what they are for.
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

# Public names that are not losses (a test checks every other public name is a registered loss).
HELPERS = {
    "pairwise_loss": "the building block of the pairwise losses (takes a pair_loss_fn callable)",
    "labeldiff_lambdaweight": "a lambdaweight_fn (lambdaweights.labeldiff_lambdaweight in a spec)",
    "dcg_lambdaweight": "a lambdaweight_fn (lambdaweights.dcg_lambdaweight in a spec)",
    "dcg2_lambdaweight": "a lambdaweight_fn (lambdaweights.dcg2_lambdaweight in a spec)",
    "segment_t12n": "adds segments= to a loss; batches carry no segments",
    "madpo_weight": "MADPO's per-pair weight, used by madpo_loss",
    "popularity_propensity": "data side: Rel-MF exposure propensities (config.data.propensities='popularity')",
    "curriculum_difficulty": "data side: used by curriculum_loss",
    "curriculum_weights": "data side: used by curriculum_loss",
}
