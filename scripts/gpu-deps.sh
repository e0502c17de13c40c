#!/usr/bin/env bash
# Gathers into .gpu-deps/ (git-ignored) what a build needs on a machine that has CUDA, CMake, ninja and a
# C++ compiler but none of our Debian -dev packages and no way to install them: a lent GPU machine
# (docs/GPU.md). Run it HERE, on a Debian 12 machine where scripts/install-deps.sh has run; the folder then
# travels with the device call (carry [".gpu-deps"]) and scripts/gpu-check.sh builds against it.
#
# What goes in (about 11 MiB):
#   include/   the header-only libraries: Eigen (eigen3/Eigen), nlohmann/json, CLI11, doctest, fmt (used in
#              its header-only mode, so no libfmt.so travels: the build compiles fmt itself with the machine's
#              own compiler; nvcc, which sees fmt through tensor/error.h, then warns once per .cu file that
#              "'long double' is treated as 'double' in device code", harmless as no device code uses fmt),
#              utf8proc.h, the two stb headers we include
#   lib/       libutf8proc.so.2 and libstb.so.0 (stb's implementations), each also under its link name
#              (copies, not symlinks), and libpkgconf.so.3 for the pkg-config below
#   lib/cmake/ a minimal <Package>Config.cmake + ConfigVersion.cmake per find_package() of CMakeLists.txt,
#              each defining the imported target we link, relative to its own location
#   lib/pkgconfig/  libutf8proc.pc and stb.pc with prefix=${pcfiledir}/../.. (relocatable)
#   bin/pkg-config  Debian's pkgconf behind a wrapper, used only where the machine has no pkg-config
#   share/licenses/ each package's copyright file;  MANIFEST: versions, source, date
# FFmpeg is not carried (a dozen shared libraries and their own dependencies): gpu-check.sh configures
# with -DVIDEOBERT_FFMPEG=OFF.
#
# Usage: bash scripts/gpu-deps.sh            (rebuilds .gpu-deps/ from scratch; needs no root)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-deps
max_mib=20
libdir=/usr/lib/x86_64-linux-gnu

die() { echo "gpu-deps: $*" >&2; exit 1; }
[[ $(uname -m) == x86_64 ]] || die "this machine is $(uname -m); the GPU machine is x86-64, so the carried .so files must come from an x86-64 machine"
command -v dpkg-query > /dev/null || die "needs Debian's dpkg-query (run it on the dev machine, after scripts/install-deps.sh)"

version_of() {  # the installed Debian package's version, or a clear failure
  dpkg-query -W -f='${Version}' "$1" 2> /dev/null || die "Debian package $1 is not installed: run scripts/install-deps.sh first"
}
need() { [[ -e $1 ]] || die "$1 is missing (from Debian package $2): run scripts/install-deps.sh first"; }

