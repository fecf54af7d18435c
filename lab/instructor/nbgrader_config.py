"""nbgrader settings that `make formgrader` adds to the course's nbgrader_config.py: the exchange.

The course folder's own nbgrader_config.py (the repository root) sets the layout and the
gradebook; this file (the instructor profile's JUPYTER_CONFIG_DIR) only says where the exchange
is, so that the Formgrader's Release/Collect buttons use the same exchange as `make lab`.
"""
import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.Exchange.root = os.environ.get("LECTURE_AE_EXCHANGE", "/srv/nbgrader/exchange")
