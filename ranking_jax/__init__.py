"""ranking_jax: neural ranking and preference learning in JAX."""

__version__ = "0.1.0"
