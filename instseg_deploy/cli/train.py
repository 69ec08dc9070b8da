"""`instseg train`: train or fine-tune Mask R-CNN on COCO-format data (one process or torchrun)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from instseg_deploy.cli.common import (
    annotations_option,
    coco_root_option,
    config_overrides,
    console,
    images_option,
    overrides_argument,
    progress_bar,
    user_errors,
)
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg data synth --out shapes --images 600 --split train=500,val=100

  instseg train --config configs/tiny_mask_rcnn.yaml --images shapes/train/images \\
      --annotations shapes/train/annotations.json --out runs/tiny --threads 1

  instseg train -c configs/tiny_mask_rcnn.yaml --images shapes/train/images \\
      --annotations shapes/train/annotations.json --out runs/tiny --resume

  instseg train -c configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml --init model_final_f10217.pkl \\
      --images mydata/images --annotations mydata/train.json --val-images mydata/val \\
      --val-annotations mydata/val.json --eval-period 1000 --out runs/finetune

  torchrun --standalone --nproc_per_node 2 -m instseg_deploy.cli.main train -c configs/tiny_mask_rcnn.yaml \\
      --coco-root datasets/coco --out runs/ddp

  instseg export --to onnx -c runs/tiny/config.yaml -w runs/tiny/model_final.pth --out tiny.onnx
"""


class _ProgressReporter:
    """Progress bar with the smoothed losses, lr and ETA; plain lines when not on a terminal."""

    def __init__(self, progress, log_period: int):
        self.progress = progress
        self.log_period = log_period
        self.task = None

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, soft_wrap=True, markup=False)  # paths may hold [/]

    def start(self, start_iter: int, max_iter: int) -> None:
        self.task = self.progress.add_task("train", total=max_iter, completed=start_iter, rate="")

    def iteration(self, iteration: int, losses: dict[str, float], lr: float, eta_seconds: float) -> None:
        text = (f"loss {losses['total_loss']:.3f} (rpn {losses['loss_rpn_cls']:.3f}/{losses['loss_rpn_loc']:.3f} "
                f"cls {losses['loss_cls']:.3f} box {losses['loss_box_reg']:.3f} mask {losses['loss_mask']:.3f}) "
                f"lr {lr:.4g}")
        self.progress.update(self.task, completed=iteration + 1, rate=text)
        if not self.progress.console.is_terminal and (iteration + 1) % self.log_period == 0:
            minutes, seconds = divmod(int(eta_seconds), 60)
            self.message(f"iter {iteration + 1}: {text} eta {minutes // 60}:{minutes % 60:02d}:{seconds:02d}")


def _datasets(*, images: Optional[Path], annotations: Optional[Path], coco_root: Optional[Path],
              val_images: Optional[Path], val_annotations: Optional[Path]):
    """(train set, val set or None) from the command-line options; with --coco-root (or $DETECTRON2_DATASETS
    standing in for it) its val2017 is the validation set unless --val-images/--val-annotations say otherwise."""
    from instseg_deploy.data.coco import coco_root_paths, dataset_paths, load_coco_dataset, resolve_coco_root

    # the root dataset_paths takes the training set from (before images/annotations are filled in), so that
    # $DETECTRON2_DATASETS gives the validation split too
    root = resolve_coco_root(images, annotations, coco_root)
    images, annotations = dataset_paths(images, annotations, coco_root, "train2017", what="a training set")
    if root is not None and val_images is None and val_annotations is None:
        val_dir, val_ann = coco_root_paths(root, "val2017")
        if val_ann.is_file():
            val_images, val_annotations = val_dir, val_ann
    if (val_images is None) != (val_annotations is None):
        raise InstsegError("--val-images and --val-annotations go together")
    train_set = load_coco_dataset(images, annotations)
    val_set = load_coco_dataset(val_images, val_annotations) if val_images is not None else None
    if val_set is not None and val_set.class_names != train_set.class_names:
        raise InstsegError(f"the validation set's categories ({', '.join(val_set.class_names[:6])}) differ from the "
                           f"training set's ({', '.join(train_set.class_names[:6])})")
    return train_set, val_set


