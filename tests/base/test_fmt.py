"""ninsweep.fmt: the one home of durations, fixed-width tables and one-line error quotes."""

import math

import pytest

from ninsweep import fmt


@pytest.mark.parametrize("seconds,text", [(0, "0.0s"), (59.94, "59.9s"), (60, "1m00s"),
                                          (3599.6, "1h00m"), (float("nan"), "-"),
                                          (math.inf, "-"), ("n/a", "-")])
def test_duration_in_a_table(seconds, text):
    assert fmt.duration(seconds) == text


def test_first_line_of_an_exception_is_its_message_or_its_type():
    assert fmt.first_line(ValueError("\n  bad value  \n  details")) == "bad value"
    assert fmt.first_line(KeyError()) == "KeyError"
    assert fmt.first_line(OSError("y" * 400), 300) == "y" * 297 + "..."
    assert fmt.first_line("short", 5) == "short"


def test_one_line_keeps_every_word_of_a_multi_line_message():
    assert fmt.one_line("a:\n  b   c\n\td") == "a: b c d"


def test_table_pads_columns_to_their_widest_cell_and_aligns_them():
    lines = fmt.table(["name", "n", "note"], [["alpha", 7, ""], ["b", 1234, "x"]],
                      align="<>", rule=True)
    assert lines == ["name      n  note",
                     "-----  ----  ----",
                     "alpha     7",  # trailing blanks cut
                     "b      1234  x"]


def test_table_without_a_header_can_be_indented():
    assert fmt.table(None, [["a", "bb"], ["ccc", "d"]], indent="  ") == ["  a    bb",
                                                                          "  ccc  d"]
    assert fmt.table(["only", "header"], []) == ["only  header"]


def test_markdown_table_escapes_pipes_and_newlines_in_cells():
    assert fmt.markdown_table(["a", "n"], [["x|y", 3], ["two\nlines", 10]], right={"n"}) == [
        "| a | n |", "| --- | ---: |", "| x\\|y | 3 |", "| two lines | 10 |"]


def test_last_line_quotes_the_line_a_traceback_ends_with():
    traceback = "Traceback (most recent call last):\n  File 'x.py'\nValueError: bad\n\n"
    assert fmt.last_line(traceback) == "ValueError: bad"
    assert fmt.last_line("x" * 300, 200) == "x" * 197 + "..."
    assert fmt.last_line(" \n\n") is None
