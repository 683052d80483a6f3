#!/usr/bin/env bash
# Regenerate each lessons/NN_name.ipynb from its lessons/NN_name.py (the source of truth),
# without outputs, so the committed notebook is exactly jupytext's conversion of the .py.
# First rewrites each lesson's Colab install cell from _config.yml (scripts/write_install_cell.py).
#   bash scripts/sync_lessons.sh                 # every lesson
#   bash scripts/sync_lessons.sh lessons/03_x.py # some lessons
#   bash scripts/sync_lessons.sh --from-ipynb lessons/03_x.ipynb
#       you edited the notebook in Jupyter: write its cells back to the .py first, then
#       regenerate the clean .ipynb from it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--from-ipynb" ]]; then
    shift
    [[ $# -gt 0 ]] || { echo "usage: $0 --from-ipynb lessons/NN_name.ipynb..." >&2; exit 2; }
    for notebook in "$@"; do
        [[ "$notebook" == *.ipynb && -f "$notebook" ]] || { echo "$notebook: expected an existing .ipynb" >&2; exit 2; }
        jupytext --quiet --to py:percent "$notebook"
        set -- "${@/%$notebook/${notebook%.ipynb}.py}"
    done
fi

if [[ $# -eq 0 ]]; then
    set -- lessons/*.py
fi
for source in "$@"; do
    [[ "$source" == *.py && -f "$source" ]] || { echo "$source: expected an existing lessons/*.py" >&2; exit 2; }
    [[ "$(basename "$source")" == conftest.py ]] && continue
    notebook="${source%.py}.ipynb"
    # The Colab install cell comes from _config.yml's repository setting (one place).
    python scripts/write_install_cell.py "$source"
    # --update keeps the cell ids of an existing notebook (small git diffs); outputs are then
    # stripped so the committed notebook holds inputs only.
    jupytext --quiet --update --to ipynb "$source"
    python - "$notebook" <<'PY'
import sys

import nbformat

path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
for cell in notebook.cells:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    cell.metadata.pop("execution", None)
nbformat.write(notebook, path)
PY
    echo "synced $notebook"
done
