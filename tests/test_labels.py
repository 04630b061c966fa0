"""Labels for probes (and fine-tuning): class sub-folders, file-name patterns, synthetic attributes,
and whether a target is a class or a number."""

from __future__ import annotations

import numpy as np
import pytest

from mae_utils.synthetic import ATTRIBUTES, face_attributes
from mae_utils.tools.labels import (check_classes, check_pattern, decide_task, folder_labels,
                                    nested_repeat, regex_labels, synthetic_labels)
from mae_utils.util.errors import UserError

UTK = r"^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_"


# ---------------------------------------------------------------------- synthetic attributes
def test_synthetic_attributes_are_fixed_per_face_and_typed() -> None:
    a = face_attributes(4, range(30))
    b = face_attributes(4, [7, 3])
    assert set(a) == set(ATTRIBUTES)
    for name, (kind, _) in ATTRIBUTES.items():
        assert len(a[name]) == 30 and list(b[name]) == [a[name][7], a[name][3]]
        assert a[name].dtype.kind == ("f" if kind == "number" else "U")
    assert set(a["glasses"]) <= {"0", "1"} and len(set(a["hair_colour"])) > 2
    # a beard is drawn with a moustache, so every bearded face has one
    assert all(m == "1" for m, bd in zip(a["moustache"], a["beard"]) if bd == "1")
    labels = synthetic_labels(4, range(30), "skin_tone")
    assert labels.task == "regress" and np.allclose(labels.values, a["skin_tone"], atol=1e-5)


def test_synthetic_labels_take_the_generators_kind_unless_told() -> None:
    auto = synthetic_labels(4, range(60), "hair_colour")
    assert auto.task == "classify" and auto.source == "synthetic"
    assert auto.notes[-1].endswith("(the generator's own kind)")
    told = synthetic_labels(4, range(60), "skin_tone", task="classify", check=False)
    assert told.task == "classify" and "asked for (--task classify)" in told.notes[-1]
    with pytest.raises(UserError, match="no attribute 'wings'; choose one of"):
        synthetic_labels(4, range(10), "wings")


# ---------------------------------------------------------------------- class or number
@pytest.mark.parametrize(("values", "task"), [
    (["0", "1", "1"], "classify"), ([str(a) for a in range(1, 60)], "regress"),
    ([f"{p:02d}" for p in range(1, 40)], "classify"), (["cat", "dog"], "classify"),
    (["0", "1", "4"], "classify"),
])
def test_auto_task(values, task) -> None:
    assert decide_task(values)[0] == task


def test_regressing_names_is_refused() -> None:
    with pytest.raises(UserError, match="needs numbers.*'cat'"):
        decide_task(["cat", "dog"], "regress")


def test_check_classes_wants_two_classes_of_two_images() -> None:
    check_classes(np.array(["a", "a", "b", "b"]), "t", "DIR")
    with pytest.raises(UserError, match="single class"):
        check_classes(np.array(["a", "a"]), "t", "DIR")
    with pytest.raises(UserError, match=r"2 class\(es\) with one image \('b', 'c'\)"):
        check_classes(np.array(["a", "a", "b", "c"]), "t", "DIR")


# ---------------------------------------------------------------------- class sub-folders
def test_folder_labels_and_their_errors() -> None:
    labels = folder_labels(["a/1.png", "a/2.png", "b/3.png", "b/x/4.png", "loose.png"], "DIR")
    assert labels.values.tolist() == ["a", "a", "b", "b"] and labels.keep.tolist() == [0, 1, 2, 3]
    assert any("left out 1" in n for n in labels.notes)
    with pytest.raises(UserError, match="DIR has no labels.*--label-regex"):
        folder_labels(["1.png", "2.png"], "DIR")
    with pytest.raises(UserError, match=r"1 class\(es\) with one image \('b'\)"):
        folder_labels(["a/1.png", "a/2.png", "b/3.png"], "DIR")
    with pytest.raises(UserError, match="single class"):
        folder_labels(["a/1.png", "a/2.png"], "DIR")


def test_folder_labels_read_the_first_folder_only_and_may_be_numbers() -> None:
    """The class is the folder right below the root, whatever lies deeper; numeric folder names
    with many values are regressed, as any other label."""
    names = [f"{age}/sub/{k}.png" for age in range(10, 40) for k in range(2)]
    labels = folder_labels(names, "DIR", target="age")
    assert labels.task == "regress" and labels.target == "age" and labels.source == "folders"
    assert labels.values[:4].tolist() == [10.0, 10.0, 11.0, 11.0]
    as_classes = folder_labels(names, "DIR", task="classify")
    assert as_classes.task == "classify" and len(set(as_classes.values)) == 30


