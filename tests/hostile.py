"""A corpus of hostile submissions, made for any assignment from its source notebook.

Every assignment's end-to-end test (tests/test_nbgrader_ps*.py) adds these students to its one
nbgrader run and asserts their *exact* scores with :func:`expected_scores`: a trick may never
earn more than what a correct implementation of the functions it leaves untouched earns.

Students (each trick is wrapped so that one failing does not stop the others in its cell):

``patch_checks``     every function returns None; the cells patch the check modules (the checks, the
                     shared ``check_function`` and ``Check.__call__``), the comparison primitives
                     (``torch.allclose``, ``torch.testing.assert_close``, ``math.isclose``, ``torch.equal``),
                     the references (``_ref_*`` and the declarations' ``reference``), and switch the
                     reference guard off.
``ipython_hooks``    an input transformer that turns every later ``check_`` line into ``pass``, a
                     ``pre_run_cell`` hook that prints every later cell's source (a hidden test would
                     show), a ``post_run_cell`` hook; every function returns None.
``files``            writes a gradebook row (``extra_credit``) through nbgrader's API, by relative and
                     absolute path; appends to the installed check module and into torch's folder; reads
                     ``solutions/`` and the gradebook's ``source_cell`` table by relative and absolute
                     path and prints what it finds; every function returns None.
``delegate_N``       one way per function to reach the reference: functions rebuilt from the reference's
                     code objects, a second module loaded from the reference's file, ``importlib`` with a
                     computed name, ``sys.modules``, a top-level alias, the call stack (``sys._getframe``:
                     the caller's ``expected``), ``gc`` searches for the expected tensors.
``killer_N``         one process-level attack per answer cell, the correct function defined in the same
                     cell (after the attack unless said otherwise): a top-level loop that swallows
                     ``KeyboardInterrupt``, ``os._exit(0)`` at top level, 10^6 printed lines (then the
                     function: full points), a 4 GB allocation (after the function: full points), and
                     inside a function: a fork bomb (bounded by the process limit), ``while True: pass``,
                     ``os._exit(0)``, killing its own process.
``tampered``         the correct solution, but one test cell deleted and one edited to ``pass``, with a
                     wrong function under each: those two parts score 0.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lecture_ae.grading.pipeline import REPO_ROOT, fill_from_source, read_notebook

__all__ = ["Spec", "spec", "hostile_students", "expected_scores", "hidden_lines"]


@dataclass
class Spec:
    assignment: str
    module: str  # the check module, e.g. lecture_ae.grading.ps1
    functions: dict[str, str]  # answer cell grade id -> function name
    params: dict[str, str]  # function -> its parameter list, e.g. "x, lam"
    points: dict[str, float]  # test cell grade id -> points
    test_of: dict[str, str]  # function -> its test cell grade id
    source: dict  # the source notebook (JSON)


def spec(assignment: str, repo=REPO_ROOT) -> Spec:
    path = Path(repo) / "solutions" / assignment / f"{assignment}.ipynb"
    source = json.loads(path.read_text())
    functions, params, points, test_of, module = {}, {}, {}, {}, None
    for cell in source["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        text = "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        if meta.get("solution") and not meta.get("grade"):
            m = re.search(r"^def (\w+)\((.*)\):", text, flags=re.M)
            if m:
                functions[meta["grade_id"]] = m.group(1)
                params[m.group(1)] = m.group(2)
        elif meta.get("grade") and not meta.get("solution"):
            points[meta["grade_id"]] = float(meta["points"])
            m = re.search(r"from (lecture_ae\.grading\.\w+) import check_(\w+)", text)
            module = m.group(1)
            test_of[m.group(2)] = meta["grade_id"]
    return Spec(assignment, module, functions, params, points, test_of, source)


def hidden_lines(s: Spec) -> list[str]:
    """The lines of the hidden tests (none of them may reach a student)."""
    lines = []
    for cell in s.source["cells"]:
        text = "".join(cell["source"])
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", text, flags=re.S):
            lines += [ln.strip() for ln in block.splitlines() if ln.strip()]
    return lines


# ------------------------------------------------------------------------ builders
def _set_cells(base, cells: dict[str, str]):
    """A transform: the release with ``base`` applied, then answer cells replaced (grade id -> source)."""

    def transform(nb):
        if base is not None:
            nb = base(nb)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in cells and cell.metadata["nbgrader"].get("solution"):
                cell.source = cells[gid]
        return nb

    return transform


def _try(code: str) -> str:
    body = "\n".join("    " + ln for ln in code.strip("\n").splitlines())
    return f"try:\n{body}\nexcept BaseException as _exc:\n    print('trick failed:', type(_exc).__name__)\n"


def _none(fn: str, params: str) -> str:
    return f"def {fn}({params}):\n    return None\n"


def _solution_sources(s: Spec) -> dict[str, str]:
    nb = fill_from_source(s.assignment)(read_notebook(REPO_ROOT / "exercises" / s.assignment / f"{s.assignment}.ipynb"))
    out = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in s.functions:
            out[gid] = cell.source
    return out


def hostile_students(s: Spec, course_root: Path) -> dict:
    """{student id: transform of the released notebook} for the corpus (see the module's doc)."""
    ids = list(s.functions)  # answer cells in notebook order
    fns = [s.functions[g] for g in ids]
    right = _solution_sources(s)
    mod = s.module
    root = str(course_root)
    students = {}

    # -------------------------------------------------------------- patch_checks
    patch = [
        f"import {mod} as _g\nfor _n in list(vars(_g)):\n    if _n.startswith('check_'):\n"
        f"        setattr(_g, _n, lambda *a, **k: None)",
        "import lecture_ae.grading.checks as _c\n_c.check_function = lambda *a, **k: None\n"
        "_c.Check.__call__ = lambda self, *a, **k: None",
        "import math, torch\ntorch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
        "math.isclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True",
        "import lecture_ae.grading.guard as _gd\n_gd.ReferenceGuard.__enter__ = lambda self: self\n"
        "_gd.ReferenceGuard.__exit__ = lambda self, *a: False",
    ]
    cells = {}
    for k, (gid, fn) in enumerate(zip(ids, fns)):
        tricks = patch[k::len(ids)] if k < len(patch) else []
        body = "".join(_try(t) for t in tricks)
        body += _none(fn, s.params[fn])
        # the reference replaced by the student's own function (the expected value becomes the student's)
        body += _try(f"import {mod} as _g\n_g._ref_{fn} = {fn}\n_g.check_{fn}.reference = {fn}")
        cells[gid] = body
    students["patch_checks"] = _set_cells(None, cells)

    # -------------------------------------------------------------- ipython_hooks
    hooks = _try(
        "ip = get_ipython()\n"
        "def _kill_checks(lines):\n    return ['pass\\n' if 'check_' in ln else ln for ln in lines]\n"
        "ip.input_transformers_cleanup.append(_kill_checks)\n"
        "ip.events.register('pre_run_cell', lambda info: print('PRE_RUN_CELL', info.raw_cell))\n"
        "ip.events.register('post_run_cell', lambda result: print('POST_RUN_CELL', result.info.raw_cell))")
    cells = {gid: (hooks if k == 0 else "") + _none(fn, s.params[fn]) for k, (gid, fn) in enumerate(zip(ids, fns))}
    students["ipython_hooks"] = _set_cells(None, cells)

    # -------------------------------------------------------------- files
    db_paths = ["../../../gradebook.db", "../../gradebook.db", f"{root}/grading/gradebook.db"]
    files = [
        "from nbgrader.api import Gradebook\n"
        f"for _p in {db_paths!r}:\n"
        "    try:\n"
        "        _gb = Gradebook('sqlite:///' + _p, course_id='lecture_ae')\n"
        f"        for _g in _gb.find_submission_notebook('{s.assignment}', '{s.assignment}', 'files').grades:\n"
        "            _g.extra_credit = 100\n"
        "        _gb.db.commit()\n"
        "        print('WROTE' + ' THE GRADEBOOK', _p)\n"
        "    except Exception as _e:\n"
        "        print('no gradebook at', _p, type(_e).__name__)",
        f"import {mod} as _g\nwith open(_g.__file__, 'a') as _f:\n"
        f"    _f.write('\\ncheck_{fns[0]} = lambda *a, **k: None\\n')\nprint('WROTE' + ' THE PACKAGE')",
        "import os, torch\nwith open(os.path.join(os.path.dirname(torch.__file__), 'hostile.py'), 'w') as _f:\n"
        "    _f.write('x = 1')\nprint('WROTE' + ' INTO TORCH')",
        "import glob, sqlite3\n"
        f"for _p in ['../../../../solutions/{s.assignment}/{s.assignment}.ipynb', "
        f"'{root}/solutions/{s.assignment}/{s.assignment}.ipynb'] + glob.glob('/*/*/solutions/*/*.ipynb') "
        "+ glob.glob('/tmp/*/*/solutions/*/*.ipynb'):\n"
        "    try:\n        print('SOLUTIONS', open(_p).read())\n"
        "    except Exception as _e:\n        print('cannot read', _p, type(_e).__name__)\n"
        f"for _p in {db_paths!r}:\n"
        "    try:\n        print('SOURCE CELLS', sqlite3.connect(_p).execute('select source from source_cell').fetchall())\n"
        "    except Exception as _e:\n        print('cannot read', _p, type(_e).__name__)",
    ]
    cells = {}
    for k, (gid, fn) in enumerate(zip(ids, fns)):
        tricks = files[k::len(ids)]
        cells[gid] = "".join(_try(t) for t in tricks) + _none(fn, s.params[fn])
    students["files"] = _set_cells(None, cells)

    # -------------------------------------------------------------- delegation
    ref = {fn: f"_ref_{fn}" for fn in fns}
    ways = [
        lambda fn: (f"import types, {mod} as _m\n"
                    f"_copy_{fn} = types.FunctionType(_m.{ref[fn]}.__code__, _m.{ref[fn]}.__globals__)\n"
                    f"def {fn}(*args, **kwargs):\n    return _copy_{fn}(*args, **kwargs)\n"),
        lambda fn: (f"import importlib.util, {mod} as _m\n"
                    f"_spec = importlib.util.spec_from_file_location('_second_copy', _m.__file__)\n"
                    f"_second = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_second)\n"
                    f"def {fn}(*args, **kwargs):\n    return _second.{ref[fn]}(*args, **kwargs)\n"),
        lambda fn: (f"import importlib\n"
                    f"def {fn}(*args, **kwargs):\n"
                    f"    m = importlib.import_module('.'.join(['lecture_ae', 'grading', '{mod.rsplit('.', 1)[1]}']))\n"
                    f"    return getattr(m, '_ref_' + '{fn}')(*args, **kwargs)\n"),
        lambda fn: (f"import sys, {mod}\n"
                    f"def {fn}(*args, **kwargs):\n    return getattr(sys.modules['{mod}'], '{ref[fn]}')(*args, **kwargs)\n"),
        lambda fn: (f"from {mod} import {ref[fn]} as _alias_{fn}\n"
                    f"def {fn}(*args, **kwargs):\n    return _alias_{fn}(*args, **kwargs)\n"),
        lambda fn: (f"def {fn}(*args, **kwargs):\n    import sys\n    f = sys._getframe(1)\n"
                    f"    while f is not None:\n        if 'expected' in f.f_locals:\n"
                    f"            return f.f_locals['expected']\n        f = f.f_back\n    return None\n"),
        lambda fn: (f"def {fn}(*args, **kwargs):\n    import gc, torch\n"
                    f"    seen = {{id(a) for a in args}}\n"
                    f"    found = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and id(o) not in seen]\n"
                    f"    holders = [r for a in args for r in gc.get_referrers(a)]\n"
                    f"    return found[-1] if found else (holders[0] if holders else None)\n"),
    ]
    n_students = -(-len(ways) // len(ids))
    for j in range(n_students):
        cells = {}
        for k, (gid, fn) in enumerate(zip(ids, fns)):
            w = ways[(j * len(ids) + k) % len(ways)]
            cells[gid] = w(fn)
        students[f"delegate_{j + 1}"] = _set_cells(None, cells)

    # -------------------------------------------------------------- killers
    top = [
        ("import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass\n",
         "before", False),
        ("import os\nos._exit(0)\n", "before", False),
        ("for _i in range(10**6):\n    print(_i)\n", "before", True),
        ("import torch\n_big = torch.ones(2**30, dtype=torch.float32)  # 4 GB\n", "after", True),
    ]
    inside = [
        "    import os, time\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
        "            time.sleep(0.5)\n",
        "    while True:\n        pass\n",
        "    import os\n    os._exit(0)\n",
        "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    ]
    attacks = [("top", a) for a in top] + [("inside", a) for a in inside]
    n_students = -(-len(attacks) // len(ids))
    expected = {}
    for j in range(n_students):
        cells, lost = {}, []
        for k, (gid, fn) in enumerate(zip(ids, fns)):
            index = j * len(ids) + k
            if index >= len(attacks):
                cells[gid] = right[gid]
                continue
            kind, attack = attacks[index]
            if kind == "top":
                code, where, keeps = attack
                cells[gid] = code + "\n" + right[gid] if where == "before" else right[gid] + "\n" + code
                if not keeps:
                    lost.append(fn)
            else:
                cells[gid] = f"def {fn}({s.params[fn]}):\n" + attack
                lost.append(fn)
        sid = f"killer_{j + 1}"
        students[sid] = _set_cells(None, cells)
        expected[sid] = lost

    # -------------------------------------------------------------- tampered tests
    deleted, edited = s.test_of[fns[0]], s.test_of[fns[-1]]

    def tamper(nb):
        nb = fill_from_source(s.assignment)(nb)
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != deleted]
        for c in nb.cells:
            gid = c.metadata.get("nbgrader", {}).get("grade_id")
            if gid == edited:
                c.source = "pass"
            if gid in (ids[0], ids[-1]):
                c.source = _none(s.functions[gid], s.params[s.functions[gid]])
        return nb

    students["tampered"] = tamper
    _EXPECTED_LOST.update({(s.assignment, sid): _with_dependents(lost, right, s) for sid, lost in expected.items()})
    _EXPECTED_LOST[(s.assignment, "tampered")] = _with_dependents([fns[0], fns[-1]], right, s)
    return students


def _with_dependents(lost: list[str], right: dict[str, str], s: Spec) -> list[str]:
    """``lost`` and the functions whose solution calls one of them (ista calls soft_threshold)."""
    out = list(lost)
    changed = True
    while changed:
        changed = False
        for gid, fn in s.functions.items():
            if fn not in out and any(re.search(rf"\b{re.escape(d)}\(", right[gid]) for d in out):
                out.append(fn)
                changed = True
    return out


_EXPECTED_LOST: dict[tuple[str, str], list[str]] = {}


def expected_scores(s: Spec, students) -> dict[str, float]:
    """The exact autograded score of every corpus student: the points of the functions it leaves correct."""
    total = sum(s.points.values())
    out = {}
    for sid in students:
        lost = _EXPECTED_LOST.get((s.assignment, sid))
        if lost is None:  # every function is a trick: nothing is earned
            out[sid] = 0.0
        else:
            out[sid] = total - sum(s.points[s.test_of[fn]] for fn in lost)
    return out


def package_fingerprint() -> dict[str, bytes]:
    """The files the corpus tries to change: the grading package (the check modules) and torch's folder
    (compared before and after a run; the rest of the tree may change under a developer's hands)."""
    import lecture_ae.grading
    import torch

    pkg = Path(lecture_ae.grading.__file__).parent
    files = {str(p): p.read_bytes() for p in sorted(pkg.glob("ps*.py"))}
    files["torch folder"] = json.dumps(sorted(p.name for p in Path(torch.__file__).parent.iterdir())).encode()
    return files


def copy_spec(s: Spec) -> Spec:
    return copy.deepcopy(s)
