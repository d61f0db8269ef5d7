"""Spec text and files: TOML, YAML (safe loader) and JSON to ``parse_spec``.

Owns ``parse_spec_text`` and ``load_spec_file``: the size caps, UTF-8 decoding, the format
from a file's extension, the YAML loader (YAML 1.2 floats, duplicate keys refused, a bracket
depth cap) and the JSON duplicate-key check, with errors prefixed by the file name.

It must never: read any file but the one ``load_spec_file`` is given, write anything, let YAML
construct objects (only a ``yaml.SafeLoader`` subclass is used), raise anything but
``SpecError`` for bad input, or import asyncio, sockets or sqlite.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Final, Literal

import yaml

from hpd.core.spec.fields import _show
from hpd.core.spec.parse import parse_spec
from hpd.core.spec.schema import Spec
from hpd.errors import SpecError

__all__ = ["SpecFormat", "load_spec_file", "parse_spec_text"]

SpecFormat = Literal["toml", "yaml", "json"]

MAX_SPEC_BYTES: Final = 1 << 20  # text/file size accepted by parse_spec_text/load_spec_file
# PyYAML is pure Python and slow (~1 s per 64 KiB of worst-case input, and its scanner is
# O(tokens x flow depth)), so YAML gets a smaller size cap and a bracket-depth cap.
MAX_YAML_BYTES: Final = 64 << 10
MAX_YAML_DEPTH: Final = 16


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only), plus YAML 1.2 floats and duplicate-key errors.

    PyYAML follows YAML 1.1, where ``1e-5`` (no dot) is a *string*; a spec writing
    ``low = 1e-5`` must mean the same number in every format.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _yaml_depth_ok(text: str) -> bool:
    """Cheap pre-check: brackets nest at most MAX_YAML_DEPTH deep (quotes are not skipped, so
    only a string with that many unbalanced brackets could be refused wrongly)."""
    depth = 0
    for m in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_YAML_DEPTH:
            return False
    return True


def _load_yaml(text: str) -> object:
    if not _yaml_depth_ok(text):
        raise ValueError(f"nested too deeply (more than {MAX_YAML_DEPTH} levels of brackets)")
    try:
        return yaml.load(text, Loader=_YamlLoader)  # safe: a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        raise ValueError(_one_line(what) + where) from None


def _load_json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f"{e.msg} (at line {e.lineno}, column {e.colno})") from None


_LOADERS: Final[dict[str, Callable[[str], object]]] = {
    "toml": tomllib.loads,
    "yaml": _load_yaml,
    "json": _load_json,
}
_FORMAT_NAMES: Final = {"toml": "TOML", "yaml": "YAML", "json": "JSON"}


def parse_spec_text(
    text: str | bytes,
    fmt: SpecFormat,
    *,
    base_dir: str | None = None,
    source: str = "spec",
) -> Spec:
    """Parse TOML, YAML (safe loader) or JSON text and validate it with ``parse_spec``.

    Errors that concern the whole text (size, UTF-8, syntax) are prefixed with ``source``
    (the file name when called from ``load_spec_file``; ``spec`` otherwise).
    """
    if fmt not in _LOADERS:
        raise SpecError([f"{source}: unknown spec format {fmt!r} (use toml, yaml or json)"])
    label = _FORMAT_NAMES[fmt]
    limit = MAX_YAML_BYTES if fmt == "yaml" else MAX_SPEC_BYTES
    if len(text) > limit:
        raise SpecError([f"{source}: too large (max {limit} bytes for {label}), got {len(text)}"])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError([f"{source}: invalid UTF-8 at byte {e.start}"]) from None
    text = text.removeprefix("\ufeff")
    try:
        data = _LOADERS[fmt](text)
    except RecursionError:
        raise SpecError([f"{source}: invalid {label}: nested too deeply"]) from None
    except (ValueError, TypeError, OverflowError, UnicodeError, yaml.YAMLError) as e:
        raise SpecError([f"{source}: invalid {label}: {_one_line(str(e))[:500]}"]) from None
    if not isinstance(data, Mapping):
        raise SpecError([f"{source}: the top level must be a table (mapping), got {_show(data)}"])
    return parse_spec(data, base_dir=base_dir)


_EXTENSIONS: Final[dict[str, SpecFormat]] = {
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
}


def load_spec_file(path: str) -> Spec:
    """Read and parse one spec file; the format comes from the extension.

    A relative ``workdir`` is resolved against the file's (absolute) directory. Unreadable
    files raise ``SpecError`` too, so callers print one kind of error.
    """
    fmt = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise SpecError([f"{path}: unknown spec format (use .toml, .yaml, .yml or .json)"])
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError([f"{path}: cannot read: {e.strerror or e}"]) from None
    base_dir = os.path.dirname(os.path.abspath(path))
    return parse_spec_text(data, fmt, base_dir=base_dir, source=path)
