"""``python -m predictor.docs README.md`` (``make docs``): regenerate the README's tables from the code that
states each fact once — the settings from ``config.Settings``, the status table from ``errors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from predictor import config, errors

STATUS_MARKERS = ("<!-- status:begin -->", "<!-- status:end -->")


def regenerated(readme: str) -> str:
    text = config.with_settings_table(readme)
    return config.replace_between(text, STATUS_MARKERS, errors.markdown_table())


if __name__ == "__main__":
    for name in sys.argv[1:]:
        path = Path(name)
        path.write_text(regenerated(path.read_text()))
