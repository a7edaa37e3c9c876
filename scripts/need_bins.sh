# shellcheck shell=bash
# Sourced by the proof scripts (tests/faults/*.sh, bench/*.sh): they build nothing, so
# they check what they need first and say how to get it.

# need_bins BUILD VAR=PATH...: for each PATH (relative to BUILD, e.g. tests/rollguard-
# logwriter) sets VAR to the program's absolute path. When one is missing, prints the
# cmake command that builds all of them and exits 2.
need_bins() {
    local build=$1 spec path missing=()
    local targets=()
    shift
    for spec in "$@"; do
        path="$build/${spec#*=}"
        targets+=("$(basename "$path")")
        if [[ -x "$path" ]]; then
            printf -v "${spec%%=*}" '%s' "$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
        else
            missing+=("$path")
        fi
    done
    if ((${#missing[@]})); then
        echo "$(basename "$0"): ${missing[*]} not found; build first: cmake --build $build --target ${targets[*]}" >&2
        exit 2
    fi
}

# need_commands CMD...: exits 2 naming the first command not on the PATH.
need_commands() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "$(basename "$0"): $c not found on the PATH" >&2; exit 2; }
    done
}
