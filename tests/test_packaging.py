"""The two set-up commands, the CI script and the two dependency lists stay in agreement."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(req: str) -> str:
    return req.strip().replace(" ", "").lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    conda_names = {"torch": "pytorch"}  # conda-forge's name for the same package
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    env_specs = {_name(d): _spec(d) for d in env["dependencies"] if isinstance(d, str)}
    for d in env["dependencies"]:
        if isinstance(d, dict):
            env_specs.update({_name(p): _spec(p) for p in d.get("pip", [])})
    for req in reqs:
        name = conda_names.get(_name(req), _name(req))
        assert name in env_specs, f"{req!r} from pyproject.toml is missing in environment.yml"
        expected = _spec(req).replace(_name(req), name, 1)
        assert env_specs[name] == expected, f"environment.yml has {env_specs[name]!r}, pyproject.toml {req!r}"
    py_deps = {conda_names.get(_name(r), _name(r)) for r in reqs}
    extra = set(env_specs) - py_deps - {"python", "pip"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1].strip() == "make test"


def test_book_toc_files_exist():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml names {f} but it is missing"