tmp=$(mktemp -d "$PWD/.gpu-deps.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{include/eigen3,include/stb,lib/cmake,lib/pkgconfig,bin,share/licenses}

# ---- headers -----------------------------------------------------------------------------------------
need /usr/include/eigen3/Eigen libeigen3-dev
cp -r /usr/include/eigen3/Eigen "$tmp/include/eigen3/"   # not unsupported/: nothing includes it
for d in nlohmann:nlohmann-json3-dev CLI:libcli11-dev doctest:doctest-dev fmt:libfmt-dev; do
  need "/usr/include/${d%%:*}" "${d#*:}"
  cp -r "/usr/include/${d%%:*}" "$tmp/include/"
done
need /usr/include/utf8proc.h libutf8proc-dev
cp /usr/include/utf8proc.h "$tmp/include/"
for h in stb_image.h stb_image_write.h; do
  need "/usr/include/stb/$h" libstb-dev
  cp "/usr/include/stb/$h" "$tmp/include/stb/"
done

# ---- shared libraries (real files under both names: a symlink in a carried folder is fragile) ------------
copy_lib() {  # copy_lib SONAME LINKNAME PACKAGE
  need "$libdir/$1" "$3"
  cp -L "$libdir/$1" "$tmp/lib/$1"
  [[ -z $2 ]] || cp -L "$libdir/$1" "$tmp/lib/$2"
}
copy_lib libutf8proc.so.2 libutf8proc.so libutf8proc2
copy_lib libstb.so.0 libstb.so libstb0
copy_lib libpkgconf.so.3 "" libpkgconf3
need /usr/bin/pkgconf pkgconf
cp /usr/bin/pkgconf "$tmp/bin/pkgconf"
cat > "$tmp/bin/pkg-config" << 'EOF'
#!/bin/sh
# Debian 12's pkgconf with its library beside it (scripts/gpu-deps.sh); used where the machine has none.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/pkgconf" "$@"
EOF
chmod +x "$tmp/bin/pkg-config" "$tmp/bin/pkgconf"

# ---- CMake package files -------------------------------------------------------------------------------
# config_file NAME VERSION TARGET INCLUDE_SUBDIR [COMPILE_DEFINITIONS]: <NAME>Config.cmake defining TARGET
# as an INTERFACE IMPORTED target over <prefix>/include/INCLUDE_SUBDIR, plus a version file accepting any
# request of the same major version at or below VERSION (what the packages' own files accept).
config_file() {
  local name=$1 version=$2 target=$3 subdir=$4 defs=${5:-}
  local dir="$tmp/lib/cmake/$name"
  mkdir -p "$dir"
  cat > "$dir/${name}Config.cmake" << EOF
# ${name} ${version}, carried by scripts/gpu-deps.sh: the headers under <prefix>/include${subdir:+/$subdir}.
get_filename_component(_vb_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET ${target})
  add_library(${target} INTERFACE IMPORTED)
  set_target_properties(${target} PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "\${_vb_prefix}/include${subdir:+/$subdir}"
    INTERFACE_COMPILE_DEFINITIONS "${defs}")
endif()
set(${name}_VERSION ${version})
set(${name}_FOUND TRUE)
unset(_vb_prefix)
EOF
  cat > "$dir/${name}ConfigVersion.cmake" << EOF
set(PACKAGE_VERSION ${version})
string(REGEX MATCH "^[0-9]+" _vb_major "\${PACKAGE_VERSION}")
if(PACKAGE_FIND_VERSION AND (PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION
                             OR NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL _vb_major))
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
unset(_vb_major)
EOF
}
upstream() { local v; v=$(version_of "$1"); v=${v#*:}; echo "${v%%[+~-]*}"; }  # 3.4.0-4 → 3.4.0
config_file Eigen3 "$(upstream libeigen3-dev)" Eigen3::Eigen eigen3
config_file nlohmann_json "$(upstream nlohmann-json3-dev)" nlohmann_json::nlohmann_json ""
config_file CLI11 "$(upstream libcli11-dev)" CLI11::CLI11 ""
config_file doctest "$(upstream doctest-dev)" doctest::doctest ""
config_file fmt "$(upstream libfmt-dev)" fmt::fmt "" "FMT_HEADER_ONLY=1"

# ---- pkg-config files ------------------------------------------------------------------------------------
cat > "$tmp/lib/pkgconfig/libutf8proc.pc" << EOF
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libutf8proc
Description: UTF8 processing (carried by scripts/gpu-deps.sh)
Version: $(upstream libutf8proc-dev)
Libs: -L\${libdir} -lutf8proc
Cflags: -I\${includedir} -DUTF8PROC_EXPORTS
EOF
cat > "$tmp/lib/pkgconfig/stb.pc" << EOF
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include/stb

Name: stb
Description: single-file image libraries (carried by scripts/gpu-deps.sh)
Version: 0.0
Libs: -L\${libdir} -lstb
Cflags: -I\${includedir}
EOF

# ---- licences and manifest -------------------------------------------------------------------------------
packages=(libeigen3-dev nlohmann-json3-dev libcli11-dev doctest-dev libfmt-dev libutf8proc-dev libutf8proc2 libstb-dev
          libstb0 pkgconf libpkgconf3)
for p in "${packages[@]}"; do
  if [[ -f /usr/share/doc/$p/copyright ]]; then
    mkdir -p "$tmp/share/licenses/$p"
    cp "/usr/share/doc/$p/copyright" "$tmp/share/licenses/$p/"
  fi
done
{
  echo "# .gpu-deps, made by scripts/gpu-deps.sh on $(date -u +%Y-%m-%dT%H:%MZ) from $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"')"
  for p in "${packages[@]}"; do echo "$p $(version_of "$p")"; done
} > "$tmp/MANIFEST"

# ---- size check, then replace the old folder ---------------------------------------------------------------
kib=$(du -sk "$tmp" | cut -f1)
((kib <= max_mib * 1024)) || die "the folder came to $((kib / 1024)) MiB, over the $max_mib MiB budget"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "gpu-deps: wrote $dest ($((kib / 1024)).$((kib % 1024 * 10 / 1024)) MiB, $(find "$dest" -type f | wc -l) files)"
echo "gpu-deps: on the GPU machine: carry [\".gpu-deps\"], run: bash scripts/gpu-check.sh   (docs/GPU.md)"
