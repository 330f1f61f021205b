"""`bulk-rating` and `python -m bulk_rating`: interrupts are handled from the first moment, before
the heavy imports, so Ctrl-C while the program loads is a clean exit too."""

from __future__ import annotations

import sys


def main() -> None:
    from bulk_rating import interrupts

    interrupts.install()
    try:
        from bulk_rating.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was done\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
