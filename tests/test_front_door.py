"""The package's front door: every advertised name imports and is the object its module defines."""

import importlib

import pytest

import straightflow


def test_all_lists_exactly_the_lazily_loaded_names():
    assert set(straightflow.__all__) - {"__version__"} == set(straightflow._EXPORTS)


@pytest.mark.parametrize("name", sorted(straightflow._EXPORTS))
def test_every_exported_name_is_its_modules_object(name):
    assert getattr(straightflow, name) is getattr(importlib.import_module(straightflow._EXPORTS[name]), name)


def test_unknown_attribute_is_an_attribute_error_and_version_matches_the_package_metadata():
    from importlib.metadata import version

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        straightflow.Nope  # noqa: B018
    assert straightflow.__version__ == version("straightflow")
