"""Image datasets (shapes, digits, folder), including bad folders, and the PNG writers."""

import numpy as np
import pytest
import torch
from PIL import Image

from crossguide import conditions as C
from crossguide.cli import main
from crossguide.errors import UsageError
from crossguide.modalities.image import MODALITY
from crossguide.modalities.image.pictures import MAX_COLS, MAX_ROWS
from crossguide.modalities.image.shapes import render

OPTIONS = {"size": 16, "train_per_condition": 6, "test_per_condition": 2, "radius_px": [3.0, 5.5]}


def test_shapes_is_seeded_balanced_and_in_range():
    a = MODALITY.datasets["shapes"](OPTIONS, None, 0)
    b = MODALITY.datasets["shapes"](OPTIONS, None, 7)  # the run's seed does not change the data
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.train.x[:32], a.test.x[:32])  # train and test come from different draws
    assert a.train.x.shape == (16 * 6, 3, 16, 16) and a.test.x.shape == (16 * 2, 3, 16, 16)
    assert a.train.x.min() >= -1 and a.train.x.max() <= 1
    pairs = {(int(s), int(c)) for s, c in zip(a.train.cond["shape"], a.train.cond["color"], strict=True)}
    assert len(pairs) == 16  # every (shape, colour) pair
    assert a.train.info == {"size": 16, "channels": 3}
    other = MODALITY.datasets["shapes"]({**OPTIONS, "data_seed": 99}, None, 0)
    assert not torch.equal(a.train.x, other.train.x)


def test_shapes_are_drawn_in_their_colour_over_a_textured_background():
    g = torch.Generator().manual_seed(0)
    n = 8
    x = (render(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 16, g, (5.0, 5.0)) + 1) / 2
    red = (x[:, 0] > 0.6) & (x[:, 1] < 0.35) & (x[:, 2] < 0.35)  # [N, H, W] pixels of the red disc
    area = red.flatten(1).sum(1).float()
    assert ((area > 0.5 * np.pi * (0.85 * 5) ** 2) & (area < 1.5 * np.pi * (0.85 * 5) ** 2)).all()
    background = x[~red[:, None].expand_as(x)]
    assert background.std() > 0.08  # not a flat background


def test_tilt_limits_the_rotation_of_bars():
    """Bars turned by at most ``tilt_deg``: untilted they are wider than tall; tilted by 90 degrees, taller."""
    bar, red = torch.full((8,), 1), torch.zeros(8, dtype=torch.long)
    for tilt, wide in ((0.0, True), (90.0, False)):
        x = render(bar, red, 32, torch.Generator().manual_seed(0), (8.0, 10.0), tilt)
        mask = (x[:, 0] - x[:, 1]) > 1.0  # [N, H, W] red fill against a greyish background
        width = mask.any(1).sum(-1)  # columns touched
        height = mask.any(2).sum(-1)  # rows touched
        if wide:
            assert (width > 1.5 * height).all()
        else:
            assert (height > 1.5 * width).any()  # some bars stand up when any angle up to 90 is allowed


def test_builtin_datasets_reject_a_data_path(tmp_path):
    for name in ("shapes", "digits"):
        with pytest.raises(UsageError, match="takes no --data"):
            MODALITY.datasets[name](OPTIONS, tmp_path, 0)


def test_digits_are_upsampled_real_digits():
    splits = MODALITY.datasets["digits"]({"size": 16}, None, 0)
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.train.x.shape[1:] == (3, 16, 16)
    assert splits.train.attributes == {"digit": [str(d) for d in range(10)]}
    assert splits.train.x.min() >= -1 and splits.train.x.max() <= 1
    assert torch.equal(splits.train.x[:, 0], splits.train.x[:, 2])  # grey
    assert set(splits.test.cond["digit"].tolist()) == set(range(10))


def _save(path, mode, size=(20, 30), **kw):
    rng = np.random.default_rng(len(str(path)))
    rgb = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8))
    if mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        image = rgb.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)


