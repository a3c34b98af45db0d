"""The lifecycle's rules each exist once: one phase vocabulary (kuberl.lifecycle.Phase, mirrored
by the wire's ExperimentPhase and the CRD's status enum), and an operator that interprets the
learner's verdict without knowing any environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kuberl.crd import status_schema
from kuberl.lifecycle import Phase
from kuberl.v1 import experiment_service_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
PHASE_LITERAL = re.compile(r"""["'](?:%s)["']""" % "|".join(p.value for p in Phase))


def test_the_operator_imports_no_environment_library():
    probe = ("import sys, kuberl_operator.handlers; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'gym') or m == 'kuberl.envs'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_second_phase_vocabulary_is_written_in_the_code():
    sources = [p for root in ("services/kuberl", "operator/kuberl_operator") for p in (REPO / root).rglob("*.py")
               if "v1" not in p.relative_to(REPO).parts and p.name != "lifecycle.py"]
    assert sources
    spelled = [f"{p.relative_to(REPO)}:{n}" for p in sources for n, line in enumerate(p.read_text().splitlines(), 1)
               if PHASE_LITERAL.search(line)]
    assert spelled == [], "phase names belong to kuberl.lifecycle.Phase"


def test_the_wire_and_the_crd_speak_the_lifecycles_phases():
    wire = {name.removeprefix("EXPERIMENT_PHASE_") for name in pb.ExperimentPhase.keys()} - {"UNSPECIFIED"}
    assert wire == {p.name for p in Phase}
    assert status_schema()["properties"]["phase"]["enum"] == [p.value for p in Phase]
