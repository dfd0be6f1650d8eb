"""Modelled energy (and latency where a profile gives one) for hardware we do not have, from
slt_deploy/hardware/energy/*.yaml (package data).

A hardware profile is DATA: adding a board = adding a yaml. Every constant carries its value, unit, status and
public source; a constant whose value cannot be sourced is written `value: null` and the profile then reports
"not modelled" naming it, instead of a made-up number. Schema (format_version 1):

    name: loihi2                 # what --hardware takes (defaults to the file name)
    title: "Intel Loihi 2 (estimate from Loihi 1 figures)"
    model: neuromorphic          # ops | neuromorphic | mcu | board  (the formula, below)
    notes: "..."                 # optional
    constants:
      e_sop_pj: {value: 23.6, unit: pJ, status: estimate, source: "Davies et al., IEEE Micro 2018, Table 2"}

Formulas (counts per frame from profile.activity; see docs/profile.md):
    ops           E = SOPs x e_sop_pj + MACs x e_mac_pj [+ neuron updates x e_neuron_update_pj]
    neuromorphic  E = (SOPs + MACs) x e_sop_pj + neuron updates x e_neuron_update_pj
                  (the analog first layer enters as graded spikes: one synaptic op per non-zero pixel x kept weight)
                  latency = T x (t_sync_ns + ops per step x t_sop_ns + neurons x t_neuron_update_ns)
                  -- every op serialised on ONE core: an upper bound, real chips spread layers over cores
    mcu           cycles = SOPs x cycles_per_sop + MACs x cycles_per_mac + neuron updates x cycles_per_neuron_update
                  E = cycles x current_ua_per_mhz x supply_v (1 uA/MHz x 1 V = 1 pJ per cycle); latency = cycles / f
    board         E = latency measured on THIS host x power_w (and x power_w_max for the upper end)
"""
from __future__ import annotations

import glob
import math
import numbers
import os
from importlib.resources import files

import yaml

from ..errors import SltError

FORMAT_VERSION = 1
ENERGY_DIR = str(files("slt_deploy") / "hardware" / "energy")  # package data
STATUSES = ("published", "measured", "estimate", "unsourced")

# model -> {constant: unit}; required constants first, then optional ones
MODELS = {
    "ops": ({"e_sop_pj": "pJ", "e_mac_pj": "pJ"}, {"e_neuron_update_pj": "pJ"}),
    "neuromorphic": ({"e_sop_pj": "pJ", "e_neuron_update_pj": "pJ"},
                     {"t_sop_ns": "ns", "t_neuron_update_ns": "ns", "t_sync_ns": "ns"}),
    "mcu": ({"cycles_per_sop": "cycles", "cycles_per_mac": "cycles", "cycles_per_neuron_update": "cycles",
             "current_ua_per_mhz": "uA/MHz", "supply_v": "V", "clock_mhz": "MHz"}, {}),
    "board": ({"power_w": "W"}, {"power_w_max": "W"}),
}
MCU_TIMING = ("cycles_per_sop", "cycles_per_mac", "cycles_per_neuron_update", "clock_mhz")  # enough for cycles


def _err(path, field, what, fix=None):
    return SltError(f"{path}: field '{field}' {what}",
                    fix or "see slt_deploy/hardware/energy/asic45nm.yaml for the schema (docs/profile.md)")


