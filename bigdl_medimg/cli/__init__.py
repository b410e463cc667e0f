"""The ``bigdl-medimg`` command line.

Subcommands: ``synth`` (phantom datasets, dataset-layout replicas, previews),
``ingest`` (read images into a Parquet tensor table), ``train`` /
``evaluate`` / ``predict`` (the three tasks), ``report`` (an HTML report
from saved evaluation results and BigDL summaries) and ``demo``
(generate a small synthetic archive, ingest it with every reader and print a
summary).  Exit codes: 0 success, 1 the job failed, 2 bad arguments or
settings, 3 ``--fail-on-error`` and some rows had errors.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..console import run_logs
from ..errors import MedImgError, one_line

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ROW_ERRORS = 0, 1, 2, 3


def _conf_pairs(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--conf expects key=value, got {it!r}")
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bigdl-medimg", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def spark_opts(sp):
        sp.add_argument("--profile", default="local", help="Spark profile: local, standalone, yarn or a .conf path")
        sp.add_argument("--master", help="override spark.master")
        sp.add_argument("--conf", action="append", metavar="KEY=VALUE", help="extra Spark setting (repeatable)")

    def tracking_opts(sp):
        sp.add_argument("--mlflow", metavar="URI", help="log the run to MLflow (file:/folder for a local store, "
                                                        "http://host:port for a server)")
        sp.add_argument("--experiment", default="bigdl-medimg", help="MLflow experiment (with --mlflow)")

    def deid_opts(sp, optional: bool):
        if optional:
            sp.add_argument("--deidentify", action="store_true",
                            help="apply the PS3.15 basic profile to the columns (key from $BIGDL_MEDIMG_DEID_KEY)")
        sp.add_argument("--dates", default="shift", choices=["shift", "keep", "remove"],
                        help="de-identification: shift dates per patient (Retain Longitudinal Temporal Information, "
                             "Modified Dates), keep them (Full Dates) or remove them (the basic profile)")
        for flag, what in (("--retain-patient-characteristics", "Retain Patient Characteristics (sex, age, size...)"),
                           ("--retain-device-identity", "Retain Device Identity"),
                           ("--retain-institution-identity", "Retain Institution Identity"),
                           ("--retain-uids", "Retain UIDs"),
                           ("--retain-safe-private", "Retain Safe Private (the --safe-private tags)"),
                           ("--clean-descriptors", "Clean Descriptors")):
            sp.add_argument(flag, action="store_true", help=f"de-identification: the PS3.15 {what} Option")
        sp.add_argument("--safe-private", action="append", default=[], metavar="CREATOR:EE",
                        help="a private attribute kept under --retain-safe-private (creator, element byte in hex)")
        sp.add_argument("--path-mode", default="hash", choices=["hash", "drop", "keep"],
                        help="de-identification: replace file paths by opaque labels, drop or keep them")

    def credentials_opt(sp):
        sp.add_argument("--credentials", metavar="FILE", help="DICOMweb credentials file (JSON: user and password, "
                                                              "or token) for dicomweb: sources and --stow; "
                                                              "default: the environment")

    ing = sub.add_parser("ingest", help="read images and write a Parquet tensor table")
    ing.add_argument("--kind", required=True, choices=["dicom", "series", "nifti", "images"])
    ing.add_argument("--input", required=True, help="files, folders or Hadoop globs (hdfs://, s3a://, file://), or a "
                                                    "PACS: dicomweb:https://host/dicom-web?ModalitiesInStudy=MR&...")
    ing.add_argument("--out", required=True, help="output Parquet folder")
    ing.add_argument("--mode", default="permissive", choices=["permissive", "failfast"])
    ing.add_argument("--overwrite", action="store_true")
    ing.add_argument("--fail-on-error", action="store_true", help="exit 3 when any row has an error")
    deid_opts(ing, optional=True)
    credentials_opt(ing)
    spark_opts(ing)

    dei = sub.add_parser("deidentify", help="write de-identified copies of DICOM files (PS3.15 Table E.1-1 and its options)")
    dei.add_argument("--input", required=True, help="DICOM files, folders or Hadoop globs")
    dei.add_argument("--out", required=True, help="output folder (<study>/<series>/<instance>.dcm, quarantine/)")
    dei.add_argument("--no-quarantined", action="store_true",
                     help="do not write images flagged for burned-in text (default: under <out>/quarantine)")
    deid_opts(dei, optional=False)
    spark_opts(dei)

    syn = sub.add_parser("synth", help="write phantom datasets, dataset-layout replicas or a preview")
    syn.add_argument("--kind", choices=["knee", "chest"], help="phantom kind to write under --out/<kind>")
    syn.add_argument("--layout", choices=["chestxray14", "mrnet", "oai-zib"], help="write a replica of a public dataset layout")
    syn.add_argument("--n", type=int, default=16, help="number of cases (patients for chestxray14)")
    syn.add_argument("--out", help="output folder")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--size", type=int, default=256, help="chest radiograph size in pixels")
    syn.add_argument("--shape", default="24,96,96", help="knee volume shape: slices,rows,cols")
    syn.add_argument("--preview", metavar="PNG", help="render a grid of sample knee slices and radiographs")
    syn.add_argument("--spark", action="store_true", help="generate cases on Spark executors")
    spark_opts(syn)

    tr = sub.add_parser("train", help="train a task's model (BigDL or torch engine) and save it as a PipelineModel")
    tr.add_argument("--task", required=True, choices=["knee_cartilage", "meniscus_tear", "chest_xray14"])
    tr.add_argument("--data", required=True, help="the task's data folder (see README, 'Tasks')")
    tr.add_argument("--out", required=True, help="run folder: model/, checkpoints/, summaries/, train.json")
    tr.add_argument("--config", help="a task YAML overriding the preset (same sections)")
    tr.add_argument("--epochs", type=int, help="override estimator.maxEpoch")
    tr.add_argument("--batch-size", type=int, help="override estimator.batchSize")
    tr.add_argument("--engine", choices=["bigdl", "torch"],
                    help="override estimator.engine: BigDL (default) or PyTorch DDP on the executors")
    tr.add_argument("--resume", choices=["auto", "never", "require"],
                    help="override estimator.resume: 'auto' (default) resumes this very run (same config and data) "
                         "from RUN/checkpoints, 'never' starts afresh, 'require' fails unless it can resume")
    tr.add_argument("--seg-model", help="meniscus_tear: a knee_cartilage model folder for stage 1 "
                                        "(default: train one first)")
    tracking_opts(tr)
    spark_opts(tr)

    for name, text in (("evaluate", "score a split of labelled data; results for `report`"),
                       ("predict", "apply a saved model to images and write its outputs")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--model", required=True, help="a model folder written by `train` (<out>/model)")
        sp.add_argument("--data", required=True)
        sp.add_argument("--out", required=True)
        sp.add_argument("--kind", choices=["series", "nifti"], help="input images (default: detected)")
        if name == "evaluate":
            sp.add_argument("--split", choices=["train", "val", "test", "all"],
                            help="default: test (all for a dicomweb: source, whose query chooses the series)")
            sp.add_argument("--labels", metavar="PATH", help="for a dicomweb: source, the references keyed by DICOM "
                                                             "UID: a folder of <SeriesInstanceUID>.nii.gz masks "
                                                             "(knee_cartilage), a CSV series_instance_uid,tear "
                                                             "(meniscus_tear) or a CSV sop_instance_uid,Finding "
                                                             "Labels (chest_xray14)")
            tracking_opts(sp)
        sp.add_argument("--engine", choices=["bigdl", "torch"],
                        help="check that the model runs on this engine (a model runs on the one it was trained with)")
        if name == "predict":
            sp.add_argument("--stow", metavar="URL", help="send the DICOM SEG and SR written to this DICOMweb server "
                                                          "(STOW-RS; credentials as for DICOMweb reads)")
        credentials_opt(sp)
        spark_opts(sp)

    rep = sub.add_parser("report", help="one HTML file with plots from saved results and BigDL summaries")
    rep.add_argument("--results", nargs="*", default=[], metavar="DIR",
                     help="folders written by ClassificationResults/SegmentationResults.save (or evaluate)")
    rep.add_argument("--summaries", nargs="*", default=[], metavar="DIR", help="BigDL summaryDir folders")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--title", default="bigdl-medimg report")

    doc = sub.add_parser("doctor", help="check Python, Java, Spark, BigDL and the optional parts; start a tiny "
                                        "session (exit 0 when the main job can run)")
    spark_opts(doc)

    demo = sub.add_parser("demo", help="synthetic archive -> every reader -> train the three tasks -> evaluate "
                                       "-> report")
    demo.add_argument("--out", default="demo-out")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--readers-only", action="store_true", help="skip training, evaluation and the report")
    spark_opts(demo)
    for sp in sub.choices.values():
        sp.add_argument("--verbose", action="store_true",
                        help="show BigDL's prints and Spark's INFO log on the console (they go to <out>/logs otherwise)")
    return p


def _run_folder(args) -> str | None:
    """The folder whose ``logs/`` keeps this command's logs (None: the default log folder)."""
    return args.out if args.command in ("train", "evaluate", "predict", "demo") else None


