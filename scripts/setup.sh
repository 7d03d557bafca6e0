#!/usr/bin/env bash
# Installs the system packages duet's crates, tests and tools need on a fresh Debian machine.
# Safe to run again: it only installs what is missing.
set -euo pipefail

pkgs=(
  libasound2-dev libasound2-plugins alsa-utils  # cpal's ALSA headers, and the null/file plugins tests open
  cmake                                         # libopus
  nasm                                          # openh264's SIMD assembly (without it: plain C, 2-3x slower)
  clang libclang-dev pkg-config                 # bindgen for v4l (webcam)
  clamav                                        # the scanner of received files
  fonts-dejavu-core                             # the labels of `duet plot`
  coturn nftables iproute2 conntrack            # the NAT lab (tests/nat.rs): TURN, NATs, namespaces, forgetting mappings
  chromium chromium-driver                      # the web client's tests drive headless Chromium
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
