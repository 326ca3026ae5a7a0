#!/usr/bin/env bash
# Debian packages the data builders and their tests use: real speech (Asterisk
# prompts, pocketsphinx LibriVox test data), synthetic speech (flite, espeak-ng),
# public-domain text (bible-kjv), ffmpeg/sox for decoding, and the boost and
# zlib headers that scripts/build_kenlm.sh compiles KenLM's lmplz with (the
# n-gram LM builder of speechbrain_wsm.data.lm).  Installs them when
# run as root with apt-get; otherwise prints the exact command and carries on
# (the tests that need a package then skip, naming it). With --strict (the
# demo needs them) it stops with that command instead.
set -u
strict=0
[ "${1:-}" = "--strict" ] && strict=1
PKGS="ffmpeg sox flite espeak-ng bible-kjv asterisk-core-sounds-en asterisk-core-sounds-en-g722 pocketsphinx-testdata"
PKGS="$PKGS cmake g++ zlib1g-dev libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        exit 0
    fi
    echo "WARNING: apt-get install failed for:$missing"
else
    echo "NOTE: not root or no apt-get; install the missing Debian packages with:"
    echo "  sudo apt-get install -y$missing"
fi
[ "$strict" = 1 ] && exit 1
exit 0
