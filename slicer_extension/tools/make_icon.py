"""Draw the module/extension icon (128x128 RGBA PNG): two lungs with a heat spot.

Run from the repository root with the project venv (needs Pillow):

    .venv/bin/python slicer_extension/tools/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "AnatPasteReview" / "Resources" / "Icons" / "AnatPasteReview.png"


def draw(size: int = 128) -> Image.Image:
    scale = 4  # draw large, downsample: smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([0, 0, s - 1, s - 1], radius=22 * scale, fill=(24, 30, 44, 255))
    lung = (205, 214, 226, 255)
    d.ellipse([18 * scale, 22 * scale, 60 * scale, 110 * scale], fill=lung)
    d.ellipse([68 * scale, 22 * scale, 110 * scale, 110 * scale], fill=lung)
    d.rectangle([60 * scale, 14 * scale, 68 * scale, 60 * scale], fill=(150, 160, 176, 255))  # trachea
    heat = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    h = ImageDraw.Draw(heat)
    h.ellipse([76 * scale, 54 * scale, 104 * scale, 82 * scale], fill=(235, 60, 30, 255))
    h.ellipse([83 * scale, 61 * scale, 97 * scale, 75 * scale], fill=(255, 220, 60, 255))
    heat = heat.filter(ImageFilter.GaussianBlur(3 * scale))
    img.alpha_composite(heat)
    return img.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw().save(OUT)
    print(OUT)
