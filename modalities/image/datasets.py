"""Real image datasets: scikit-learn's handwritten ``digits`` and any ``folder`` with one subfolder per class.

Every dataset yields ``x [N, 3, size, size]`` float in ``[-1, 1]`` (the range the U-Net's ``snap`` clips to).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from crossguide.data import ConditionalDataset, Splits, split
from crossguide.errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def image_info(x: Tensor) -> dict[str, Any]:
    """The dataset facts the U-Net needs to be rebuilt from a checkpoint: ``{"size", "channels"}``."""
    return {"size": int(x.shape[-1]), "channels": int(x.shape[1])}


def no_path(name: str, path: Path | None) -> None:
    if path is not None:
        raise UsageError(f"the image {name!r} dataset is built in and takes no --data path (got {str(path)!r}); "
                         "use --dataset folder for your own images")


def from_unit(x: Tensor) -> Tensor:
    """``[0, 1] -> [-1, 1]``."""
    return 2 * x - 1


def digits_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """scikit-learn's 1,797 handwritten 8x8 digits (UCI optdigits), bilinearly upsampled to ``size``, grey in
    three channels; attribute ``digit``; a fixed split (``test_fraction``, ``data_seed``)."""
    from sklearn.datasets import load_digits

    no_path("digits", path)
    bunch = load_digits()
    size = int(options["size"])
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = from_unit(x.clamp(0, 1)).expand(-1, 3, -1, -1).contiguous()  # [N, 3, size, size]
    attributes = {"digit": [str(d) for d in range(10)]}
    data = ConditionalDataset("digits", x, {"digit": torch.tensor(bunch.target, dtype=torch.long)}, attributes,
                              image_info(x))
    return split(data, float(options.get("test_fraction", 0.2)), int(options.get("data_seed", 1234)))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as RGB: transparency is composited onto white, 16-bit and float greys are rescaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(a.max()), 1.0)
        image = Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def load_image(path: Path, size: int) -> Tensor:
    """One image file as ``[3, size, size]`` in ``[-1, 1]``: centre-cropped to a square and resized."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(ImageOps.exif_transpose(im) or im)
    except Exception as e:  # PIL's decoders raise many types on malformed files (SyntaxError, struct.error, ...)
        raise UsageError(f"cannot read image {str(path)!r}: {e.__class__.__name__}: {e}") from None
    rgb = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)  # [H, W, 3]
    return from_unit(arr.permute(2, 0, 1))


def class_files(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (by suffix, sorted), from ``root``'s non-hidden subfolders."""
    if not root.exists():
        raise UsageError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise UsageError(f"--data {str(root)!r} is not a folder; expected one subfolder of images per class")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UsageError(f"image folder {str(root)!r} has no class subfolders; expected one subfolder per class")
    files = {}
    for d in classes:
        found = sorted(f for f in d.iterdir()
                       if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(f"class folder {str(d)!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files[d.name] = found
    return files


def folder_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Images under ``path/<class>/``, resized to ``size``; attribute ``label`` (the subfolder names); a fixed
    split (``test_fraction``, ``data_seed``). Every mode PIL reads (L, P, RGBA, 16-bit, ...) is converted to
    RGB; an unreadable file or an empty class folder is a :class:`UsageError` that names it."""
    if path is None:
        raise UsageError("the image 'folder' dataset needs --data PATH (a folder with one subfolder per class)")
    files = class_files(Path(path))
    size = int(options["size"])
    x = torch.stack([load_image(f, size) for fs in files.values() for f in fs])  # [N, 3, size, size]
    labels = torch.tensor([i for i, fs in enumerate(files.values()) for _ in fs], dtype=torch.long)
    if len(x) < 2:
        raise UsageError(f"image folder {str(path)!r} has {len(x)} image; at least 2 are needed for a train/test split")
    data = ConditionalDataset("folder", x, {"label": labels}, {"label": list(files)}, image_info(x))
    return split(data, float(options.get("test_fraction", 0.2)), int(options.get("data_seed", 1234)))
