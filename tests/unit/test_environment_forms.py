"""The forms of a job's ``environment``, resolved to pip requirements (shared.environment)."""

from __future__ import annotations

import pytest

from shared.environment import BadEnvironment, python_version, resolve

CONDA = f"""name: sklearn-env
channels: [conda-forge]
dependencies:
  - python={python_version()}
  - pip
  - scikit-learn=1.5
  - numpy>=2
  - pip:
    - joblib==1.4.2
"""
FILES = {"conda.yml": CONDA, "requirements.txt": "# pinned\nscikit-learn==1.5.2  # the model's\n\njoblib\n",
         "old.yml": "dependencies:\n  - python=3.8\n  - pip\n",
         "mkl.yml": "dependencies: [mkl, conda-forge::lightgbm, numpy]\n"}


def read(path: str) -> str:
    return FILES[path]


def test_a_conda_yaml_becomes_pip_requirements_with_conda_prefix_versions() -> None:
    r = resolve("conda.yml", read)
    assert r is not None and r.source == "conda.yml"
    assert r.requirements == ("scikit-learn==1.5.*", "numpy>=2", "joblib==1.4.2")


def test_a_requirements_file_an_inline_list_and_v1_conda_json() -> None:
    assert resolve("requirements.txt", read).requirements == ("scikit-learn==1.5.2", "joblib")
    assert resolve(["lightgbm==4.5.0"], read).requirements == ("lightgbm==4.5.0",)
    v1 = {"name": "e", "dependencies": [f"python={python_version()}", "pip", {"pip": ["joblib"]}]}
    assert resolve(v1, read).requirements == ("joblib",)
    assert resolve({"conda_file": "conda.yml"}, read).source == "conda.yml"     # v2


def test_a_resolved_environment_resolves_to_itself() -> None:
    r = resolve("conda.yml", read)
    assert resolve(r.to_json(), read) == r


@pytest.mark.parametrize(("value", "says"), [
    ("old.yml", "python=3.8 asked for"),
    ("mkl.yml", "conda-only packages cannot be installed (pip installs from the Python package index): "
                "mkl, conda-forge::lightgbm"),
    ({"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"}, "environment.image: Docker images"),
    ({"conda_file": "conda.yml", "image": "x"}, "Docker images are not supported"),
    ({"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"}, "Docker images are not supported"),
    ("missing.yml", "missing.yml is not in source_directory"),
    ("azureml:sklearn-env:3", "registered environments (azureml:sklearn-env:3) are not supported"),
    (["-e ."], "no installer options"),
    (["--index-url https://elsewhere/simple"], "no installer options"),
    (["pkg @ https://example.com/pkg.whl"], "URLs"),
    (["git+https://example.com/x.git"], "URLs"),
    (["not a requirement!"], "is not a pip requirement"),
    (["x"] * 201, "201 requirements, at most 200"),
    (42, "expected a conda YAML"),
])
def test_what_cannot_be_used_is_refused_naming_it(value: object, says: str) -> None:
    with pytest.raises(BadEnvironment, match=None) as info:
        resolve(value, read)
    assert says in str(info.value)


def test_an_azure_ml_base_image_beside_a_conda_file_is_the_conda_file() -> None:
    """v2 environments name one of Azure ML's base images (an OS with conda) and a conda file: the
    conda file's packages are what the script needs."""
    value = {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", "conda_file": "conda.yml"}
    assert resolve(value, read).source == "conda.yml"
    inline = {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04", "conda_file": {
        "dependencies": ["pip", {"pip": ["joblib==1.4.2"]}]}}
    assert resolve(inline, read).requirements == ("joblib==1.4.2",)
