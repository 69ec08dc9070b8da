"""The training loop: detectron2's SimpleTrainer/AMPTrainer with its checkpointing and metrics.

One process or several under torchrun (DDP: NCCL on GPUs, gloo on CPU). Only rank 0 writes.
A resumed run continues exactly where the last checkpoint left it: model, optimizer,
scheduler and RNG states come from the file, and the data stream and the sampling of
anchors and proposals are pure functions of (seed, iteration, rank).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instseg_deploy.atomic import check_destination, write_text
from instseg_deploy.checkpoint import load_weights
from instseg_deploy.config import InstsegConfig, config_from_tree, dump_tree
from instseg_deploy.data.coco import CocoDataset, DatasetError
from instseg_deploy.distributed import init_from_env
from instseg_deploy.errors import ConfigError, InstsegError
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.training.checkpoints import (
    FINAL_NAME,
    last_checkpoint,
    periodic_name,
    read_trainer_state,
    restore_rng_state,
    rng_state,
    write_checkpoint,
)
from instseg_deploy.training.data import (
    Augmentation,
    BatchSampler,
    TrainingDataset,
    build_loader,
)
from instseg_deploy.training.evaluation import evaluate_model
from instseg_deploy.training.init import initialise
from instseg_deploy.training.losses import BOX_LOSS_TYPES, compute_losses
from instseg_deploy.training.metrics import MetricsLog
from instseg_deploy.training.records import load_training_records
from instseg_deploy.training.solver import (
    SolverConfig,
    build_optimizer,
    build_scheduler,
    clip_gradients,
)

LOSS_NAMES = ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask")


class TrainingDiverged(InstsegError):
    """A loss became NaN or infinite."""


@dataclass
class TrainOptions:
    out_dir: Path
    max_iter: int | None = None  # overrides SOLVER.MAX_ITER
    resume: bool = False
    eval_period: int | None = None  # overrides TEST.EVAL_PERIOD (0: no evaluation)
    checkpoint_period: int | None = None  # overrides SOLVER.CHECKPOINT_PERIOD
    seed: int | None = None  # overrides SEED
    init: str | None = None  # weights to start from (overrides MODEL.WEIGHTS); "scratch" for none
    num_workers: int = 0
    skip_bad_images: bool = False
    device: str = "auto"
    log_period: int = 20


@dataclass
class TrainResult:
    out_dir: Path
    final_checkpoint: Path
    config_path: Path
    start_iter: int
    max_iter: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] | None = None
    wrote_final: bool = True  # False: final_checkpoint was already in place from an earlier invocation


class Reporter:
    """What the user sees (only rank 0 gets a real one); the CLI draws a progress bar."""

    def message(self, text: str) -> None:
        pass

    def start(self, start_iter: int, max_iter: int) -> None:
        pass

    def iteration(self, iteration: int, losses: dict[str, float], lr: float, eta_seconds: float) -> None:
        pass


def _iteration_seed(seed: int, rank: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1, np.uint64)[0] % (2**63))


def _resolve_device(device: str, world_size: int) -> torch.device:
    """The device of this process; under torchrun, GPU ``LOCAL_RANK`` (one GPU per process)."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if world_size > 1 else 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":  # GPUs only when every local process gets its own
        device = "cuda" if gpus and local_processes <= gpus else "cpu"
    if device.startswith("cuda") and not gpus:
        raise ConfigError(f"--device {device}: no CUDA GPU is visible to torch (torch {torch.__version__}); "
                          "use --device cpu or auto")
    if device == "cuda" and world_size > 1:
        if local_processes > gpus:
            raise ConfigError(f"--device cuda: torchrun started {local_processes} processes on this machine but "
                              f"{gpus} GPU(s) are visible; use --nproc_per_node {gpus} or --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (cpu, cuda, cuda:N or auto)") from None


