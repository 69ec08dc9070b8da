#!/usr/bin/env bash
# Compile (-fsyntax-only) the TensorRT plugin and the C++ runtime's TensorRT backend against the headers
# of two TensorRT releases, taken from a TensorRT OSS git repository at run time (nothing is copied
# into this repository). A maintainer's check, not run by the tests.
#
#   bash plugins/scripts/check_trt_headers.sh [TENSORRT_GIT_DIR [TAG10 [TAG11]]]
#   bash plugins/scripts/check_trt_headers.sh /path/to/TensorRT/.git v10.16 v11.1
#
# TENSORRT_GIT_DIR: a clone (or bare git dir) of https://github.com/NVIDIA/TensorRT with its tags
# (default /work/.mirror/NVIDIA+TensorRT/repo). CUDA's headers come from $CUDA_HOME/include
# (default /usr/local/cuda). CXX defaults to g++. Each file is compiled twice per release: with the
# flags CMake uses (plugins/CMakeLists.txt, cpp/CMakeLists.txt: -Wall -Wextra [-Wpedantic]
# -Wno-deprecated-declarations, TensorRT's headers as system headers), then with deprecation warnings
# on, which name what a later major may remove. Exit status 1 if any compile fails (errors), 0 otherwise;
# warnings are printed, not fatal.
set -u
repo=${1:-/work/.mirror/NVIDIA+TensorRT/repo}
tags=("${2:-v10.16}" "${3:-v11.1}")
cuda_inc=${CUDA_HOME:-/usr/local/cuda}/include
cxx=${CXX:-g++}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  echo "error: $repo is not a git repository; git clone https://github.com/NVIDIA/TensorRT and pass its path" >&2
  exit 2
fi
if [ ! -f "$cuda_inc/cuda_runtime_api.h" ]; then
  echo "error: no cuda_runtime_api.h under $cuda_inc; set CUDA_HOME to a CUDA toolkit" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

plugin_inc=(-I"$root/plugins/src" -I"$root/instseg_deploy/ops/csrc" -I"$root/plugins/include")
cpp_inc=(-I"$root/cpp/include" -I"$root/plugins/include")
# file | include flags | extra flags (as the CMake targets compile them)
units=(
  "plugins/src/multilevel_roi_align_plugin.cpp|plugin|"
  "plugins/src/roi_align_plugin_fields.cpp|plugin|"
  "plugins/src/plugin_entry_points.cpp|plugin|"
  "plugins/src/plugin_entry_points.cpp|plugin|-DINSTSEG_STATIC_PLUGIN_REGISTRATION"
  "plugins/tests/plugin_host_check.cpp|plugin|"
  "cpp/src/trt_engine.cpp|cpp|-Wpedantic -DINSTSEG_WITH_TENSORRT"
)

status=0
for tag in "${tags[@]}"; do
  hdr="$tmp/$tag"
  mkdir -p "$hdr"
  if ! git -C "$repo" archive "$tag" include | tar -x -C "$hdr"; then
    echo "error: cannot read include/ at $tag in $repo" >&2
    exit 2
  fi
  version=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' |
    "$cxx" -E -P -x c++ -isystem "$hdr/include" - 2>/dev/null | tail -1 | tr -d ' ')
  echo "=== TensorRT $tag (NvInferVersion.h: ${version:-?}), $(ls "$hdr/include" | tr '\n' ' ')"
  for unit in "${units[@]}"; do
    IFS='|' read -r file kind extra <<<"$unit"
    if [ "$kind" = plugin ]; then inc=("${plugin_inc[@]}"); else inc=("${cpp_inc[@]}"); fi
    for mode in cmake deprecations; do
      flags=(-std=c++17 -fsyntax-only -Wall -Wextra -isystem "$hdr/include" -isystem "$cuda_inc" "${inc[@]}")
      [ "$mode" = cmake ] && flags+=(-Wno-deprecated-declarations)
      # shellcheck disable=SC2206
      flags+=($extra)
      out=$("$cxx" "${flags[@]}" "$root/$file" 2>&1)
      rc=$?
      nwarn=$(grep -c 'warning:' <<<"$out")
      nerr=$(grep -c 'error:' <<<"$out")
      printf '%-7s %-13s %-72s errors %d, warnings %d\n' "$tag" "$mode" "$file${extra:+ $extra}" "$nerr" "$nwarn"
      if [ -n "$out" ]; then
        sed "s|$root/||g; s|$hdr/||g; s/^/    /" <<<"$out" | grep -E 'error:|warning:|note: declared here' | head -40
      fi
      [ $rc -ne 0 ] && status=1
    done
  done
done
exit $status
