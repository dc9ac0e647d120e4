"""The parameter schema: one :class:`Param` per setting a form shows and a command line sets.

Backbones and blocks (plugins) describe their parameters with it, and so do the spec's own head
and augmentation; :meth:`Param.coerce` turns what a user typed into the parameter's type or
says, in one line, why not. Plain data: never imports TensorFlow.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any

from cnnstudio.core.errors import SpecError

PARAM_KINDS = ("int", "float", "bool", "choice", "str", "weights", "blocks")

# Spellings a command line or a settings file may use for booleans.
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

WEIGHTS_SUFFIXES = (".weights.h5", ".h5")


@dataclass(frozen=True)
class Param:
    """One entry of a parameter schema; the window turns a tuple of these into a form.

    ``kind`` is one of :data:`PARAM_KINDS`. ``weights`` takes ``"imagenet"``, ``"none"`` or the
    path of a ``.weights.h5`` / ``.h5`` file of the convolutional base; ``blocks`` takes a list
    of ``{"type": <block id>, <block params>...}`` dicts (checked against the registry by
    :meth:`cnnstudio.core.model.spec.ModelSpec.validate`).
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise ``SpecError("<name>: <reason>")``.

        Strings are accepted for numbers and booleans, as a command line gives them.
        """
        coerce = getattr(self, f"_coerce_{self.kind}", None)
        if coerce is None:
            raise SpecError(f"{self.name}: unknown parameter kind {self.kind!r}")
        return coerce(value)

    def _fail(self, reason: str) -> SpecError:
        return SpecError(f"{self.name}: {reason}")

    def _check_range(self, value):
        if self.minimum is not None and value < self.minimum:
            raise self._fail(f"{value} is below the minimum of {_number(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise self._fail(f"{value} is above the maximum of {_number(self.maximum)}")
        return value

    def _coerce_int(self, value):
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise self._fail(f"expected a whole number, got {value!r}") from None
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(f"expected a whole number, got {value!r}")
        return self._check_range(value)

    def _coerce_float(self, value):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise self._fail(f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self._fail(f"expected a finite number, got {value}")
        return self._check_range(value)

    def _coerce_bool(self, value):
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise self._fail(f"expected true or false, got {value!r}")
        return value

    def _coerce_choice(self, value):
        if value in self.choices:
            return value
        by_text = {str(c): c for c in self.choices}
        if isinstance(value, str) and value in by_text:
            return by_text[value]
        options = ", ".join(str(c) for c in self.choices)
        raise self._fail(f"expected one of {options}, got {value!r}")

    def _coerce_str(self, value):
        if not isinstance(value, str):
            raise self._fail(f"expected text, got {value!r}")
        return value

    def _coerce_weights(self, value):
        if value is None:
            return "none"
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(f"expected 'imagenet', 'none' or a weights file, got {value!r}")
        if value.strip().lower() in ("imagenet", "none"):
            return value.strip().lower()
        if not value.lower().endswith(WEIGHTS_SUFFIXES):
            raise self._fail(
                f"expected 'imagenet', 'none' or the path of a .weights.h5 / .h5 file, got {value!r}"
            )
        return value

    def _coerce_blocks(self, value):
        if not isinstance(value, (list, tuple)) or not value:
            raise self._fail("expected a non-empty list of blocks")
        blocks = []
        for i, block in enumerate(value, 1):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise self._fail(f"block {i} must be a mapping with a 'type', got {block!r}")
            blocks.append(copy.deepcopy(block))
        return blocks


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
