"""Installs the repository's top-level folders under one namespace, ``nnunet_spine`` (metadata: pyproject.toml)."""

from setuptools import find_packages, setup

#: Installed package -> repository folder.
NAMESPACE = {
    "nnunet_spine": "nnunet_extensions",
    "nnunet_spine.dataset_converters": "dataset_converters",
    "nnunet_spine.trainers": "trainers",
    "nnunet_spine.postprocessing": "postprocessing",
}

packages = [p for ns, folder in NAMESPACE.items() for p in [ns] + [f"{ns}.{s}" for s in find_packages(folder)]]
setup(packages=packages, package_dir=NAMESPACE)
