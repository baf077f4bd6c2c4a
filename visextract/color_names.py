"""Plain colour names for '#rrggbb' colours, and colour distances in CIE Lab.

Used by the `colors` tool's results, the schemas' colour fields and their cross-checks; it imports
nothing from visextract, so every layer can.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# Basic colour words people use in searches and that LLMs answer with.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "dark gray": (80, 80, 80),
    "gray": (128, 128, 128),
    "silver": (192, 192, 192),
    "white": (245, 245, 245),
    "red": (200, 30, 30),
    "dark red": (120, 20, 25),
    "pink": (240, 150, 180),
    "orange": (240, 130, 30),
    "brown": (120, 75, 40),
    "beige": (220, 200, 160),
    "yellow": (240, 220, 40),
    "gold": (200, 160, 50),
    "olive": (120, 120, 40),
    "green": (40, 150, 50),
    "dark green": (25, 75, 35),
    "teal": (30, 130, 130),
    "cyan": (60, 200, 220),
    "light blue": (140, 190, 235),
    "blue": (40, 80, 200),
    "navy": (25, 35, 90),
    "purple": (120, 50, 150),
    "magenta": (210, 50, 180),
}


@cache
def color_name(hex_color: str) -> str:
    """The nearest basic colour name (in CIE Lab) for a '#rrggbb' colour."""
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    names = list(NAMED_COLORS)
    references = _lab(np.array([NAMED_COLORS[n] for n in names], dtype=float))
    distances = np.linalg.norm(references - _lab(rgb[None, :]), axis=1)
    return names[int(np.argmin(distances))]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0-255) to CIE L*a*b* (D65)."""
    c = rgb / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def lab_distance(hex_color: str, rgb: tuple[int, int, int]) -> float:
    """CIE76 colour difference (Delta E) between a '#rrggbb' colour and an RGB triple."""
    a = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    return float(np.linalg.norm(_lab(a[None, :]) - _lab(np.array(rgb, dtype=float)[None, :])))
