# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model's small parts, exactly: metrics, the one-cycle schedule, early stopping, the split,
the learning-rate suggestion, the ARGUMENTS parser and augmentation of a chip with its label."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dltools.core.engine.class_scores import confusion
from dltools.core.errors import ArgumentError, InputDataError
from dltools.core.tools.train.chips import _augment
from dltools.core.tools.train.loop import split_indices, stopped_improving
from dltools.core.tools.train.lr_finder import suggest
from dltools.core.tools.train.metrics import epoch_metrics
from dltools.core.tools.train.options import class_weights, ignored_indexes, parse_arguments
from dltools.core.tools.train.schedule import one_cycle_lr


def test_pixel_metrics_from_a_confusion_matrix():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    m = confusion(truth, predicted, 3)
    assert m.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    out = epoch_metrics(m, ["background", "a", "b"], pixels=True)
    assert out["accuracy"] == 6 / 8
    a = out["per_class"]["a"]
    assert (a["precision"], a["recall"], a["iou"]) == (2 / 3, 1.0, 2 / 3)
    assert a["f1"] == pytest.approx(0.8)
    assert out["per_class"]["background"]["iou"] == 2 / 4  # 2 hits, 3 truths + 3 predictions - 2
    assert out["miou"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    objects = epoch_metrics(m, ["x", "y", "z"], pixels=False)
    assert objects["confusion_matrix"] == m.tolist() and "miou" not in objects


def test_one_cycle_schedule():
    assert one_cycle_lr(0, 100, 0.01) == pytest.approx(0.01 / 25)
    assert one_cycle_lr(30, 100, 0.01) == pytest.approx(0.01)
    assert one_cycle_lr(99, 100, 0.01) < 0.01 / 25 * 1.01
    rates = [one_cycle_lr(i, 100, 0.01) for i in range(100)]
    assert rates.index(max(rates)) == 30 and all(a <= b for a, b in zip(rates[:30], rates[1:31]))
    assert all(a >= b for a, b in zip(rates[30:], rates[31:]))


def test_early_stopping_rule():
    assert not stopped_improving([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert stopped_improving([1.0, 0.5, 0.6, 0.7, 0.5, 0.5, 0.5005])  # 5 epochs, none below 0.5 - 0.001
    assert not stopped_improving([1.0, 0.5, 0.6, 0.7, 0.5, 0.5, 0.498])


def test_split_is_seeded_and_keeps_a_chip_on_each_side():
    train, valid = split_indices(20, 10, seed=3)
    assert len(valid) == 2 and sorted(train + valid) == list(range(20))
    assert split_indices(20, 10, seed=3) == (train, valid) and split_indices(20, 10, seed=4) != (train, valid)
    assert len(split_indices(5, 0, seed=0)[1]) == 1 and len(split_indices(5, 100, seed=0)[0]) == 1
    with pytest.raises(InputDataError, match="at least two"):
        split_indices(1, 10, seed=0)


def test_learning_rate_suggestion_is_the_steepest_fall():
    rates = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert suggest(rates, [2.0, 1.9, 1.0, 0.9, 5.0]) == 1e-4  # 1.9 -> 1.0 is the steepest fall
    assert suggest(rates, [2.0, 1.0, 0.9, 0.8, 0.7]) == 1e-5
    assert suggest([1.0, 2.0, 3.0], [3.0, 1.0, 0.5]) == 1e-2  # bounded to 1e-2
    assert math.isclose(suggest([], []), 1e-3)


def test_arguments():
    assert parse_arguments("seed 3; lr_finder_steps 12;threads 1") == {"seed": 3, "lr_finder_steps": 12, "threads": 1}
    assert parse_arguments("") == {}
    with pytest.raises(ArgumentError, match="seed must be int, not 'x'"):
        parse_arguments("seed x")
    assert parse_arguments("class_balancing True;focal_loss false;ignore_classes [2, 5]") == {
        "class_balancing": True, "focal_loss": False, "ignore_classes": [2, 5]}
    with pytest.raises(ArgumentError, match="class_balancing is for UnetClassifier and DeepLab, not FeatureClassifier"):
        parse_arguments("class_balancing true", "FeatureClassifier")
    with pytest.raises(ArgumentError, match="class_balancing must be bool, not 'maybe'"):
        parse_arguments("class_balancing maybe")


def test_class_weights_follow_arcgis_learn():
    # background 1000 pixels, class 1: 300, class 2: 100, class 5: 0
    assert class_weights([1000, 300, 100, 0], [1, 2, 5], False, []) is None
    w = class_weights([1000, 300, 100, 0], [1, 2, 5], True, [])
    assert w[1:] == [400 / 300, 400 / 100, 0.0] and w[0] == pytest.approx((400 / 300 + 4.0) / 3)
    assert class_weights([1000, 300, 100, 0], [1, 2, 5], False, [2]) == [0.0, 1.0, 0.0, 1.0]
    assert ignored_indexes([1, 2, 5], [5]) == [0, 3]
    with pytest.raises(ArgumentError, match=r"ignore_classes names \[7\]"):
        ignored_indexes([1, 2, 5], [7])


def test_augmentation_turns_the_label_with_the_chip():
    image = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    label = np.arange(16).reshape(4, 4)
    for k in range(4):
        for flip in (False, True):
            turned, turned_label = _augment(image, label, k, flip)
            expected = np.rot90(label, k)[:, ::-1] if flip else np.rot90(label, k)
            assert np.array_equal(turned_label, expected)
            assert np.array_equal(turned[1] - 16, expected)  # band 1 is band 0 + 16: same movement
    assert _augment(image, 3, 1, True)[1] == 3  # a chip's class does not turn
