"""Typed configuration: dataclasses, filled from a YAML recipe, then from command-line overrides.

Each stage declares one dataclass whose fields carry their help text in `metadata["help"]`; the
CLI turns the fields into `--flags`, a recipe (`infra/recipes/*.yaml`) holds one section per stage,
and the precedence is: dataclass default < recipe section < command line.

Values are checked against the field annotations (pydantic validates the plain dataclasses, with
unknown keys forbidden and floats finite) when the recipe is read and again after the flags are
merged, so a wrong type, a misspelt key or section, or an out-of-range number stops the command
with one line naming where the value came from (recipe file and `section.key`, or the flag), what
was expected and what was given, before any job, server or model starts. Bounds are written into
the annotations (`PositiveInt`, `Share`, `typing.Literal[...]`), so the same declaration drives the
check, the error text and the flag's metavar.

Every flag's argparse `dest` is `section.field` (`augment.temperature`, `llm.temperature`), so two
groups on one subcommand can never write each other's values.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types as at
import pydantic
import yaml
from typing_extensions import is_typeddict

from webinstruct.core.resources import bundled

# Constrained field types; pydantic reads the annotated_types markers, `describe` prints them.
PositiveInt = Annotated[int, at.Ge(1)]
NonNegativeInt = Annotated[int, at.Ge(0)]
PositiveFloat = Annotated[float, at.Gt(0)]
NonNegativeFloat = Annotated[float, at.Ge(0)]
Share = Annotated[float, at.Ge(0), at.Le(1)]  # a fraction in [0, 1]

_VALIDATION = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)
# For the typed dicts inside a section (`refine.refiners`, `train.data`): the same rules.
strict = pydantic.with_config(_VALIDATION)


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line meant for the user as it is."""


class ConflictingSettings(ConfigError):
    """Settings each valid alone that do not go together (a `__post_init__` check): decided only
    once the flags are merged, since a flag may settle the conflict."""


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text for the CLI.

    Extra keywords go to the field metadata: `cli=False` keeps a field out of the flags (recipe
    only), `passthrough=True` makes its flag take foreign `--key=value` tokens (see
    `ConfigParser`), `expected="..."` replaces the generated type description in errors."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---------------------------------------------------------------------------------------------
# Describing and validating types


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
          bool: ("a boolean (true or false)", "booleans"), dict: ("a mapping", "mappings"),
          list: ("a list", "lists")}


def describe(tp: Any, plural: bool = False) -> str:
    """`Annotated[int, Ge(1)]` -> "an integer >= 1", `list[str]` -> "a list of strings", ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        bounds = []
        for meta in args[1:]:
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                value = getattr(meta, attr, None)
                if value is not None:
                    bounds.append(f"{op} {value}")
        text = describe(args[0], plural)
        return f"{text} {' and '.join(bounds)}" if bounds else text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a, plural) for a in args if a is not type(None))
    if origin is list or tp is list:
        return "lists" if plural else ("a list" if not args else f"a list of {describe(args[0], plural=True)}")
    if origin is dict or tp is dict:
        return "mappings" if plural else "a mapping"
    if is_typeddict(tp):
        keys = ", ".join(tp.__annotations__)
        return f"mappings with keys {keys}" if plural else f"a mapping with keys {keys}"
    if tp in _NOUNS:
        return _NOUNS[tp][1 if plural else 0]
    return getattr(tp, "__name__", str(tp))


def _strip(tp: Any) -> Any:
    """The type under `Annotated[...]` and `Optional[...]`."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(inner) != 1:
                return tp
            tp = inner[0]
        else:
            return tp


@functools.lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.lru_cache(maxsize=None)
def _adapter(cls: type) -> pydantic.TypeAdapter:
    if "__pydantic_config__" not in cls.__dict__:
        cls.__pydantic_config__ = _VALIDATION  # type: ignore[attr-defined]
    return pydantic.TypeAdapter(cls)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting{hint}; known: {', '.join(known)}"


def validate(cls: type, values: dict[str, Any], *, section: str = "", source: str = "",
             flags: dict[str, str] | None = None):
    """`cls(**values)`, checked against its annotations.

    Errors are a `ConfigError` of one line: `SOURCE: SECTION.KEY: expected TYPE, got VALUE` for a
    value from a recipe (`source` is the file), `--flag (SECTION.KEY): expected ..., got VALUE` for
    one in `flags` (field -> the flag that set it)."""
    flags = flags or {}
    section = section or cls.__name__
    known = [f.name for f in dataclasses.fields(cls)]

    def where(key: str) -> str:
        top = key.split(".")[0].split("[")[0]
        if top in flags:
            return f"{flags[top]} ({section}.{key})"
        return f"{source}: {section}.{key}" if source else f"{section}.{key}"

    for key in values:
        if key not in known:
            raise ConfigError(f"{where(key)}: {_unknown(key, known)}")
    try:
        return _adapter(cls).validate_python(dict(values))
    except pydantic.ValidationError as err:
        raise _one_line(cls, err, values, where, section, source) from err


