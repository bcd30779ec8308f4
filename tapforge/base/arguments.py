"""Command-line parsing every command shares: numeric flags checked where they are parsed, and argparse errors
(a missing or unknown flag, a bad choice) as one line.

`Parser` is an ArgumentParser whose errors raise `TapforgeError` (the dispatcher prints it as
``tapforge COMMAND: error: ...`` with exit status 2, without argparse's usage block); `add_number` adds a flag whose
value is checked for type, finiteness and range, naming the flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import math
import sys

from tapforge.base.errors import TapforgeError


class Number:
    """An argparse ``type=`` for the numeric flag ``flag``: an integer (``kind=int``) or a finite float, in
    [``low``, ``high``] (either bound may be None; ``above=True`` makes ``low`` exclusive), a multiple of ``step``.

    Anything else raises one TapforgeError line naming the flag, the value and the range while the arguments are
    parsed (argparse's own error would add the usage), before any work. Made by `add_number`.
    """

    def __init__(self, flag: str, kind: type = int, low=None, high=None, above=False, step=None, what=None):
        self.flag, self.kind, self.low, self.high, self.above, self.step = flag, kind, low, high, above, step
        self.what = what or ("an integer" if kind is int else "a number")

    def range(self) -> str:
        """What is allowed, as the error line says it."""
        what = f"{self.what} (a multiple of {self.step})" if self.step else self.what
        low, high = (v if v is None or isinstance(v, int) else f"{v:g}" for v in (self.low, self.high))
        if low is not None and high is not None and not self.above:
            return f"{what} in {low}..{high}" if self.kind is int else f"{what} in [{low}, {high}]"
        bounds = [f"{'>' if self.above else '>='} {low}"] if low is not None else []
        bounds += [f"<= {high}"] if high is not None else []
        return f"{what} {' and '.join(bounds)}".strip()

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            kind = "an integer" if self.kind is int else "a number"
            raise TapforgeError(f"{self.flag} {text!r}: not {kind}; give {self.range()}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise TapforgeError(f"{self.flag} {text}: not finite; give {self.range()}")
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        if not low_ok or (self.high is not None and value > self.high) or (self.step and value % self.step):
            raise TapforgeError(f"{self.flag} {text}: give {self.range()}")
        return value


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one `TapforgeError` line (with where to read the usage), and whose
    `add_number` flags take a value that starts with '-' whatever its form (``--fps -inf``, ``--softmax-temperature
    -1e3``): argparse takes only ``-N`` and ``-N.N`` for values and would print its usage for the others, where the
    flag's own check names the value and the range in one line. Sub-parsers made from it are Parsers too."""

    def error(self, message: str):
        raise TapforgeError(f"{message}; see {self.prog} --help")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        numeric = {
            flag for action in self._actions if isinstance(action.type, Number) for flag in action.option_strings
        }
        joined, i = [], 0
        while i < len(args):
            if args[i] == "--":
                joined += args[i:]
                break
            if args[i] in numeric and i + 1 < len(args) and args[i + 1].startswith("-") and _is_number(args[i + 1]):
                joined.append(f"{args[i]}={args[i + 1]}")
                i += 2
                continue
            joined.append(args[i])
            i += 1
        return super().parse_known_args(joined, namespace)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def add_number(
    parser, flag: str, kind: type = int, low=None, high=None, *, above=False, step=None, what=None, **kwargs
):
    """``parser.add_argument(flag, **kwargs)`` with ``type=`` a `Number` of that flag (see it for the arguments)."""
    return parser.add_argument(flag, type=Number(flag, kind, low, high, above, step, what), **kwargs)
