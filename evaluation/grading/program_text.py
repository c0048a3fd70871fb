"""What a program-of-thought output prints, read without running it.

MAmmoTH-style models sometimes answer with a short Python program ("x = 55\\ny = x - 5\\nprint(y)").
The seed grader runs such programs in a sandbox, as the paper's harness did
(`webinstruct.evaluation.grading.programs`); the robust grader only reads them, the way a person
would: straight-line code of assignments, arithmetic on numbers, `math` functions, `Fraction`,
`round`/`abs`/`min`/`max`/`sum`/`int`/`float`, and `print` calls at the top level. Anything else
(loops, definitions, other imports, names it does not know, an error such as a division by zero)
means the reading gives up and the output states no answer.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from fractions import Fraction

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {"round": round, "abs": abs, "min": min, "max": max, "sum": sum, "int": int, "float": float,
              "len": len, "range": lambda *a: range(*a) if all(abs(x) <= _MAX_STEPS for x in a) else _too_long()}


def _too_long():
    raise _Unreadable("range too long")
_MATH = {name: getattr(math, name) for name in (
    "sqrt", "exp", "log", "log10", "log2", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "floor", "ceil",
    "factorial", "comb", "perm", "gcd", "pi", "e", "radians", "degrees", "hypot", "pow", "fabs")}
_MODULES = {"math", "fractions"}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_MAX_STEPS = 100_000  # items a comprehension may produce before the reading gives up


class _Unreadable(Exception):
    pass


def looks_like_program(output: str) -> bool:
    return "print(" in (output or "")


def _code(output: str) -> str:
    fenced = _FENCE.findall(output)
    if fenced:
        return "\n".join(fenced)
    lines = output.strip().split("\n")
    # A lead-in line of prose ("Let's write a program.") before the code.
    while lines and not _parses(lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def _parses(line: str) -> bool:
    try:
        ast.parse(line)
        return True
    except SyntaxError:
        return False


def _value(node: ast.AST, names: dict):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _Unreadable(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, names), _value(node.right, names)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise _Unreadable("power")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand, names))
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(x, names) for x in node.elts]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math" \
            and "math" in names:
        if node.attr in _MATH:
            return _MATH[node.attr]
        raise _Unreadable(node.attr)
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _value(node.left, names)
        for op, right_node in zip(node.ops, node.comparators):
            right = _value(right_node, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        return list(_comprehension(node, node.generators, names))
    if isinstance(node, ast.Call) and not node.keywords:
        func = _value(node.func, {**names, **_FUNCTIONS}) if isinstance(node.func, ast.Name) else _value(node.func, names)
        if not callable(func):
            raise _Unreadable("call")
        return func(*[_value(a, names) for a in node.args])
    raise _Unreadable(type(node).__name__)


def _comprehension(node, generators, names: dict, steps: list | None = None):
    """The items of a comprehension ("max(Fraction(x + y, x - y) for x in range(-5, -2) ...)")."""
    steps = [0] if steps is None else steps
    first, rest = generators[0], generators[1:]
    if first.is_async or not isinstance(first.target, ast.Name):
        raise _Unreadable("comprehension")
    source = _value(first.iter, names)
    for x in (source if isinstance(source, (list, range)) else []):
        steps[0] += 1
        if steps[0] > _MAX_STEPS:
            raise _Unreadable("too long")
        inner = {**names, first.target.id: x}
        if all(_value(cond, inner) for cond in first.ifs):
            if rest:
                yield from _comprehension(node, rest, inner, steps)
            else:
                yield _value(node.elt, inner)


def printed_value(output: str) -> str | None:
    """The last line a straight-line program in `output` prints, or None when it cannot be read
    (or prints nothing)."""
    try:
        tree = ast.parse(_code(output))
    except (SyntaxError, ValueError):
        return None
    names: dict = {}
    printed: list[str] = []
    try:
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                modules = [stmt.module] if isinstance(stmt, ast.ImportFrom) else [a.name for a in stmt.names]
                if not all(m in _MODULES for m in modules):
                    return None
                if isinstance(stmt, ast.Import):
                    names["math"] = _MATH
                elif any(a.name == "Fraction" for a in stmt.names):
                    names["Fraction"] = Fraction
            elif isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
                value = _value(stmt.value, names)
                for target in stmt.targets:
                    names[target.id] = value
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
                    and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "print":
                printed.append(" ".join(str(_value(a, names)) for a in stmt.value.args))
            else:
                return None  # loops, definitions, ...: not read
    except (_Unreadable, ArithmeticError, ValueError, TypeError, OverflowError):
        return None
    return printed[-1] if printed else None
