"""Open-world deep metric learning with the Threshold-Consistent Margin regularizer (Zhang et al., ICLR 2024).

    python -m ranking_jax.main --config configs/metric_learning.py --workdir /tmp/ml
    python -m ranking_jax.main --config configs/metric_learning.py:tcm --workdir /tmp/ml_tcm
    python -m ranking_jax.main --config configs/metric_learning.py:fashion_mnist,tcm,loss=contrastive --workdir /tmp/f

Args (comma-separated): fashion_mnist (Fashion-MNIST from the Debian package dataset-fashion-mnist or
data.manual_dir; default: scikit-learn's bundled digits), tcm (L = L_base + L_TCM, m+ = 0.9, m- = 0.5,
lambda = 1; the loss "losses.<base> + losses.tcm_regularizer(...)"), loss=multi_similarity|contrastive|triplet
(the base loss), steps=N, runlocal (2-step smoke run).
Data: train on the images of classes 0-4, evaluate on all images of the unseen classes 5-9 (Fashion-MNIST:
a seeded sample of 5,000 of its 35,000 test-class images, since OPIS is O(N^2)). Model: MLP 256 -> 64-d
L2-normalized embedding; batches of 4 classes x 16 images. Reported: Recall@{1,2,4,8} (leave-one-out),
OPIS and eps-OPIS (lower = one distance threshold suits all classes more evenly) under ``embedding/``.
Expected (seed 0, 1000 steps, ~20-60 s on 2 CPU cores for digits, ~4 min for Fashion-MNIST; one seed, and OPIS
is noisy across seeds):
  run                                   R@1 untrained -> trained   OPIS    eps-OPIS (trained)
  digits multi_similarity               0.981 -> 0.839             0.022   0.193
  digits multi_similarity + tcm         0.981 -> 0.905             0.014   0.086
  digits triplet                        0.981 -> 0.964             0.013   0.090
  digits triplet + tcm                  0.981 -> 0.916             0.010   0.069
  digits contrastive                    0.981 -> 0.722             0.015   0.111
  digits contrastive + tcm              0.981 -> 0.887             0.021   0.156
  fashion_mnist multi_similarity        0.875 -> 0.887             0.045   0.290
  fashion_mnist multi_similarity + tcm  0.875 -> 0.875             0.043   0.251
On digits the untrained random MLP already retrieves the unseen classes almost perfectly and training on
classes 0-4 lowers R@1 on 5-9 (it specializes to the seen classes). TCM lowers OPIS with multi-similarity and
triplet (not contrastive) and keeps more R@1 with multi-similarity and contrastive (not triplet). Fashion-MNIST
is the meaningful open-world setting at this scale: training raises R@1, TCM lowers (eps-)OPIS.
"""

from ranking_jax import defaults

LOSSES = {"multi_similarity": "losses.multi_similarity_loss", "contrastive": "losses.contrastive_loss",
          "triplet": "losses.triplet_loss"}


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, fashion_mnist=False, tcm=False, loss="multi_similarity", steps=1000)
    if a.loss not in LOSSES:
        raise ValueError(f"config arg loss={a.loss!r} is unknown; valid: {sorted(LOSSES)}")
    c = defaults.metric_learning("fashion_mnist" if a.fashion_mnist else "digits")
    c.name = f"metric_learning_{c.data.dataset}_{a.loss}{'_tcm' if a.tcm else ''}"
    c.loss = LOSSES[a.loss] + (" + losses.tcm_regularizer(m_pos=0.9, m_neg=0.5)" if a.tcm else "")
    c.optimizer.name = "adam"
    c.train.update({"num_steps": a.steps, "log_every": 50, "eval_every": 250, "checkpoint_every": 250})
    if a.fashion_mnist:
        c.data.max_eval_images = 5000
    if a.runlocal:
        defaults.smoke(c)
        c.data.batch_size = 32
        c.data.max_eval_images = 200
        c.data.eval_batch_size = 64
        c.model.hidden = (32,)
        c.model.dim = 16
    return c
