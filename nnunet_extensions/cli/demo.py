"""``nnspine demo``: the soft-cord pipeline end to end on built-in phantoms."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nnunet_extensions.cli.common import add_overwrite, new_parser

DESCRIPTION = """\
Run the whole soft spinal-cord pipeline on built-in synthetic data with exact truth, using the real
nnU-Net console scripts (a few minutes on 2 CPU cores):

  1. cord phantoms (2 training subjects + 1 held-out test subject, 5 contrasts each)
  2. CSA per vertebral level of the test subject (exact soft mask, binary mask) vs the true CSA
  3. nnspine convert softgt → nnU-Net raw dataset with soft targets
  4. nnUNetv2_plan_and_preprocess + nnspine preprocess-soft
  5. nnUNetv2_train ... -tr nnUNetTrainerSoftSeg_demo (150 CPU iterations, about 4 minutes)
  6. nnUNetv2_predict --save_probabilities → nnspine softmask → CSA of the predicted soft masks, and the
     spread of C3 CSA across the 5 contrasts (binary masks, soft GT, predictions)

Outputs in the demo folder: csa_per_level.csv (mm², error in % of the true CSA), csa_profile.png (CSA
along S-I with level boundaries), csa_C3_across_contrasts.csv, nnunet.log (nnU-Net's output), and every
intermediate folder.
nnU-Net folders are created inside the demo folder; your own nnU-Net environment is not touched.
"""

EPILOG = """\
examples:
  nnspine demo                      # in a new temporary folder
  nnspine demo -o demo_out          # in demo_out (must be empty or new; --overwrite to redo)
  nnspine demo --no-train -o quick  # phantoms + CSA only (seconds)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "demo", help="run the soft-cord pipeline on built-in phantoms (real nnU-Net, CPU)",
                   description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="demo folder (default: a new temporary folder)")
    p.add_argument("--no-train", action="store_true", help="only phantoms and CSA (stages 1-2)")
    add_overwrite(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_extensions.demo import compact_table, run_demo

    folder = args.output or Path(tempfile.mkdtemp(prefix="nnspine_demo_"))
    print(f"nnspine demo in {folder}", flush=True)
    result = run_demo(folder, train=not args.no_train, overwrite=args.overwrite,
                      say=lambda s: print(s, flush=True))
    print()
    print("CSA per vertebral level of the held-out test subject (T2w), mm² (error vs the true CSA, %):")
    print(compact_table(result.table).to_string(index=False))
    if result.spread is not None:
        print("\nC3 CSA of each contrast of the test subject, mm² (last row: population SD across contrasts):")
        print(result.spread.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if result.trained:
        print("(predictions come from a short CPU training run; a full nnUNetTrainerSoftSeg run is the real thing)")
    print("\nwrote " + "\n      ".join(str(p) for p in result.written()))
    total = sum(result.timings_s.values())
    print(f"total {total:.0f} s")
    return 0