def _spark(args):
    import os

    from ..session import get_spark

    overrides = {"master": args.master} if args.master else {}
    run = _run_folder(args)
    return get_spark(args.profile, conf=_conf_pairs(args.conf), log_dir=os.path.join(run, "logs") if run else None,
                     **overrides)


def _summary(df, what: str) -> tuple[int, int]:
    from pyspark.sql import functions as F

    r = df.agg(F.count(F.lit(1)).alias("n"), F.count("error").alias("bad")).first()
    print(f"{what}: {r.n} rows, {r.n - r.bad} decoded, {r.bad} with errors")
    if r.bad:
        for e in df.filter(F.col("error").isNotNull()).groupBy("error").count().orderBy(F.desc("count")).limit(5).collect():
            print(f"  {e['count']} x {e.error}")
    return int(r.n), int(r.bad)


def _read(spark, kind: str, path: str, mode: str, deidentify=None, credentials=None):
    from ..io import readers

    if path.startswith("dicomweb:"):  # a PACS: QIDO-RS here, WADO-RS on the executors
        from ..io.dicomweb import read_dicomweb_uri

        if kind not in ("dicom", "series"):
            raise MedImgError(f"--kind {kind}: a dicomweb: source holds DICOM (use --kind dicom or series)")
        return read_dicomweb_uri(spark, path, level="series" if kind == "series" else "instance", mode=mode,
                                 deidentify=deidentify, credentials=credentials)[0]

    fn = {"dicom": readers.read_dicom, "series": readers.read_dicom_series, "nifti": readers.read_nifti,
          "images": readers.read_images}[kind]
    return fn(spark, path, mode=mode, deidentify=deidentify)