def test_folder_labels_without_checks_keep_a_lonely_class() -> None:
    labels = folder_labels(["a/1.png", "a/2.png", "b/3.png"], "DIR", check=False)
    assert labels.values.tolist() == ["a", "a", "b"]


# ---------------------------------------------------------------------- file-name patterns
def test_regex_labels_read_utkface_and_yale_names() -> None:
    names = ["sub/25_0_1_2017.jpg.chip.jpg", "3_1_0_2016.jpg", "61_1_20170109.jpg", "40_0_4_x.jpg",
             "8_1_1_y.jpg", "70_0_2_z.jpg", "33_1_3_w.jpg", "5_0_1_v.jpg"]
    gender = regex_labels(names, UTK, "gender", "utk")
    assert gender.task == "classify" and gender.values.tolist() == ["0", "1", "0", "1", "0", "1", "0"]
    assert gender.keep.tolist() == [0, 1, 3, 4, 5, 6, 7]
    assert any("left out 1 of 8" in n for n in gender.notes)
    age = regex_labels(names, UTK, "age", "utk", task="regress")
    assert age.values.tolist() == [25.0, 3.0, 40.0, 8.0, 70.0, 33.0, 5.0]
    yale_names = [f"yaleB{p:02d}_P00A+0{k}.png" for p in (1, 2, 11, 39) for k in range(2)]
    yale = regex_labels(yale_names, r"yaleB(?P<person>\d\d)_", None, "yale")
    assert yale.target == "person" and yale.task == "classify"
    assert sorted(set(yale.values)) == ["01", "02", "11", "39"]


def test_a_pattern_is_searched_in_the_file_name_not_its_folders() -> None:
    """A folder named like a label must not give the label: only the file's own name is read."""
    names = ["1_0_x/a.png", "2_1_y/b.png", "3_0_z.png", "4_1_w.png", "5_0_v.png", "6_1_u.png"]
    labels = regex_labels(names, r"^\d+_(?P<g>\d)_", None, "DIR")
    assert labels.keep.tolist() == [2, 3, 4, 5] and labels.values.tolist() == ["0", "1", "0", "1"]


def test_an_optional_group_that_did_not_take_part_leaves_the_file_out() -> None:
    names = ["a_1.png", "b_2.png", "c_.png", "d_1.png", "e_2.png"]
    labels = regex_labels(names, r"_(?P<n>\d)?\.", None, "DIR")
    assert labels.keep.tolist() == [0, 1, 3, 4]


@pytest.mark.parametrize(("pattern", "target", "message"), [
    (r"^(?P<age>\d+)_", "gender", "not a named group.*its groups: age"),
    (r"^(?P<age>\d+)_(?P<g>\d)_", None, "several named groups"),
    (r"^(\d+)_", None, "no named group"),
    (r"^(?P<age>\d+", "age", "not a valid regular expression"),
    (r"^zzz(?P<age>\d+)", "age", "matches none of the 3 file names"),
])
def test_bad_patterns_are_named(pattern, target, message) -> None:
    with pytest.raises(UserError, match=message):
        regex_labels(["1_0_a.png", "2_1_b.png", "3_0_c.png"], pattern, target, "DIR")


def test_patterns_are_shown_as_typed() -> None:
    names = ["1_0_a.png", "2_1_b.png", "3_0_c.png", "4_1_d.png"]
    pattern = r"^\d+_(?P<g>\d)_"
    note = regex_labels(names, pattern, None, "DIR", check=False).notes[0]
    assert f"group 'g' of '{pattern}' in" in note and "\\\\" not in note
    for bad in (r"^zzz(?P<g>\d)", r"^(\d)_"):
        with pytest.raises(UserError) as raised:
            regex_labels(names, bad, None, "DIR")
        assert f"--label-regex '{bad}'" in str(raised.value)


@pytest.mark.parametrize(("pattern", "nested"), [
    (r"(?P<x>([\d_]+)+)Q", True), (r"(a*)*", True), (r"(?:x|(a+))*", True), (r"(a{1,3})+", True),
    (r"^(?P<age>\d+)_(?P<gender>\d)_", False), (r"yaleB(?P<person>\d\d)_", False),
    (r"(\d{2}_)+", False), (r"(?P<x>a)+", False),
])
def test_nested_repeats_are_found(pattern, nested) -> None:
    assert nested_repeat(pattern) is nested


def test_check_pattern_refuses_a_pattern_that_could_hang() -> None:
    assert check_pattern(UTK).groupindex["age"] == 1
    with pytest.raises(UserError, match="repeats a part that itself repeats"):
        check_pattern(r"(?P<x>([\d_]+)+)Q")
