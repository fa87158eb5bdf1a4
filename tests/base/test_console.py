"""The console and the logs: our lines only, plain text off a terminal, Ray's output in files.

No Ray is started here; the end-to-end checks on a real sweep are in test_sweep.py.
"""

import io
import logging

import pytest

from ninsweep.console import Console, StepProgress, route_logging
from ninsweep.fmt import clock, first_line


@pytest.mark.parametrize("seconds,text", [(0, "0:00"), (59.6, "1:00"), (61, "1:01"),
                                          (3600 + 62, "1:01:02"), (-3, "0:00")])
def test_duration(seconds, text):
    assert clock(seconds) == text


def test_first_line_skips_blank_lines_and_cuts_long_ones():
    assert first_line("\n\n  boom: it broke \nsecond") == "boom: it broke"
    assert first_line("x" * 500, limit=20) == "x" * 17 + "..."
    assert first_line("") == ""


def test_console_off_a_terminal_writes_plain_lines_and_quiet_keeps_only_errors():
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    console.line("epoch 1")
    console.text("final table")
    console.error("it failed")
    assert "\x1b" not in out.getvalue() + err.getvalue()
    assert out.getvalue().splitlines()[0].endswith("] epoch 1")
    assert out.getvalue().splitlines()[1] == "final table" and err.getvalue() == "it failed\n"

    out, err = io.StringIO(), io.StringIO()
    quiet = Console(out, err, quiet=True)
    quiet.line("epoch 1")
    quiet.text("final table")
    quiet.error("it failed")
    assert out.getvalue() == "final table\n" and err.getvalue() == "it failed\n"






def test_diagnostics_go_through_logging_and_the_cli_routes_them_to_stderr():
    err = io.StringIO()
    logger = logging.getLogger("ninsweep")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        route_logging(err)
        logging.getLogger("ninsweep.test").warning("a diagnostic")
        logging.getLogger("ninsweep.test").info("not at the default level")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert err.getvalue() == "ninsweep: WARNING: a diagnostic\n"








def test_train_progress_within_an_epoch_off_a_terminal_is_plain_periodic_lines():
    out = io.StringIO()
    steps = StepProgress(Console(out, io.StringIO()), epoch_of=lambda: 3, every_s=0.0)
    for step in range(1, 5):
        steps(step, 4)
    lines = out.getvalue().splitlines()
    # every step but the last (the epoch's own line follows it), as plain text
    assert [line.split("] ", 1)[1].split(",")[0] for line in lines] == \
        ["epoch 3: step 1/4 (25%)", "epoch 3: step 2/4 (50%)", "epoch 3: step 3/4 (75%)"]
    assert "\x1b" not in out.getvalue()


def test_trainer_calls_the_step_callback_after_every_training_step():
    from ninsweep.config import TrialConfig
    from ninsweep.core.train import Trainer

    cfg = TrialConfig.from_dict({
        "data": {"source": "synthetic", "synthetic_train_size": 96, "synthetic_test_size": 32,
                 "synthetic_image_size": 8},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1}})
    calls = []
    Trainer(cfg).fit(on_step=lambda step, steps: calls.append((step, steps)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_a_library_user_gets_the_trainers_notes_through_logging(caplog):
    from ninsweep.config import TrialConfig
    from ninsweep.core.train import Trainer

    cfg = TrialConfig.from_dict({
        "data": {"source": "synthetic", "synthetic_train_size": 64, "synthetic_test_size": 32,
                 "synthetic_image_size": 8},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1}})
    with caplog.at_level(logging.INFO, logger="ninsweep"):
        Trainer(cfg)
    assert any(record.name == "ninsweep.train" and record.getMessage().startswith("data: ")
               for record in caplog.records)
