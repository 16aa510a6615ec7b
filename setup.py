"""What pyproject.toml cannot say by itself: the packages, found from the folders rather than listed by hand.

Each top folder installs under the ``simpletuner`` namespace (``core`` → ``simpletuner.core``). Every folder below
one becomes a package — folders of code and folders of data alike (``ui/templates``, ``ui/static``, ``ui/examples``),
so the data folders ship as declared package data instead of as stray files setuptools warns about.
"""

from __future__ import annotations

from setuptools import find_namespace_packages, setup

TOP_FOLDERS = ("core", "plugins", "ui", "model_families", "trackers", "publishers")


def simpletuner_packages() -> list[str]:
    """``simpletuner.<top>`` and every importable folder below it."""
    found: list[str] = []
    for top in TOP_FOLDERS:
        found.append(f"simpletuner.{top}")
        found += [f"simpletuner.{top}.{name}" for name in find_namespace_packages(where=top, exclude=["*__pycache__*"])]
    return sorted(found)


if __name__ == "__main__":
    setup(packages=simpletuner_packages(), package_dir={f"simpletuner.{top}": top for top in TOP_FOLDERS})
