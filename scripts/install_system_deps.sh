#!/usr/bin/env bash
# Debian packages the data builders and their tests use: real speech (Asterisk
# prompts, pocketsphinx LibriVox test data), synthetic speech (flite, espeak-ng),
# public-domain text (bible-kjv) and ffmpeg/sox for decoding.  Installs them when
# run as root with apt-get; otherwise prints the exact command and carries on
# (the tests that need a package then skip, naming it).
set -u
PKGS="ffmpeg sox flite espeak-ng bible-kjv asterisk-core-sounds-en asterisk-core-sounds-en-g722 pocketsphinx-testdata"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || echo "WARNING: apt-get install failed; tests needing:$missing will skip"
else
    echo "NOTE: not root or no apt-get; to run every test install them with:"
    echo "  sudo apt-get install -y$missing"
fi
exit 0
