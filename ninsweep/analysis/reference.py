"""The lab report's numbers (``docs/lab4-reference.md``): what a lab4 study is compared with."""

from __future__ import annotations

from typing import Optional

# The lab report's final test accuracy (%) after 164 epochs, one run each
# (docs/lab4-reference.md). None: the report has no number (its Maxout never worked).
REFERENCE_SPACE = "lab4"
REFERENCE_EPOCHS = 164
REFERENCE_ACC_PCT: dict[str, Optional[float]] = {
    "ELU+BN+WI": 91.67,
    "ELU+BN": 91.34,
    "ReLU+BN": 91.13,  # the report's "BN (ReLU)"
    "ReLU+BN+WI": 90.98,  # "BN+WI (ReLU)"
    "ELU+WI": 90.94,
    "ELU": 90.76,
    "ReLU": 90.50,  # "None (ReLU)"
    "ReLU+WI": 90.49,  # "WI (ReLU)"
    "LeakyReLU+BN+WI": 90.91,
    "Maxout+BN+WI": None,
}



def is_reference_space(space_name: Optional[str]) -> bool:
    """Whether a space reproduces the lab report's grid ("lab4", "lab4-seeds", ...)."""
    if not space_name:
        return False
    name = str(space_name).lower()
    return name == REFERENCE_SPACE or name.startswith((REFERENCE_SPACE + "-", REFERENCE_SPACE + "_"))

