"""The distribution: the wheel and the sdist built from this tree, the version, the workflows
and every instruction that installs nnkit.

``make dist-check`` installs the wheel into a fresh venv and runs it (a minute); these tests
check what is inside the files and what the instructions install, in seconds.
"""

from __future__ import annotations

import email.message
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from importlib.util import find_spec
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import nnkit
from tests.conftest import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # build depends on tomli below 3.11
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Where the package's files come from, and where the wheel puts them.
PACKAGE_ROOTS = {"toolkit/nnkit/": "nnkit/", "models/": "nnkit/models/"}


def _source_files() -> list[str]:
    """The tree as a fresh clone plus the work in progress has it: tracked and untracked,
    not ignored, still on disk."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return sorted(p for p in set(listing.split("\0")) if p and (ROOT / p).is_file())


def _package_files() -> set[str]:
    """Every file of the package and the zoo, at its path inside the wheel."""
    files = set()
    for path in _source_files():
        for source, target in PACKAGE_ROOTS.items():
            if path.startswith(source):
                files.add(target + path[len(source) :])
    return files


def _backend_in_venv() -> bool:
    """build is installed and this venv's packages satisfy the build-system requirements."""
    if find_spec("build") is None:
        return False
    for spec in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(spec)
        try:
            if installed_version(requirement.name) not in requirement.specifier:
                return False
        except PackageNotFoundError:
            return False
    return True


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path | None  # None where only pip wheel could build


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel and the sdist, built once from a copy of the tree (so no build/ folder or
    egg-info of this checkout leaks in, and parallel workers do not race)."""
    src = tmp_path_factory.mktemp("src")
    for path in _source_files():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, src / path)
    out = tmp_path_factory.mktemp("dist")
    if _backend_in_venv():
        # the sdist, then the wheel built from the sdist: the sdist must be complete
        command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)]
    else:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    sdists = list(out.glob("*.tar.gz"))
    return Built(wheel=wheel, sdist=sdists[0] if sdists else None)


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (folder,) = {
        n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info")
    }
    return folder


def _metadata(built: Built) -> email.message.Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        text = wheel.read(f"{_dist_info(wheel)}/METADATA").decode()
    return email.parser.Parser().parsestr(text)


# -- the name and the version ---------------------------------------------------------------


def test_the_distribution_is_named_nnkit_onnx_everywhere(built: Built) -> None:
    # `nnkit` on PyPI is another project: nothing may install that name.
    assert nnkit.DISTRIBUTION == PYPROJECT["project"]["name"] == "nnkit-onnx"
    meta = _metadata(built)
    assert meta["Name"] == nnkit.DISTRIBUTION
    assert meta["Version"] == nnkit.__version__
    assert built.wheel.name == f"nnkit_onnx-{nnkit.__version__}-py3-none-any.whl"
    if built.sdist is not None:
        assert built.sdist.name == f"nnkit_onnx-{nnkit.__version__}.tar.gz"


def test_the_version_has_one_source() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nnkit.__version__"}
    Version(nnkit.__version__)  # a valid version, or this raises


def test_nnkit_version_shows_it() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"nnkit, version {nnkit.__version__}\n"


def test_exported_files_are_stamped_with_it(zoo_file) -> None:
    import onnx

    proto = onnx.load(str(zoo_file("linear")), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["nnkit.version"] == nnkit.__version__


def test_the_changelog_starts_with_unreleased_then_this_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases, "CHANGELOG.md has no released version"
    for name, rest in releases:
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"## [{name}]{rest}: no ' - YYYY-MM-DD'"
    versions = [Version(name) for name, _ in releases]
    assert versions == sorted(versions, reverse=True), "releases are not newest first"
    assert str(versions[0]) == nnkit.__version__, (
        f"the newest release in CHANGELOG.md is {versions[0]}, nnkit.__version__ is "
        f"{nnkit.__version__}: a release bumps both (README, 'Releasing')"
    )


# -- what the files hold --------------------------------------------------------------------


def test_the_wheel_holds_the_package_the_zoo_and_py_typed_and_nothing_else(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        info = _dist_info(wheel)
    files = {n for n in names if not n.startswith(f"{info}/")}
    assert {"nnkit/__init__.py", "nnkit/cli.py", "nnkit/py.typed"} <= files
    assert {"nnkit/models/__init__.py", "nnkit/models/combinednn.py"} <= files
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "models/", "toolkit/"))]
    # Every module of the package and of the zoo, so a subpackage missing from
    # pyproject's `packages` list (or a data file without package-data) fails here.
    assert files == _package_files()
    assert f"{info}/licenses/LICENSE" in names


def test_the_wheel_declares_requirements_and_extras_as_pyproject_does(built: Built) -> None:
    meta = _metadata(built)
    project = PYPROJECT["project"]
    assert meta["Requires-Python"] == project["requires-python"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert set(meta.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    assert {"plot", "dev"} <= set(meta.get_all("Provides-Extra"))

    def key(req: Requirement) -> tuple[str, str, str]:
        marker = re.sub(r'(and )?extra == "[^"]+"', "", str(req.marker or "")).strip(" ()")
        return canonicalize_name(req.name), str(req.specifier), marker

    declared: dict[str, set] = {"": {key(Requirement(r)) for r in project["dependencies"]}}
    for extra, reqs in project["optional-dependencies"].items():
        declared[extra] = {key(Requirement(r)) for r in reqs}
    found: dict[str, set] = {name: set() for name in declared}
    for line in meta.get_all("Requires-Dist"):
        extra = re.search(r'extra == "([^"]+)"', line)
        found[extra[1] if extra else ""].add(key(Requirement(line)))
    assert found == declared

    base = {name for name, _, _ in found[""]}
    assert {"torch", "onnx", "onnxscript", "numpy", "click", "openvino", "tract"} <= base
    # onnxruntime-gpu where its wheels exist, plain onnxruntime elsewhere: never both
    linux_x86 = {"platform_system": "Linux", "platform_machine": "x86_64"}
    runtimes = {}
    for line in meta.get_all("Requires-Dist"):
        requirement = Requirement(line)
        if requirement.name.startswith("onnxruntime"):
            runtimes[requirement.name] = requirement.marker.evaluate(linux_x86)
    assert runtimes == {"onnxruntime-gpu": True, "onnxruntime": False}
    assert {name for name, _, _ in found["plot"]} == {"matplotlib"}


def test_the_wheel_runs_the_nnkit_command(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        entry_points = wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode()
    assert re.search(r"^\[console_scripts\]\nnnkit = nnkit\.cli:main$", entry_points, re.M)


def test_the_sdist_is_the_source_without_tests_or_scripts(built: Built) -> None:
    if built.sdist is None:
        pytest.skip("python -m build is not installed here (the dev extra has it)")
    with tarfile.open(built.sdist) as sdist:
        names = sdist.getnames()
    top = f"nnkit_onnx-{nnkit.__version__}/"
    assert all(n == top.rstrip("/") or n.startswith(top) for n in names)
    files = {n[len(top) :] for n in names if n.startswith(top)}
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"} <= files
    sources = {f for f in _source_files() if f.startswith(tuple(PACKAGE_ROOTS))}
    assert sources <= files
    assert not [f for f in files if f.startswith(("tests/", "scripts/", ".github/", ".ci/"))]


# -- the workflows and the instructions -----------------------------------------------------


def _workflows() -> list[Path]:
    return sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


@pytest.mark.parametrize("path", _workflows(), ids=lambda p: p.name)
def test_every_workflow_parses(path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and doc.get("name")
    assert doc.get(True) or doc.get("on"), "no trigger (`on:`)"  # YAML 1.1 reads `on` as True
    assert doc.get("jobs"), "no jobs"
    for name, job in doc["jobs"].items():
        assert job.get("runs-on"), f"job {name}: no runs-on"
        assert job.get("steps"), f"job {name}: no steps"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"job {name}: step {step}"


def _release() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())


def test_the_release_workflow_publishes_a_checked_tag_with_trusted_publishing() -> None:
    doc = _release()
    assert doc[True]["push"]["tags"] == ["v*"]
    build, publish = doc["jobs"]["build"], doc["jobs"]["publish"]
    assert any(step.get("run") == ".ci/run" for step in build["steps"])
    assert "--index-url https://download.pytorch.org/whl/cpu" in str(build["steps"])
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    assert "password" not in str(publish), "trusted publishing takes no token"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here to run the step")
@pytest.mark.parametrize("tag_is_right", [True, False])
def test_the_release_refuses_a_tag_that_is_not_the_version(tag_is_right: bool) -> None:
    (step,) = [
        s for s in _release()["jobs"]["build"]["steps"] if "the version" in s.get("name", "")
    ]
    tag = f"v{nnkit.__version__}" if tag_is_right else f"v{nnkit.__version__}.post99"
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=ROOT,
        env={"GITHUB_REF_NAME": tag, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == (0 if tag_is_right else 1), done.stdout + done.stderr
    if not tag_is_right:
        assert f"tag {tag} is not v{nnkit.__version__}" in done.stdout


def test_ci_runs_the_dist_check() -> None:
    assert "make dist-check" in (ROOT / ".ci" / "run").read_text().splitlines()
    assert re.search(r"^dist-check:", (ROOT / "Makefile").read_text(), re.M)


def _instruction_files() -> list[str]:
    """Every file a user reads or runs an install instruction from."""
    return [
        p
        for p in _source_files()
        if p in ("README.md", "Makefile", "MANIFEST.in")
        or p.startswith(("toolkit/", "models/", "scripts/", ".github/", ".ci/"))
    ]


_PIP_OPTIONS_WITH_VALUE = {
    *("-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url"),
    *("-f", "--find-links", "-t", "--target", "--prefix", "--root", "--python"),
}


def _installed_names(text: str) -> list[str]:
    """The requirement names that each ``pip install ...`` in ``text`` installs (its
    arguments up to a comment, a backtick, a parenthesis or the end of the line)."""
    names = []
    for command in re.finditer(r"pip3? install((?:[ \t]+[^\s#`()]+)+)", text):
        tokens = iter(command[1].split())
        for token in tokens:
            token = token.strip("'\"")
            if token in _PIP_OPTIONS_WITH_VALUE:
                next(tokens, None)
            elif token and not token.startswith("-"):
                names.append(re.match(r"[\w.-]*", token)[0] or token)
    return names


def test_the_scan_finds_the_installs_that_went_wrong() -> None:
    # what the README, bench's hint and the example workflow said before the rename
    assert _installed_names("needs matplotlib (`pip install 'nnkit[plot]'`)") == ["nnkit"]
    assert _installed_names("(or pip install 'nnkit[plot]')") == ["nnkit"]
    assert _installed_names("  python -m pip install .\n") == ["."]
    assert _installed_names("pip install 'nnkit-onnx[plot]'  # for nnkit bench") == ["nnkit-onnx"]
    assert _installed_names("pip install -c c.txt -e '.[dev,plot]'") == ["."]


def test_no_instruction_installs_the_other_nnkit_or_the_users_own_repository() -> None:
    pinned = re.compile(r"nnkit-onnx(?:\[[^\]]*\])?==(\d[\w.+-]*)")
    found = []
    for path in _instruction_files():
        text = (ROOT / path).read_text(errors="replace")
        for name in _installed_names(text):
            if canonicalize_name(name) == "nnkit":
                found.append(f"{path}: pip install {name!r} installs another project")
            if name == "." and path.startswith(".github/"):  # copied into other repositories
                found.append(f"{path}: pip install . installs the repository it is copied into")
        found += [
            f"{path}: pins {m[0]!r}, the version is {nnkit.__version__}"
            for m in pinned.finditer(text)
            if m[1] != nnkit.__version__
        ]
    assert not found, "\n".join(found)


def test_the_example_workflow_installs_the_distribution() -> None:
    text = (ROOT / ".github" / "workflows" / "parity.yml").read_text()
    assert f'python -m pip install "nnkit-onnx=={nnkit.__version__}"' in text
