#!/usr/bin/env bash
# Installs the system packages duet's crates build against on a fresh Debian machine:
# ALSA headers (cpal), cmake (libopus), nasm (openh264's SIMD assembly: without it openh264
# silently builds plain C, 2-3x slower), clang/libclang (bindgen for v4l), pkg-config, and
# ClamAV's scanner (the tests scan received files with their own signature database), and
# Chromium with its WebDriver (the web client's tests drive headless Chromium).
# Safe to run again: it only installs what is missing.
set -euo pipefail

pkgs=(libasound2-dev libasound2-plugins alsa-utils cmake nasm clang libclang-dev pkg-config clamav chromium chromium-driver)
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
