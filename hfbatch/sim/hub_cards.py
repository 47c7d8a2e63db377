"""The simulated Hub's check of a dataset card's YAML header (`POST /api/validate-yaml`).

huggingface_hub asks the Hub to check a README.md before committing it, and refuses the
commit when the Hub lists errors. The real check covers every metadata key; this one covers
what hfbatch writes and the viewer reads: the header parses as a YAML mapping, list-valued
keys are lists, and `configs` holds config names with `data_files` of splits and paths.
Warnings are never sent (the library would raise them as Python warnings).
"""

from __future__ import annotations

from typing import Any

__all__ = ["card_yaml_errors"]

_LIST_KEYS = ("task_categories", "size_categories", "tags", "language", "configs")


def card_yaml_errors(content: str) -> list[str]:
    """What is wrong with a README's YAML header, as the Hub's messages; [] when it is fine or absent."""
    if not content.startswith("---"):
        return []
    end = content.find("\n---", 3)
    if end < 0:
        return ["The YAML metadata block is not closed by a '---' line"]
    try:
        import yaml
    except ImportError:  # the sim without huggingface_hub's dependencies: nothing will call this anyway
        return []
    try:
        meta = yaml.safe_load(content[3:end])
    except yaml.YAMLError as exc:
        return [f"Invalid YAML: {' '.join(str(exc).split())}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["The YAML metadata must be a mapping"]
    errors = [f'"{key}" must be a list' for key in _LIST_KEYS if key in meta and not isinstance(meta[key], list)]
    for i, config in enumerate(meta.get("configs") or [] if isinstance(meta.get("configs"), list) else []):
        errors += _config_errors(i, config)
    return errors


def _config_errors(i: int, config: Any) -> list[str]:
    where = f'"configs[{i}]"'
    if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
        return [f"{where} must have a string config_name"]
    data_files = config.get("data_files")
    if data_files is None or isinstance(data_files, str):
        return []
    if not isinstance(data_files, list):
        return [f"{where}.data_files must be a string or a list"]
    errors = []
    for j, entry in enumerate(data_files):
        if isinstance(entry, str):
            continue
        paths = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("split"), str):
            errors.append(f"{where}.data_files[{j}] must have a string split")
        elif not isinstance(paths, str) and not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
            errors.append(f"{where}.data_files[{j}].path must be a string or a list of strings")
    return errors
