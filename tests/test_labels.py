"""The two vertebra numberings (VerSe instance ids vs SCT levels) and the one --vert level parser."""

import pytest

from nnunet_spine.core.labels import (
    SCT_LEVELS,
    VERSE_IDS,
    parse_levels,
    sct_level_name,
    sct_level_to_verse,
    verse_to_sct_level,
    vertebra_name,
)


def test_parse_levels_one_behaviour():
    assert parse_levels("2:5") == [2, 3, 4, 5]
    assert parse_levels("5:2") == [2, 3, 4, 5]  # a range in either order
    assert parse_levels("2,4:5") == [2, 4, 5]
    assert parse_levels(" 3 , 3:4 ") == [3, 4]  # duplicates dropped, first order kept
    assert parse_levels("7") == [7]
    for bad in ("", "a", "2:", "2-5", "0:2", "2;x"):
        with pytest.raises(ValueError):
            parse_levels(bad)


def test_sct_and_verse_numberings_differ_only_below_l5():
    # C1..L5 agree in both numberings
    for name in ("C1", "C7", "T1", "T12", "L1", "L5"):
        assert SCT_LEVELS[name] == VERSE_IDS[name]
        assert verse_to_sct_level(VERSE_IDS[name]) == SCT_LEVELS[name]
    # written out by hand from the two conventions
    assert SCT_LEVELS["S1"] == 25 and VERSE_IDS["L6"] == 25
    assert VERSE_IDS["S1"] == 26 and VERSE_IDS["T13"] == 28
    assert verse_to_sct_level(26) == 25  # sacrum -> S1
    assert sct_level_to_verse(25) == 26
    assert sct_level_to_verse(27) == 26  # S3 is part of the one sacrum instance
    assert verse_to_sct_level(27) == 30 and sct_level_to_verse(30) == 27  # coccyx
    for no_sct in (25, 28):  # L6, T13: no SCT level, never silently renumbered
        with pytest.raises(ValueError, match="no SCT level"):
            verse_to_sct_level(no_sct)
    with pytest.raises(ValueError):
        sct_level_to_verse(31)


def test_level_names():
    assert [sct_level_name(n) for n in (1, 7, 8, 19, 20, 24, 25, 29)] == [
        "C1",
        "C7",
        "T1",
        "T12",
        "L1",
        "L5",
        "S1",
        "S5",
    ]
    assert vertebra_name(25) == "L6" and vertebra_name(26) == "S1"
    assert sct_level_name(99) == "99"
