"""Placeholders in datasets files, expanded as SimpleTuner expands them, so its example files
(``"cache_dir_vae": "cache/vae/{model_family}/{id}"``) mean here what they mean there.

Every string of a dataset entry, in nested lists and objects too, has ``{model_family}`` (the config's value as
written, e.g. ``pixart_sigma``), ``{output_dir}`` (the config's ``output_dir``) and ``{id}`` (the entry's own id)
replaced. Other text in braces stays as written, as in SimpleTuner, except ``{env:NAME}``: SimpleTuner puts the
process's environment variable there, which on a shared server would copy the server's secrets into paths that
other users see and choose; it is refused with the way forward.

Example::

    >>> expand_placeholders([{"id": "pets", "cache_dir_vae": "{output_dir}/cache/{model_family}/{id}"}],
    ...                     {"model_family": "flux", "output_dir": "output/models"})
    ([{'id': 'pets', 'cache_dir_vae': 'output/models/cache/flux/pets'}], [])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: The placeholders expanded in every dataset entry; ``id`` comes from the entry itself.
PLACEHOLDERS = ("model_family", "output_dir", "id")

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def expand_placeholders(raw: Any, variables: Mapping[str, str]) -> tuple[Any, list[str]]:
    """``raw`` (a decoded datasets file) with the placeholders of each entry expanded, and the problems found.

    ``variables`` gives ``model_family`` and ``output_dir``; anything that is not a list of objects comes back
    unchanged for the datasets parser to report.
    """
    if not isinstance(raw, list):
        return raw, []
    problems: list[str] = []
    expanded = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            expanded.append(item)
            continue
        own_id = item.get("id")
        values = {**variables, "id": own_id if isinstance(own_id, str) else ""}
        where = f"$[{index}]" + (f" (id {own_id!r})" if isinstance(own_id, str) else "")
        expanded.append(_expand(item, values, where, problems))
    return expanded, problems


def _expand(value: Any, variables: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {key: _expand(item, variables, f"{where}.{key}", problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, variables, f"{where}[{i}]", problems) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("env:"):
            problems.append(f"{where}: {match.group(0)} (an environment variable) is not expanded here: it would "
                            "put the server's environment into a path; write the value itself")
            return match.group(0)
        return variables[token] if token in variables else match.group(0)

    return _PLACEHOLDER.sub(replace, value)
