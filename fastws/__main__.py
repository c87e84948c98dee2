"""``python -m fastws``: the same command as the ``fastws`` script (see ``fastws.cli``)."""

from __future__ import annotations

from fastws.cli import main

if __name__ == "__main__":
    main()
