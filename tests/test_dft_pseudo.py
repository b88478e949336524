"""UPF headers and the pseudopotential pre-flight check, on the files Debian's quantum-espresso-data ships."""

import hashlib
import shutil
from pathlib import Path

import pytest

from autopipe.apps.dft import check_pseudopotentials, read_upf_header
from autopipe.apps.dft.pseudo import upf_files_for
from autopipe.errors import ConfigError

PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
pytestmark = pytest.mark.needs("pseudopotentials")


def test_upf_v2_paw_header_gives_type_cutoffs_valence_and_md5():
    header = read_upf_header(PSEUDO_DIR / "H.pbe-kjpaw.UPF")
    assert (header.element, header.pseudo_type, header.z_valence) == ("H", "PAW", 1.0)
    assert header.wfc_cutoff == pytest.approx(45.6556, abs=1e-3)
    assert header.rho_cutoff == pytest.approx(201.134, abs=1e-3)
    assert header.md5 == hashlib.md5((PSEUDO_DIR / "H.pbe-kjpaw.UPF").read_bytes()).hexdigest()
    assert header.needs_augmentation


def test_upf_v2_ultrasoft_without_suggested_cutoffs():
    header = read_upf_header(PSEUDO_DIR / "Fe.pbe-nd-rrkjus.UPF")
    assert (header.element, header.pseudo_type, header.z_valence) == ("Fe", "US", 8.0)
    assert header.wfc_cutoff is None and header.rho_cutoff is None


def test_upf_v2_norm_conserving():
    header = read_upf_header(PSEUDO_DIR / "Al.pz-vbc.UPF")
    assert (header.pseudo_type, header.z_valence, header.needs_augmentation) == ("NC", 3.0, False)
    assert header.md5 == "69dcd8cd7cc1bedf536afd524f174f6a"  # the MD5 pw.x itself prints for this file


def test_upf_v1_positional_header():
    header = read_upf_header(PSEUDO_DIR / "C.UPF")
    assert (header.element, header.pseudo_type, header.z_valence) == ("C", "NC", 4.0)
    us = read_upf_header(PSEUDO_DIR / "Pt.rel-pbe-n-rrkjus.UPF")
    assert (us.element, us.pseudo_type) == ("Pt", "US")
    assert us.wfc_cutoff == pytest.approx(27.476)


def test_garbage_file_is_not_a_upf(tmp_path):
    (tmp_path / "Al.bad.UPF").write_text("<UPF version='2.0.1'>\nnot a header\n")
    with pytest.raises(ValueError, match="not a readable UPF"):
        read_upf_header(tmp_path / "Al.bad.UPF")


def test_files_for_an_element_do_not_mix_up_prefixes():
    cobalt = upf_files_for(PSEUDO_DIR, "Co")
    assert "Co.pbesol-spn-rrkjus_psl.0.3.1.UPF" in cobalt
    assert not any(name.startswith(("C.", "Cr.", "Cu.")) for name in cobalt)


def test_check_passes_for_usable_files():
    check_pseudopotentials(
        PSEUDO_DIR, {"Al": "Al.pz-vbc.UPF", "Fe": "Fe.pbe-nd-rrkjus.UPF"}, ["Al", "Fe", "Al"]
    )


def test_missing_entry_names_the_key_and_lists_the_files_for_that_element():
    with pytest.raises(ConfigError) as err:
        check_pseudopotentials(PSEUDO_DIR, {"Al": "Al.pz-vbc.UPF"}, ["Al", "Ni"])
    message = str(err.value)
    assert message.startswith("dft.pseudopotentials.Ni:")
    assert "Ni.pbe-nd-rrkjus.UPF" in message and "Al.pz-vbc.UPF" not in message


def test_missing_file_names_the_key_and_the_file():
    with pytest.raises(ConfigError, match=r"dft.pseudopotentials.Fe: the file 'Fe.nope.UPF' does not exist"):
        check_pseudopotentials(PSEUDO_DIR, {"Fe": "Fe.nope.UPF"}, ["Fe"])


def test_unparsable_file_names_the_key(tmp_path):
    (tmp_path / "Al.bad.UPF").write_text("garbage")
    shutil.copy(PSEUDO_DIR / "Al.pz-vbc.UPF", tmp_path)
    with pytest.raises(ConfigError) as err:
        check_pseudopotentials(tmp_path, {"Al": "Al.bad.UPF"}, ["Al"])
    assert "dft.pseudopotentials.Al: 'Al.bad.UPF' cannot be read" in str(err.value)
    assert "Al.pz-vbc.UPF" in str(err.value)  # the alternative in the same directory


def test_file_for_another_element_is_refused():
    with pytest.raises(ConfigError, match="'Al.pz-vbc.UPF' is a pseudopotential for Al, not Cu"):
        check_pseudopotentials(PSEUDO_DIR, {"Cu": "Al.pz-vbc.UPF"}, ["Cu"])


def test_missing_directory_names_pseudo_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"^dft.pseudo_dir: the directory .* does not exist"):
        check_pseudopotentials(tmp_path / "nowhere", {"Al": "Al.pz-vbc.UPF"}, ["Al"])
