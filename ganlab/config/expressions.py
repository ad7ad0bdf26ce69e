"""Derived keys: a tiny, safe arithmetic language over a trial's dotted keys (no Python ``eval``)."""

from __future__ import annotations

import ast
import math
import operator
from typing import Any


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "round": round, "int": int, "float": float,
              "sqrt": math.sqrt, "log": math.log, "exp": math.exp}


def _dotted_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted_name(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def expression_names(expression: str) -> list[str]:
    """The dotted keys an expression reads; raises ValueError if it is not a plain arithmetic expression."""
    tree = _parse_expression(expression)
    names: list[str] = []

    def walk(node: ast.AST) -> None:
        name = _dotted_name(node)
        if name is not None:
            if name not in _FUNCTIONS:
                names.append(name)
            return
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return names


def _parse_expression(expression: str) -> ast.AST:
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"'{expression}' is not an expression ({e.msg})") from None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Attribute, ast.Load, ast.Call,
               ast.Compare, ast.IfExp, ast.USub, ast.UAdd, ast.BoolOp, ast.And, ast.Or, ast.Not,
               *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(f"'{expression}' uses {type(node).__name__}; only arithmetic, comparisons, "
                             f"'x if c else y' and {', '.join(_FUNCTIONS)} are allowed")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            raise ValueError(f"'{expression}' calls something other than {', '.join(_FUNCTIONS)}")
    return tree


def evaluate_expression(expression: str, values: dict[str, Any]) -> Any:
    """Evaluate a derived key's expression over the trial's dotted keys (no Python eval)."""

    def ev(node: ast.AST) -> Any:
        name = _dotted_name(node)
        if name is not None:
            if name not in values:
                raise ValueError(f"'{expression}' reads '{name}', which is not a trial key")
            return values[name]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else (+v if isinstance(node.op, ast.UAdd) else not v)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            results = [ev(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))  # type: ignore[attr-defined]
        raise ValueError(f"cannot evaluate {type(node).__name__}")

    return ev(_parse_expression(expression))
