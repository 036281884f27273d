"""``python -m benchmarks``: run every benchmark module found here, one after another."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    names = sys.argv[1:] or sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                                   if not m.name.startswith("_") and m.name != "common")
    for name in names:
        print(f"=== benchmarks.{name} ===", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
