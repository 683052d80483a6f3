"""Write the Colab install cell of every lesson from the one repository setting in _config.yml.

The repository URL and branch live once, under ``repository:`` in ``_config.yml`` (Jupyter
Book's launch buttons read the same keys). Every lesson's first code cell installs
``course_lib`` from there on Colab; this script renders that cell and writes it into each
``lessons/NN_name.py``, so changing the fork is one edit plus one run:

    python scripts/write_install_cell.py            # rewrite the cell where it differs
    python scripts/write_install_cell.py --check    # exit 1 naming each lesson that differs

``scripts/sync_lessons.sh`` runs it before regenerating the notebooks, and
``tests/test_colab_install.py`` keeps the lessons equal to the rendered cell.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "# Colab only: install course_lib"
CELL_TEMPLATE = """# %%
{marker} from the course repository. Written by
# scripts/write_install_cell.py from _config.yml's `repository` (change the fork there).
# Colab's own torch is kept: the install fails, loudly, rather than replace it.
import sys

if "google.colab" in sys.modules:
    import importlib.metadata
    import subprocess
    import tempfile
    from pathlib import Path

    COURSE_PACKAGE = "course_lib @ git+{url}@{branch}"
    keep_torch = Path(tempfile.mkdtemp()) / "keep_torch.txt"
    keep_torch.write_text(f"torch=={{importlib.metadata.version('torch')}}\\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", str(keep_torch), COURSE_PACKAGE]
    if subprocess.run(pip, check=False).returncode != 0:
        raise RuntimeError(f"pip could not install {{COURSE_PACKAGE}}: see pip's output above")
    print(f"course_lib installed from {{COURSE_PACKAGE}}")
"""
# The cell: from its "# %%" line to the next cell marker (or the end of the file).
CELL_PATTERN = re.compile(r"^# %%\n(?:(?!# %%).*\n)*?.*\"google\.colab\" in sys\.modules.*\n"
                          r"(?:(?!# %%).*\n)*", re.MULTILINE)  # fmt: skip


class InstallCellError(ValueError):
    """A lesson has no install cell, or two, or _config.yml lacks the repository setting."""


def read_setting(config_path: Path = REPO_ROOT / "_config.yml") -> tuple[str, str]:
    """``(url, branch)`` of the course repository, the one place they are set."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    repository = config.get("repository") or {}
    url, branch = repository.get("url"), repository.get("branch")
    if not isinstance(url, str) or not re.match(r"^(https://|file://)\S+$", url):
        raise InstallCellError(
            f"{config_path}: repository.url must be an https:// URL, got {url!r}"
        )
    if not isinstance(branch, str) or not re.fullmatch(r"[\w./-]+", branch):
        raise InstallCellError(
            f"{config_path}: repository.branch must be a git ref, got {branch!r}"
        )
    return url.rstrip("/"), branch


def install_cell(url: str, branch: str) -> str:
    """The install cell (jupytext percent format, ending with a blank line) for this repository."""
    return CELL_TEMPLATE.format(marker=MARKER, url=url, branch=branch) + "\n"


def with_install_cell(lesson_text: str, cell: str, name: str) -> str:
    """``lesson_text`` with its one install cell replaced by ``cell``."""
    found = CELL_PATTERN.findall(lesson_text)
    if len(found) != 1:
        raise InstallCellError(f"{name}: expected one Colab install cell, found {len(found)}")
    return CELL_PATTERN.sub(lambda _: cell, lesson_text, count=1)


def lesson_sources(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(p for p in (root / "lessons").glob("*.py") if p.name != "conftest.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report lessons that differ")
    parser.add_argument("lessons", nargs="*", type=Path, help="default: every lessons/*.py")
    args = parser.parse_args(argv)
    cell = install_cell(*read_setting())
    stale = []
    for path in args.lessons or lesson_sources():
        text = path.read_text(encoding="utf-8")
        updated = with_install_cell(text, cell, str(path))
        if updated == text:
            continue
        stale.append(path)
        if not args.check:
            from course_lib.files import atomic_write_text

            atomic_write_text(path, updated)
            print(f"wrote the install cell of {path}")
    if args.check and stale:
        print("install cell differs from _config.yml in: " + ", ".join(map(str, stale)))
        print("run: python scripts/write_install_cell.py && bash scripts/sync_lessons.sh")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
