#!/usr/bin/env bash
# Builds KenLM's lmplz (estimates ARPA n-gram LMs) and build_binary from the
# source tree of the kenlm package on PyPI, for speechbrain_wsm.data.lm.
#
#   bash scripts/build_kenlm.sh [BIN_DIR] [--strict]     (BIN_DIR: .venv/bin)
#
# Needs cmake, g++ and Debian's boost packages (scripts/install_system_deps.sh
# installs them). Two to five minutes on two cores; the programs are kept in
# ~/.cache/speechbrain-wsm/kenlm-<version>/bin, so a new virtual environment
# copies them instead of compiling again. Without the build tools it prints
# what is missing and exits 0 (the tests that need lmplz then skip, naming
# it); with --strict it exits 1.
set -eu
dest=.venv/bin
strict=0
for arg in "$@"; do
    case "$arg" in
        --strict) strict=1 ;;
        *) dest=$arg ;;
    esac
done
version=0.3.0
cache=${XDG_CACHE_HOME:-$HOME/.cache}/speechbrain-wsm/kenlm-$version/bin
py=${PYTHON:-$dest/python}
[ -x "$py" ] || py=python3

# (lmplz --help exits 1, after its usage text)
works() { [ -x "$1/lmplz" ] && [ -x "$1/build_binary" ] && "$1/lmplz" --help 2>&1 | grep -q Kneser; }

if works "$dest"; then
    exit 0
fi
mkdir -p "$dest"
if works "$cache"; then
    cp "$cache/lmplz" "$cache/build_binary" "$dest/"
    echo "KenLM lmplz, build_binary: copied from $cache to $dest"
    exit 0
fi

missing=""
command -v cmake >/dev/null || missing="$missing cmake"
command -v g++ >/dev/null || missing="$missing g++"
for h in program_options.hpp thread.hpp test/unit_test.hpp; do
    [ -e "/usr/include/boost/$h" ] || { missing="$missing boost"; break; }
done
[ -e /usr/include/zlib.h ] || missing="$missing zlib1g-dev"
if [ -n "$missing" ]; then
    echo "NOTE: cannot build KenLM's lmplz, missing:$missing;"
    echo "  run bash scripts/install_system_deps.sh (as root), then this script again"
    [ "$strict" = 1 ] && exit 1
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building KenLM $version lmplz and build_binary (two to five minutes) ..."
start=$(date +%s)
# The sdist only; --no-binary for kenlm alone (its build requirements stay wheels).
"$py" -m pip download -q --no-deps --no-binary kenlm "kenlm==$version" -d "$work"
tar -xzf "$work/kenlm-$version.tar.gz" -C "$work"
mkdir "$work/build"
(
    cd "$work/build"
    cmake "../kenlm-$version" -DCMAKE_BUILD_TYPE=Release >cmake.log 2>&1 ||
        { tail -20 cmake.log; exit 1; }
    make -j"$(nproc)" lmplz build_binary >make.log 2>&1 || { tail -20 make.log; exit 1; }
)
mkdir -p "$cache"
cp "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$cache/"
cp "$cache/lmplz" "$cache/build_binary" "$dest/"
echo "KenLM lmplz, build_binary in $dest ($(($(date +%s) - start)) s)"
