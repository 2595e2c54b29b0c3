"""The layers of docs/development/layout.md, checked on every import statement (function-level ones too).

Lower layers never import higher ones: the core imports nothing of this project; nnU-Net integration and the
phantoms import only the core; converters, trainers and postprocessing import the core (trainers also the
integration) and, across each other, only what :data:`ALLOWED_CROSSINGS` lists with its reason; ``apps`` may
import any library layer; only ``cli`` imports ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Installed package -> repository folder (setup.py's namespace mapping).
FOLDERS = {
    "nnunet_spine": "nnunet_extensions",
    "nnunet_spine.dataset_converters": "dataset_converters",
    "nnunet_spine.trainers": "trainers",
    "nnunet_spine.postprocessing": "postprocessing",
}

#: Layer of a module, by the longest matching prefix.
LAYER_OF_PREFIX = {
    "nnunet_spine": "root",  # the package root holds only __version__
    "nnunet_spine.core": "core",
    "nnunet_spine.integration": "integration",
    "nnunet_spine.phantoms": "phantoms",
    "nnunet_spine.apps": "apps",
    "nnunet_spine.cli": "cli",
    "nnunet_spine.dataset_converters": "converters",
    "nnunet_spine.trainers": "trainers",
    "nnunet_spine.postprocessing": "postprocessing",
}

#: Which layers each layer may import.
MAY_IMPORT = {
    "root": set(),
    "core": {"root", "core"},
    "integration": {"root", "core", "integration"},
    "phantoms": {"root", "core", "phantoms"},
    "converters": {"root", "core", "converters"},
    "postprocessing": {"root", "core", "postprocessing"},
    "trainers": {"root", "core", "integration", "trainers"},
    "apps": {"root", "core", "integration", "phantoms", "converters", "postprocessing", "trainers", "apps"},
    "cli": {"root", "core", "integration", "phantoms", "converters", "postprocessing", "trainers", "apps", "cli"},
}

#: Imports across the capability layers that are there on purpose: (importing module, imported module) → why.
ALLOWED_CROSSINGS = {
    # The lesion trainers' per-epoch and final-validation lesion metrics are those of `nnspine evaluate lesions`.
    (
        "nnunet_spine.trainers.lesion",
        "nnunet_spine.postprocessing.lesion.metrics",
    ): "one definition of lesion-wise metrics",
    # The nnUNet_extTrainer shim binds the registry's trainers (nnU-Net imports it as a loose file).
    ("nnunet_spine.integration.discovery.nnspine_trainers", "nnunet_spine.trainers.registry"): "trainer discovery",
}


def _module_name(path: Path) -> str:
    """The installed module name of a repository file (``postprocessing/cord/csa.py`` →
    ``nnunet_spine.postprocessing.cord.csa``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    package = next(p for p, folder in FOLDERS.items() if folder == parts[0])
    return ".".join([package, *parts[1:]])


def _module_path(module: str) -> Path:
    """The repository path (without ``.py``) of an installed module name, by the longest mapped package."""
    package = max((p for p in FOLDERS if module == p or module.startswith(p + ".")), key=len)
    return ROOT / FOLDERS[package] / module[len(package) :].lstrip(".").replace(".", "/")


def _layer(module: str) -> str | None:
    best = None
    for prefix in LAYER_OF_PREFIX:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return LAYER_OF_PREFIX[best] if best else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import of one of our packages in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            # `from pkg import module` imports the submodule
            out += [
                (node.lineno, f"{node.module}.{a.name}")
                for a in node.names
                if node.module.split(".")[0] == "nnunet_spine"
                and (
                    (_module_path(node.module) / f"{a.name}.py").is_file()
                    or (_module_path(node.module) / a.name / "__init__.py").is_file()
                )
            ]
    return [(line, m) for line, m in out if m.split(".")[0] == "nnunet_spine"]


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS.values() for p in (ROOT / folder).rglob("*.py") if "build" not in p.parts)


def _violations() -> list[str]:
    bad = []
    for path in _sources():
        importer = _module_name(path)
        layer = _layer(importer)
        for line, imported in _imports(path):
            target = _layer(imported)
            if target in MAY_IMPORT[layer]:
                continue
            if any(importer == a and (imported == b or imported.startswith(b + ".")) for a, b in ALLOWED_CROSSINGS):
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target} ({imported})")
    return bad


def test_every_module_belongs_to_a_layer():
    assert [str(p) for p in _sources() if _layer(_module_name(p)) is None] == []


def test_no_import_runs_up_or_across_the_layers():
    assert _violations() == []


def test_allowed_crossings_are_still_needed():
    """An allow-list entry whose import is gone must be removed (the list stays the true picture)."""
    used = set()
    for path in _sources():
        importer = _module_name(path)
        for _, imported in _imports(path):
            used |= {
                (a, b)
                for a, b in ALLOWED_CROSSINGS
                if importer == a and (imported == b or imported.startswith(b + "."))
            }
    assert set(ALLOWED_CROSSINGS) - used == set()


@pytest.mark.parametrize(
    "layer,source,target",
    [
        ("core", "nnunet_spine.core.io", "nnunet_spine.cli"),
        ("postprocessing", "nnunet_spine.postprocessing.cord.csa", "nnunet_spine.dataset_converters.softgt"),
        ("converters", "nnunet_spine.dataset_converters.lesion", "nnunet_spine.apps.demo"),
        ("trainers", "nnunet_spine.trainers.softseg", "nnunet_spine.cli.trainers"),
    ],
)
def test_the_rules_refuse_an_upward_import(layer, source, target):
    """The checker itself: each of these imports would be reported."""
    assert _layer(source) == layer
    assert _layer(target) not in MAY_IMPORT[layer]
