#!/usr/bin/env bash
# Create or update the project's virtualenv. Called by the Makefile only when
# the stamp file is missing, i.e. on the first run or after the requirements
# files changed (the stamp's name carries a hash of their content).
#
#   scripts/venv.sh VENV_DIR STAMP_FILE REQUIREMENTS_FILE
#
# Python: $PYTHON if set, else the first of python3.11, python3, python3.13,
# python3.12 that is >= 3.11.
set -euo pipefail

venv=${1:?usage: venv.sh VENV_DIR STAMP_FILE REQUIREMENTS_FILE}
stamp=${2:?usage: venv.sh VENV_DIR STAMP_FILE REQUIREMENTS_FILE}
requirements=${3:?usage: venv.sh VENV_DIR STAMP_FILE REQUIREMENTS_FILE}

die() { echo "make: $*" >&2; exit 1; }

# True when $1 runs and is Python >= 3.11 (pyenv shims for missing versions fail here).
python_ok() { [[ "$("$1" -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null)" == "True" ]]; }
python_version() {
    local v
    v=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || true
    echo "${v:-not runnable}"
}

find_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        python_ok "$PYTHON" || die "PYTHON=$PYTHON is not a Python >= 3.11 (it is: $(python_version "$PYTHON"))."
        echo "$PYTHON"
        return
    fi
    local tried=() candidate path
    for candidate in python3.11 python3 python3.13 python3.12; do
        if path=$(command -v "$candidate" 2>/dev/null); then
            if python_ok "$path"; then
                echo "$path"
                return
            fi
            tried+=("$candidate ($(python_version "$path"))")
        else
            tried+=("$candidate (not found)")
        fi
    done
    local joined
    joined=$(printf ', %s' "${tried[@]}")
    die "Python >= 3.11 is required and none was found. Tried: ${joined:2}.
      Install it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; macOS: brew install python@3.11),
      or point at one with: make PYTHON=/path/to/python3.11 ..."
}

[[ -f "$requirements" ]] || die "$requirements is missing; run make from the repository root."

if [[ -x "$venv/bin/python" ]] && ! python_ok "$venv/bin/python"; then
    echo "make: $venv uses Python $(python_version "$venv/bin/python"), not >= 3.11: recreating it." >&2
    rm -rf "$venv"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python=$(find_python)
    echo "make: creating $venv with $python ($(python_version "$python"))"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        die "could not create $venv with $python. On Debian/Ubuntu install the venv module: apt-get install python$(python_version "$python")-venv"
    fi
fi

echo "make: installing $requirements into $venv (first run, or the requirements changed)"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"

rm -f "$venv"/.installed-*
touch "$stamp"
echo "make: $venv is ready"
