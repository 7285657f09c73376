"""The membrane and synapse model: parameters from the config, Brian2 equations with units.

Passive cable (leak, Cm, Ri) by default; optional Hodgkin-Huxley Na/K on the soma,
optional NMDA with Mg block at the excitatory synapses and optional spine necks (every
synapse on a spine head of its own: HEAD_EQUATIONS). Synapses are conductances with
double-exponential kinetics, each scaled so that its conductance peaks at the input
strength: g(t) = w * f * (exp(-t/tau_decay) - exp(-t/tau_rise)).
"""

import math
from dataclasses import asdict, dataclass

import brian2 as b2
import numpy as np

from .config import ActiveSoma, DendriteConfig, Nmda, Spines


@dataclass(frozen=True)
class Kinetics:
    """Double-exponential conductance kinetics and reversal potential of one receptor."""

    E_rev_mV: float
    tau_rise_ms: float
    tau_decay_ms: float

    def peak_factor(self) -> float:
        """f such that f * (exp(-t/tau_d) - exp(-t/tau_r)) peaks at exactly 1."""
        r, d = self.tau_rise_ms, self.tau_decay_ms
        t_peak = r * d / (d - r) * math.log(d / r)
        return 1.0 / (math.exp(-t_peak / d) - math.exp(-t_peak / r))


