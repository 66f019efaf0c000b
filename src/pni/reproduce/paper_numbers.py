"""The numbers He, Rakin and Fan (CVPR 2019) report, as data, for ``pni.reproduce.report``
to print next to ours. Transcribed from the paper (``../shared/paper.txt``), table by
table; a value is ``(mean, std)`` in percent (``std`` None where the paper gives none),
Table 4 is a mean L2 norm. Keys are the row ids of ``pni.reproduce.plans``; accuracy
settings are ``pni.evaluation.result.NOISE_TITLES``' keys ("with_noise": test with PNI)."""
from __future__ import annotations

Value = tuple[float, float | None]
Cells = dict[str, Value]          # attack ("clean", "pgd", "fgsm") -> (mean, std)

# Table 1 (bottom): clean / PGD / FGSM of ResNet-20 PNI-W under three training schemes.
TABLE1: dict[str, Cells] = {
    "vanilla-training": {"clean": (92.11, None), "pgd": (0.00, 0.00), "fgsm": (14.08, None)},
    "at-xnoise-off": {"clean": (71.00, None), "pgd": (18.11, None), "fgsm": (26.34, None)},
    "at-xnoise-on": {"clean": (84.89, 0.11), "pgd": (45.94, 0.11), "fgsm": (54.48, 0.44)},
}
# Table 1 (top): converged alpha per layer of ResNet-20, in this order of layers (the labels of
# ``pni.models.layer_label``).
TABLE1_LAYERS: tuple[str, ...] = ("Conv0", *(f"Conv{s}.{i}" for s in (1, 2, 3) for i in range(6)), "FC")
TABLE1_ALPHAS: dict[str, tuple[float, ...]] = {
    "vanilla-training": (0.003, 0.002, 0.004, 0.002, 0.004, 0.005, 0.002, 0.004, 0.006, 0.004,
                         0.001, 0.003, 0.002, 0.007, 0.003, 0.007, 0.006, 0.009, 0.005, 0.002),
    "at-xnoise-off": (0.004, 0.005, 0.004, 0.001, 5.856, 0.005, 0.001, 0.000, 0.003, 0.003,
                      0.006, 0.001, 0.001, 0.001, 0.001, 0.002, 0.001, 0.002, 0.000, 0.002),
    "at-xnoise-on": (0.146, 0.081, 0.049, 0.097, 0.771, 0.004, 0.006, 0.006, 0.004, 0.030,
                     0.003, 0.033, 0.023, 0.008, 0.006, 0.001, 0.002, 0.001, 0.001, 0.001),
}

# Table 2: ResNet-20, each location tested with and without noise (vanilla: no noise to test).
TABLE2: dict[str, dict[str, Cells]] = {
    "vanilla": {"without_noise": {"clean": (83.84, None), "pgd": (39.14, 0.05), "fgsm": (46.55, None)}},
    "pni-w": {"with_noise": {"clean": (84.89, 0.11), "pgd": (45.94, 0.11), "fgsm": (54.48, 0.44)},
              "without_noise": {"clean": (85.48, None), "pgd": (31.45, 0.07), "fgsm": (42.55, None)}},
    "pni-i": {"with_noise": {"clean": (85.10, 0.08), "pgd": (43.25, 0.16), "fgsm": (50.78, 0.16)},
              "without_noise": {"clean": (84.82, None), "pgd": (34.87, 0.05), "fgsm": (44.07, None)}},
    "pni-a-a": {"with_noise": {"clean": (85.22, 0.18), "pgd": (43.83, 0.10), "fgsm": (51.41, 0.08)},
                "without_noise": {"clean": (85.20, None), "pgd": (33.93, 0.05), "fgsm": (44.32, None)}},
    "pni-a-b": {"with_noise": {"clean": (84.66, 0.16), "pgd": (43.63, 0.20), "fgsm": (51.26, 0.09)},
                "without_noise": {"clean": (83.97, None), "pgd": (33.53, 0.05), "fgsm": (43.37, None)}},
    "pni-w+a-a": {"with_noise": {"clean": (85.12, 0.10), "pgd": (43.57, 0.12), "fgsm": (51.15, 0.21)},
                  "without_noise": {"clean": (84.88, None), "pgd": (33.23, 0.05), "fgsm": (43.59, None)}},
    "pni-w+a-b": {"with_noise": {"clean": (84.33, 0.11), "pgd": (43.80, 0.19), "fgsm": (51.14, 0.07)},
                  "without_noise": {"clean": (84.42, None), "pgd": (33.30, 0.05), "fgsm": (43.43, None)}},
}


def _t3(capacity: int, none: tuple, vanilla: tuple, on: tuple, off: tuple) -> dict:
    """One Table 3 line: capacity; no defense, vanilla AT, PNI-W on / off as (clean, PGD, FGSM)."""
    def cells(values: tuple) -> Cells:
        return dict(zip(("clean", "pgd", "fgsm"), values))
    return {"capacity": capacity, "none": {"without_noise": cells(none)},
            "vanilla": {"without_noise": cells(vanilla)},
            "pni-w": {"with_noise": cells(on), "without_noise": cells(off)}}


