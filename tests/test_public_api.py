"""The public surface of ``sinkd``: ``__all__`` is sorted, complete and importable."""

from __future__ import annotations

import importlib
import inspect

import sinkd


def _public_names() -> set[str]:
    """Names the package module binds for its users: no submodules, no ``__future__`` flags."""
    return {
        name
        for name, value in vars(sinkd).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and type(value).__module__ != "__future__"
    } | {"__version__"}


def test_all_is_the_sorted_list_of_the_public_names_exported() -> None:
    assert sinkd.__all__ == sorted(sinkd.__all__)
    assert len(set(sinkd.__all__)) == len(sinkd.__all__)
    assert set(sinkd.__all__) == _public_names()


def test_every_name_in_all_is_importable_from_the_package() -> None:
    module = importlib.import_module("sinkd")
    namespace: dict[str, object] = {}
    exec(f"from sinkd import {', '.join(sinkd.__all__)}", namespace)
    for name in sinkd.__all__:
        assert namespace[name] is getattr(module, name)


def test_exported_classes_come_from_sinkd_modules() -> None:
    for name in sinkd.__all__:
        value = getattr(sinkd, name)
        if inspect.isclass(value):
            assert value.__module__ in ("sinkd.core.model", "sinkd.errors"), name
            assert value.__name__ == name


def test_the_version_is_the_package_version() -> None:
    from importlib.metadata import version

    assert sinkd.__version__ == version("sinkd") == "0.1.0"


def test_errors_form_one_tree_under_sinkd_error() -> None:
    for name in ("ConfigError", "InputError", "NotFound", "ProfileError", "StoreError"):
        assert issubclass(getattr(sinkd, name), sinkd.SinkdError)
    assert issubclass(sinkd.NotFound, sinkd.StoreError)
    assert issubclass(sinkd.NotFound, LookupError)
    assert issubclass(sinkd.ProfileError, ValueError)
