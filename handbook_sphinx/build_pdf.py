"""Build the handbook's PDF: Sphinx's LaTeX builder, then xelatex through latexmk.

    python -m handbook_sphinx.build_pdf                      # stops with exit status 2 without TeX
    python -m handbook_sphinx.build_pdf --if-tex-available   # without TeX: says so, exit status 0

Writes ``_build/handbook.pdf``. The HTML build (``tox -e docs``) publishes that file at the
site root and links it from every page. Without the TeX tools it names the Debian packages
that provide them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from handbook_sphinx import ROOT

BUILD = ROOT / "_build"
PACKAGES = (
    "texlive-xetex texlive-latex-recommended texlive-fonts-recommended latexmk "
    "fonts-freefont-otf fonts-dejavu-core make graphviz"
)


def missing_tools() -> list[str]:
    return [tool for tool in ("latexmk", "xelatex", "make", "dot") if shutil.which(tool) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handbook_sphinx.build_pdf", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--if-tex-available",
        action="store_true",
        help="without the TeX tools, skip the PDF (exit status 0) instead of failing",
    )
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing and args.if_tex_available:
        print(
            f"PDF skipped: {', '.join(missing)} not found "
            f"(sudo apt-get install --no-install-recommends {PACKAGES})"
        )
        return 0
    if missing:
        print(
            f"Cannot build the PDF: {', '.join(missing)} not found.\n"
            f"On Debian or Ubuntu: sudo apt-get install --no-install-recommends {PACKAGES}",
            file=sys.stderr,
        )
        return 2
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-M",
        "latexpdf",
        "docs",
        str(BUILD),
        "-c",
        ".",
        "-n",
        "-W",
        "--keep-going",
        "-q",
    ]
    result = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "LATEXMKOPTS": "-quiet -halt-on-error"}
    )
    if result.returncode:
        print(f"PDF build failed; see {BUILD / 'latex' / 'handbook.log'}", file=sys.stderr)
        return result.returncode
    shutil.copyfile(BUILD / "latex" / "handbook.pdf", BUILD / "handbook.pdf")
    print(f"wrote {BUILD / 'handbook.pdf'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