def _deid_stage(args):
    from ..deid import Deidentify

    stage = Deidentify(dates=args.dates, pathMode=args.path_mode, safePrivateTags=list(args.safe_private),
                       retainPatientCharacteristics=args.retain_patient_characteristics,
                       retainDeviceIdentity=args.retain_device_identity,
                       retainInstitutionIdentity=args.retain_institution_identity, retainUIDs=args.retain_uids,
                       retainSafePrivate=args.retain_safe_private, cleanDescriptors=args.clean_descriptors)
    stage._validate()
    stage.pseudonymizer()  # fails early (exit 2) without a key
    return stage


def cmd_ingest(args) -> int:
    from ..console import track_job
    from ..io.readers import binary_files, read_tensors, write_tensors

    stage = _deid_stage(args) if args.deidentify else None
    spark = _spark(args)
    # the driver's listing (no job, no bytes read); a PACS's instances are counted by the query itself
    total = None if args.input.startswith("dicomweb:") else len(binary_files(spark, args.input).inputFiles())
    with track_job(spark, f"ingest {args.kind}", total, "files", count="files", errors="errors"):
        df = _read(spark, args.kind, args.input, args.mode, stage, args.credentials)
        write_tensors(df, args.out, mode="overwrite" if args.overwrite else "errorifexists")

    _n, bad = _summary(read_tensors(spark, args.out), f"ingest {args.kind} -> {args.out}")
    return EXIT_ROW_ERRORS if (bad and args.fail_on_error) else EXIT_OK


