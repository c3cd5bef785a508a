"""One registry: config strings -> losses, metrics, models, optimizers, evaluators.

A spec is ``"namespace.name"`` or a call ``"namespace.name(arg, key=value)"`` whose arguments are
Python literals, e.g. ``lookup("losses.softmax_loss(temperature=0.5)")`` returns
``functools.partial(ranking_jax.losses.softmax_loss, temperature=0.5)``.

A namespace is backed by a module (its ``__all__`` is registered lazily on first lookup) plus any
callables added with :func:`register`.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
from typing import Any, Callable

# namespace -> module whose public names (``__all__``) are registered under it.
_NAMESPACE_MODULES = {
    "losses": "ranking_jax.losses",
    "metrics": "ranking_jax.metrics",
    "models": "ranking_jax.models",
    "optimizers": "ranking_jax.optim",
    "evaluators": "ranking_jax.evaluate",
    "shardings": "ranking_jax.sharding",
}
_ENTRIES: dict[str, Callable[..., Any]] = {}
_LOADED: set[str] = set()


class RegistryError(KeyError):
    """An unknown name or a malformed spec; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def register(name: str, fn: Callable[..., Any] | None = None):
    """Registers ``fn`` under ``"namespace.name"``; usable as a decorator."""
    if "." not in name:
        raise ValueError(f"registry names are 'namespace.name', got {name!r}")

    def add(f):
        if name in _ENTRIES and _ENTRIES[name] is not f:
            raise ValueError(f"{name!r} is already registered to {_ENTRIES[name]!r}")
        _ENTRIES[name] = f
        return f

    return add(fn) if fn is not None else add


def _load(namespace: str) -> None:
    if namespace in _LOADED or namespace not in _NAMESPACE_MODULES:
        return
    _LOADED.add(namespace)
    module = importlib.import_module(_NAMESPACE_MODULES[namespace])
    for attr in getattr(module, "__all__", ()):
        obj = getattr(module, attr)
        if callable(obj):
            _ENTRIES.setdefault(f"{namespace}.{attr}", obj)


def names(namespace: str | None = None) -> list[str]:
    """All registered names, or those of one namespace."""
    for ns in [namespace] if namespace else list(_NAMESPACE_MODULES):
        _load(ns)
    return sorted(n for n in _ENTRIES if namespace is None or n.startswith(namespace + "."))


def _parse(spec: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    try:
        expr = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as e:
        raise RegistryError(f"cannot parse registry spec {spec!r}: {e.msg}. "
                            "Expected 'namespace.name' or 'namespace.name(arg, key=value)'.") from None
    call = expr if isinstance(expr, ast.Call) else None
    target = call.func if call else expr
    name = ast.unparse(target)
    if not isinstance(target, ast.Attribute):
        raise RegistryError(f"registry spec {spec!r} must be 'namespace.name', e.g. 'losses.softmax_loss'")
    args, kwargs = (), {}
    if call:
        try:
            args = tuple(ast.literal_eval(a) for a in call.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except ValueError:
            raise RegistryError(f"arguments of {spec!r} must be Python literals "
                                "(numbers, strings, tuples, lists, dicts, None, True/False)") from None
        if any(k is None for k in kwargs):
            raise RegistryError(f"**kwargs are not allowed in registry spec {spec!r}")
    return name, args, kwargs


def lookup(spec: str) -> Callable[..., Any]:
    """Resolves ``spec`` to a callable, with any call arguments bound by ``functools.partial``."""
    name, args, kwargs = _parse(spec)
    namespace = name.split(".", 1)[0]
    _load(namespace)
    if name not in _ENTRIES:
        known = sorted(set(_NAMESPACE_MODULES) | {n.split(".", 1)[0] for n in _ENTRIES})
        if namespace in known:
            pool = names(namespace)
            close = difflib.get_close_matches(name, pool, n=5, cutoff=0.5) or pool[:10]
        else:
            close = [f"{ns}.*" for ns in difflib.get_close_matches(namespace, known, n=3, cutoff=0.3) or known]
        raise RegistryError(f"unknown registry name {name!r} (from {spec!r}). Closest registered names: "
                            + ", ".join(close))
    fn = _ENTRIES[name]
    return functools.partial(fn, *args, **kwargs) if (args or kwargs) else fn
