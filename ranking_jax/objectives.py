"""Training objectives composed in the config: a weighted sum of registered losses, each read through its view.

    config.loss = "losses.softmax_loss + 0.1 * losses.infonce_loss(temperature=0.05)"

    L = sum_k w_k * loss_k(view_k(model outputs, batch))

A term is a registry spec (``losses.name`` or ``losses.name(key=value, ...)``, arguments may be nested specs)
with an optional numeric weight on either side of ``*``; terms are joined by ``+``. Each loss declares where it is
registered the view it reads (:mod:`ranking_jax.views`), so a config never says which outputs or batch fields to
pass. Each term's value is returned beside the total, to be logged as ``loss/<name>``.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ranking_jax import registry, views

__all__ = ["Term", "Objective", "parse"]


@dataclasses.dataclass(frozen=True)
class Term:
    name: str
    spec: str
    weight: float
    loss: Callable[..., Any]
    view: views.View
    key: bool  # the loss takes a PRNG key=


def _fail(spec: str, node: ast.AST, message: str):
    column = getattr(node, "col_offset", 0) + len(spec) - len(spec.lstrip())
    raise ValueError(f"config.loss: {message} at character {column + 1}:\n  {spec}\n  {' ' * column}^")


def _number(node: ast.expr) -> float | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _terms(node: ast.expr, spec: str) -> list[tuple[float, ast.expr]]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _terms(node.left, spec) + _terms(node.right, spec)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _number(node.left), _number(node.right)
        if left is not None and right is None:
            return [(left, node.right)]
        if right is not None and left is None:
            return [(right, node.left)]
        _fail(spec, node, "a term is 'weight * losses.name(...)' with one numeric weight")
    if isinstance(node, ast.BinOp):
        _fail(spec, node, f"only '+' between terms and '*' by a number are allowed, not "
                          f"{type(node.op).__name__}")
    if _number(node) is not None:
        _fail(spec, node, "a number alone is not a loss")
    return [(1.0, node)]


def parse(spec: str) -> "Objective":
    """The :class:`Objective` of a ``config.loss`` string (errors point at the offending character)."""
    try:
        node = registry.parse(spec)
    except registry.RegistryError as e:
        raise ValueError(f"config.loss: {e}") from None
    terms, seen = [], {}
    for weight, term in _terms(node, spec):
        if not math.isfinite(weight):
            _fail(spec, term, f"weight {weight} is not finite")
        target = term.func if isinstance(term, ast.Call) else term
        head = ast.unparse(target)
        if not head.startswith("losses."):
            _fail(spec, term, f"{head!r} is not a loss; terms are registered losses 'losses.<name>'")
        try:
            fn, entry = registry.resolve(term, source=spec)
        except registry.RegistryError as e:
            _fail(spec, term, str(e))
        if "view" not in entry.meta:
            _fail(spec, term, f"{entry.name} is not a loss (it declares no view)")
        if entry.factory and not isinstance(term, ast.Call):
            _fail(spec, term, f"{entry.name} transforms a loss or metric into a loss: call it, e.g. "
                              f"{entry.meta.get('example', entry.name + '(...)')}")
        short = head.split(".", 1)[1]
        seen[short] = seen.get(short, 0) + 1
        name = short if seen[short] == 1 else f"{short}_{seen[short]}"
        terms.append(Term(name, ast.unparse(term), weight, fn, views.view_of(entry.meta["view"], entry.name),
                          bool(entry.meta.get("key"))))
    return Objective(tuple(terms), spec)


@dataclasses.dataclass(frozen=True)
class Objective:
    """``objective(outputs, batch, key) -> (total, {term name: value})``."""
    terms: tuple[Term, ...]
    spec: str = ""

    @classmethod
    def of(cls, loss: Callable[..., Any], view: str = "list", *, weight: float = 1.0) -> "Objective":
        """One loss function (any callable, registered or not) read through ``view``."""
        name = getattr(loss, "__name__", "loss")
        return cls((Term(name, name, weight, loss, views.view_of(view, name), False),), name)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs the terms read, in a fixed order."""
        return tuple(dict.fromkeys(k for t in self.terms for k in t.view.outputs))

    @property
    def batch_keys(self) -> frozenset[str]:
        return frozenset(k for t in self.terms for k in t.view.batch)

    @property
    def needs_reference(self) -> bool:
        return any(t.view.reference for t in self.terms)

    def __call__(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
                 key: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        values, total = {}, jnp.zeros((), jnp.float32)
        for i, t in enumerate(self.terms):
            if t.key and key is None:
                raise ValueError(f"{t.spec} needs a PRNG key; call the objective with key=")
            extra = {"key": jax.random.fold_in(key, i)} if t.key else {}
            value = jnp.asarray(t.view.call(t.loss, outputs, batch, **extra), jnp.float32)
            values[t.name] = value
            total = total + t.weight * value
        return total, values

    def check_model(self, family: str, available: Sequence[str]) -> None:
        """Every term's view must be one the model family gives; else a message naming what would work."""
        for t in self.terms:
            missing = views.missing_outputs(t.view, available)
            if not missing:
                continue
            givers = [n.split(".", 1)[1] for n in registry.names("models")
                      if set(t.view.outputs) <= set(registry.entry(n).meta.get("outputs", ()))]
            usable = sorted(v.name for v in views.VIEWS.values() if set(v.outputs) <= set(available))
            raise ValueError(
                f"config.loss: {t.spec} reads the {t.view.name!r} view ({', '.join(missing)}), which model family "
                f"{family!r} cannot produce (it gives {', '.join(available)}). Use a model family that does "
                f"({', '.join(givers) or 'none registered'}) or a loss whose view {family!r} gives "
                f"({', '.join(usable)}; e.g. {_example(usable)}).")

    def check_batch(self, batch: Mapping[str, Any], task: str = "the task") -> None:
        """Every batch field the views read must be in the task's batches (``reference_scores`` may come from the
        train step)."""
        for t in self.terms:
            missing = [k for k in t.view.batch if k not in batch and k != "reference_scores"]
            if missing:
                hints = "; ".join(f"{k}: {views.BATCH_HINTS.get(k, 'not given by any task')}" for k in missing)
                raise ValueError(f"config.loss: {t.spec} (view {t.view.name!r}) reads batch field(s) {missing} that "
                                 f"{task}'s batches lack ({hints})")


def _example(view_names: Sequence[str]) -> str:
    for name in registry.names("losses"):
        e = registry.entry(name)
        if e.meta.get("view") in view_names and not e.factory:
            return name
    return "none"
