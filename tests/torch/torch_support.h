// What the torch-labelled tests share: running tests/torch/full_size.py (PyTorch's side of a check) into a
// temporary folder, and skipping (exit 77) when this machine has no PyTorch.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/support/check.h"

namespace vb::test {

inline std::string source_path(const std::string& rel) { return std::string(VB_SOURCE_DIR) + "/" + rel; }

// Runs a shell command; its output goes to the test's log.
inline int run_command(const std::string& cmd) {
  MESSAGE("running: ", cmd);
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// The Python holding PyTorch: $VB_PYTHON when set (a GPU machine's /opt/torch/.venv/bin/python3, say), else
// Debian's /usr/bin/python3 (scripts/install-deps.sh installs python3-torch there).
inline std::string torch_python() {
  const char* p = std::getenv("VB_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

// Exits 77 (ctest: skipped) unless `python` imports `modules`.
inline void require_python(const std::string& python, const std::string& modules) {
  if (run_command(python + " -c 'import " + modules + "' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: ", python, " cannot import ", modules);
    std::exit(77);
  }
}

// A fresh folder under the temporary directory, removed when the holder goes.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("vb_torch_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace vb::test
