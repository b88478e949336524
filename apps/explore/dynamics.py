"""The MD integrators walkers and the assessment's MD check use: Langevin NVT, or MTK NPT (isotropic).

NPT lets the cell breathe, so the potential's own density is explored (and checked) instead of the
volume of the starting cell; a pressure pushes it towards compressed or expanded cells.
"""

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.velocitydistribution import thermalize_momenta

THERMOSTAT_STEPS = 100  # MTK thermostat time constant, in time steps
BAROSTAT_STEPS = 1000  # MTK barostat time constant, in time steps


def make_dynamics(
    atoms: Atoms,
    *,
    timestep_fs: float,
    temperature: float,
    pressure_gpa: float | None,
    friction: float,
    rng: np.random.Generator,
) -> MolecularDynamics:
    """Langevin NVT when `pressure_gpa` is None, else isotropic MTK NPT at that pressure; momenta thermalised."""
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    timestep = timestep_fs * units.fs
    if pressure_gpa is None:
        return Langevin(
            atoms,
            timestep=timestep,
            temperature_K=temperature,
            friction=friction / units.fs,
            fixcm=False,
            rng=rng,
        )
    return IsotropicMTKNPT(
        atoms,
        timestep=timestep,
        temperature_K=temperature,
        pressure_au=pressure_gpa * units.GPa,
        tdamp=THERMOSTAT_STEPS * timestep,
        pdamp=BAROSTAT_STEPS * timestep,
    )
