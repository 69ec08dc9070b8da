"""torch inference speed per --threads setting while another CPU-bound process runs (issue: threads).

Starts one busy process (a Python spin loop), waits for the load average to show it, then times the torch
predictor on the fixture images once per setting (0 = our default, 1, all cores), each in a process of its
own, for --rounds rounds in turn; prints seconds per image.

    python benchmarks/torch_threads.py --rounds 2 --images 6
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, time, cv2
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.runtime import load_predictor
import torch
threads, count = int(sys.argv[1]), int(sys.argv[2])
predictor = load_predictor("torch", DEMO_DATA / "shapes_r50" / "config.yaml",
                           DEMO_DATA / "shapes_r50" / "model_final.pkl", threads=threads, mask_format="rle",
                           score_thresh=None)
images = [cv2.imread(str(p)) for p in sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))[:count]]
predictor(images[0])
start = time.perf_counter()
for image in images:
    predictor(image)
print(torch.get_num_threads(), (time.perf_counter() - start) / len(images))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--warm-s", type=float, default=65.0, help="wait for the load average to see the busy job")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(args.warm_s)
        print(f"load average {os.getloadavg()[0]:.2f} with one busy process; {os.cpu_count()} cores\n")
        print("| --threads | threads used | s/image per round |\n|---|---|---|")
        results: dict[int, list[str]] = {}
        used: dict[int, str] = {}
        for _ in range(args.rounds):
            for threads in (0, 1, os.cpu_count() or 1):
                out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(args.images)],
                                     capture_output=True, text=True, check=True).stdout.split()
                used[threads] = out[0]
                results.setdefault(threads, []).append(f"{float(out[1]):.3f}")
        for threads, times in results.items():
            print(f"| {threads or 'default'} | {used[threads]} | {' / '.join(times)} |")
    finally:
        busy.kill()


if __name__ == "__main__":
    main()
