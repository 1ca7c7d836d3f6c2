"""Where the package's data files (``urdf/``, ``config/``) are, in the source tree or a colcon install."""

from pathlib import Path

PACKAGE_NAME = "stochlite_bringup"


def package_file(*parts: str) -> Path:
    """Path of ``<package>/<parts...>``: the source tree first, then ``share/stochlite_bringup`` of an install."""
    here = Path(__file__).resolve()
    candidates = (
        here.parents[1].joinpath(*parts),  # src/stochlite_bringup
        here.parents[4].joinpath("share", PACKAGE_NAME, *parts),  # <prefix>/lib/pythonX.Y/site-packages/
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{'/'.join(parts)} not found; looked in {[str(c) for c in candidates]}")