def _set_training_mode(model: MaskRCNN) -> None:
    """train(), except the BatchNorms of frozen stages: detectron2 turns those into FrozenBN."""
    model.train()
    bottom_up = model.backbone.bottom_up
    stages = [bottom_up.stem] + [getattr(bottom_up, n) for n in bottom_up.stage_names]
    for stage in stages[:model.cfg.resnet.freeze_at]:
        for module in stage.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class _LossModule(nn.Module):
    """Wraps the model so DDP sees one forward that returns the losses."""

    def __init__(self, model: MaskRCNN):
        super().__init__()
        self.model = model

    def forward(self, images, image_sizes, targets, generator):
        return compute_losses(self.model, images, image_sizes, targets, generator)


def training_config(cfg: InstsegConfig, dataset: CocoDataset, options: TrainOptions, seed: int,
                    init: str | None) -> tuple[InstsegConfig, list[str]]:
    """The run's config: the user's, with the dataset's classes and the command-line overrides."""
    tree = copy.deepcopy(cfg.raw)
    notes = []
    if int(tree["MODEL"]["ROI_HEADS"]["NUM_CLASSES"]) != dataset.num_classes:
        notes.append(f"MODEL.ROI_HEADS.NUM_CLASSES {tree['MODEL']['ROI_HEADS']['NUM_CLASSES']} -> "
                     f"{dataset.num_classes} (the dataset's classes: {', '.join(dataset.class_names[:8])}"
                     f"{', ...' if dataset.num_classes > 8 else ''})")
        tree["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] = dataset.num_classes
    if options.max_iter is not None:
        tree["SOLVER"]["MAX_ITER"] = int(options.max_iter)
    if options.checkpoint_period is not None:
        tree["SOLVER"]["CHECKPOINT_PERIOD"] = int(options.checkpoint_period)
    if options.eval_period is not None:
        tree["TEST"]["EVAL_PERIOD"] = int(options.eval_period)
    tree["SEED"] = int(seed)
    tree["OUTPUT_DIR"] = str(options.out_dir)
    tree["MODEL"]["WEIGHTS"] = "" if init in (None, "scratch") else str(init)
    run_cfg = config_from_tree(tree, source=str(options.out_dir / "config.yaml"), warn_unknown=False)
    run_cfg.class_names = dataset.class_names
    run_cfg.overrides = cfg.overrides  # already in the tree; kept to be recorded in config.yaml
    for head in ("RPN", "ROI_BOX_HEAD"):
        if tree["MODEL"][head]["BBOX_REG_LOSS_TYPE"] not in BOX_LOSS_TYPES:
            raise ConfigError(f"MODEL.{head}.BBOX_REG_LOSS_TYPE {tree['MODEL'][head]['BBOX_REG_LOSS_TYPE']!r} is not "
                              f"supported ({', '.join(BOX_LOSS_TYPES)})")
    if tree["INPUT"].get("CROP", {}).get("ENABLED"):
        raise ConfigError("INPUT.CROP.ENABLED (random crop augmentation) is not supported; set it to False")
    if tree["DATALOADER"]["SAMPLER_TRAIN"] != "TrainingSampler":
        raise ConfigError(f"DATALOADER.SAMPLER_TRAIN {tree['DATALOADER']['SAMPLER_TRAIN']!r} is not supported "
                          "(TrainingSampler)")
    return run_cfg, notes


def _initial_weights(cfg: InstsegConfig, init: str | None) -> str | None:
    """--init, else MODEL.WEIGHTS when it names a local file; a URL cannot be fetched here."""
    if init is not None:
        return init
    weights = str(cfg.raw["MODEL"].get("WEIGHTS") or "")
    if not weights:
        return None
    if not Path(weights).is_file():
        raise ConfigError(f"MODEL.WEIGHTS is {weights!r}, which is not a local file; pass --init FILE "
                          "(a checkpoint or a torchvision ResNet state dict) or --init scratch")
    return weights


def _choose_seed(options: TrainOptions, cfg: InstsegConfig, resumed_seed: int | None, world_size: int) -> int:
    if resumed_seed is not None:
        if options.seed is not None and options.seed != resumed_seed:
            raise ConfigError(f"--seed {options.seed} differs from the resumed run's seed {resumed_seed}")
        return resumed_seed
    if options.seed is not None:
        return options.seed
    if int(cfg.raw.get("SEED", -1)) >= 0:
        return int(cfg.raw["SEED"])
    seed = int.from_bytes(os.urandom(4), "little") % (2**31)  # detectron2: SEED < 0 means a random seed
    if world_size > 1:
        import torch.distributed as dist

        shared = [seed]
        dist.broadcast_object_list(shared, src=0)
        seed = shared[0]
    return seed


def _all_reduce_mean(values: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
        values /= world_size
    return values


def _distributed(module: nn.Module, device: torch.device) -> nn.Module:
    """DDP as detectron2 sets it up: each process keeps its own BatchNorm statistics."""
    import inspect

    device_ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp).parameters:  # newer torch's name for the same switch
        return ddp(module, device_ids=device_ids, forward_sync_buffers=False)
    return ddp(module, device_ids=device_ids, broadcast_buffers=False)


def train(cfg: InstsegConfig, train_set: CocoDataset, val_set: CocoDataset | None, options: TrainOptions,
          reporter: Reporter | None = None, after_iteration: Callable[[int], None] | None = None) -> TrainResult:
    """Train (or resume) a run into ``options.out_dir``; see the module docstring."""
    device = _resolve_device(options.device, int(os.environ.get("WORLD_SIZE", "1")))
    # The process group follows the training device: NCCL cannot carry CPU tensors.
    rank, world_size = init_from_env("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, train_set, val_set, options, reporter if rank == 0 and reporter else Reporter(),
                      after_iteration, rank, world_size, device)
    finally:
        if world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train(cfg, train_set, val_set, options, reporter, after_iteration, rank, world_size, device) -> TrainResult:
    out_dir = Path(options.out_dir)
    if os.path.lexists(out_dir) and not out_dir.is_dir():  # a symlink to a folder is fine, a dangling one not
        raise InstsegError(f"--out {out_dir} exists and is not a folder (a run folder holds checkpoints, "
                           "config.yaml and metrics.json)")
    resume_from = last_checkpoint(out_dir) if out_dir.is_dir() else None
    if resume_from is not None and not options.resume:
        raise InstsegError(f"{out_dir} already holds a training run ({resume_from.name}); pass --resume to continue "
                           "it, or choose another --out")
    if options.resume and resume_from is None:
        reporter.message(f"--resume: no checkpoint in {out_dir}, starting a new run")
    ckpt, state = read_trainer_state(resume_from) if resume_from is not None else (None, None)

    # A resumed run takes its weights from the checkpoint; MODEL.WEIGHTS is only recorded.
    init = _initial_weights(cfg, options.init) if ckpt is None else (options.init or cfg.raw["MODEL"]["WEIGHTS"])
    seed = _choose_seed(options, cfg, state.get("seed") if state else None, world_size)
    run_cfg, notes = training_config(cfg, train_set, options, seed, init)
    solver = SolverConfig.from_tree(run_cfg.raw)
    for note in notes:
        reporter.message(note)
    if solver.ims_per_batch % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH {solver.ims_per_batch} is not divisible by the {world_size} processes")
    amp = solver.amp and device.type == "cuda"
    if solver.amp and not amp:
        reporter.message("SOLVER.AMP.ENABLED is for CUDA: training in float32 on the CPU")

    records, data_report = load_training_records(train_set, bool(run_cfg.raw["DATALOADER"]["FILTER_EMPTY_ANNOTATIONS"]),
                                                 options.skip_bad_images)
    for line in data_report.messages():
        reporter.message(line)

    torch.manual_seed(seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = MaskRCNN(run_cfg.model)
    if ckpt is None:
        for line in initialise(model, init):
            reporter.message(line)
    norm = run_cfg.model.resnet.norm
    if norm in ("SyncBN", "naiveSyncBN") and world_size > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif norm in ("SyncBN", "naiveSyncBN") and world_size > 1:
        reporter.message(f"{norm} needs CUDA: each process normalises its own batch (BN)")
    model.to(device)
    optimizer = build_optimizer(model, solver)
    scheduler = build_scheduler(optimizer, solver)
    scaler = _grad_scaler() if amp else None
    start_iter = 0
    if ckpt is not None:
        start_iter = _restore(ckpt, state, model, optimizer, scheduler, scaler)
        if state.get("world_size", world_size) != world_size:
            reporter.message(f"the run was started with {state['world_size']} process(es), now {world_size}: "
                             "the data order differs from an uninterrupted run")
        reporter.message(f"resuming from {resume_from.name} at iteration {start_iter}")

    config_path = out_dir / "config.yaml"
    metrics = MetricsLog(out_dir / "metrics.json" if rank == 0 else None, options.log_period)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        check_destination(out_dir / "metrics.json")  # appended to, not replaced: a FIFO there would block
        recorded = f"# command-line overrides: {' '.join(run_cfg.overrides)}\n" if run_cfg.overrides else ""
        write_text(config_path, recorded + dump_tree(run_cfg.raw))
        metrics.truncate_after(start_iter)

    aug = Augmentation.from_input_config(run_cfg.model.input)
    dataset = TrainingDataset(records, aug, seed, options.skip_bad_images)
    sampler = BatchSampler(records, solver.ims_per_batch // world_size, seed, rank, world_size,
                           bool(run_cfg.raw["DATALOADER"]["ASPECT_RATIO_GROUPING"]), start=start_iter)
    loader = build_loader(dataset, sampler, run_cfg.model.pixel_mean, run_cfg.model.size_divisibility,
                          options.num_workers)
    loss_module: nn.Module = _LossModule(model)
    if world_size > 1:
        loss_module = _distributed(loss_module, device)
    _set_training_mode(model)

    eval_period = int(run_cfg.raw["TEST"]["EVAL_PERIOD"]) if val_set is not None else 0
    if val_set is None and options.eval_period:
        reporter.message("no validation set (--val-images/--val-annotations): --eval-period is ignored")

    def state_at(iteration: int) -> dict[str, Any]:
        trainer_state = {"iteration": iteration, "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "seed": seed, "world_size": world_size,
                         "rng": rng_state()}
        if scaler is not None:
            trainer_state["grad_scaler"] = scaler.state_dict()
        return trainer_state

    def run_eval(iteration: int) -> dict[str, float] | None:
        reporter.message(f"evaluating on {len(val_set.images)} images at iteration {iteration}")
        result = evaluate_model(model, run_cfg, val_set, device, rank, world_size)
        _set_training_mode(model)
        if result is not None:
            metrics.write({"iteration": iteration, **result})
            reporter.message("  " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()
                                              if k.endswith("/AP") and v is not None))
        return result

    reporter.start(start_iter, solver.max_iter)
    generator = torch.Generator()
    reported_skips: set[int] = set()
    last_metrics: dict[str, float] = {}
    eval_metrics = None
    started = time.perf_counter()
    for iteration in range(start_iter, solver.max_iter):
        tick = time.perf_counter()
        batch = next(loader)
        _raise_on_data_error(batch.error, world_size)
        for image_id, reason in batch.skipped:
            if image_id not in reported_skips:
                reported_skips.add(image_id)
                reporter.message(f"skipped an unreadable image: {reason}")
        images = batch.images.to(device, non_blocking=True)
        image_sizes = batch.image_sizes.to(device)
        targets = [t.to(device) for t in batch.targets]
        data_time = time.perf_counter() - tick

        generator.manual_seed(_iteration_seed(seed, rank, iteration))
        with torch.autocast("cuda", enabled=amp):
            losses, stats = loss_module(images, image_sizes, targets, generator)
        total = sum(losses.values())
        reduced = _all_reduce_mean(torch.stack([losses[k].detach().float() for k in LOSS_NAMES]).cpu(), world_size)
        if not torch.isfinite(reduced).all():
            raise TrainingDiverged(f"loss became NaN or infinite at iteration {iteration} "
                                   f"({_describe(dict(zip(LOSS_NAMES, reduced.tolist())))}); "
                                   "lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS")
        _optimizer_step(total, optimizer, scaler, solver)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()

        values = dict(zip(LOSS_NAMES, reduced.tolist()))
        values["total_loss"] = float(reduced.sum())
        metrics.add({**values, **stats, "time": time.perf_counter() - tick, "data_time": data_time})
        done = iteration + 1 - start_iter
        eta = (time.perf_counter() - started) / done * (solver.max_iter - iteration - 1)
        reporter.iteration(iteration, {k: metrics.median(k) for k in ("total_loss", *LOSS_NAMES)}, lr, eta)
        if (iteration + 1) % options.log_period == 0 or iteration + 1 == solver.max_iter:
            last_metrics = metrics.smoothed()
            metrics.write({"iteration": iteration, "lr": lr, "eta_seconds": eta, **last_metrics})

        if rank == 0 and (iteration + 1) % solver.checkpoint_period == 0:
            write_checkpoint(out_dir, periodic_name(iteration), model, run_cfg.raw, run_cfg.class_names,
                             state_at(iteration))
        if eval_period > 0 and (iteration + 1) % eval_period == 0 and iteration + 1 < solver.max_iter:
            run_eval(iteration)
        if after_iteration is not None:
            after_iteration(iteration)

    final = out_dir / FINAL_NAME
    last = solver.max_iter - 1
    # A run killed while writing model_final.pth resumes from the last periodic checkpoint; when that is
    # the final iteration's (MAX_ITER a multiple of CHECKPOINT_PERIOD), it is model_final.pth's content.
    finish = start_iter <= last or (start_iter == last + 1 and resume_from.name != FINAL_NAME)
    if finish:
        if start_iter > last:
            reporter.message(f"{resume_from.name} holds the final iteration {last}; writing {FINAL_NAME} from it")
        if rank == 0:  # resumed at the end: the checkpoint's own trainer state, as the run would have written it
            write_checkpoint(out_dir, FINAL_NAME, model, run_cfg.raw, run_cfg.class_names,
                             state_at(last) if start_iter <= last else state)
    elif resume_from.name == FINAL_NAME:
        reporter.message(f"nothing to train: {FINAL_NAME} is at iteration {start_iter - 1} and SOLVER.MAX_ITER is "
                         f"{solver.max_iter}")
    else:
        raise InstsegError(f"{resume_from} is at iteration {start_iter - 1}, past SOLVER.MAX_ITER {solver.max_iter}: "
                           f"there is no checkpoint of iteration {last} to make {FINAL_NAME} from; resume with "
                           f"--max-iter {start_iter} or more, or use {resume_from.name} itself")
    if eval_period > 0 and finish:
        eval_metrics = run_eval(last)
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(out_dir, final, config_path, start_iter, solver.max_iter, last_metrics, eval_metrics,
                       wrote_final=finish)


def _grad_scaler():
    """AMP's loss scaler (torch.amp's since torch 2.3, torch.cuda.amp's before)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def _restore(ckpt, state: dict[str, Any], model: MaskRCNN, optimizer, scheduler, scaler) -> int:
    """Load a training checkpoint's model, optimizer, scheduler and RNG states; returns the next iteration."""
    load_weights(model, ckpt, source="the checkpoint to resume")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "grad_scaler" in state:
        scaler.load_state_dict(state["grad_scaler"])
    if "rng" in state:
        restore_rng_state(state["rng"])
    return int(state["iteration"]) + 1


def _optimizer_step(total: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, solver: SolverConfig) -> None:
    """Backward, SOLVER.CLIP_GRADIENTS, step (through the AMP grad scaler when there is one)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        clip_gradients(optimizer, solver)
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        clip_gradients(optimizer, solver)
        optimizer.step()


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if not math.isfinite(v)) or "total"


def _raise_on_data_error(error: str | None, world_size: int) -> None:
    """A data error stops every rank (one rank raising alone would leave the others hanging)."""
    failed = error is not None
    if world_size > 1:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if failed else 0.0])
        dist.all_reduce(flag)
        if flag.item() and not failed:
            raise DatasetError("another process hit unreadable training data (see its message)")
    if failed:
        raise DatasetError(f"{error} -- pass --skip-bad-images to train without unreadable images")
