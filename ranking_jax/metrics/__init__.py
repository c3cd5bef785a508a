"""Ranking metrics (Rax-compatible), metric-learning and preference diagnostics, rank correlation.

``ranking`` holds Rax's seven metrics with Rax's names, signatures and values; ``metric_learning`` Recall@k and
OPIS over embeddings; ``preference`` the ranking accuracy of preference-tuned models; ``correlation`` Kendall's
tau. The metric-to-loss transformations and lambdaweights (``approx_t12n``, ``dcg_lambdaweight``, ...) live in
:mod:`ranking_jax.losses` and are re-exported here, as in Rax. TREC file evaluation is
:mod:`ranking_jax.metrics.trec` (not re-exported: its functions are not metrics).
"""

from ranking_jax.metrics import correlation, metric_learning, preference, ranking, trec  # noqa: F401
from ranking_jax.metrics.correlation import *  # noqa: F401,F403
from ranking_jax.metrics.metric_learning import *  # noqa: F401,F403
from ranking_jax.metrics.preference import *  # noqa: F401,F403
from ranking_jax.metrics.ranking import *  # noqa: F401,F403

from ranking_jax.losses import lambdaweights as _lambdaweights, t12n as _t12n  # noqa: E402
from ranking_jax.losses.lambdaweights import *  # noqa: F401,F403,E402
from ranking_jax.losses.t12n import *  # noqa: F401,F403,E402

__all__ = sorted({name for module in (correlation, metric_learning, preference, ranking, _lambdaweights, _t12n)
                  for name in module.__all__})
