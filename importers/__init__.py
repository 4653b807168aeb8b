"""Model import: any supported format -> ONNX, proven by prediction parity, registered.

    from importers import ImportOptions, import_model

    options = ImportOptions(sample=Path("rows.csv"))
    result = import_model("churn.joblib", "churn", ModelRegistry(root), options)

Sources: scikit-learn ``.pkl``/``.joblib`` (estimators and Pipelines), ``.onnx``,
TensorFlow SavedModel directories and ``.keras`` files (extra ``tensorflow``),
TorchScript and ``torch.nn.Module`` + input spec (extra ``torch``), MLflow
``models:/NAME/VERSION`` and ``models:/NAME@ALIAS`` (extra ``mlflow``), and
in-memory model objects. Pickles run code when loaded: they are loaded here, offline,
never by the serving path, and must come from a trusted source.

Errors: the :class:`~runtime.errors.ModelImportError` branch of :mod:`runtime.errors`.
"""

from importers.api import ImportOptions, ImportResult, import_model

__all__ = ["ImportOptions", "ImportResult", "import_model"]
