"""The interface every vision tool implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from PIL import Image

from visextract.images import LoadedImage
from visextract.schemas.results import BoxedResult, ToolResult, clip_box  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class ToolOptions:
    """Options that tools read. `models` maps a tool name to a Hugging Face id or local path."""

    models: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    batch_size: int = 8
    threads: int = 0  # intra-op threads per CPU batch; 0: one (see local_models.compute)
    faces_max_side: int = 1024  # longest side MTCNN searches; 0: the whole working copy
    ocr_detector_side: int = 736  # short side the OCR text detector sees; 0: rapidocr's own choice
    detector_threshold: float | None = None  # None: each detector's own default
    labels: tuple[str, ...] = ()
    question: str | None = None
    artifacts_dir: Path | None = None  # where tools save files (depth maps); None: save nothing


class Tool(ABC):
    """A vision tool: takes a batch of images, returns one list of typed results per image.

    Subclasses set `name` and implement `model_id`, `load` and `predict`; `tools.registry` lists
    them with their result type. Models load lazily, once per process, through `local_models.cache`.
    A tool whose `predict` may run on several threads at once (sharing one model) sets `thread_safe`;
    on the CPU it then gets a worker per core (see `local_models.compute`).
    """

    name: ClassVar[str]
    thread_safe: ClassVar[bool] = False

    def __init__(self, options: ToolOptions) -> None:
        self.options = options

    @property
    @abstractmethod
    def model_id(self) -> str:
        """The model this tool runs, as shown to users ("efficientnet-lite0 (bundled)", an HF id, a path)."""

    def settings_key(self) -> str:
        """Settings besides the model that change the output (thresholds, labels...); '' if none."""
        return ""

    @property
    def cache_key(self) -> str:
        """Identifies the outputs: same key, same results. Stored with every tool result."""
        settings = self.settings_key()
        return f"{self.model_id}|{settings}" if settings else self.model_id

    def missing_reason(self, may_download: bool = True) -> str | None:
        """Why the model cannot be loaded here, or None when it can (checked without loading it)."""
        return None

    def uses_cpu(self) -> bool:
        """Whether the model computes on the CPU (and so shares the run's cores), not on a GPU."""
        return True

    def usage_problem(self) -> str | None:
        """What is wrong with the options for this tool (e.g. zeroshot without --labels), or None."""
        return None

    @abstractmethod
    def load(self) -> None:
        """Load the model now (cached). Raises ModelUnavailableError with a one-line reason."""

    @abstractmethod
    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        """Results for each RGB image, with boxes in that image's pixel coordinates."""

    def run(self, images: Sequence[LoadedImage]) -> list[list[ToolResult]]:
        """Results for each loaded image, with boxes mapped back to original-image pixels."""
        outputs = self.predict([image.rgb for image in images])
        if len(outputs) != len(images):
            raise RuntimeError(f"tool {self.name} returned {len(outputs)} results for {len(images)} images")
        return [
            [_to_original(r, image) if isinstance(r, BoxedResult) and image.scale != 1 else r for r in results]
            for image, results in zip(images, outputs, strict=True)
        ]


def _to_original(result: BoxedResult, image: LoadedImage) -> BoxedResult:
    return result.scaled(image.width / image.rgb.width, image.height / image.rgb.height, image.width, image.height)