# Table 3: depth and width, keyed by the plan's model tag (``<model>[x<width>]``).
TABLE3: dict[str, dict] = {
    "resnet20": _t3(269_722, ((92.1, None), (0.0, 0.0), (14.1, None)), ((83.8, None), (39.1, 0.1), (46.6, None)),
                    ((84.9, 0.1), (45.9, 0.1), (54.5, 0.4)), ((85.5, None), (31.6, 0.1), (42.6, None))),
    "resnet32": _t3(464_154, ((92.8, None), (0.0, 0.0), (17.8, None)), ((85.6, None), (42.1, 0.0), (50.3, None)),
                    ((85.9, 0.1), (43.5, 0.3), (51.5, 0.1)), ((86.4, None), (35.3, 0.1), (45.5, None))),
    "resnet44": _t3(658_586, ((93.1, None), (0.0, 0.0), (23.9, None)), ((85.9, None), (40.8, 0.1), (48.2, None)),
                    ((84.7, 0.2), (48.5, 0.2), (55.8, 0.1)), ((86.0, None), (39.6, 0.1), (49.9, None))),
    "resnet56": _t3(853_018, ((93.3, None), (0.0, 0.0), (24.2, None)), ((86.5, None), (40.1, 0.1), (48.8, None)),
                    ((86.8, 0.2), (46.3, 0.3), (53.9, 0.1)), ((87.3, None), (41.6, 0.1), (51.1, None))),
    "resnet20x1.5": _t3(605_026, ((93.5, None), (0.0, 0.0), (15.9, None)), ((85.8, None), (42.0, 0.0), (49.6, None)),
                        ((86.0, 0.1), (46.7, 0.2), (54.5, 0.2)), ((87.0, None), (38.4, 0.1), (49.1, None))),
    "resnet20x2": _t3(1_073_962, ((94.0, None), (0.0, 0.0), (13.0, None)), ((86.3, None), (43.1, 0.1), (52.6, None)),
                      ((86.2, 0.1), (46.1, 0.2), (54.6, 0.2)), ((86.8, None), (39.1, 0.0), (50.3, None))),
    "resnet20x4": _t3(4_286_026, ((94.0, None), (0.0, 0.0), (14.2, None)), ((87.5, None), (46.1, 0.1), (54.1, None)),
                      ((87.7, 0.1), (49.1, 0.3), (57.0, 0.2)), ((88.1, None), (43.8, 0.1), (54.2, None))),
}

# Table 4: C&W-L2 mean L2 norm, keyed by the plan's row id (``<model tag>-<scheme>``).
TABLE4: dict[str, float] = {
    "r20x4-none": 0.12, "r20x4-vanilla": 1.97, "r20x4-pni-w": 1.97,
    "r18-none": 0.12, "r18-vanilla": 2.39, "r18-pni-w": 2.63,
}
TABLE4_CAPACITY = {"r20x4": 4_286_026, "r18": 11_173_962}

# Table 5: transferable PGD accuracy (A => B, B => A) and ZOO success rate (%), keyed by row id;
# the vanilla model A's ZOO success rate is given in the text only ("close to 80 %").
TABLE5: dict[str, dict[str, Value]] = {
    "b-w": {"a=>b": (75.13, 0.17), "b=>a": (75.23, 0.18), "zoo": (57.72, None)},
    "b-a-a": {"a=>b": (74.67, 0.11), "b=>a": (75.86, 0.13), "zoo": (69.61, None)},
    "b-w+a-a": {"a=>b": (75.14, 0.10), "b=>a": (74.92, 0.13), "zoo": (50.00, None)},
    "a-vanilla": {"zoo": (80.0, None)},
}

# Table 6: clean / PGD under white-box PGD; DP and RSE are literature rows (quoted, not run).
TABLE6: dict[str, Cells] = {
    "pgd-at": {"clean": (87.0, None), "pgd": (46.1, None)},
    "pni-w": {"clean": (87.7, None), "pgd": (49.1, None)},
}
TABLE6_LITERATURE = (("DP (Lecuyer et al.), 28-10 Wide ResNet (L=0.1)", 87.0, 25.0),
                     ("RSE (Liu et al.), ResNext", 87.5, 40.0))

# Table 7: the paper's verdict on each gradient-obfuscation check for PNI (all "pass").
TABLE7: dict[int, tuple[str, str]] = {
    1: ("One-step attack performs better than iterative attacks", "pass"),
    2: ("Black-box attacks are better than white-box attacks", "pass"),
    3: ("Unbounded attacks do not reach 100% success", "pass"),
    4: ("Random sampling finds adversarial examples", "pass"),
    5: ("Increasing distortion bound doesn't increase success", "pass"),
}
