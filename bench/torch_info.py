#!/usr/bin/env python3
"""One line naming the PyTorch a benchmark compared against, for the tables' machine line: its version,
where it came from (a PyPI wheel or Debian's python3-torch), the BLAS its matmuls really use and the oneDNN
it was built with — read from torch.__config__.show() and, for a BLAS loaded at run time (Debian's torch goes
through whatever libblas.so.3 the system selects), from the libraries this process has mapped after a matmul.
Usage: python3 bench/torch_info.py [--short]   (run with the python whose torch the benchmark used);
--short prints only "PyTorch X.Y.Z", the release without build or pre-release tags, for table columns."""
import re
import sys

import torch


def main():
    if sys.argv[1:] == ["--short"]:
        print("PyTorch " + re.match(r"[0-9.]*[0-9]", torch.__version__).group(0))
        return
    config = torch.__config__.show()
    torch.ones(64, 64) @ torch.ones(64, 64)  # loads the BLAS if it is a separate library
    mapped = sorted({line.split()[-1] for line in open("/proc/self/maps")
                     if re.search(r"lib(open)?blas|libmkl", line.split()[-1] if len(line.split()) > 5 else "")})
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", config)
    blas_info = re.search(r"BLAS_INFO=(\w+)", config)
    if mkl and (blas_info is None or blas_info.group(1) == "mkl"):
        blas = f"MKL {mkl.group(1)}" + (" (linked in)" if not mapped else f" ({', '.join(mapped)})")
    elif mapped:
        blas = ", ".join(mapped)
    else:
        blas = f"{blas_info.group(1) if blas_info else 'unknown'} (no BLAS library mapped)"
    onednn = re.search(r"MKL-DNN v([\w.]+)", config)
    capability = re.search(r"CPU capability usage: (\w+)", config)
    origin = "Debian python3-torch" if torch.__file__.startswith("/usr/lib/python3/") else f"PyPI wheel, {sys.prefix}"
    parts = [f"PyTorch {torch.__version__} ({origin})", f"BLAS {blas}"]
    if onednn:
        parts.append(f"oneDNN {onednn.group(1)}")
    if capability:
        parts.append(f"CPU capability {capability.group(1)}")
    print(", ".join(parts))


if __name__ == "__main__":
    main()