def _one_line(cls: type, err: pydantic.ValidationError, values: dict[str, Any], where, section: str,
              source: str) -> ConfigError:
    e = err.errors(include_url=False)[0]
    loc = tuple(e["loc"])
    if not loc:  # a check in __post_init__ across several fields
        cause = (e.get("ctx") or {}).get("error")
        text = str(cause) if cause is not None else e["msg"]
        return ConflictingSettings(f"{source}: {section}: {text}" if source else f"{section}: {text}")
    key = loc[0]
    field = next((f for f in dataclasses.fields(cls) if f.name == key), None)
    shown = values.get(key, e.get("input"))
    if key in values and where(key).startswith("--"):
        shown = " ".join(map(str, shown)) if isinstance(shown, list) else shown
        got = f"got {shown}"
    else:
        got = f"got {_show(shown)}"
    if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _keys_at(hints(cls).get(key), loc[1:-1])
        name = loc[-1]
        return ConfigError(f"{where(_path(loc))}: unknown key {name!r}"
                           + (f"; known: {', '.join(allowed)}" if allowed else ""))
    if field is not None and len(loc) == 1:
        expected = field.metadata.get("expected") or describe(hints(cls)[key])
        return ConfigError(f"{where(key)}: expected {expected}, {got}")
    if loc[-1] == "[key]" and field is not None:  # a mapping's key outside its key type
        args = typing.get_args(_strip(hints(cls)[key]))
        expected = describe(args[0]) if len(args) == 2 else "a valid key"
        return ConfigError(f"{where(_path(loc[:-1]))}: unknown key {loc[-2]!r}; expected {expected}")
    # An item inside a list or mapping: its own type when it can be named, else pydantic's words.
    if e["type"] == "missing":
        return ConfigError(f"{where(_path(loc))}: missing (required)")
    inner = _type_at(hints(cls).get(key), loc[1:]) if field is not None else None
    expected = describe(inner) if inner is not None else e["msg"].replace("Input should be ", "")
    return ConfigError(f"{where(_path(loc))}: expected {expected}, got {_show(e.get('input'))}")


def _type_at(tp: Any, loc: tuple) -> Any:
    """The annotation reached by following `loc` (list indexes, mapping and TypedDict keys) into `tp`."""
    for part in loc:
        base = _strip(tp)
        args = typing.get_args(base)
        if typing.get_origin(base) is list and args:
            tp = args[0]
        elif typing.get_origin(base) is dict and len(args) == 2:
            tp = args[0] if part == "[key]" else args[1]
        elif is_typeddict(base):
            tp = hints(base).get(part)
        else:
            return None
        if tp is None:
            return None
    return tp


def _keys_at(tp: Any, loc: tuple) -> list[str]:
    """Keys of the TypedDict reached by `loc` inside field type `tp` (for unknown-key errors)."""
    inner = _strip(_type_at(tp, loc))
    return list(hints(inner)) if inner is not None and is_typeddict(inner) else []


# ---------------------------------------------------------------------------------------------
# Recipes


class Recipe(dict):
    """The sections of a recipe (section name -> settings); `path` names the file in errors."""

    def __init__(self, data: dict[str, Any] | None = None, path: str = ""):
        super().__init__(data or {})
        self.path = path


def load_recipe(path: str | None, schema: dict[str, type] | None = None) -> Recipe:
    """Read a recipe; with `schema` (section -> dataclass), every section is checked now: an
    unknown section, an unknown key or a value of the wrong type is a one-line `ConfigError`.
    The sections come back with their values as validated (`"8"` for an int becomes 8)."""
    if not path:
        return Recipe()
    p = Path(bundled(path))
    if not p.exists():
        raise FileNotFoundError(f"recipe {path} does not exist (recipes live in infra/recipes/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at_line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at_line}: {problem}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(schema or {}) or 'stage: settings'}), "
                          f"got {_show(data)}")
    if schema is None:
        return Recipe(data, path)
    out = Recipe(path=path)
    for name, section in data.items():
        if name not in schema:
            close = difflib.get_close_matches(str(name), list(schema), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: unknown section {name!r}{hint}; known sections: {', '.join(schema)}")
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: expected a mapping of settings, got {_show(section)}")
        try:
            cfg = validate(schema[name], section, section=name, source=path)
        except ConflictingSettings:
            out[name] = dict(section)  # each value is of its type; `build` decides after the flags
            continue
        out[name] = {k: getattr(cfg, k) for k in section}
    return out


def build(cls: type, section: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, *,
          name: str = "", source: str = "", flags: dict[str, str] | None = None):
    """Instantiate `cls` from a recipe section and overrides (None values ignored), validated.

    `name` is the recipe section (for messages), `source` the recipe file, `flags` maps the
    override fields given on the command line to their flag."""
    values = {k: v for k, v in (section or {}).items() if v is not None}
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(extra) - known)
    if unknown and not flags:
        raise ConfigError(f"{name or cls.__name__}: unknown settings {unknown}; known: {', '.join(sorted(known))}")
    values.update(extra)
    return validate(cls, values, section=name, source=source,
                    flags={k: v for k, v in (flags or {}).items() if k in extra})


