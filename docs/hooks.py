"""MkDocs hook: pages that are generated from the project's own files, so they cannot drift.

The home page holding `<!-- readme -->` is the README, its links into docs/ made relative.

A page holding the marker `<!-- config-reference -->` gets the tables of every config key
from workflow/schemas/config.schema.yaml (type, allowed values, default, description) with
the value the shipped config.yaml gives it; `<!-- config-yaml -->` the shipped config.yaml
itself, comments included."""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = ROOT / "config.yaml"
README = ROOT / "README.md"


def _resolve(node: Mapping, schema: Mapping) -> Mapping:
    """A schema node with its $ref followed (keywords beside the $ref win)."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    for key in ("allOf",):
        if key in node:
            merged = {k: v for k, v in node.items() if k != key}
            for part in node[key]:
                merged = {**_resolve(part, schema), **merged}
            node = merged
    return node


def _kind(node: Mapping, schema: Mapping) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_kind(_resolve(part, schema), schema) for part in node[key])
    kind = node.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join("null" if k == "null" else k for k in kinds)
    if "array" in kinds and "items" in node:
        text += f" of {_kind(_resolve(node['items'], schema), schema)}"
    bounds = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                      ("exclusiveMaximum", "<")):  # fmt: skip
        if key in node:
            bounds.append(f"{sign} {node[key]:g}" if isinstance(node[key], float) else
                          f"{sign} {node[key]}")  # fmt: skip
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _rows(node: Mapping, schema: Mapping, path: str) -> Iterator[tuple[str, Mapping]]:
    node = _resolve(node, schema)
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _rows(child, schema, f"{path}.{name}" if path else name)


def _shipped(config: Mapping, path: str) -> str:
    value: object = config
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if isinstance(value, Mapping):
        return ""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}…`"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    """One table per top-level section: key, type and allowed values, default, the shipped
    value, description."""
    schema = yaml.safe_load(SCHEMA.read_text())
    config = yaml.safe_load(CONFIG.read_text())
    out = []
    for section, node in schema["properties"].items():
        out += [f"## `{section}`", ""]
        description = _resolve(node, schema).get("description")
        if description:
            out += [_cell(description), ""]
        out += ["| key | type and allowed values | default | shipped | description |",
                "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for path, child in _rows(node, schema, section):
            if child.get("type") == "object" and "properties" in child and path != section:
                kind = "mapping"
            else:
                kind = _kind(child, schema)
            default = f"`{child['default']}`" if "default" in child else ""
            out.append(
                f"| `{path}` | {_cell(kind)} | {_cell(default)} | {_cell(_shipped(config, path))} "
                f"| {_cell(child.get('description', ''))} |"
            )
        out.append("")
    return "\n".join(out)


def readme() -> str:
    """The README as the site's home page: links into docs/ relative to docs/."""
    return re.sub(r"\]\(docs/", "](", README.read_text())


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    if "<!-- readme -->" in markdown:
        markdown = markdown.replace("<!-- readme -->", readme())
    if "<!-- config-reference -->" in markdown:
        markdown = markdown.replace("<!-- config-reference -->", config_reference())
    if "<!-- config-yaml -->" in markdown:
        markdown = markdown.replace(
            "<!-- config-yaml -->", "```yaml\n" + CONFIG.read_text().rstrip() + "\n```"
        )
    return markdown
