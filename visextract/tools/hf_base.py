"""What the transformers-based tools share: model reference, availability, batched forward passes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from PIL import Image

from visextract.local_models.hf import load_hf_model, load_hf_processor, missing_reason
from visextract.tools.base import Tool


class HfTool(Tool):
    """A tool backed by a Hugging Face model, given by hub id or local folder.

    Subclasses set `default_model` and `auto_class` and implement `predict`.
    """

    default_model: ClassVar[str]
    auto_class: ClassVar[str]
    processor_class: ClassVar[str] = "AutoProcessor"

    @property
    def model_id(self) -> str:
        return self.options.models.get(self.name, self.default_model)

    def missing_reason(self, may_download: bool = True) -> str | None:
        return missing_reason(self.model_id, may_download=may_download)

    def uses_cpu(self) -> bool:
        from visextract.local_models.device import pick_device

        return pick_device(self.options.device).type == "cpu"

    def model(self) -> Any:
        return load_hf_model(self.model_id, self.auto_class, self.options.device)

    def processor(self) -> Any:
        return load_hf_processor(self.model_id, self.processor_class)

    def load(self) -> None:
        self.model()
        self.processor()


class HfBoxTool(HfTool):
    """A tool whose model returns boxes with scores, cut off at `--detector-threshold`."""

    default_threshold: ClassVar[float]

    @property
    def threshold(self) -> float:
        threshold = self.options.detector_threshold
        return self.default_threshold if threshold is None else threshold


def float_outputs(outputs: Any) -> Any:
    """Post-processing expects fp32 logits/boxes even when the model ran in half precision."""
    for key in ("logits", "pred_boxes"):
        value = getattr(outputs, key, None)
        if value is not None and value.is_floating_point():
            setattr(outputs, key, value.float())
    return outputs


def forward_in_shape_groups(
    images: Sequence[Image.Image],
    encode: Callable[[Image.Image], dict[str, Any]],
    forward: Callable[[dict[str, Any], list[int]], list[Any]],
) -> list[Any]:
    """Encode each image alone, batch those whose tensors have the same shapes, run `forward` per batch.

    Batching only same-shape inputs means no padding, so a batch gives the same results as one image
    at a time (photos from one camera share a shape and batch fully). `forward(batch, indices)` returns
    one output per index; outputs come back in the input order.
    """
    import torch

    encoded = [encode(image) for image in images]
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for index, inputs in enumerate(encoded):
        signature = tuple((key, tuple(value.shape)) for key, value in sorted(inputs.items()) if hasattr(value, "shape"))
        groups[signature].append(index)
    outputs: list[Any] = [None] * len(images)
    for indices in groups.values():
        batch = {key: torch.cat([encoded[i][key] for i in indices]) for key in encoded[indices[0]]}
        for index, output in zip(indices, forward(batch, indices), strict=True):
            outputs[index] = output
    return outputs


def to_model(inputs: dict[str, Any], model: Any) -> dict[str, Any]:
    """Move a processor's tensors to the model's device; floating tensors to its dtype."""
    parameter = next(model.parameters())
    return {
        key: value.to(parameter.device, parameter.dtype if value.is_floating_point() else None)
        if hasattr(value, "to")
        else value
        for key, value in inputs.items()
    }
