"""Parameter paths: ``"layers/0/attention/query/kernel"``, what the optimizer's regexes (freeze, learning-rate
groups, no weight decay, TRAM-x's input tables) match with ``re.search``."""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx


def _key(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def path_of(path) -> str:
    """The '/'-joined path of a ``jax.tree_util`` key path (an nnx Variable's ``.value`` left out)."""
    keys = [_key(k) for k in path]
    if keys and keys[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        keys = keys[:-1]
    return "/".join(keys)


def path_map(fn: Callable[[str], Any], tree: Any) -> Any:
    """Maps ``fn('/'-joined path)`` over the parameters of ``tree`` (an nnx Variable counts as one leaf)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: fn(path_of(path)), tree,
                                            is_leaf=lambda x: isinstance(x, nnx.Variable))