def validate(doc, path: str) -> dict:
    """Check a parsed hardware profile; raise SltError naming the missing or malformed field. -> normalised dict."""
    if not isinstance(doc, dict):
        raise SltError(f"{path}: not a mapping of fields (got {type(doc).__name__})",
                       "see slt_deploy/hardware/energy/asic45nm.yaml for the schema")
    fv = doc.get("format_version", FORMAT_VERSION)
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise _err(path, "format_version", f"is {fv!r}; this slt-deploy reads <= {FORMAT_VERSION}")
    name = doc.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str) or not name:
        raise _err(path, "name", "must be a non-empty string")
    model = doc.get("model")
    if model is None:
        raise _err(path, "model", "is missing", f"add 'model: <one of {', '.join(MODELS)}>'")
    if model not in MODELS:
        raise _err(path, "model", f"is {model!r}, not one of {', '.join(MODELS)}")
    consts = doc.get("constants")
    if consts is None:
        raise _err(path, "constants", "is missing")
    if not isinstance(consts, dict):
        raise _err(path, "constants", f"must be a mapping (got {type(consts).__name__})")
    required, optional = MODELS[model]
    for k in required:
        if k not in consts:
            raise _err(path, f"constants.{k}", f"is missing (model '{model}' needs {', '.join(required)})")
    out = {}
    for k, c in consts.items():
        f = f"constants.{k}"
        if k not in required and k not in optional:
            raise _err(path, f, f"is not a constant of model '{model}' (it takes {', '.join([*required, *optional])})")
        if not isinstance(c, dict):
            raise _err(path, f, "must be a mapping with value, unit, status, source")
        for sub in ("value", "unit", "source"):
            if sub not in c:
                raise _err(path, f"{f}.{sub}", "is missing")
        v = c["value"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0):
            raise _err(path, f"{f}.value", f"must be a non-negative number or null (got {v!r})")
        want = {**required, **optional}[k]
        if c["unit"] != want:
            raise _err(path, f"{f}.unit", f"is {c['unit']!r}, expected {want!r}")
        if not isinstance(c["source"], str) or not c["source"].strip():
            raise _err(path, f"{f}.source", "must be a non-empty string (where the number comes from)")
        status = c.get("status", "published")
        if status not in STATUSES:
            raise _err(path, f"{f}.status", f"is {status!r}, not one of {', '.join(STATUSES)}")
        if v is None and status != "unsourced":
            raise _err(path, f"{f}.status", "must be 'unsourced' when value is null")
        out[k] = {"value": None if v is None else float(v), "unit": c["unit"], "status": status,
                  "source": c["source"].strip()}
    return {"name": name, "title": str(doc.get("title", name)), "model": model, "notes": str(doc.get("notes", "")),
            "constants": out, "path": path}


def load_profile(path: str) -> dict:
    if not os.path.isfile(path):
        raise SltError(f"hardware profile {path} does not exist", f"pick one of: {', '.join(available()) or 'none'}")
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise SltError(f"{path}: not valid YAML{at} ({getattr(e, 'problem', e)})", "fix the syntax") from None
    from ..schema import check_energy_profile

    out = validate(doc, path)
    check_energy_profile(doc, path)  # and the schema (slt_deploy/schema.py): unknown keys, strict types, ranges
    return out


def available(directory: str = ENERGY_DIR) -> list[str]:
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(directory, "*.yaml")))


def load_hardware(spec=None, directory: str = ENERGY_DIR) -> list[dict]:
    """Profiles named by `spec` ("asic45nm,loihi2" or a list; names in `directory` or paths to .yaml files);
    all profiles in `directory` when spec is None/empty."""
    if not spec:
        names = available(directory)
    else:
        names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out = []
    for n in names:
        p = n if n.endswith((".yaml", ".yml")) else os.path.join(directory, n + ".yaml")
        if not os.path.isfile(p):
            raise SltError(f"unknown hardware profile {n!r}",
                           f"available: {', '.join(available(directory)) or 'none'} (or a path to a .yaml)")
        out.append(load_profile(p))
    return out


# ------------------------------------------------------------------------------------------------- evaluation
def _label(hw, used) -> str:
    srcs = "; ".join(f"{k}: {hw['constants'][k]['source']}" for k in used if k in hw["constants"])
    est = any(hw["constants"][k]["status"] in ("estimate",) for k in used if k in hw["constants"])
    return f"modelled{' (estimate)' if est else ''} (source: {srcs})"


