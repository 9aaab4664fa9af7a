"""The safe formula language: tokenizer, Pratt parser, unit checker and closure compiler.

Administrator text is never handed to ``eval``/``exec``/``compile``. It is tokenized and parsed
into a small AST, type- and unit-checked against the document's parameters, inputs and earlier
steps, and compiled into nested Python closures over Decimal operations bound to one private
Decimal context. Constant sub-expressions (parameters, literals, conversion factors) are folded
at load time so the hot path only does the arithmetic that depends on the action's inputs.

Grammar (lowest to highest precedence)::

    expr    := 'if' expr 'then' expr 'else' expr | or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | cmp
    cmp     := sum [('<' | '<=' | '>' | '>=' | '==' | '!=') sum]
    sum     := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := '-' unary | atom
    atom    := NUMBER ['[' unit ']'] | STRING | 'true' | 'false' | NAME
             | NAME '(' args ')' | '(' expr ')'

Functions: min, max, clamp(x, lo, hi), floor, ceil, round (half-even, to an integer of the same
unit), abs, lookup(table, key), convert(x, unit), has(optional_input).

Units: ``+ - min max clamp if`` and comparisons need identical units; ``*`` and ``/`` combine
them; a bare numeric literal is dimensionless except ``0``, which fits any unit. Write ``5[km/h]``
for a literal with a unit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction
from typing import Any

from points_rules._units import (
    DIMENSIONLESS,
    Unit,
    UnitError,
    conversion_factor,
    fraction_to_decimal,
    parse_unit,
)

#: The one Decimal context every formula runs in, independent of the caller's thread context.
DECIMAL_CONTEXT = Context(
    prec=34,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

Env = dict[str, Any]
Fn = Callable[[Env], Any]


class FormulaError(ValueError):
    """A parse, name, type or unit error at ``offset`` in the formula text."""

    def __init__(self, message: str, offset: int, unknown_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.unknown_name = unknown_name


# ----------------------------------------------------------------------------- tokens

_KEYWORDS = frozenset({"and", "or", "not", "if", "then", "else", "true", "false"})
_TWO_CHAR = frozenset({"<=", ">=", "==", "!="})
_ONE_CHAR = frozenset("+-*/(),<>")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUMBER, NAME, STRING, UNIT, OP, KW, END
    text: str
    pos: int


def tokenize(source: str) -> list[Token]:
    """Split formula text into tokens; raise FormulaError at the first unreadable character."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "#":  # comment to end of line
            while i < n and source[i] != "\n":
                i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and source[i + 1].isdigit()):
            start = i
            while i < n and source[i].isdigit():
                i += 1
            if i < n and source[i] == ".":
                i += 1
                while i < n and source[i].isdigit():
                    i += 1
            tokens.append(Token("NUMBER", source[start:i], start))
        elif ch.isalpha() or ch == "_":
            start = i
            while i < n and (source[i].isalnum() or source[i] == "_"):
                i += 1
            word = source[start:i]
            tokens.append(Token("KW" if word in _KEYWORDS else "NAME", word, start))
        elif ch in "'\"":
            end = source.find(ch, i + 1)
            if end < 0:
                raise FormulaError("unterminated string", i)
            tokens.append(Token("STRING", source[i + 1 : end], i))
            i = end + 1
        elif ch == "[":
            end = source.find("]", i + 1)
            if end < 0:
                raise FormulaError("unterminated unit annotation '[' ", i)
            tokens.append(Token("UNIT", source[i + 1 : end], i))
            i = end + 1
        elif source[i : i + 2] in _TWO_CHAR:
            tokens.append(Token("OP", source[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR:
            tokens.append(Token("OP", ch, i))
            i += 1
        else:
            raise FormulaError(f"unexpected character {ch!r}", i)
    tokens.append(Token("END", "", n))
    return tokens


# ----------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class NumLit(Node):
    value: Decimal
    unit: Unit | None  # None: bare literal


@dataclass(frozen=True, slots=True)
class StrLit(Node):
    value: str


@dataclass(frozen=True, slots=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class IfElse(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    unit_text: str | None = None  # convert()'s target unit, as written
    unit_pos: int = 0


_BINARY_POWER = {
    "or": 1,
    "and": 2,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "==": 4,
    "!=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
}
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> Token:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            wanted = repr(text) if text else kind.lower()
            found = repr(tok.text) if tok.kind != "END" else "end of formula"
            raise FormulaError(f"expected {wanted}, found {found}", tok.pos)
        return self.advance()

    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok.kind != "END":
            raise FormulaError(f"unexpected {tok.text!r} after a complete expression", tok.pos)
        return node

    def _binary_op(self, tok: Token) -> str | None:
        if (tok.kind == "OP" and tok.text in _BINARY_POWER) or (
            tok.kind == "KW" and tok.text in ("and", "or")
        ):
            return tok.text
        return None

    def expression(self, min_power: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            op = self._binary_op(tok)
            if op is None:
                return left
            power = _BINARY_POWER[op]
            if power <= min_power:
                return left
            self.advance()
            right = self.expression(power)
            if op in _COMPARISONS:
                nxt = self._binary_op(self.peek())
                if nxt in _COMPARISONS:
                    raise FormulaError(
                        "comparisons cannot be chained; join them with 'and'", self.peek().pos
                    )
            left = Binary(tok.pos, op, left, right)

    def prefix(self) -> Node:
        tok = self.advance()
        if tok.kind == "NUMBER":
            value = Decimal(tok.text)
            if self.peek().kind == "UNIT":
                unit_tok = self.advance()
                try:
                    unit = parse_unit(unit_tok.text)
                except UnitError as exc:
                    raise FormulaError(str(exc), unit_tok.pos + 1) from None
                return NumLit(tok.pos, value, unit)
            return NumLit(tok.pos, value, None)
        if tok.kind == "STRING":
            return StrLit(tok.pos, tok.text)
        if tok.kind == "KW":
            if tok.text in ("true", "false"):
                return BoolLit(tok.pos, tok.text == "true")
            if tok.text == "not":
                return Unary(tok.pos, "not", self.expression(3))
            if tok.text == "if":
                cond = self.expression(0)
                self.expect("KW", "then")
                then = self.expression(0)
                self.expect("KW", "else")
                other = self.expression(0)
                return IfElse(tok.pos, cond, then, other)
            raise FormulaError(f"unexpected keyword {tok.text!r}", tok.pos)
        if tok.kind == "OP" and tok.text == "-":
            return Unary(tok.pos, "-", self.expression(6))
        if tok.kind == "OP" and tok.text == "(":
            inner = self.expression(0)
            self.expect("OP", ")")
            return inner
        if tok.kind == "NAME":
            if self.peek().kind == "OP" and self.peek().text == "(":
                return self.call(tok)
            return Name(tok.pos, tok.text)
        if tok.kind == "END":
            raise FormulaError("unexpected end of formula", tok.pos)
        raise FormulaError(f"unexpected {tok.text!r}", tok.pos)

    def call(self, name: Token) -> Node:
        self.expect("OP", "(")
        args: list[Node] = []
        if name.text == "convert":
            args.append(self.expression(0))
            self.expect("OP", ",")
            start = self.peek()
            depth = 0
            while True:
                tok = self.peek()
                if tok.kind == "END":
                    raise FormulaError("expected ')' to close convert(", tok.pos)
                if tok.kind == "OP" and tok.text == "(":
                    depth += 1
                elif tok.kind == "OP" and tok.text == ")":
                    if depth == 0:
                        break
                    depth -= 1
                self.advance()
            unit_text = self.source[start.pos : self.peek().pos].strip()
            self.expect("OP", ")")
            return Call(name.pos, "convert", tuple(args), unit_text or None, start.pos)
        if not (self.peek().kind == "OP" and self.peek().text == ")"):
            args.append(self.expression(0))
            while self.peek().kind == "OP" and self.peek().text == ",":
                self.advance()
                args.append(self.expression(0))
        self.expect("OP", ")")
        return Call(name.pos, name.text, tuple(args))


def parse(source: str) -> Node:
    """Parse formula text into an AST; raise FormulaError with the offset of the problem."""
    return _Parser(source).parse()


# ----------------------------------------------------------------------------- types and scope


@dataclass(frozen=True, slots=True)
class NumType:
    unit: Unit
    zero_literal: bool = False  # the literal 0 takes on whatever unit it meets


@dataclass(frozen=True, slots=True)
class BoolType:
    pass


@dataclass(frozen=True, slots=True)
class CategoryType:
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class StrType:
    value: str


@dataclass(frozen=True, slots=True)
class TableType:
    unit: Unit


Type = NumType | BoolType | CategoryType | StrType | TableType
BOOL = BoolType()


@dataclass(frozen=True, slots=True)
class ScalarSymbol:
    value: Decimal
    unit: Unit


@dataclass(frozen=True, slots=True)
class TableSymbol:
    entries: Mapping[str, Decimal]
    unit: Unit
    default: Decimal | None


@dataclass(frozen=True, slots=True)
class InputSymbol:
    kind: str  # "number", "category", "boolean"
    unit: Unit
    values: frozenset[str]
    required: bool


@dataclass(frozen=True, slots=True)
class StepSymbol:
    type: Type


Symbol = ScalarSymbol | TableSymbol | InputSymbol | StepSymbol


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression: its static type, a closure over the environment, and whether it is
    a load-time constant (``const`` then holds the value)."""

    type: Type
    fn: Fn
    is_const: bool = False
    const: Any = None
    references: frozenset[str] = field(default_factory=frozenset)


def _type_name(t: Type) -> str:
    if isinstance(t, NumType):
        return "number" if t.zero_literal else f"quantity in {t.unit}"
    if isinstance(t, BoolType):
        return "true/false"
    if isinstance(t, CategoryType):
        return "category"
    if isinstance(t, StrType):
        return "text"
    return "table"


# ----------------------------------------------------------------------------- compiler

_C = DECIMAL_CONTEXT


def _const(t: Type, value: Any, refs: frozenset[str] = frozenset()) -> Compiled:
    return Compiled(t, lambda env: value, True, value, refs)


class _Compiler:
    def __init__(self, symbols: Mapping[str, Symbol]) -> None:
        self.symbols = symbols

    # -- helpers
    def num(self, c: Compiled, node: Node, what: str) -> NumType:
        if not isinstance(c.type, NumType):
            raise FormulaError(f"{what} needs a number, got {_type_name(c.type)}", node.pos)
        return c.type

    def unify(self, a: NumType, b: NumType, pos: int, what: str) -> NumType:
        if a.zero_literal:
            return b
        if b.zero_literal or a.unit == b.unit:
            return a
        raise FormulaError(f"unit mismatch in {what}: {a.unit} vs {b.unit}", pos)

    # -- dispatch
    def compile(self, node: Node) -> Compiled:
        if isinstance(node, NumLit):
            if node.unit is None:
                return _const(NumType(DIMENSIONLESS, node.value == 0), node.value)
            return _const(NumType(node.unit), node.value)
        if isinstance(node, StrLit):
            return _const(StrType(node.value), node.value)
        if isinstance(node, BoolLit):
            return _const(BOOL, node.value)
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, IfElse):
            return self.if_else(node)
        if isinstance(node, Call):
            return self.call(node)
        raise FormulaError("unsupported expression", node.pos)  # pragma: no cover

    def name(self, node: Name) -> Compiled:
        sym = self.symbols.get(node.name)
        refs = frozenset({node.name})
        if sym is None:
            raise FormulaError(
                f"unknown name {node.name!r} (not a parameter, input or earlier step)",
                node.pos,
                node.name,
            )
        if isinstance(sym, ScalarSymbol):
            return _const(NumType(sym.unit), sym.value, refs)
        if isinstance(sym, TableSymbol):
            return Compiled(TableType(sym.unit), _no_runtime, True, sym, refs)
        key = node.name
        t: Type
        if isinstance(sym, InputSymbol):
            if sym.kind == "number":
                t = NumType(sym.unit)
            elif sym.kind == "category":
                t = CategoryType(sym.values)
            else:
                t = BOOL
        else:
            t = sym.type
        return Compiled(t, lambda env: env[key], references=refs)

    def unary(self, node: Unary) -> Compiled:
        operand = self.compile(node.operand)
        if node.op == "not":
            if not isinstance(operand.type, BoolType):
                raise FormulaError(
                    f"'not' needs true/false, got {_type_name(operand.type)}", node.pos
                )
            f = operand.fn
            return self.fold(BOOL, lambda env: not f(env), [operand])
        t = self.num(operand, node.operand, "'-'")
        f = operand.fn
        minus = _C.minus
        return self.fold(t, lambda env: minus(f(env)), [operand])

    def fold(self, t: Type, fn: Fn, parts: list[Compiled]) -> Compiled:
        refs = frozenset().union(*(p.references for p in parts))
        if all(p.is_const for p in parts):
            return _const(t, fn({}), refs)
        return Compiled(t, fn, references=refs)

    def binary(self, node: Binary) -> Compiled:
        left, right = self.compile(node.left), self.compile(node.right)
        op = node.op
        if op in ("and", "or"):
            for c, n in ((left, node.left), (right, node.right)):
                if not isinstance(c.type, BoolType):
                    raise FormulaError(f"'{op}' needs true/false, got {_type_name(c.type)}", n.pos)
            fa, fb = left.fn, right.fn
            if op == "and":
                return self.fold(BOOL, lambda env: fa(env) and fb(env), [left, right])
            return self.fold(BOOL, lambda env: fa(env) or fb(env), [left, right])
        if op in ("==", "!=") and not isinstance(left.type, NumType):
            return self.equality(node, left, right)
        a = self.num(left, node.left, f"'{op}'")
        b = self.num(right, node.right, f"'{op}'")
        t: Type
        func: Callable[[Any, Any], Any]
        if op in ("+", "-"):
            t = self.unify(a, b, node.pos, f"'{op}'")
            func = _C.add if op == "+" else _C.subtract
        elif op == "*":
            t = NumType(a.unit * b.unit)
            func = _C.multiply
        elif op == "/":
            t = NumType(a.unit / b.unit)
            func = _C.divide
            if right.is_const and right.const == 0:
                raise FormulaError("division by zero", node.pos)
        else:
            self.unify(a, b, node.pos, f"comparison '{op}'")
            t = BOOL
            func = _COMPARE[op]
        return self.fold(t, _binary_fn(func, left, right), [left, right])

    def equality(self, node: Binary, left: Compiled, right: Compiled) -> Compiled:
        lt, rt = left.type, right.type
        if isinstance(lt, StrType) and isinstance(rt, CategoryType):
            lt, rt = rt, lt
        if isinstance(lt, CategoryType) and isinstance(rt, StrType):
            if rt.value not in lt.values:
                allowed = ", ".join(sorted(lt.values))
                raise FormulaError(
                    f"{rt.value!r} is not one of the categories ({allowed})", node.right.pos
                )
        elif not (
            (isinstance(lt, BoolType) and isinstance(rt, BoolType))
            or (isinstance(lt, CategoryType) and isinstance(rt, CategoryType))
        ):
            raise FormulaError(
                f"cannot compare {_type_name(left.type)} with {_type_name(right.type)}", node.pos
            )
        return self.fold(BOOL, _binary_fn(_COMPARE[node.op], left, right), [left, right])

    def if_else(self, node: IfElse) -> Compiled:
        cond, a, b = self.compile(node.cond), self.compile(node.then), self.compile(node.other)
        if not isinstance(cond.type, BoolType):
            raise FormulaError(
                f"'if' needs a true/false condition, got {_type_name(cond.type)}", node.cond.pos
            )
        t: Type
        if isinstance(a.type, NumType) and isinstance(b.type, NumType):
            t = self.unify(a.type, b.type, node.other.pos, "the branches of 'if'")
        elif type(a.type) is type(b.type) and not isinstance(a.type, TableType):
            t = a.type
        else:
            raise FormulaError(
                f"the branches of 'if' differ: {_type_name(a.type)} vs {_type_name(b.type)}",
                node.other.pos,
            )
        if cond.is_const:
            chosen = a if cond.const else b
            return Compiled(
                t,
                chosen.fn,
                chosen.is_const,
                chosen.const,
                cond.references | a.references | b.references,
            )
        fc, fa, fb = cond.fn, a.fn, b.fn
        return Compiled(
            t,
            lambda env: fa(env) if fc(env) else fb(env),
            references=cond.references | a.references | b.references,
        )

    def call(self, node: Call) -> Compiled:
        fname = node.func
        if fname == "convert":
            return self.convert(node)
        if fname == "has":
            return self.has(node)
        args = [self.compile(a) for a in node.args]
        if fname == "lookup":
            return self.lookup(node, args)
        arity = {"clamp": 3, "floor": 1, "ceil": 1, "round": 1, "abs": 1}
        if fname in ("min", "max"):
            if len(args) < 2:
                raise FormulaError(f"{fname}() needs at least two arguments", node.pos)
        elif fname in arity:
            if len(args) != arity[fname]:
                raise FormulaError(
                    f"{fname}() takes {arity[fname]} argument(s), got {len(args)}", node.pos
                )
        else:
            known = "min, max, clamp, floor, ceil, round, abs, lookup, convert, has"
            raise FormulaError(f"unknown function {fname!r} (known: {known})", node.pos)
        types = [self.num(c, n, f"{fname}()") for c, n in zip(args, node.args, strict=True)]
        t = types[0]
        for other, n in zip(types[1:], node.args[1:], strict=True):
            t = self.unify(t, other, n.pos, f"{fname}()")
        fns = [c.fn for c in args]
        fn: Fn
        if fname in ("floor", "ceil", "round"):
            mode = {"floor": ROUND_FLOOR, "ceil": ROUND_CEILING, "round": ROUND_HALF_EVEN}[fname]
            f0 = fns[0]
            fn = lambda env: f0(env).to_integral_value(rounding=mode)  # noqa: E731
        elif fname == "abs":
            f0 = fns[0]
            fn = lambda env: abs(f0(env))  # noqa: E731
        elif fname == "clamp":
            fx, flo, fhi = fns
            fn = lambda env: min(max(fx(env), flo(env)), fhi(env))  # noqa: E731
        elif fname == "min":
            fn = lambda env: min([f(env) for f in fns])  # noqa: E731
        else:
            fn = lambda env: max([f(env) for f in fns])  # noqa: E731
        return self.fold(t, fn, args)

    def convert(self, node: Call) -> Compiled:
        arg = self.compile(node.args[0])
        src = self.num(arg, node.args[0], "convert()")
        if node.unit_text is None:
            raise FormulaError("convert() needs a target unit, e.g. convert(x, km)", node.unit_pos)
        try:
            target = parse_unit(node.unit_text)
        except UnitError as exc:
            raise FormulaError(str(exc), node.unit_pos) from None
        if src.zero_literal:
            return _const(NumType(target), Decimal(0))
        try:
            factor = conversion_factor(src.unit, target)
        except UnitError as exc:
            raise FormulaError(str(exc), node.pos) from None
        return self.fold(NumType(target), _scale_fn(arg.fn, factor), [arg])

    def has(self, node: Call) -> Compiled:
        if len(node.args) != 1 or not isinstance(node.args[0], Name):
            raise FormulaError("has() takes the name of one optional input", node.pos)
        name = node.args[0].name
        sym = self.symbols.get(name)
        if not isinstance(sym, InputSymbol):
            raise FormulaError(f"has() needs an input, {name!r} is not one", node.args[0].pos)
        if sym.required:
            return _const(BOOL, True, frozenset({name}))
        return Compiled(BOOL, lambda env: name in env, references=frozenset({name}))

    def lookup(self, node: Call, args: list[Compiled]) -> Compiled:
        if len(args) != 2:
            raise FormulaError("lookup() takes a table and a key", node.pos)
        table_c, key_c = args
        if not isinstance(table_c.type, TableType):
            raise FormulaError(
                "the first argument of lookup() must be a table parameter", node.args[0].pos
            )
        table: TableSymbol = table_c.const
        refs = table_c.references | key_c.references
        kt = key_c.type
        if isinstance(kt, StrType):
            value = table.entries.get(kt.value, table.default)
            if value is None:
                raise FormulaError(
                    f"table has no entry {kt.value!r} and no default", node.args[1].pos
                )
            return _const(NumType(table.unit), value, refs)
        if not isinstance(kt, CategoryType):
            raise FormulaError(
                "the key of lookup() must be a category input or a text", node.args[1].pos
            )
        missing = sorted(kt.values - set(table.entries))
        if missing and table.default is None:
            raise FormulaError(
                f"table has no entry for {', '.join(map(repr, missing))} and no default",
                node.args[1].pos,
            )
        entries = {k: table.entries.get(k, table.default) for k in kt.values}
        fk = key_c.fn
        return Compiled(NumType(table.unit), lambda env: entries[fk(env)], references=refs)


def _no_runtime(env: Env) -> Any:  # pragma: no cover - tables are only used through lookup()
    raise RuntimeError("a table has no value on its own")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _binary_fn(func: Callable[[Any, Any], Any], left: Compiled, right: Compiled) -> Fn:
    fa, fb = left.fn, right.fn
    if right.is_const and not left.is_const:
        cb = right.const
        return lambda env: func(fa(env), cb)
    if left.is_const and not right.is_const:
        ca = left.const
        return lambda env: func(ca, fb(env))
    return lambda env: func(fa(env), fb(env))


def _scale_fn(f: Fn, factor: Fraction) -> Fn:
    if factor == 1:
        return f
    exact = fraction_to_decimal(factor)
    mul, div = _C.multiply, _C.divide
    if exact is not None:
        return lambda env: mul(f(env), exact)
    inverse = fraction_to_decimal(1 / factor)
    if inverse is not None:
        return lambda env: div(f(env), inverse)
    num, den = Decimal(factor.numerator), Decimal(factor.denominator)
    return lambda env: div(mul(f(env), num), den)


def compile_expression(source: str, symbols: Mapping[str, Symbol]) -> Compiled:
    """Parse and compile formula text against the given symbols (parameters, inputs, steps)."""
    return _Compiler(symbols).compile(parse(source))
