"""nbgrader settings of the student profile (`make lab`): the course and its exchange.

Read by the Assignments tab and the Validate button of the student's JupyterLab (this folder is
its JUPYTER_CONFIG_DIR).  The exchange is the folder the instructor releases to and collects
from; `make lab` uses a local one (lab/exchange), a JupyterHub course a shared one.
"""
import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "lecture_ae"
c.Exchange.root = os.environ.get("LECTURE_AE_EXCHANGE", "/srv/nbgrader/exchange")
