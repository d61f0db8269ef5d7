"""The search spec: schema, strict validation, parsing and canonical form.

Owns the frozen dataclasses that describe a search (``Spec`` and its parts), their validation
with field-path errors (``searcher.eta: must be an integer >= 2, got 1.5``), parsing TOML, YAML
and JSON text, and the canonical JSON-able dict (``spec_to_dict``) that round-trips through
``parse_spec``. Import from here; the modules are the package's inside:

- ``schema``: the Literal types and their values, the dataclasses, the limits;
- ``fields``: ``_Errors``, bounded display of bad values, and the single-field readers;
- ``sections``: the top-level fields and the searcher/resources/subset/limits/env tables;
- ``space``: the parameters, the fixed configurations and the per-sampler space checks;
- ``parse``: ``parse_spec``, which reads every section and raises one ``SpecError``;
- ``load``: ``parse_spec_text`` and ``load_spec_file`` (TOML, YAML, JSON);
- ``canonical``: ``spec_to_dict``.

It must never: touch the filesystem (except ``load_spec_file``, which reads the one file it is
given; ``base_dir`` handling is pure string work), read a clock, import asyncio, sockets or
sqlite, execute or construct anything from the input (YAML goes through a ``yaml.SafeLoader``),
recurse into input beyond the schema's own depth, or raise anything but ``SpecError`` for bad
input. Every problem found is reported, not just the first.
"""

from __future__ import annotations

from hpd.core.spec.canonical import spec_to_dict
from hpd.core.spec.load import load_spec_file, parse_spec_text
from hpd.core.spec.parse import parse_spec
from hpd.core.spec.schema import (
    GRID_DEFAULT_POINTS,
    MAX_NAME_LEN,
    Brackets,
    LimitsSpec,
    Mode,
    OnNan,
    ParamSpec,
    ParamType,
    ResourcesSpec,
    SamplerName,
    Scalar,
    SearcherName,
    SearcherSpec,
    Spec,
    Strategy,
    SubsetSpec,
    TpeOptions,
)

__all__ = [
    "GRID_DEFAULT_POINTS",
    "MAX_NAME_LEN",
    "Brackets",
    "LimitsSpec",
    "Mode",
    "OnNan",
    "ParamSpec",
    "ParamType",
    "ResourcesSpec",
    "SamplerName",
    "Scalar",
    "SearcherName",
    "SearcherSpec",
    "Spec",
    "Strategy",
    "SubsetSpec",
    "TpeOptions",
    "load_spec_file",
    "parse_spec",
    "parse_spec_text",
    "spec_to_dict",
]