@dataclass(frozen=True)
class CellModel:
    """Everything electrical about the simulated cell, in the config's units."""

    Cm_uF_per_cm2: float
    Rm_ohm_cm2: float
    Ri_ohm_cm: float
    EL_mV: float
    E: Kinetics
    I: Kinetics
    hh: ActiveSoma | None = None
    nmda: Nmda | None = None
    spines: Spines | None = None

    @classmethod
    def from_config(cls, dendrite: DendriteConfig) -> "CellModel":
        """Build from the `dendrite` section of the config (as dendrite_sim.config builds it);
        hh and nmda are the enabled sections, None where disabled."""
        membrane, synapses = dendrite.membrane, dendrite.synapses
        active, nmda = dendrite.active_soma, dendrite.nmda
        return cls(
            Cm_uF_per_cm2=membrane.Cm_uF_per_cm2,
            Rm_ohm_cm2=membrane.Rm_ohm_cm2,
            Ri_ohm_cm=membrane.Ri_ohm_cm,
            EL_mV=membrane.EL_mV,
            E=Kinetics(**asdict(synapses.E)),
            I=Kinetics(**asdict(synapses.I)),
            hh=active if active.enabled else None,
            nmda=nmda if nmda.enabled else None,
            spines=dendrite.spines if dendrite.spines.enabled else None,
        )

    def equations(self, clamp: bool = False) -> b2.Equations:
        """The SpatialNeuron equations: membrane currents, synaptic and gating states. With
        spines, the summed current of the spine necks (g_spines, I_spines: HEAD_EQUATIONS);
        with `clamp`, a current I_clamp injected into each compartment (zero unless set:
        the input-resistance measurement of dendrite_sim.spines)."""
        membrane = (
            "Im = gL*(EL - v)" + (" + I_hh - I_hh_rest" if self.hh else "") + " : amp/meter**2"
        )
        synaptic = "Is = gE*(E_E - v) + gI*(E_I - v)" + (" + I_nmda" if self.nmda else "")
        synaptic += " + I_spines - g_spines*v" if self.spines else ""
        synaptic += " + I_clamp" if clamp else ""
        text = f"""
        {membrane}
        {synaptic} : amp (point current)
        """
        text += SYNAPSE_KINETICS
        if self.hh:
            text += HH_EQUATIONS
        if self.nmda:
            text += NMDA_EQUATIONS
        if self.spines:
            text += "I_spines : amp\ng_spines : siemens\n"
        if clamp:
            text += "I_clamp : amp\n"
        return b2.Equations(text)

    def head_equations(self) -> b2.Equations:
        """The spine heads' equations (HEAD_EQUATIONS; with NMDA, its conductance too)."""
        nmda = self.nmda is not None
        text = HEAD_EQUATIONS.format(
            g_nmda=" + gN*block_head" if nmda else "",
            I_nmda=" + gN*block_head*E_N" if nmda else "",
        )
        if nmda:
            text += "gN = bN - aN : siemens\ndaN/dt = -aN/tauN_rise : siemens\n"
            text += "dbN/dt = -bN/tauN_decay : siemens\nblock_head : 1\n"
        return b2.Equations(text)

    def head_block_code(self) -> str:
        """Code that sets the heads' NMDA Mg block from their present potential (run every
        step, after the state update: the block lags the head's potential by one step)."""
        return "block_head = 1/(1 + mg/(3.57*mM)*exp(-0.062*v_head/mV))"

    def head_reset_code(self) -> str:
        """Code that returns every spine head to rest (run at the start of each trial)."""
        conductances = ["aE", "bE", "aI", "bI"] + (["aN", "bN"] if self.nmda else [])
        lines = [f"{g} = 0*{g}" for g in conductances]
        if self.nmda:
            lines.append(f"block_head = {mg_block(self.EL_mV, self.nmda.mg_mM)!r}")
        return "\n".join(lines)

    def namespace(self) -> dict:
        """Constants the equations and synapse code refer to, with Brian2 units."""
        ms, mV = b2.ms, b2.mV
        ns = {
            "gL": 1.0 / (self.Rm_ohm_cm2 * b2.ohm * b2.cm**2),
            "EL": self.EL_mV * mV,
            "E_E": self.E.E_rev_mV * mV,
            "E_I": self.I.E_rev_mV * mV,
            "tauE_rise": self.E.tau_rise_ms * ms,
            "tauE_decay": self.E.tau_decay_ms * ms,
            "tauI_rise": self.I.tau_rise_ms * ms,
            "tauI_decay": self.I.tau_decay_ms * ms,
            "fE": self.E.peak_factor(),
            "fI": self.I.peak_factor(),
        }
        if self.hh:
            ns |= {
                "ENa": self.hh.ENa_mV * mV,
                "EK": self.hh.EK_mV * mV,
                "V_hh": self.EL_mV * mV,
            }
        if self.nmda:
            nmda = Kinetics(self.nmda.E_mV, self.nmda.tau_rise_ms, self.nmda.tau_decay_ms)
            ns |= {
                "E_N": nmda.E_rev_mV * mV,
                "tauN_rise": nmda.tau_rise_ms * ms,
                "tauN_decay": nmda.tau_decay_ms * ms,
                "fN": nmda.peak_factor() * self.nmda.g_ratio,
                "mg": self.nmda.mg_mM * b2.mM,
            }
        if self.spines:
            geometry = spine_geometry(self.spines, self.Ri_ohm_cm, self.Rm_ohm_cm2)
            ns |= {
                "g_neck": 1.0 / (geometry["neck_resistance_MOhm"] * b2.Mohm),
                "gL_head": geometry["head_area_um2"]
                * b2.um**2
                / (self.Rm_ohm_cm2 * b2.ohm * b2.cm**2),
            }
        return ns

    def on_pre(self) -> str:
        """Synapse code for a presynaptic event with strength w; is_E is 1 for an
        excitatory synapse and 0 for an inhibitory one."""
        code = "aE_post += w*fE*is_E\nbE_post += w*fE*is_E"
        code += "\naI_post += w*fI*(1 - is_E)\nbI_post += w*fI*(1 - is_E)"
        if self.nmda:
            code += "\naN_post += w*fN*is_E\nbN_post += w*fN*is_E"
        return code

    def reset_code(self) -> str:
        """Code that returns every state variable to rest (run at the start of each trial)."""
        conductances = ["aE", "bE", "aI", "bI"] + (["aN", "bN"] if self.nmda else [])
        lines = ["v = EL"] + [f"{g} = 0*{g}" for g in conductances]
        if self.hh:
            m, h, n = hh_steady_state(0.0)
            lines += [f"m = {m!r}", f"h = {h!r}", f"n = {n!r}"]
        return "\n".join(lines)

    def soma_channels(self) -> dict[str, b2.Quantity]:
        """Values for the soma compartment's Na/K parameters (zero elsewhere).

        I_hh_rest is the HH current at rest, subtracted so that the cell rests exactly
        at EL with the gates at their steady state: trials then start at rest.
        """
        if not self.hh:
            return {}
        mS_cm2 = b2.msiemens / b2.cm**2
        gNa, gK = self.hh.gNa_mS_per_cm2 * mS_cm2, self.hh.gK_mS_per_cm2 * mS_cm2
        m, h, n = hh_steady_state(0.0)
        ENa, EK, EL = (self.hh.ENa_mV * b2.mV, self.hh.EK_mV * b2.mV, self.EL_mV * b2.mV)
        rest = gNa * m**3 * h * (ENa - EL) + gK * n**4 * (EK - EL)
        return {"gNa": gNa, "gK": gK, "I_hh_rest": rest}

    def attrs(self) -> dict[str, str]:
        """Model parameters as strings with units, for NetCDF attributes."""
        out = {
            "Cm": f"{self.Cm_uF_per_cm2} uF/cm**2",
            "Rm": f"{self.Rm_ohm_cm2} ohm*cm**2",
            "Ri": f"{self.Ri_ohm_cm} ohm*cm",
            "EL": f"{self.EL_mV} mV",
            "active_soma": "HH Na/K" if self.hh else "none",
            "nmda": "NMDA with Mg block at E synapses" if self.nmda else "none",
        }
        for name, k in (("E", self.E), ("I", self.I)):
            out |= {
                f"{name}_reversal": f"{k.E_rev_mV} mV",
                f"{name}_tau_rise": f"{k.tau_rise_ms} ms",
                f"{name}_tau_decay": f"{k.tau_decay_ms} ms",
            }
        if self.hh:
            out |= {
                "gNa_soma": f"{self.hh.gNa_mS_per_cm2} mS/cm**2",
                "gK_soma": f"{self.hh.gK_mS_per_cm2} mS/cm**2",
                "ENa": f"{self.hh.ENa_mV} mV",
                "EK": f"{self.hh.EK_mV} mV",
            }
        if self.nmda:
            out |= {f"nmda_{k}": str(v) for k, v in asdict(self.nmda).items() if k != "enabled"}
        out["spines"] = "none"
        if self.spines:
            geometry = spine_geometry(self.spines, self.Ri_ohm_cm, self.Rm_ohm_cm2)
            out |= {
                "spines": "every synapse on a spine head of its own (quasi-static head, neck resistance)",
                "spine_neck_length": f"{self.spines.neck_length_um} um",
                "spine_neck_diameter": f"{self.spines.neck_diameter_um} um",
                "spine_head_diameter": f"{self.spines.head_diameter_um} um",
                "spine_neck_resistance": f"{geometry['neck_resistance_MOhm']:.4g} MOhm",
            }
        return out


