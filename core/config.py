"""Typed configuration: dataclasses, filled from a YAML recipe, then from command-line overrides.

Each stage declares one dataclass whose fields carry their help text in `metadata["help"]`; the
CLI turns the fields into `--flags`, a recipe (`infra/recipes/*.yaml`) holds one section per stage,
and the precedence is: dataclass default < recipe section < command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from webinstruct.core.resources import bundled


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text for the CLI."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "", section: str = "") -> None:
    """One `--flag` per dataclass field; defaults are left out so only given flags override.

    `prefix` names the flags (`--llm-url` for field `url`) when two groups share a subcommand."""
    hints = typing.get_type_hints(cls)
    title = f"{cls.__name__} (recipe section `{section}`)" if section else f"{cls.__name__} (recipe section overrides)"
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "BOOL"
        elif origin in (list, tuple):
            kwargs["nargs"] = "+"
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif origin is typing.Union:  # Optional[x]
            inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
            kwargs["type"] = inner
        group.add_argument(_flag(prefix + f.name), **kwargs)


def load_recipe(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(bundled(path))
    if not p.exists():
        raise FileNotFoundError(f"recipe {path} does not exist (recipes live in infra/recipes/)")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path}: expected a mapping of stage sections")
    return data


def build(cls: type, section: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None):
    """Instantiate `cls` from a recipe section and overrides, rejecting unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source in (section or {}, overrides or {}):
        unknown = set(source) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        values.update({k: v for k, v in source.items() if v is not None})
    return cls(**values)


def from_args(cls: type, args: argparse.Namespace, recipe: dict[str, Any], section: str):
    known = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: v for k, v in vars(args).items() if k in known}
    return build(cls, recipe.get(section), overrides)


def as_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
