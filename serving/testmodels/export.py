"""`torch.onnx.export` for the test-model builders, without the warnings a first `make run` used to print.

They are about choices made on purpose here, not news to whoever runs the build:
- the legacy TorchScript exporter (`dynamo=False`) is the one these builders use deliberately;
- TracerWarning: transformers' Python branches on shapes (length checks, SDPA's `is_causal`) are decided
  once at trace time. Filtering the warning changes nothing in the graphs, which the memory tests run
  through fastembed;
- aten::index in opset 17 is exported as several ONNX operators: how the exporter works, not a problem.
Anything else the exporter says still shows.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def export_onnx(model: Any, args: tuple[Any, ...], path: Path, **options: Any) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(model, args, str(path), dynamo=False, **options)