def spine_geometry(spines: Spines, Ri_ohm_cm: float, Rm_ohm_cm2: float) -> dict[str, float]:
    """The neck's axial resistance R_neck = 4 Ri L / (pi d^2) (MOhm), the head's membrane
    area pi D^2 (a sphere, um^2) and its leak resistance Rm / area (MOhm)."""
    length_cm, diameter_cm = spines.neck_length_um * 1e-4, spines.neck_diameter_um * 1e-4
    neck = 4.0 * Ri_ohm_cm * length_cm / (math.pi * diameter_cm**2)
    area_um2 = math.pi * spines.head_diameter_um**2
    return {
        "neck_resistance_MOhm": neck * 1e-6,
        "head_area_um2": area_um2,
        "head_leak_resistance_MOhm": Rm_ohm_cm2 / (area_um2 * 1e-8) * 1e-6,
    }


# The double-exponential conductances of the E and I synapses, on the compartments (equations)
# and on the spine heads (HEAD_EQUATIONS).
SYNAPSE_KINETICS = """
gE = bE - aE : siemens
daE/dt = -aE/tauE_rise : siemens
dbE/dt = -bE/tauE_decay : siemens
gI = bI - aI : siemens
daI/dt = -aI/tauI_rise : siemens
dbI/dt = -bI/tauI_decay : siemens
"""


