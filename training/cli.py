"""``python -m training {train,run,finish,export,evaluate,grid,cross-source,ood-report,quantize,publish,
activate,release}``: argument parsing only; the work is in the library."""

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from training.config import TrainConfig
from training.fit.run_folder import RunSummary
from training.stats.metrics import format_metric

EXIT_USAGE = 2
EXIT_COLLAPSED = 3
EXIT_REFUSED = 4


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", dest="data_dir", type=Path, help="<root>/<CLASS>/ tree, MedMNIST .npz or CSV manifest"
    )
    parser.add_argument("--data-format", dest="data_format", choices=["auto", "folder", "npz", "csv"])
    parser.add_argument("--config", type=Path, help="YAML with TrainConfig fields; flags override it")
    parser.add_argument("--backbone")
    parser.add_argument("--weights", help="imagenet | none | path to a state dict")
    parser.add_argument("--weights-dir", dest="weights_dir", type=Path, help="folder of <backbone>.pth files")
    parser.add_argument(
        "--allow-download", dest="allow_download", action="store_true", default=None, help="let timm download"
    )
    parser.add_argument("--image-size", dest="image_size", type=int)
    parser.add_argument("--patient-pattern", dest="patient_pattern")
    parser.add_argument(
        "--split-method", dest="split_method", choices=["auto", "given", "patient", "image", "near_duplicate"]
    )
    parser.add_argument("--val-fraction", dest="val_fraction", type=float)
    parser.add_argument("--test-fraction", dest="test_fraction", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--head-epochs", dest="head_epochs", type=int)
    parser.add_argument("--finetune-epochs", dest="finetune_epochs", type=int)
    parser.add_argument("--head-lr", dest="head_lr", type=float)
    parser.add_argument("--finetune-lr", dest="finetune_lr", type=float)
    parser.add_argument("--finetune-blocks", dest="finetune_blocks", type=int)
    parser.add_argument("--optimizer", choices=["adamw", "adam", "sgd"])
    parser.add_argument("--weight-decay", dest="weight_decay", type=float)
    parser.add_argument("--l1", type=float)
    parser.add_argument("--imbalance", choices=["none", "class_weights", "oversample", "undersample"])
    parser.add_argument("--target-sensitivity", dest="target_sensitivity", type=float)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--positive-class", dest="positive_class")
    parser.add_argument("--output-dir", dest="output_dir", type=Path)
    parser.add_argument("--run-name", dest="run_name")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-steps-per-epoch", dest="max_steps_per_epoch", type=int)


def _add_export_arguments(parser: argparse.ArgumentParser, need_run: bool) -> None:
    if need_run:
        parser.add_argument("--run", dest="run_dir", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--store", type=Path, default=Path("models"))
    parser.add_argument("--name", default="cxr-pneumonia")
    parser.add_argument("--version", help="default: UTC timestamp")
    parser.add_argument(
        "--no-ood", dest="ood", action="store_false", help="leave out the out-of-distribution detector"
    )
    parser.add_argument(
        "--shift-films",
        dest="shift_films",
        type=int,
        default=200,
        help="validation films for the shift benchmark recorded in the card (0: none)",
    )


def _add_pointer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=Path("models"))
    parser.add_argument("--name", default="cxr-pneumonia")
    parser.add_argument("--version", required=True, help="a version folder under <store>/<name>")


def _config(args: argparse.Namespace) -> TrainConfig:
    fields = set(TrainConfig.model_fields)
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    return TrainConfig.from_sources(args.config, overrides)


def _parser() -> argparse.ArgumentParser:
    """Every subcommand and flag, declared flat as argparse wants them: long, but it reads as the
    CLI's help text, and splitting it would scatter that."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_arguments(commands.add_parser("train", help="train and write a run folder"))
    _add_export_arguments(commands.add_parser("export", help="export a run folder to the model store"), True)
    report_parser = commands.add_parser(
        "ood-report", help="measure an exported model's out-of-distribution rejection"
    )
    report_parser.add_argument("--model", type=Path, required=True, help="models/<name>/<version>")
    report_parser.add_argument("--run", dest="run_dir", type=Path, required=True, help="its run folder")
    report_parser.add_argument("--out", type=Path, help="write the report as JSON here")
    report_parser.add_argument(
        "--extra-ood",
        dest="extra_ood",
        type=Path,
        action="append",
        default=[],
        help="a folder of non-chest images that must be refused too (repeatable)",
    )
    report_parser.add_argument(
        "--dicom-films", dest="dicom_films", type=int, default=3, help="hospital DICOMs to build (0-5)"
    )
    quantize_parser = commands.add_parser(
        "quantize",
        help="publish an int8 (CPU) or fp16 (GPU) version of an exported model, measured on validation",
    )
    quantize_parser.add_argument("--model", type=Path, required=True, help="models/<name>/<version> (fp32)")
    quantize_parser.add_argument("--run", dest="run_dir", type=Path, required=True, help="its run folder")
    quantize_parser.add_argument("--version", help="default: <source version>-<precision>")
    quantize_parser.add_argument(
        "--precision", choices=["int8", "fp16"], default="int8", help="int8 for CPUs, fp16 for GPUs"
    )
    publish_parser = commands.add_parser(
        "publish",
        help="make a version active if it measures at least as well as the active one on the same films",
    )
    _add_pointer_arguments(publish_parser)
    publish_parser.add_argument(
        "--eval-data", dest="eval_data", type=Path, help="<root>/<CLASS>/* films to compare on"
    )
    publish_parser.add_argument(
        "--run",
        dest="run_dir",
        type=Path,
        help="compare on this run's validation split (default: the run the candidate was exported from)",
    )
    publish_parser.add_argument(
        "--tolerance", type=float, default=0.0, help="AUC the candidate may lose against the active version"
    )
    activate_parser = commands.add_parser(
        "activate", help="make a version active after the service's load checks alone (roll-back)"
    )
    _add_pointer_arguments(activate_parser)
    grid_parser = commands.add_parser(
        "grid", help="run a study grid from a YAML (resumable) and write its comparison report"
    )
    grid_parser.add_argument("spec", type=Path, help="the grid YAML (see training/study/grid.py)")
    grid_parser.add_argument("--out", type=Path, help="report folder (default: the YAML's folder)")
    grid_parser.add_argument("--fresh", action="store_true", help="discard finished cells and start over")
    grid_parser.add_argument(
        "--rescore", action="store_true", help="evaluate finished cells again without retraining them"
    )
    study_parser = commands.add_parser(
        "cross-source", help="train recipes on some sources, score them on every source and under shift"
    )
    study_parser.add_argument("spec", type=Path, help="the study YAML (see training/study/cross_source.py)")
    study_parser.add_argument("--out", type=Path, help="report folder (default: the YAML's folder)")
    evaluate_parser = commands.add_parser(
        "evaluate", help="full evaluation report of a run's checkpoint or of an exported model"
    )
    evaluate_parser.add_argument("--run", dest="run_dir", type=Path, help="a finished run folder")
    evaluate_parser.add_argument(
        "--model", type=Path, help="models/<name>/<version>: evaluate the ONNX model"
    )
    evaluate_parser.add_argument(
        "--data",
        dest="data_dir",
        type=Path,
        help="an external <root>/<CLASS>/ folder (with --model, no --run)",
    )
    evaluate_parser.add_argument("--split", choices=["validation", "test"], default="validation")
    evaluate_parser.add_argument("--out", type=Path, required=True, help="report folder")
    evaluate_parser.add_argument(
        "--shift",
        action="store_true",
        help="the acquisition-shift benchmark (with --run, and --model to score the ONNX graph) instead",
    )
    evaluate_parser.add_argument(
        "--shift-films", dest="shift_films", type=int, default=300, help="validation films drawn for --shift"
    )
    finish_parser = commands.add_parser(
        "finish", help="conclude a stopped run from its best checkpoint (calibration, threshold, summary)"
    )
    finish_parser.add_argument(
        "--run", dest="run_dir", type=Path, required=True, help="the stopped run folder"
    )
    release_parser = commands.add_parser(
        "release",
        help="make a store version the repository's released model (replaces the previous one; no commit)",
    )
    release_parser.add_argument(
        "--model", type=Path, required=True, help="<store>/<name>/<version> to release"
    )
    release_parser.add_argument(
        "--provenance",
        type=Path,
        required=True,
        help="JSON: the exact command, data sources (path, licence, attribution) and figures",
    )
    release_parser.add_argument(
        "--precision-choice", dest="precision_choice", type=Path, help="JSON from python -m bench.precision"
    )
    release_parser.add_argument("--models", type=Path, default=Path("models"), help="the repository's store")
    release_parser.add_argument(
        "--repo",
        type=Path,
        default=Path(),
        help="the project root, whose .gitignore/.dockerignore it rewrites",
    )
    run_parser = commands.add_parser("run", help="train, then export the result")
    _add_train_arguments(run_parser)
    _add_export_arguments(run_parser, False)
    return parser


def _ood_report(args: argparse.Namespace) -> int:
    from training.ood.report import format_report, ood_report, write_report

    report = ood_report(args.model, args.run_dir, args.extra_ood, dicom_films=args.dicom_films)
    print(format_report(report))
    if args.out is not None:
        write_report(report, args.out)
    return 0


def _grid(args: argparse.Namespace) -> int:
    from training.study.grid import run_grid

    results = run_grid(args.spec, args.out, args.fresh, args.rescore)
    print(f"{len(results)} cells; report in {args.out or args.spec.parent}")
    return 0


def _cross_source(args: argparse.Namespace) -> int:
    from training.study.cross_source import run_study

    outcomes = run_study(args.spec, args.out)
    print(f"{len(outcomes)} cells; report in {args.out or args.spec.parent}")
    return 0


def _shift(args: argparse.Namespace) -> int:
    from training.evaluation import EvaluationError
    from training.evaluation.shift_report import shift_report

    try:
        print(shift_report(args.run_dir, args.model, args.out, args.split, args.shift_films))
    except EvaluationError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluation import EvaluationError, evaluate_folder, evaluate_run

    if args.shift:
        return _shift(args)
    try:
        if args.data_dir is not None:
            if args.model is None or args.run_dir is not None:
                raise EvaluationError("--data evaluates an exported model: give --model and no --run")
            evaluation = evaluate_folder(args.model, args.data_dir, args.out)
        elif args.run_dir is None:
            raise EvaluationError("give --run (its validation or test split) or --model with --data")
        else:
            evaluation = evaluate_run(args.run_dir, split=args.split, model_dir=args.model, out_dir=args.out)
    except EvaluationError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print((args.out / "report.md").read_text())
    return EXIT_COLLAPSED if evaluation.collapsed else 0


def _release(args: argparse.Namespace) -> int:
    import json

    from training.release.released import Provenance, ReleaseError, release

    try:
        provenance = Provenance.model_validate_json(args.provenance.read_text(encoding="utf-8"))
        choice = None
        if args.precision_choice is not None:
            choice = json.loads(args.precision_choice.read_text(encoding="utf-8"))
        target = release(args.model, args.models, provenance, repo_root=args.repo, precision_choice=choice)
    except (ReleaseError, OSError, ValueError) as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"RELEASED: {target} (see {target}/RELEASE.md). Review and commit it:")
    print(
        f"  git add -A {args.models} .gitignore .dockerignore && "
        f"git commit -m 'Release {target.parent.name} {target.name}'"
    )
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from training.export.quantize import quantize_model

    print(quantize_model(args.model, args.run_dir, args.version, args.precision))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.evaluation.shift_report import checkpoint_benchmark
    from training.export.exporter import export_run

    shift = checkpoint_benchmark(args.run_dir, args.shift_films)
    print(export_run(args.run_dir, args.store, args.name, args.version, args.ood, shift_benchmark=shift))
    return 0


def _finish(args: argparse.Namespace) -> int:
    from training.fit.engine import finish

    result = finish(args.run_dir)
    _print_summary(result.summary, result.run_dir)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.evaluation.shift_report import checkpoint_benchmark
    from training.export.exporter import export_run
    from training.fit.engine import train

    result = train(_config(args))
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports and exports
    _print_summary(result.summary, result.run_dir)
    if args.command == "run":
        shift = checkpoint_benchmark(result.run_dir, args.shift_films)
        print(
            export_run(result.run_dir, args.store, args.name, args.version, args.ood, shift_benchmark=shift)
        )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ood-report": _ood_report,
    "grid": _grid,
    "cross-source": _cross_source,
    "evaluate": _evaluate,
    "quantize": _quantize,
    "export": _export,
    "train": _train,
    "finish": _finish,
    "run": _train,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("onnx_ir", "onnxscript", "torch.onnx"):  # the exporter narrates every rewrite at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.command in ("publish", "activate"):
        return _move_pointer(args)  # before any torch import: it needs no torch
    if args.command == "release":
        return _release(args)  # needs no torch either

    from training.stats.metrics import CollapsedModelError

    try:
        return _COMMANDS[args.command](args)
    except CollapsedModelError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return EXIT_COLLAPSED


def _move_pointer(args: argparse.Namespace) -> int:
    from training.release.publish import PublishError, activate_version, format_decision, publish

    try:
        if args.command == "publish":
            decision = publish(
                args.store,
                args.name,
                args.version,
                eval_data=args.eval_data,
                run_dir=args.run_dir,
                tolerance=args.tolerance,
            )
        else:
            decision = activate_version(args.store, args.name, args.version)
    except PublishError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_decision(decision), file=sys.stdout if decision.pointer_moved else sys.stderr)
    return 0 if decision.pointer_moved else EXIT_REFUSED


def _print_summary(summary: RunSummary, run_dir: Path) -> None:
    metrics, baseline, test = summary.validation_metrics, summary.majority_baseline, summary.test_metrics
    print(f"\nrun folder: {run_dir}  (best epoch {summary.best_epoch}, {summary.train_seconds:.0f} s)")
    header = f"{'metric':<22}{'validation':>12}{'majority baseline':>20}" + (f"{'test':>10}" if test else "")
    print(header)
    for key in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "cross_entropy"):
        if key in metrics:
            row = f"{key:<22}{format_metric(metrics[key]):>12}{format_metric(baseline.get(key)):>20}"
            print(row + (f"{format_metric(test.get(key)):>10}" if test else ""))
    if summary.calibration is not None:
        c = summary.calibration
        print(
            f"temperature {c.temperature:.3f}: validation ECE {c.validation_ece_before:.4f} -> "
            f"{c.validation_ece_after:.4f}"
        )
    if summary.decision_threshold is not None:
        t = summary.decision_threshold
        print(f"decision threshold: p({t.positive_class}) >= {t.value:.4f} ({t.method})")
