"""The simulation behind docs/statistics.md's accuracy section: the false-positive rate and the
power of a step's paired accuracy change (`lab.analysis.stats.paired_difference`, Student t on
the per-round differences) on simulated jobs whose runs are scored on a binomial test set.

    python docs/simulations/accuracy_interval.py [jobs]   # 4000 jobs per cell by default
"""

from __future__ import annotations

import sys

from lab.analysis.stats import accuracy_detection_rate

TEST_IMAGES = (200, 500, 10_000)  # the smoke preset, the CPU presets, the whole test set
ACCURACIES = (0.15, 0.6, 0.94)
RUN_SDS = (0.0, 0.02)  # seed-to-seed spread of training: none, and the CPU presets' ~2 points
ROUNDS = (3, 5, 9, 20)


def main(jobs: int) -> None:
    print("| test images | accuracy | run sd | " + " | ".join(f"{r} rounds" for r in ROUNDS) + " |")
    print("| ---: | ---: | ---: |" + " ---: |" * len(ROUNDS))
    for test_images in TEST_IMAGES:
        for accuracy in ACCURACIES:
            for run_sd in RUN_SDS:
                cells = [
                    accuracy_detection_rate(0.0, accuracy, test_images, r, jobs, run_sd, seed=r)
                    for r in ROUNDS
                ]
                print(
                    f"| {test_images} | {accuracy:.0%} | {100 * run_sd:g} pts | "
                    + " | ".join(f"{c:.1%}" for c in cells)
                    + " |"
                )
    print()
    print("power for a 5-point fall, 500 test images, accuracy 60%, run sd 2 points:")
    for r in ROUNDS:
        power = accuracy_detection_rate(-0.05, 0.6, 500, r, jobs, 0.02, seed=r)
        print(f"  {r} rounds: {power:.0%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