def section_values(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The flags given for one section: `{field: value}` from the `section.field` dests."""
    head = section + "."
    return {k[len(head):]: v for k, v in vars(args).items() if k.startswith(head)}


def from_args(cls: type, args: argparse.Namespace, recipe: dict[str, Any], section: str, prefix: str = ""):
    """`cls` from the recipe's `section` overridden by that section's flags (and only those)."""
    overrides = section_values(args, section)
    return build(cls, recipe.get(section), overrides, name=section, source=getattr(recipe, "path", ""),
                 flags=given_flags(overrides, prefix))


def given_flags(overrides: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Field -> the flag that set it, for error messages that name the flag."""
    return {k: _flag(prefix + k) for k in overrides}


# ---------------------------------------------------------------------------------------------
# Flags


def add_arguments(parser: argparse.ArgumentParser, cls: type, section: str, prefix: str = "") -> None:
    """One `--flag` per dataclass field, with dest `section.field`; defaults are left out so only
    given flags override. Values stay text here: `validate` converts and checks them, so a flag
    and a recipe value obey the same rules and fail with the same kind of message.

    `prefix` names the flags (`--llm-url` for field `url`) when two groups share a subcommand."""
    group = parser.add_argument_group(f"{cls.__name__} (recipe section `{section}`)")
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        tp = hints(cls)[f.name]
        base = _strip(tp)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS, "help": help_text,
                                  "metavar": f.name.upper()}
        if typing.get_origin(base) is Literal:
            kwargs["metavar"] = "{" + ",".join(str(a) for a in typing.get_args(base)) + "}"
        elif base is bool:
            kwargs["metavar"] = "BOOL"
        if f.metadata.get("passthrough"):
            kwargs["action"] = "append"
            kwargs["metavar"] = "OPTION"
        elif typing.get_origin(base) is list or base is list:
            kwargs["nargs"] = "+"
        action = group.add_argument(_flag(prefix + f.name), **kwargs)
        action.passthrough = bool(f.metadata.get("passthrough"))  # type: ignore[attr-defined]


def _walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _walk(sub)


def expand_passthrough(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--runner-options --project=P --region=R --run x` -> `--runner-options=--project=P
    --runner-options=--region=R --run x`: the tokens after a pass-through flag, up to the next
    flag this parser tree knows (`--flag` or `--flag=value`), become its values, so foreign
    options that look like flags reach Beam instead of being rejected by argparse."""
    known: set[str] = set()
    passthrough: set[str] = set()
    for p in _walk(parser):
        for action in p._actions:
            known.update(action.option_strings)
            if getattr(action, "passthrough", False):
                passthrough.update(action.option_strings)
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out += argv[i:]
            break
        if token in passthrough:
            j = i + 1
            while j < len(argv) and argv[j] != "--" and not token_is_known(argv[j], known):
                out.append(f"{token}={argv[j]}")
                j += 1
            if j == i + 1:
                out.append(token)  # no values: argparse reports it
            i = j
            continue
        out.append(token)
        i += 1
    return out


def token_is_known(token: str, known: set[str]) -> bool:
    return token.startswith("-") and token.split("=", 1)[0] in known


class ConfigParser(argparse.ArgumentParser):
    """argparse with one-line errors (`PROG: error: MESSAGE`, exit 2) and the pass-through
    pre-pass of `expand_passthrough`; its subparsers are of the same class."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(expand_passthrough(self, args), namespace)

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checked(kind: type, low: float, *, strict: bool = False) -> typing.Callable[[str], Any]:
    """An argparse `type` for a number flag outside any config dataclass: `kind` >= `low`
    (> `low` with `strict`), rejected with the same wording as config values."""
    noun = describe(kind)
    expected = f"{noun} {'>' if strict else '>='} {low}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def to_yaml(sections: dict[str, Any]) -> str:
    """Config objects (or mappings) by section, as a recipe."""
    data = {name: dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg for name, cfg in sections.items()}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
