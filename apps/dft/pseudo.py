"""Pseudopotential files: the UPF header facts the parameter rules need, and the pre-flight check.

Cutoffs, pseudopotential type (NC/US/PAW) and valence come from the UPF header so the label uses what the
pseudopotential's author suggested; the MD5 goes into every label's provenance. Both UPF v2 (XML attributes)
and UPF v1 (positional `<PP_HEADER>` lines) are read.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from autopipe.errors import ConfigError

_V2_HEADER = re.compile(r"<PP_HEADER\b([^>]*?)/?>", re.DOTALL)
_V2_ATTR = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
_V1_HEADER = re.compile(r"<PP_HEADER>(.*?)</PP_HEADER>", re.DOTALL)
_TRUE = {"t", "true", ".true."}


@dataclass(frozen=True)
class UPFHeader:
    """What a label needs to know about one pseudopotential file."""

    file: str
    element: str
    pseudo_type: str  # "NC", "US" or "PAW"
    z_valence: float
    wfc_cutoff: float | None  # Ry, None when the header suggests nothing
    rho_cutoff: float | None  # Ry
    functional: str
    md5: str

    @property
    def needs_augmentation(self) -> bool:
        """Ultrasoft and PAW need a denser charge grid (ecutrho 8-12x ecutwfc instead of 4x)."""
        return self.pseudo_type in ("US", "PAW")


def _cutoff(value: float) -> float | None:
    return value if value > 0 else None


def _normalise_type(raw: str, ultrasoft: bool, paw: bool) -> str:
    if paw or raw.upper() == "PAW":
        return "PAW"
    if ultrasoft or raw.upper() in ("US", "USPP"):
        return "US"
    return "NC"  # "NC", "SL" (semilocal NC) and "1/r" are all norm-conserving


def _parse_v2(attrs_text: str) -> dict:
    attrs = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).strip()
        for m in _V2_ATTR.finditer(attrs_text)
    }
    flag = lambda key: attrs.get(key, "").lower() in _TRUE
    return {
        "element": attrs["element"],
        "pseudo_type": _normalise_type(attrs.get("pseudo_type", "NC"), flag("is_ultrasoft"), flag("is_paw")),
        "z_valence": float(attrs["z_valence"]),
        "wfc_cutoff": _cutoff(float(attrs.get("wfc_cutoff", 0))),
        "rho_cutoff": _cutoff(float(attrs.get("rho_cutoff", 0))),
        "functional": " ".join(attrs.get("functional", "").split()),
    }


def _parse_v1(body: str) -> dict:
    lines = [line.split() for line in body.strip().splitlines()]
    # positional: version, element, type, nlcc, functional (4 words + text), z_valence, energy, cutoffs
    wfc, rho = float(lines[7][0]), float(lines[7][1])
    return {
        "element": lines[1][0],
        "pseudo_type": _normalise_type(lines[2][0], False, False),
        "z_valence": float(lines[5][0]),
        "wfc_cutoff": _cutoff(wfc),
        "rho_cutoff": _cutoff(rho),
        "functional": " ".join(lines[4][:4]),
    }


def read_upf_header(path: Path) -> UPFHeader:
    """Read the header of a UPF v1 or v2 file; ValueError if it is not a readable UPF file."""
    data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    try:
        if (v1 := _V1_HEADER.search(text)) is not None:
            fields = _parse_v1(v1.group(1))
        elif (v2 := _V2_HEADER.search(text)) is not None:
            fields = _parse_v2(v2.group(1))
        else:
            raise ValueError("no <PP_HEADER> found")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable UPF pseudopotential ({exc})") from exc
    return UPFHeader(file=Path(path).name, md5=hashlib.md5(data).hexdigest(), **fields)


def upf_files_for(pseudo_dir: Path, element: str) -> list[str]:
    """UPF files in `pseudo_dir` whose name starts with `element` (Fe.pbe-..., fe_..., Pb_s.UPF)."""
    if not pseudo_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in pseudo_dir.iterdir()
        if p.suffix.lower() == ".upf" and re.split(r"[._\-]", p.name)[0].lower() == element.lower()
    )


def _available(pseudo_dir: Path, element: str) -> str:
    files = upf_files_for(pseudo_dir, element)
    if not files:
        return f"{pseudo_dir} holds no UPF file for {element}."
    return f"UPF files for {element} in {pseudo_dir}: {', '.join(files)}."


def load_pseudopotentials(
    pseudo_dir: Path, pseudopotentials: dict[str, str], elements: list[str]
) -> dict[str, UPFHeader]:
    """Headers of the pseudopotentials for `elements`; ConfigError naming the key when one is unusable."""
    pseudo_dir = Path(pseudo_dir)
    if not pseudo_dir.is_dir():
        raise ConfigError(
            f"dft.pseudo_dir: the directory {str(pseudo_dir)!r} does not exist. Set dft.pseudo_dir to the "
            "directory holding your UPF files (Debian's quantum-espresso-data installs them in "
            "/usr/share/espresso/pseudo)."
        )
    headers = {}
    for element in sorted(set(elements)):
        key = f"dft.pseudopotentials.{element}"
        name = pseudopotentials.get(element)
        if not name:
            raise ConfigError(
                f"{key}: no pseudopotential is given for element {element}, which occurs in the structures. "
                f"Add '{element}: <file>' under dft.pseudopotentials. {_available(pseudo_dir, element)}"
            )
        path = pseudo_dir / name
        if not path.is_file():
            raise ConfigError(
                f"{key}: the file {name!r} does not exist in {pseudo_dir}. {_available(pseudo_dir, element)}"
            )
        try:
            header = read_upf_header(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{key}: {name!r} cannot be read as a UPF pseudopotential ({exc}). "
                f"{_available(pseudo_dir, element)}"
            ) from exc
        if header.element.lower() != element.lower():
            raise ConfigError(
                f"{key}: {name!r} is a pseudopotential for {header.element}, not {element}. "
                f"{_available(pseudo_dir, element)}"
            )
        headers[element] = header
    return headers


def check_pseudopotentials(pseudo_dir: Path, pseudopotentials: dict[str, str], elements: list[str]) -> None:
    """Raise ConfigError (naming dft.pseudo_dir or dft.pseudopotentials.<El>) unless every element is usable."""
    load_pseudopotentials(pseudo_dir, pseudopotentials, elements)