@user_errors
def train(
    config: Path = typer.Option(..., "--config", "-c", help="detectron2 config YAML (its SOLVER, INPUT, DATALOADER "
                                "sections drive training).", show_default=False),
    images: Optional[Path] = images_option("Folder with the training images."),
    annotations: Optional[Path] = annotations_option("COCO instances JSON of the training set."),
    coco_root: Optional[Path] = coco_root_option("COCO 2017 layout: train2017/, val2017/, annotations/."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, metrics.json, config.yaml.",
                             show_default=False),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", min=1, help="Override SOLVER.MAX_ITER.",
                                           show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last checkpoint in --out."),
    eval_period: Optional[int] = typer.Option(None, "--eval-period", min=0, help="Evaluate on the validation set "
                                              "every N iterations and at the end (0: never; default TEST.EVAL_PERIOD).",
                                              show_default=False),
    val_images: Optional[Path] = typer.Option(None, "--val-images", help="Validation images (with --coco-root "
                                              "or $DETECTRON2_DATASETS: val2017).", show_default=False),
    val_annotations: Optional[Path] = typer.Option(None, "--val-annotations", help="Validation COCO JSON.",
                                                   show_default=False),
    init: Optional[str] = typer.Option(None, "--init", help="Start from these weights: a detectron2/instseg "
                                       "checkpoint (fine-tuning; other class counts re-initialise the heads), a "
                                       "torchvision ResNet state dict, or 'scratch'. Default: MODEL.WEIGHTS.",
                                       show_default=False),
    checkpoint_period: Optional[int] = typer.Option(None, "--checkpoint-period", min=1,
                                                    help="Override SOLVER.CHECKPOINT_PERIOD.", show_default=False),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of data order, augmentation and sampling "
                                       "(default SEED; random when negative).", show_default=False),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="Data loading processes "
                                              "(default DATALOADER.NUM_WORKERS, at most cores - 1).",
                                              show_default=False),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images/--refuse-bad-images", help="Leave out images with "
                                         "unusable annotations or files (listed by id), instead of refusing to train."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads per process (0: torch's default; "
                                "1 is fastest on a busy machine)."),
    log_period: int = typer.Option(20, "--log-period", min=1, help="Write metrics.json every N iterations."),
    opts: Optional[list[str]] = overrides_argument(),
) -> None:
    """Train Mask R-CNN with detectron2's losses, sampling and solver; the run folder's
    model_final.pth and config.yaml feed `instseg export` directly. Run it under torchrun
    for several processes (DDP; gloo on CPU, NCCL on GPUs)."""
    import torch

    from instseg_deploy.config import load_config
    from instseg_deploy.training.trainer import TrainOptions
    from instseg_deploy.training.trainer import train as run_training

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config, config_overrides(opts))
    train_set, val_set = _datasets(images=images, annotations=annotations, coco_root=coco_root, val_images=val_images,
                                   val_annotations=val_annotations)
    if num_workers is None:
        num_workers = min(int(cfg.raw["DATALOADER"]["NUM_WORKERS"]), max((os.cpu_count() or 1) - 1, 0))
    options = TrainOptions(out_dir=out, max_iter=max_iter, resume=resume, eval_period=eval_period,
                           checkpoint_period=checkpoint_period, seed=seed, init=init, num_workers=num_workers,
                           skip_bad_images=skip_bad_images, device=device, log_period=log_period)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        run_training(cfg, train_set, val_set, options)
        return
    with progress_bar() as progress:
        result = run_training(cfg, train_set, val_set, options, _ProgressReporter(progress, log_period))
    # Said after the files are in place; an earlier invocation's model_final.pth is not "wrote".
    done = (f"wrote {result.final_checkpoint} and {result.config_path}" if result.wrote_final else
            f"wrote {result.config_path}; {result.final_checkpoint} was already in place")
    console.print(f"{done}\nexport: instseg export --to onnx -c {result.config_path} -w {result.final_checkpoint} "
                  "--out model.onnx", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(train)


def main() -> None:
    """`python -m instseg_deploy.cli.train ...`: this command alone (e.g. under torchrun)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
