#!/usr/bin/env bash
# Installs what cpp/ builds with, from the package registries this project uses; idempotent and quiet.
#
#   Debian:  cmake, g++, libjpeg-turbo (decodes JPEG pixel-identically to the Python side's cv2),
#            libpng, nlohmann-json (metadata and COCO JSON), libssl-dev (OpenSSL's SHA-256 for the
#            engine check).
#   PyPI:    the onnxruntime wheel (a project dependency) ships libonnxruntime.so.1.x in capi/;
#            it is linked here under the usual names.
#   npm:     ONNX Runtime's official C/C++ headers, from the unmodified onnxruntime.xcframework that
#            com.github.asus4.onnxruntime packages (MIT, Microsoft). The wheel ships no headers. ORT's
#            C API is versioned and backward compatible: headers of API N work with any library >= N.
#
# Everything lands in ONNXRUNTIME_ROOT (default ~/.cache/instseg-deploy/onnxruntime) as include/ + lib/,
# which is where cpp/CMakeLists.txt looks. Prints that folder on success.
set -euo pipefail

ORT_HEADERS_PACKAGE="com.github.asus4.onnxruntime@0.4.9"  # ONNX Runtime 1.29.0 headers (ORT_API_VERSION 29)
HEADERS_IN_PACKAGE='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'
ROOT="${ONNXRUNTIME_ROOT:-$HOME/.cache/instseg-deploy/onnxruntime}"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

say() { echo "install_deps: $*" >&2; }

# --- Debian packages (only the missing ones; apt-get update once, when something is missing) ---
missing=()
for pkg in cmake g++ make pkg-config libjpeg62-turbo-dev libpng-dev nlohmann-json3-dev libssl-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the ONNX Runtime library from the onnxruntime wheel ---
if ! ORT_LIB=$("$PYTHON" - <<'PY'
import glob, os
import onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))
if not libs:
    raise SystemExit("no libonnxruntime.so.* inside the onnxruntime wheel")
print(libs[-1])
PY
); then
  say "the onnxruntime wheel is needed (pip install onnxruntime, or pip install -e . in the repository)"
  exit 1
fi
mkdir -p "$ROOT/lib"
ln -sfn "$ORT_LIB" "$ROOT/lib/libonnxruntime.so.1"
ln -sfn "$ORT_LIB" "$ROOT/lib/libonnxruntime.so"

# --- the C/C++ headers from npm (downloaded once) ---
if [[ ! -f "$ROOT/include/onnxruntime_cxx_api.h" ]]; then
  command -v npm >/dev/null || { say "npm is needed to fetch ONNX Runtime's headers"; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  say "fetching ONNX Runtime headers ($ORT_HEADERS_PACKAGE) from npm"
  (cd "$work" && npm pack --silent "$ORT_HEADERS_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" --wildcards "$HEADERS_IN_PACKAGE/*.h" package/LICENSE
  mkdir -p "$work/include"
  cp "$work/$HEADERS_IN_PACKAGE"/*.h "$work/include/"
  cp "$work/package/LICENSE" "$work/include/LICENSE.onnxruntime"
  rm -rf "$ROOT/include.tmp"
  mv "$work/include" "$ROOT/include.tmp"
  rm -rf "$ROOT/include"
  mv "$ROOT/include.tmp" "$ROOT/include"  # appears whole or not at all
fi

echo "$ROOT"
