"""ranking_jax: neural ranking and preference learning in JAX."""

__version__ = "0.1.0"

from ranking_jax import process as _process  # noqa: E402

_process.reexec_with_huge_pages()  # only when this process is `python -m ranking_jax.main | encode`


def __getattr__(name):  # the notebook entry point, imported on first use (it pulls in jax and flax)
    if name == "TextEncoder":
        from ranking_jax.encode import TextEncoder
        return TextEncoder
    raise AttributeError(f"module 'ranking_jax' has no attribute {name!r}")