# Hodgkin-Huxley (1952) squid-axon kinetics, with potentials taken relative to the
# cell's resting potential V_hh (the original paper's convention).
HH_EQUATIONS = """
I_hh = gNa*m**3*h*(ENa - v) + gK*n**4*(EK - v) : amp/meter**2
dm/dt = alpham*(1 - m) - betam*m : 1
dh/dt = alphah*(1 - h) - betah*h : 1
dn/dt = alphan*(1 - n) - betan*n : 1
alpham = (0.1/mV)*10*mV/exprel((25*mV - (v - V_hh))/(10*mV))/ms : Hz
betam = 4*exp(-(v - V_hh)/(18*mV))/ms : Hz
alphah = 0.07*exp(-(v - V_hh)/(20*mV))/ms : Hz
betah = 1/(exp((30*mV - (v - V_hh))/(10*mV)) + 1)/ms : Hz
alphan = (0.01/mV)*10*mV/exprel((10*mV - (v - V_hh))/(10*mV))/ms : Hz
betan = 0.125*exp(-(v - V_hh)/(80*mV))/ms : Hz
gNa : siemens/meter**2
gK : siemens/meter**2
I_hh_rest : amp/meter**2
"""

NMDA_EQUATIONS = """
I_nmda = gN*mg_block*(E_N - v) : amp
gN = bN - aN : siemens
daN/dt = -aN/tauN_rise : siemens
dbN/dt = -bN/tauN_decay : siemens
mg_block = 1/(1 + mg/(3.57*mM)*exp(-0.062*v/mV)) : 1
"""


# A spine head: the synapse's conductances, the head's leak and the neck (conductance g_neck)
# to the dendritic compartment at potential v_dend. The head's capacitance (~0.01 pF) makes
# its time constant C/(g_neck + g_head) about a nanosecond, far below the time step, so the
# head is taken at its instantaneous steady state (quasi-static):
#   v_head = (g_neck v_dend + I_source) / (g_neck + g_head)
# and the neck carries into the dendrite g_neck (v_head - v_dend) = I_into - g_into v_dend,
# linear in v_dend (summed into the compartment's I_spines and g_spines, so the cable's
# implicit solver integrates it). I_clamp: an injected current, zero unless set.
HEAD_EQUATIONS = (
    SYNAPSE_KINETICS
    + """
g_head = gL_head + gE + gI{g_nmda} : siemens
I_source = gL_head*EL + gE*E_E + gI*E_I{I_nmda} + I_clamp : amp
v_head = (g_neck*v_dend + I_source)/(g_neck + g_head) : volt
g_into = g_neck*g_head/(g_neck + g_head) : siemens
I_into = g_neck*I_source/(g_neck + g_head) : amp
v_dend : volt (linked)
I_clamp : amp
"""
)


def mg_block(v_mV: float, mg_mM: float) -> float:
    """The Jahr-Stevens Mg block of NMDA_EQUATIONS at membrane potential v_mV."""
    return 1.0 / (1.0 + mg_mM / 3.57 * math.exp(-0.062 * v_mV))


def nmda_ampa_current_ratio(
    nmda: Nmda, E_ampa_mV: float, v_ampa_mV: float = -70.0, v_nmda_mV: float = 40.0
) -> float:
    """NMDA/AMPA peak-current ratio of one synapse as slice experiments measure it: the NMDA
    current at v_nmda_mV (largely unblocked) over the AMPA current at v_ampa_mV. Both
    conductances peak at their strength (AMPA 1, NMDA g_ratio per unit of AMPA)."""
    nmda_current = nmda.g_ratio * mg_block(v_nmda_mV, nmda.mg_mM) * abs(nmda.E_mV - v_nmda_mV)
    return nmda_current / abs(E_ampa_mV - v_ampa_mV)


def _exprel(x: float) -> float:
    return 1.0 if x == 0 else math.expm1(x) / x


def hh_steady_state(u_mV: float) -> tuple[float, float, float]:
    """Steady-state (m, h, n) at u_mV relative to rest, from the HH_EQUATIONS rates."""
    am = 0.1 * 10 / _exprel((25 - u_mV) / 10)
    bm = 4 * np.exp(-u_mV / 18)
    ah = 0.07 * np.exp(-u_mV / 20)
    bh = 1 / (np.exp((30 - u_mV) / 10) + 1)
    an = 0.01 * 10 / _exprel((10 - u_mV) / 10)
    bn = 0.125 * np.exp(-u_mV / 80)
    return float(am / (am + bm)), float(ah / (ah + bh)), float(an / (an + bn))
