"""The htp backend's reference arithmetic, per arch, apart from the fast strategies (issue 14): what
Qualcomm's HTP computes, established against its simulator (tests/fidelity/) and written as readable
integer code."""
