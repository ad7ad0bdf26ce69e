"""Print ganlab's PacGAN-protocol results beside PacGAN Table 1 and VEEGAN Table 1 (docs/pacgan.md).

    .venv/bin/python docs/pacgan_table.py [--tracking-uri URI]

Reads the latest `ganlab run studies/pacgan_ring.yaml` and `... pacgan_grid.yaml` from MLflow.
"""

from __future__ import annotations

import argparse
import math

from ganlab.analysis import load_study

PUBLISHED = {  # (modes, HQ %, reverse KL); mean +- s.e. where given
    "PacGAN Table 1, GAN (10 runs, ~400k it.)": {"ring": ("6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"),
                                                  "grid": ("17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07")},
    "VEEGAN Table 1, GAN (5 runs)": {"ring": ("1", "99.3", "-"), "grid": ("3.3", "0.5", "-")},
}


def mean_se(values) -> str:
    values = [v for v in values if not math.isnan(v)]
    n = len(values)
    mean = sum(values) / n
    se = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 / n**0.5 if n > 1 else float("nan")
    return f"{mean:.3g} ± {se:.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri")
    args = ap.parse_args()
    rows = {}
    for kind in ("ring", "grid"):
        df = load_study(f"pacgan_{kind}", tracking_uri=args.tracking_uri)
        rows[kind] = (mean_se(df["eval/modes"]), mean_se(100 * df["eval/hq_fraction"]), mean_se(df["eval/reverse_kl"]),
                      len(df), {k: int(v) for k, v in df["verdict"].value_counts().items()})
    print("| source | ring modes /8 | ring HQ % | ring rev-KL | grid modes /25 | grid HQ % | grid rev-KL |")
    print("|---|---|---|---|---|---|---|")
    n = rows["ring"][3]
    print(f"| ganlab, GAN ({n} seeds, 10k it.) | " + " | ".join(rows["ring"][:3]) + " | " + " | ".join(rows["grid"][:3]) + " |")
    for name, table in PUBLISHED.items():
        print(f"| {name} | " + " | ".join(table["ring"]) + " | " + " | ".join(table["grid"]) + " |")
    print(f"\nverdicts: ring {rows['ring'][4]}, grid {rows['grid'][4]}")


if __name__ == "__main__":
    main()