def cmd_deidentify(args) -> int:
    from pyspark.sql import functions as F

    from ..deid import deidentify_files

    stage = _deid_stage(args)
    spark = _spark(args)
    df = deidentify_files(spark, args.input, args.out, deidentify=stage,
                          write_quarantined=not args.no_quarantined).cache()
    r = df.agg(F.count(F.lit(1)).alias("n"), F.count("output").alias("written"), F.count("quarantine").alias("q"),
               F.count("error").alias("bad")).first()
    print(f"deidentify -> {args.out}: {r.n} files, {r.written} written, {r.q} quarantined (burned-in text "
          f"possible), {r.bad} with errors")
    for e in df.filter(F.col("error").isNotNull()).groupBy("error").count().orderBy(F.desc("count")).limit(5).collect():
        print(f"  {e['count']} x {e.error}")
    return EXIT_ROW_ERRORS if r.bad else EXIT_OK


def cmd_synth(args) -> int:
    from ..datasets import layouts, synth

    if not (args.kind or args.layout or args.preview):
        raise MedImgError("synth needs --kind, --layout or --preview")
    if (args.kind or args.layout) and not args.out:
        raise MedImgError("synth --kind/--layout needs --out")
    if args.kind:
        shape = tuple(int(s) for s in args.shape.split(","))
        spark = _spark(args) if args.spark else None
        root = synth.synth_dataset(args.kind, args.out, args.n, seed=args.seed, shape=shape, size=args.size,
                                   spark=spark)
        print(f"wrote {args.n} {args.kind} phantom cases to {root}")
    if args.layout == "chestxray14":
        root = layouts.write_chestxray14_replica(args.out, n_patients=args.n, size=args.size, seed=args.seed)
        print(f"wrote a ChestX-ray14 replica to {root}")
    elif args.layout == "mrnet":
        root = layouts.write_mrnet_replica(args.out, n_train=args.n, n_valid=max(1, args.n // 4), seed=args.seed)
        print(f"wrote an MRNet replica to {root}")
    elif args.layout == "oai-zib":
        shape = tuple(int(s) for s in args.shape.split(","))
        root = layouts.write_oaizib_replica(args.out, n=args.n, shape=shape, seed=args.seed)
        print(f"wrote an OAI-ZIB replica to {root}/OAI-ZIB (images under {root}/OAI)")
    if args.preview:
        print(f"preview: {synth.render_preview(args.preview, seed=args.seed)}")
    return EXIT_OK


def _driver_folder(flag: str, value: str | None) -> str | None:
    """A run or model folder as a local path: ``file:`` URIs become paths; other schemes are refused."""
    from urllib.parse import unquote, urlparse

    if value is None or "://" not in value and not value.startswith("file:"):
        return value
    if value.startswith("file:"):
        return unquote(urlparse(value).path)
    raise MedImgError(f"{flag} {value}: run and model folders are written and read with the driver's file I/O; "
                      "give a local or NFS path (hdfs:// and s3a:// folders are not supported for them yet)")


def _check_inputs(args) -> None:
    """Fail before starting Spark when a local input is missing or an output folder cannot be written."""
    import os

    from ..tasks import load_task

    for name in ("out", "model", "seg_model"):
        if getattr(args, name, None) is not None:
            setattr(args, name, _driver_folder("--" + name.replace("_", "-"), getattr(args, name)))
    for flag, value in (("--data", args.data), ("--model", getattr(args, "model", None)),
                        ("--seg-model", getattr(args, "seg_model", None))):
        if value and "://" not in value and not value.startswith("file:") and not os.path.exists(value):
            raise MedImgError(f"{flag} {value}: no such file or folder")
    for value in (getattr(args, "model", None), getattr(args, "seg_model", None)):
        if value:
            load_task(value)


def cmd_train(args) -> int:
    import json
    import time

    from .. import tasks

    overrides = {"estimator": {k: v for k, v in (("maxEpoch", args.epochs), ("batchSize", args.batch_size),
                                                 ("engine", args.engine), ("resume", args.resume),
                                                 ("trackingUri", args.mlflow),
                                                 ("experimentName", args.experiment if args.mlflow else None))
                                if v is not None}}
    cfg = tasks.task_config(args.task, args.config, overrides)
    if args.seg_model and args.task != "meniscus_tear":
        raise MedImgError("--seg-model only applies to --task meniscus_tear")
    _check_inputs(args)
    spark = _spark(args)
    t0 = time.time()
    kwargs = {"seg_model": args.seg_model} if args.task == "meniscus_tear" else {}
    with run_logs(args.out, spark), _tracking(args, f"train {args.task}") as run:
        if run is not None:
            from ..tracking import log_params

            log_params({k: v for k, v in cfg.items() if k != "estimator"})  # the estimators log their own
        summary = tasks.train(spark, args.task, args.data, args.out, cfg, **kwargs)
        if run is not None:
            _log_trained(run, summary["model"], args.out)
    shown = {k: v for k, v in summary.items() if k != "history"}
    print(f"trained {args.task} in {time.time() - t0:.0f}s: " + json.dumps(shown, default=float))
    print(f"next: bigdl-medimg evaluate --model {summary['model']} --data {args.data} --out <folder>")
    return EXIT_OK


def _check_engine(args) -> None:
    """``--engine`` on evaluate/predict: the saved model must have been trained with it."""
    from ..tasks import load_task

    if not args.engine:
        return
    trained = ((load_task(args.model).get("config") or {}).get("estimator") or {}).get("engine", "bigdl")
    if trained != args.engine:
        raise MedImgError(f"--engine {args.engine}: the model in {args.model} was trained with engine {trained!r}; "
                          "a model runs on the engine it was trained with")


def _tracking(args, name: str, run_id: str | None = None):
    """The MLflow run of a command with ``--mlflow`` (the training run resumed when it is in that store)."""
    import contextlib

    if not getattr(args, "mlflow", None):
        return contextlib.nullcontext()
    from ..tracking import require_mlflow, tracked_run

    mlflow = require_mlflow()
    if run_id is not None:
        try:
            mlflow.MlflowClient(args.mlflow).get_run(run_id)
        except Exception:  # trained with another store (or none): a run of its own
            run_id = None
    return tracked_run(args.mlflow, args.experiment, run_id=run_id, run_name=None if run_id else name)


def _log_trained(run, model_dir: str, out: str) -> None:
    """The saved PipelineModel folder, train.json, and the run id in task.json (so ``evaluate`` adds to this run)."""
    import json
    from pathlib import Path

    import mlflow

    from ..tracking import log_stats

    mlflow.log_artifacts(model_dir, "model")
    train = json.loads((Path(out) / "train.json").read_text()) if (Path(out) / "train.json").is_file() else {}
    log_stats({k: v for k, v in train.items() if k != "history"}, "train.json")
    info = Path(model_dir) / "task.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "mlflow_run_id": run.info.run_id}, indent=1))


def _log_evaluation(metrics: dict, args) -> None:
    """Evaluation metrics (``<split>.`` prefix, numbers only), metrics.json and an HTML report of the results."""
    from pathlib import Path

    import mlflow

    from ..report import load_results, write_report
    from ..tracking import flatten

    mlflow.log_metrics({k: float(v) for k, v in flatten(metrics, f"{args.split}.")
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v})
    if (Path(args.out) / "metrics.json").is_file():
        mlflow.log_artifact(str(Path(args.out) / "metrics.json"))
    results = load_results(str(Path(args.out) / "results")) if (Path(args.out) / "results").is_dir() else []
    summaries = Path(args.model).parent / "summaries"
    report = write_report(str(Path(args.out) / "report.html"), title=f"bigdl-medimg evaluation ({args.split})",
                          results=results, summary_dirs=[str(summaries)] if summaries.is_dir() else [])
    mlflow.log_artifact(str(report))


def cmd_evaluate(args) -> int:
    import json

    from .. import tasks
    from ..tasks import load_task

    _check_inputs(args)
    _check_engine(args)
    spark = _spark(args)
    run_id = load_task(args.model).get("mlflow_run_id") if args.mlflow else None
    args.split = args.split or ("all" if args.data.startswith("dicomweb:") else "test")
    with run_logs(args.out, spark), _tracking(args, f"evaluate {args.split}", run_id) as run:
        metrics = tasks.evaluate(spark, args.model, args.data, args.out, split=args.split, kind=args.kind,
                                 labels=args.labels, credentials=args.credentials)
        if run is not None:
            _log_evaluation(metrics, args)
    print(json.dumps(metrics, indent=1, default=float))
    print(f"results: {args.out}/results  (bigdl-medimg report --results {args.out}/results --out report.html)")
    return EXIT_OK


def cmd_predict(args) -> int:
    import json

    from .. import tasks

    _check_inputs(args)
    _check_engine(args)
    spark = _spark(args)
    with run_logs(args.out, spark):
        outputs = tasks.predict(spark, args.model, args.data, args.out, kind=args.kind, credentials=args.credentials)
        if args.stow:
            outputs["stow"] = _stow(args)
    print(json.dumps(outputs, indent=1, default=str))
    failed = sum(v.get("failed", 0) for v in outputs.values() if isinstance(v, dict))
    return EXIT_ROW_ERRORS if failed else EXIT_OK


def _stow(args) -> dict:
    """Send the predicted DICOM objects (``PRED/seg/*.dcm``: SEG and SR; ``PRED/sr/*.dcm``: chest SRs) with
    STOW-RS; counts for predict.json."""
    import json
    from pathlib import Path

    from ..io.dicomweb import DicomWebConnection, write_dicomweb
    from ..tasks.common import tally_outputs

    # knee and meniscus write SEG and SR into PRED/seg, chest its SRs into PRED/sr
    sent = write_dicomweb(sorted(str(p) for d in ("seg", "sr") for p in Path(args.out).glob(f"{d}/*.dcm")),
                          args.stow, credentials=args.credentials)
    tally = tally_outputs(sent)
    where = DicomWebConnection(args.stow).where()  # scheme, host and port: never credentials in a URL
    print(f"stow -> {where}: {tally['written']} sent, {tally['failed']} failed")
    info = Path(args.out) / "predict.json"
    if info.is_file():
        info.write_text(json.dumps({**json.loads(info.read_text()), "stow": tally}, indent=1))
    return tally


def cmd_report(args) -> int:
    from ..report import load_results, write_report

    results = [r for d in args.results for r in load_results(d)]
    path = write_report(args.out, title=args.title, results=results, summary_dirs=args.summaries)
    print(f"report: {path}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from ..doctor import main as doctor

    return doctor(args.profile, args.master, conf=_conf_pairs(args.conf))


def cmd_demo(args) -> int:
    from .demo import run_demo

    spark = _spark(args)
    with run_logs(args.out, spark):
        return run_demo(spark, args.out, seed=args.seed, summary=_summary, readers_only=args.readers_only)


def main(argv: Sequence[str] | None = None) -> int:
    from ..console import set_verbose, setup_console

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        set_verbose(True)
    setup_console()
    try:
        return {"ingest": cmd_ingest, "deidentify": cmd_deidentify, "synth": cmd_synth, "train": cmd_train, "evaluate": cmd_evaluate,
                "predict": cmd_predict, "report": cmd_report, "demo": cmd_demo,
                "doctor": cmd_doctor}[args.command](args)
    except (MedImgError, argparse.ArgumentTypeError) as exc:
        print(f"bigdl-medimg: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # Spark/Py4J failures: one line, not a stack trace
        print(f"bigdl-medimg: failed: {failure_line(exc)}", file=sys.stderr)
        run = _run_folder(args)
        where = f"{run}/logs/spark.log" if run else "the Spark log"
        print(f"bigdl-medimg: see {where} for details (or rerun with --verbose)", file=sys.stderr)
        return EXIT_FAILED


_WRAPPERS = ("Py4JJavaError", "SparkException", "PythonException", "InvocationTargetException")


def failure_line(exc: BaseException) -> str:
    """The root cause of a (Spark/Py4J) failure as one line: our error classes first, then the deepest cause."""
    import re

    text = str(exc)
    for marker in ("DicomReadError", "SeriesAssemblyError", "NiftiReadError", "ImageFileReadError", "ExportError",
                   "ConfigError"):
        if marker in text:
            return one_line(text[text.index(marker):].splitlines()[0])
    causes = [(m.group(1).rsplit(".", 1)[-1], m.group(2)) for m in
              re.finditer(r"^(?:Caused by: )?([\w.$]+(?:Exception|Error)): (.+)$", text, flags=re.M)]
    causes = [c for c in causes if c[0] not in _WRAPPERS]
    if causes:  # the deepest cause is the most specific
        return one_line(f"{causes[-1][0]}: {causes[-1][1]}")
    return f"{type(exc).__name__}: {one_line(text.splitlines()[0] if text else '')}"
