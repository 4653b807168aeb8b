"""``rtml models import SOURCE --name NAME [--version V] [--sample data.csv] ...``.

Kept out of :mod:`rtml.cli` so that module stays a thin dispatcher; nothing heavy is
imported until the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.registry import ModelRegistry


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rtml models import`` (SOURCE is the subcommand's positional)."""
    group = parser.add_argument_group("import", "rtml models import SOURCE --name NAME [options]")
    group.add_argument("--name", dest="import_name", metavar="NAME", help="name to register the model under")
    group.add_argument(
        "--version", dest="import_version", metavar="V", help="version to register (default: next free)"
    )
    group.add_argument("--sample", type=Path, help="CSV of rows for the parity check (and the baseline)")
    group.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed (1e-4)")
    group.add_argument("--sample-rows", type=int, default=256, help="rows drawn when there is no --sample")
    group.add_argument("--task", choices=["classification", "regression", "clustering"], help="override")
    group.add_argument("--classes", help="comma-separated class labels (Keras/PyTorch/ONNX classifiers)")
    group.add_argument("--n-features", type=int, help="input width of a PyTorch module or dynamic ONNX graph")
    group.add_argument("--feature-names", help="comma-separated feature names")
    group.add_argument("--description", default="", help="free text stored with the model")
    group.add_argument("--replace", action="store_true", help="overwrite an existing --version")


def run_import(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from importers import ImportOptions, import_model
    from importers.parity import describe
    from runtime.errors import ModelImportError, ParityFailed, RegistryError

    if not args.name or not args.import_name:
        print("usage: rtml models import SOURCE --name NAME [--version V] [--sample CSV]", file=sys.stderr)
        return 2
    options = ImportOptions(
        version=args.import_version,
        sample=args.sample,
        tolerance=args.tolerance,
        sample_rows=args.sample_rows,
        task=args.task,
        classes=_classes(args.classes),
        n_features=args.n_features,
        feature_names=args.feature_names.split(",") if args.feature_names else None,
        replace=args.replace,
        description=args.description,
    )
    try:
        result = import_model(args.name, args.import_name, registry, options)
    except ParityFailed as exc:
        if exc.report is not None:
            print(describe(exc.report), file=sys.stderr)
        print(f"error: {exc.message}; nothing was registered", file=sys.stderr)
        return 1
    except (ModelImportError, RegistryError) as exc:
        print(f"error: {exc.message}; nothing was registered", file=sys.stderr)
        return 1
    meta = result.metadata
    print(describe(result.report))
    print(
        f"registered {meta.name} v{meta.version} ({meta.task}, {meta.source_format}, "
        f"{meta.n_features} features) sha256={meta.onnx_sha256[:12]} in {registry.root}"
    )
    args.registered_version = meta.version  # recorded on the control topic by the caller
    return 0


def _classes(text: str | None) -> list[int] | list[str] | None:
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        return [int(p) for p in parts]
    except ValueError:
        return parts
