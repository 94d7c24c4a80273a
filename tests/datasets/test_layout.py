"""Food-101 layout parsing: what a build accepts, and the errors raised before anything is written."""
import os

import pytest

from food101.data import LayoutError, build_lmdb
from food101.data.synthetic import make_demo_dataset
from food101.data.layout import Food101Layout


@pytest.fixture()
def demo(tmp_path):
    make_demo_dataset(str(tmp_path / "food"), train_per_class=4, test_per_class=2, max_side=64)
    return tmp_path / "food"


def test_items_follow_meta_files_with_labels_from_classes_txt(demo):
    layout = Food101Layout(demo)
    assert layout.classes == ["apple_pie", "caesar_salad", "pizza", "ramen", "sushi", "waffles"]
    assert layout.labels[0] == "Apple pie"
    items = layout.items("train")
    lines = (demo / "meta" / "train.txt").read_text().split()
    assert [i.image_id for i in items] == lines
    for item in items:
        assert item.label == layout.classes.index(item.class_name)
        assert os.path.isfile(item.path) and item.path.endswith(item.image_id + ".jpg")
    assert len(layout.items("test")) == 12


def test_class_subset_relabels_in_classes_txt_order_and_limit_per_class(demo):
    layout = Food101Layout(demo)
    items = layout.items("train", classes=["sushi", "pizza"], limit_per_class=3)
    assert {i.class_name for i in items} == {"pizza", "sushi"}
    assert {i.label for i in items if i.class_name == "pizza"} == {0}
    assert {i.label for i in items if i.class_name == "sushi"} == {1}
    assert sum(i.class_name == "pizza" for i in items) == 3


def test_unknown_class_in_selection_suggests_names(demo):
    with pytest.raises(LayoutError, match="pizzza.*did you mean pizza"):
        Food101Layout(demo).items("train", classes=["pizzza"])


def test_missing_class_folder_is_an_error_before_writing(demo, tmp_path):
    os.rename(demo / "images" / "ramen", demo / "images" / "ramen_moved")
    out = tmp_path / "out_lmdb"
    with pytest.raises(LayoutError, match="class 'ramen'.*no folder images/ramen/"):
        build_lmdb(str(demo), "train", str(out), size=32, workers=0, progress=False)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out_lmdb")]


def test_meta_line_pointing_at_nothing_is_an_error_listing_every_problem(demo, tmp_path):
    with open(demo / "meta" / "train.txt", "a") as f:
        f.write("pizza/123\nsushi/456\nburrito/1\n")
    out = tmp_path / "out_lmdb"
    with pytest.raises(LayoutError) as err:
        build_lmdb(str(demo), "train", str(out), size=32, workers=0, progress=False)
    text = str(err.value)
    assert "3 problem(s)" in text and "nothing was written" in text
    assert "no file images/pizza/123.jpg" in text and "no file images/sushi/456.jpg" in text
    assert "class 'burrito' is not in meta/classes.txt" in text
    assert not out.exists()


def test_duplicate_and_malformed_lines(demo):
    first = (demo / "meta" / "train.txt").read_text().split()[0]
    with open(demo / "meta" / "train.txt", "a") as f:
        f.write(first + "\nnot-a-pair\n")
    with pytest.raises(LayoutError) as err:
        Food101Layout(demo).items("train")
    assert "listed twice" in str(err.value) and "expected '<class>/<id>'" in str(err.value)


def test_not_a_layout(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        Food101Layout(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(LayoutError, match="classes.txt"):
        Food101Layout(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "classes.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="split must be one of"):
        Food101Layout(tmp_path).items("validation")
