"""The names of the numbers every epoch produces, in one place.

The training loop fills them, the Ray trainable reports them, the analysis reads them back:
all three import these names instead of spelling string literals.
"""

EPOCH = "epoch"  # number of finished epochs, 1-based
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"  # fraction in [0, 1]
TEST_LOSS = "test_loss"
TEST_ACC = "test_acc"  # fraction in [0, 1]
LR = "lr"  # learning rate used during the epoch
EPOCH_TIME_S = "epoch_time_s"  # training + evaluation wall time of the epoch
IMAGES_PER_S = "images_per_s"  # training images per second of training time

EPOCH_METRICS = (EPOCH, TRAIN_LOSS, TRAIN_ACC, TEST_LOSS, TEST_ACC, LR, EPOCH_TIME_S, IMAGES_PER_S)
# Ray's own key in every record: wall time since the trial (re)started.
TIME_TOTAL_S = "time_total_s"

# Only on CUDA: the most GPU memory the run's caching allocator has held so far, in MiB. It is
# what several trials sharing one GPU (fractional resources) must fit into together.
PEAK_GPU_MEM_MB = "peak_gpu_mem_mb"

# Only when data.val_size > 0: the same numbers on the validation split held out of the
# training set. The analysis picks a trial's "best epoch" by VAL_ACC when it is there, so
# the test set is never used to choose.
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"  # fraction in [0, 1]
VAL_METRICS = (VAL_LOSS, VAL_ACC)
TEST_METRICS = (TEST_LOSS, TEST_ACC)  # never what a scheduler or a searcher tunes on
# Set (to 1) on the record of the epoch after which the space's scheduler stopped the trial
# early (ASHA...): the trial's last record, before its planned last epoch.
STOPPED_EARLY = "stopped_early"
# Metric -> its TensorBoard scalar tag (tags group in TensorBoard by their first part). A
# metric without a tag still reaches result.json, the tables and the other trackers.
TENSORBOARD_TAGS = {
    TEST_ACC: "accuracy/test",
    TRAIN_ACC: "accuracy/train",
    VAL_ACC: "accuracy/val",
    TEST_LOSS: "loss/test",
    TRAIN_LOSS: "loss/train",
    VAL_LOSS: "loss/val",
    LR: "learning_rate",
    IMAGES_PER_S: "speed/images_per_s",
    EPOCH_TIME_S: "speed/epoch_time_s",
    PEAK_GPU_MEM_MB: "gpu/peak_mem_mb",
}
# Reported instead of epochs by a trial whose configuration cannot run (a batch larger than
# its data, ...): the message, once. Such a trial is not retried.
CONFIG_ERROR = "ninsweep_config_error"
# Set (to 1) on a record that a restored trial re-reports from its checkpoint's history
# because the driver died before logging it: that epoch was not trained again.
REPLAYED = "replayed_from_checkpoint"
# Set, on a restored trial's first report, to the line saying which damaged checkpoints it
# skipped and where it continues from: the sweep's console prints it.
RESTORED = "ninsweep_restored"

# What a sweep ranks its configurations by (a space's `objective: {metric, mode}`): the final
# value of one of these, higher ("max") or lower ("min") being better. The analysis, the
# factor effects and the best-config choice follow it; accuracies appear there in percent.
OBJECTIVE_METRICS = (TEST_ACC, TEST_LOSS, VAL_ACC, VAL_LOSS, TRAIN_ACC, TRAIN_LOSS)
OBJECTIVE_MODES = ("max", "min")
DEFAULT_OBJECTIVE = {"metric": TEST_ACC, "mode": "max"}


ACCURACY_METRICS = (TRAIN_ACC, TEST_ACC, VAL_ACC)  # fractions in [0, 1], shown in percent


def is_accuracy(metric: str) -> bool:
    """A fraction in [0, 1], shown in percent."""
    return metric in ACCURACY_METRICS


def objective_column(metric: str) -> str:
    """The trial table's column of a metric's final value: ``final_test_acc_pct`` (accuracies
    in percent), ``final_test_loss``."""
    return f"final_{metric}_pct" if is_accuracy(metric) else f"final_{metric}"


def long_name(metric: str) -> str:
    """A metric in words: ``test accuracy``, ``validation loss``."""
    split, _, kind = metric.partition("_")
    return f"{'validation' if split == 'val' else split} {'accuracy' if kind == 'acc' else kind}"


def heading(metric: str) -> str:
    """How a table's heading names a metric: ``test acc %``, ``test loss``."""
    return metric.replace("_", " ") + (" %" if is_accuracy(metric) else "")


def digits(metric: str) -> int:
    """Decimals a table shows of a metric: accuracies in percent to 0.01, losses to 0.0001."""
    return 2 if is_accuracy(metric) else 4


def difference_unit(metric: str, short: bool = True) -> str:
    """The unit of a difference of a metric's values: accuracies in (percentage) points, the
    losses (cross-entropy, natural log) in nats."""
    if is_accuracy(metric):
        return "points" if short else "percentage points"
    return "nats"