def _good_folder(root):
    _save(root / "cats" / "a.png", "RGB")
    _save(root / "cats" / "b.png", "L", size=(40, 10))
    _save(root / "cats" / "c.png", "RGBA")
    _save(root / "dogs" / "d.gif", "P")
    _save(root / "dogs" / "e.png", "I;16")
    _save(root / "dogs" / "f.jpg", "RGB", size=(64, 64))
    (root / "dogs" / "notes.txt").write_text("not an image: ignored")
    (root / ".hidden").mkdir()
    return root


def test_folder_loads_mixed_modes_and_sizes(tmp_path):
    splits = MODALITY.datasets["folder"]({"size": 16, "test_fraction": 0.34}, _good_folder(tmp_path), 0)
    assert splits.train.attributes == {"label": ["cats", "dogs"]}
    x = torch.cat([splits.train.x, splits.test.x])
    labels = torch.cat([splits.train.cond["label"], splits.test.cond["label"]])
    assert x.shape == (6, 3, 16, 16) and len(splits.test) == 2
    assert x.min() >= -1 and x.max() <= 1
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "cats").mkdir(parents=True), "has no images"),
        (lambda root: (root / "cats").mkdir(parents=True) or (root / "cats" / "x.png").write_bytes(b"garbage"),
         "cannot read image .*x.png"),
        (lambda root: root.mkdir(), "no class subfolders"),
        (lambda root: None, "does not exist"),
    ],
)
def test_bad_folders_are_one_line_usage_errors(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(UsageError, match=message) as info:
        MODALITY.datasets["folder"]({"size": 16}, root, 0)
    assert "\n" not in str(info.value)


def test_folder_needs_a_path_and_a_directory(tmp_path):
    with pytest.raises(UsageError, match="needs --data"):
        MODALITY.datasets["folder"]({"size": 16}, None, 0)
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(UsageError, match="is not a folder"):
        MODALITY.datasets["folder"]({"size": 16}, tmp_path / "f.png", 0)


def test_cli_reports_an_unreadable_file_by_name(tmp_path, capsys):
    root = _good_folder(tmp_path / "data")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code = main(["bench", "image", "--dataset", "folder", "--data", str(root), "--preset", "smoke",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: cannot read image") and "broken.jpg" in err and "\n" not in err


def test_write_samples_one_png_per_sample(tmp_path):
    samples = torch.rand(3, 3, 16, 16) * 2 - 1
    labels = [{"shape": "circle", "color": "red"}, {"shape": "plus", "color": "blue"}, {"shape": "plus"}]
    paths = MODALITY.write_samples(samples, labels, tmp_path / "s", {})
    assert len(paths) == 3 and len(set(paths)) == 3
    for path, sample in zip(paths, samples, strict=True):
        with Image.open(tmp_path / "s" / path) as im:
            assert im.size == (16, 16) and im.mode == "RGB"
            expected = ((sample + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            assert np.array_equal(np.asarray(im), expected)


def _grid_size(tmp_path, attributes, per_condition):
    labels = [C.names(c, attributes) for c in C.all_choices(attributes) for _ in range(per_condition)]
    MODALITY.draw(torch.zeros(len(labels), 3, 16, 16), labels, tmp_path / "g.png", "title", {})
    with Image.open(tmp_path / "g.png") as im:
        return im.size


def test_grid_has_a_row_per_condition_and_a_column_per_sample_up_to_limits(tmp_path):
    cell = 48 + 2  # 16 px enlarged 3x, plus padding
    attributes = {"shape": ["circle", "square"], "color": ["red", "green", "blue"]}
    w4, h4 = _grid_size(tmp_path, attributes, 4)
    w5, h5 = _grid_size(tmp_path, attributes, 5)
    w_many, h_many = _grid_size(tmp_path, attributes, 30)
    assert h4 == h5 == h_many == 18 + 6 * cell  # six conditions: six rows
    assert w5 - w4 == cell and w_many - w4 == (MAX_COLS - 4) * cell
    _, h_capped = _grid_size(tmp_path, {"label": [str(i) for i in range(40)]}, 2)
    assert h_capped == 18 + MAX_ROWS * cell
