"""Computed points: a profile point worked out from other points of the same device.

``compute: "(in_count - out_count) * 100 / capacity"`` is parsed once, when the
profile loads, with Python's ``ast`` and a whitelist: numbers, names of other
points of the profile, ``+ - * /``, unary minus and parentheses. Nothing else
(calls, attributes, subscripts, comparisons, ``**``) is accepted, and nothing
is ever passed to ``eval``. A computed point's quality is the worst quality of
its inputs: an input that is bad or fault leaves the computed point without a
value and with that quality; a division by zero makes it bad.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.model import Quality, Sample, Value

MAX_EXPRESSION_CHARS = 256
MAX_NODES = 64

# Worst last: a computed point takes the worst quality of its inputs.
_RANK = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.FAULT: 2, Quality.BAD: 3}

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}

Evaluate = Callable[[Mapping[str, float]], float]


class ExpressionError(ValueError):
    """An expression outside the whitelist, or naming an unknown point."""


def _compile(node: ast.expr, known: frozenset[str], inputs: list[str]) -> Evaluate:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"only numbers are allowed, not {node.value!r}")
        number = float(node.value)
        return lambda _v: number
    if isinstance(node, ast.Name):
        name = node.id
        if name not in known:
            raise ExpressionError(f"unknown point {name!r}")
        if name not in inputs:
            inputs.append(name)
        return lambda v: v[name]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _compile(node.operand, known, inputs)
        if isinstance(node.op, ast.USub):
            return lambda v: -inner(v)
        return inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left = _compile(node.left, known, inputs)
        right = _compile(node.right, known, inputs)
        return lambda v: op(left(v), right(v))
    what = type(node.op).__name__ if isinstance(node, ast.BinOp) else type(node).__name__
    raise ExpressionError(f"{what} is not allowed (only numbers, point names, + - * / and ( ))")


@dataclass(frozen=True)
class Expression:
    """A parsed ``compute`` expression: the points it reads and how to combine them."""

    text: str
    inputs: tuple[str, ...]
    _evaluate: Evaluate

    @classmethod
    def parse(cls, text: str, known: frozenset[str]) -> Expression:
        """Parse ``text``; names must be in ``known``. Raises ExpressionError."""
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"does not parse: {exc.msg}") from None
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise ExpressionError(f"more than {MAX_NODES} terms")
        inputs: list[str] = []
        evaluate = _compile(tree.body, known, inputs)
        if not inputs:
            raise ExpressionError("names no point (a constant is not a measurement)")
        return cls(text, tuple(inputs), evaluate)

    def evaluate(
        self, values: Mapping[str, Value], quality: Mapping[str, Quality]
    ) -> tuple[float | None, Quality]:
        """The value (None when there is none) and quality from one sample's points."""
        worst = Quality.GOOD
        numbers: dict[str, float] = {}
        for name in self.inputs:
            q = quality.get(name, Quality.GOOD)
            v = values.get(name)
            if v is None or isinstance(v, str):
                q = q if q is not Quality.GOOD else Quality.BAD
            else:
                numbers[name] = float(v)
            if _RANK[q] > _RANK[worst]:
                worst = q
        if worst in (Quality.BAD, Quality.FAULT):
            return None, worst
        try:
            result = self._evaluate(numbers)
        except (ZeroDivisionError, OverflowError):
            return None, Quality.BAD
        if not math.isfinite(result):
            return None, Quality.BAD
        return result, worst


def apply(sample: Sample, expressions: list[tuple[str, Expression]]) -> Sample:
    """Add the computed points to ``sample`` (in place; returns it)."""
    for name, expr in expressions:
        value, q = expr.evaluate(sample.values, sample.quality)
        if value is not None:
            sample.values[name] = value
        if q is not Quality.GOOD:
            sample.quality[name] = q
    return sample
