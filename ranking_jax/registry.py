"""One registry: config strings -> components (losses, metrics, models, optimizers, evaluators, tasks, ...).

Components register themselves where they are defined, with what a caller must know about them::

    @registry.register("losses.softmax_loss", view="list")
    def softmax_loss(scores, labels, *, where=None, ...): ...

A spec is ``"namespace.name"`` or a call ``"namespace.name(arg, key=value)"``. Arguments are Python literals or
other specs, so components compose: ``"losses.pairwise_logistic_loss(lambdaweight_fn=lambdaweights.dcg_lambdaweight)"``
binds the lambdaweight, ``"losses.approx_t12n(metrics.ndcg_metric, temperature=0.1)"`` calls the factory
``approx_t12n`` (registered with ``factory=True``), whose result is the component. :func:`lookup` returns the
callable (call arguments bound with ``functools.partial``), :func:`resolve` the callable and its entry.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
from typing import Any, Callable, Mapping

# Packages whose modules hold registered components; imported on the first lookup.
PACKAGES = ("ranking_jax.losses", "ranking_jax.metrics", "ranking_jax.models", "ranking_jax.optim",
            "ranking_jax.evaluators", "ranking_jax.tasks")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered component: ``fn`` and its metadata (``factory``: the spec's call arguments are passed to
    ``fn`` and the result is the component; anything else, e.g. a loss's ``view``, is in ``meta``)."""
    name: str
    fn: Callable[..., Any]
    factory: bool = False
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_ENTRIES: dict[str, Entry] = {}
_loaded = False


class RegistryError(KeyError):
    """An unknown name or a malformed spec; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def register(name: str, fn: Callable[..., Any] | None = None, *, factory: bool = False, **meta: Any):
    """Registers ``fn`` under ``"namespace.name"`` with ``meta``; usable as a decorator."""
    if name.count(".") != 1 or not all(name.split(".")):
        raise ValueError(f"registry names are 'namespace.name', got {name!r}")

    def add(f):
        old = _ENTRIES.get(name)
        if old is not None and old.fn is not f:
            raise ValueError(f"{name!r} is already registered to {old.fn!r}")
        _ENTRIES[name] = Entry(name, f, factory, dict(meta))
        return f

    return add(fn) if fn is not None else add


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for package in PACKAGES:
            importlib.import_module(package)


def names(namespace: str | None = None) -> list[str]:
    """All registered names, or those of one namespace."""
    _load()
    return sorted(n for n in _ENTRIES if namespace is None or n.startswith(namespace + "."))


def entry(name: str) -> Entry:
    """The entry of a registered ``"namespace.name"`` (no call arguments)."""
    _load()
    if name not in _ENTRIES:
        namespace = name.split(".", 1)[0]
        spaces = sorted({n.split(".", 1)[0] for n in _ENTRIES})
        if namespace in spaces:
            pool = names(namespace)
            close = difflib.get_close_matches(name, pool, n=5, cutoff=0.5) or pool[:10]
        else:
            close = [f"{ns}.*" for ns in difflib.get_close_matches(namespace, spaces, n=3, cutoff=0.3) or spaces]
        raise RegistryError(f"unknown registry name {name!r}. Closest registered names: " + ", ".join(close))
    return _ENTRIES[name]


def _value(node: ast.expr, spec: str) -> Any:
    """A call argument: a Python literal or a nested spec (resolved to its component)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        return _build(node, spec)[0]
    raise RegistryError(f"argument {ast.unparse(node)!r} of {spec!r} must be a Python literal (number, string, tuple, "
                        "list, dict, None, True/False) or a registry spec such as 'metrics.ndcg_metric'")


def _build(node: ast.expr, spec: str) -> tuple[Callable[..., Any], Entry]:
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
        raise RegistryError(f"registry spec {spec!r} must be 'namespace.name' or 'namespace.name(...)', e.g. "
                            "'losses.softmax_loss'")
    e = entry(ast.unparse(target))
    if call is None:
        return e.fn, e
    if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        raise RegistryError(f"*args and **kwargs are not allowed in registry spec {spec!r}")
    args = tuple(_value(a, spec) for a in call.args)
    kwargs = {k.arg: _value(k.value, spec) for k in call.keywords}
    if e.factory:
        try:
            return e.fn(*args, **kwargs), e
        except (TypeError, ValueError) as err:
            raise RegistryError(f"{ast.unparse(node)!r} (in {spec!r}): {err}") from None
    return functools.partial(e.fn, *args, **kwargs), e


def parse(spec: str) -> ast.expr:
    """The expression of ``spec``; a syntax error points at the character."""
    try:
        return ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as e:  # offset 0: the expression ended too early
        column = (e.offset - 1 + len(spec) - len(spec.lstrip())) if e.offset else len(spec.rstrip())
        raise RegistryError(f"cannot parse {spec!r}: {e.msg} at character {column + 1}:\n  {spec}\n  "
                            f"{' ' * column}^") from None


def resolve(spec: str | ast.expr, *, source: str | None = None) -> tuple[Callable[..., Any], Entry]:
    """``(component, entry)`` of ``spec`` (a string, or a node of :func:`parse` with its ``source`` string)."""
    node = parse(spec) if isinstance(spec, str) else spec
    return _build(node, source or (spec if isinstance(spec, str) else ast.unparse(spec)))


def lookup(spec: str) -> Callable[..., Any]:
    """Resolves ``spec`` to a callable, with any call arguments bound by ``functools.partial``."""
    return resolve(spec)[0]
