"""PyTorch: TorchScript files, pickled ``nn.Module`` files, and module objects with an
input spec (``n_features``), exported with ``torch.onnx.export`` (extra ``torch``).

The module must take one float32 tensor [N, n_features] and return one tensor
[N, width]. A pickled module (``torch.save(model)``) runs code when loaded: trusted
sources only, offline only.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from importers import heads
from importers.extras import require
from importers.model import INPUT_NAME, Converted, Outputs
from importers.onnx_tools import TARGET_OPSET, versions
from runtime.errors import NotAModel, UnreadableModel, UnsupportedModel

if TYPE_CHECKING:
    from importers.api import ImportOptions

RAW_OUTPUT = "raw_output"


def convert_path(path: Path, name: str, options: ImportOptions) -> Converted:
    torch = _torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # torch.jit.load is deprecated in favour of torch.export
            if _is_torchscript(path):
                return convert_module(
                    torch.jit.load(str(path), map_location="cpu"), name, options, "torchscript"
                )
            module = torch.load(
                path, map_location="cpu", weights_only=False
            )  # trusted source, offline (documented)
    except (UnsupportedModel, NotAModel):
        raise
    except Exception as exc:  # torch raises RuntimeError, pickle errors, zip errors...
        raise UnreadableModel(f"{path}: cannot be loaded by torch: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise NotAModel(
            f"{path} holds a {type(module).__name__}, not a torch.nn.Module (a state_dict needs its module)"
        )
    return convert_module(module, name, options, "torch-module")


def convert_module(
    module: Any, name: str, options: ImportOptions, source_format: str = "torch-module"
) -> Converted:
    """An ``nn.Module`` or ScriptModule; ``options.n_features`` is its input spec."""
    torch = _torch()
    n_features = options.n_features or _infer_features(module)
    module = module.eval()

    def call(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(module(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy())

    probe = np.random.default_rng(0).normal(size=(heads.PROBE_ROWS, n_features)).astype(np.float32)
    try:
        head, logits = heads.choose(call(probe), n_features, options.task, options.classes)
    except RuntimeError as exc:
        raise UnsupportedModel(f"the module fails on input [N, {n_features}] float32: {exc}") from exc
    onnx_bytes = heads.attach(_export(torch, module, n_features), RAW_OUTPUT, head, logits)

    def reference(X: np.ndarray) -> Outputs:
        return head.postprocess(call(X))

    return Converted(
        onnx_bytes=onnx_bytes,
        signature=head.signature,
        reference=reference,
        framework="pytorch",
        source_format=source_format,
        framework_versions=versions("torch"),
        params={"module": type(module).__name__, "output_logits": logits},
    )


def _export(torch: Any, module: Any, n_features: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that it is the legacy one
            torch.onnx.export(
                module,
                (torch.zeros(2, n_features),),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[RAW_OUTPUT],
                dynamic_axes={INPUT_NAME: {0: "N"}, RAW_OUTPUT: {0: "N"}},
                opset_version=TARGET_OPSET[""],
                dynamo=False,
            )
    except Exception as exc:  # torch.onnx raises many types
        raise UnsupportedModel(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    return onnx.load_model_from_string(buffer.getvalue())


def _infer_features(module: Any) -> int:
    """in_features of the first Linear layer, when the module has one."""
    for layer in module.modules() if hasattr(module, "modules") else []:
        if hasattr(layer, "in_features"):
            return int(layer.in_features)
    raise UnsupportedModel("cannot tell the module's input width; give the input spec (--n-features)")


def _is_torchscript(path: Path) -> bool:
    from importers.sources import detect

    return detect(path) == "torchscript"


def _torch() -> Any:
    return require("torch", "importing a PyTorch model")