def evaluate(hw: dict, activity: dict, measured_latency_s: float | None = None) -> dict:
    """Energy (J) and latency (s) per frame of one hardware profile for the counts of profile.activity.
    `measured_latency_s`: this host's measured p50 latency per frame (used by 'board' profiles only)."""
    c = {k: v["value"] for k, v in hw["constants"].items()}
    tot, layers = activity["totals"], activity["layers"]
    sops, macs, nupd, T = tot["sops_per_frame"], tot["macs_per_frame"], tot["neuron_updates_per_frame"], tot["T"]
    model = hw["model"]
    required = list(MODELS[model][0])
    res = {"name": hw["name"], "title": hw["title"], "model": model, "energy_per_frame_j": None,
           "energy_per_frame_j_max": None, "latency_per_frame_s": None, "per_layer_j": {}, "terms_j": {},
           "notes": hw["notes"], "constants": hw["constants"]}
    unsourced = [k for k in required if c.get(k) is None]
    if unsourced and model == "mcu" and all(c.get(k) is not None for k in MCU_TIMING):
        # cycles and latency need only the cycle constants and the clock: report them, the energy stays unmodelled
        cyc = sops * c["cycles_per_sop"] + macs * c["cycles_per_mac"] + nupd * c["cycles_per_neuron_update"]
        res["cycles_per_frame"] = cyc
        res["latency_per_frame_s"] = cyc / (c["clock_mhz"] * 1e6)
        res["label"] = (f"{_label(hw, list(MCU_TIMING))}; energy not modelled: no sourced value for "
                        + ", ".join(unsourced))
        res["missing"] = unsourced
        return res
    if unsourced:
        res["label"] = "not modelled: no sourced value for " + ", ".join(unsourced)
        res["missing"] = unsourced
        return res
    pj = 1e-12
    if model == "ops":
        used = ["e_sop_pj", "e_mac_pj"]
        for name, v in layers.items():
            e_op = c["e_mac_pj"] if v["kind"] == "mac" else c["e_sop_pj"]
            res["per_layer_j"][name] = v["ops_per_frame"] * e_op * pj
        res["terms_j"] = {"sop": sops * c["e_sop_pj"] * pj, "mac": macs * c["e_mac_pj"] * pj}
        if c.get("e_neuron_update_pj") is not None:
            used.append("e_neuron_update_pj")
            res["terms_j"]["neuron_update"] = nupd * c["e_neuron_update_pj"] * pj
        res["energy_per_frame_j"] = sum(res["terms_j"].values())
        res["dense_energy_per_frame_j"] = tot["dense_macs_per_frame"] * c["e_mac_pj"] * pj
        res["dense_energy_ann_j"] = tot["dense_macs_ann"] * c["e_mac_pj"] * pj
    elif model == "neuromorphic":
        used = ["e_sop_pj", "e_neuron_update_pj"]
        for name, v in layers.items():
            res["per_layer_j"][name] = v["ops_per_frame"] * c["e_sop_pj"] * pj
        res["terms_j"] = {"synaptic_op": (sops + macs) * c["e_sop_pj"] * pj,
                          "neuron_update": nupd * c["e_neuron_update_pj"] * pj}
        res["energy_per_frame_j"] = sum(res["terms_j"].values())
        if all(c.get(k) is not None for k in ("t_sop_ns", "t_neuron_update_ns", "t_sync_ns")):
            used += ["t_sop_ns", "t_neuron_update_ns", "t_sync_ns"]
            per_step = [c["t_sync_ns"] + ops * c["t_sop_ns"] + tot["neurons"] * c["t_neuron_update_ns"]
                        for ops in _ops_per_step(layers, T)]
            res["latency_per_frame_s"] = sum(per_step) * 1e-9
            res["latency_note"] = "all ops serialised on one core (upper bound)"
    elif model == "mcu":
        used = required
        cyc = sops * c["cycles_per_sop"] + macs * c["cycles_per_mac"] + nupd * c["cycles_per_neuron_update"]
        e_cycle = c["current_ua_per_mhz"] * c["supply_v"] * pj
        for name, v in layers.items():
            per = c["cycles_per_mac"] if v["kind"] == "mac" else c["cycles_per_sop"]
            res["per_layer_j"][name] = v["ops_per_frame"] * per * e_cycle
        res["terms_j"] = {"synaptic": (sops * c["cycles_per_sop"] + macs * c["cycles_per_mac"]) * e_cycle,
                          "neuron_update": nupd * c["cycles_per_neuron_update"] * e_cycle}
        res["cycles_per_frame"] = cyc
        res["energy_per_frame_j"] = cyc * e_cycle
        res["latency_per_frame_s"] = cyc / (c["clock_mhz"] * 1e6)
    elif model == "board":
        used = ["power_w"]
        if measured_latency_s is None:
            res["label"] = "not modelled: needs a measured latency (board energy = latency x power)"
            res["missing"] = ["measured latency"]
            return res
        res["latency_per_frame_s"] = measured_latency_s
        res["latency_note"] = "measured on THIS host, not on the board"
        res["energy_per_frame_j"] = measured_latency_s * c["power_w"]
        if c.get("power_w_max") is not None:
            used.append("power_w_max")
            res["energy_per_frame_j_max"] = measured_latency_s * c["power_w_max"]
    res["label"] = _label(hw, used)
    return res


def _ops_per_step(layers: dict, T: int) -> list:
    steps = [0.0] * T
    for v in layers.values():
        for t, x in enumerate(v["ops_per_step"]):
            steps[t] += x
    return steps
