"""`webinstruct`: one command, a subcommand per stage.

    webinstruct classifier train   fastText recall classifier from positive/negative text
    webinstruct classifier score   score documents as recall does (or print the normalised fastText input)
    webinstruct recall             WARC files -> math/science documents (Beam)
    webinstruct domains table      the per-domain tally of a recall run
    webinstruct domains select     mark domains by rule (and an optional labeler)
    webinstruct domains round      retrain on selected domains, recall again, report the overlap
    webinstruct domains fetch      the selected domains' pages from Common Crawl's index, then the round
    webinstruct extract            recalled documents -> question-answer pairs (LLM)
    webinstruct refine             question-answer pairs -> WebInstruct shards, dataset card, run report (LLM)
    webinstruct augment            questions with answers -> MetaMathQA rows (AnsAug, Rephrasing, SV, FOBAR; LLM)
    webinstruct train              fine-tune a model on the shards with DeepSpeed (--dry-run: plan a cluster job)
    webinstruct eval               benchmarks with vLLM: predictions, both graders, results table and chart
    webinstruct eval rescore       re-grade saved predictions without generating
    webinstruct llm serve | stop   the local OpenAI-compatible LLM server (make serve-llm / stop-llm)

Settings come from a YAML recipe (`--config`, one section per stage) overridden by flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from typing import Any

from webinstruct.core import config as C
from webinstruct.core import io as fio

log = logging.getLogger("webinstruct")


class _DropBeamImportNoise(logging.Filter):
    # Beam's GCP module warns at import that optional cloud clients are missing; we do not use them.
    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


class _DropReportedErrors(logging.Filter):
    # A runner logs a worker's exception with its traceback before re-raising it; when `main` will
    # report that exception in one line, the logged copy is noise (--debug keeps it).
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not record.name.startswith("apache_beam") or _user_error(exc) is None


def _setup_logging(verbose: bool, debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropBeamImportNoise())
        if not debug:
            handler.addFilter(_DropReportedErrors())
    if not (debug or verbose):
        logging.getLogger("asyncio").addFilter(_DropAsyncioShutdownNoise())
    for noisy in ("apache_beam", "distributed", "urllib3", "filelock", "tldextract", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _base(p: argparse.ArgumentParser) -> None:
    """-v and --debug, on every subcommand (--debug also before the subcommand)."""
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the traceback of an error instead of its one-line message")


def _common(p: argparse.ArgumentParser, print_config: bool = True) -> None:
    p.add_argument("--config", default=None, help="YAML recipe with one section per stage (infra/recipes/)")
    _base(p)
    if print_config:
        _print_config_flag(p)


def _print_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print-config", action="store_true",
                   help="print the merged settings (default < recipe < flags) of every section this command "
                        "uses, as a recipe, and exit without running anything")


def recipe_schema() -> dict[str, type]:
    """The recipe sections the commands read, each with its settings class."""
    from webinstruct.evaluation.config import EvalConfig
    from webinstruct.pipeline.augment.config import AugmentConfig
    from webinstruct.pipeline.extract.config import ExtractConfig
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.config import RecallConfig
    from webinstruct.pipeline.recall.domain_fetch import FetchConfig
    from webinstruct.pipeline.recall.rounds import DomainsConfig, SeedsConfig
    from webinstruct.pipeline.refine.config import RefineConfig
    from webinstruct.training.config import TrainConfig

    return {"seeds": SeedsConfig, "classifier": ClassifierConfig, "recall": RecallConfig, "domains": DomainsConfig,
            "llm": LLMConfig, "extract": ExtractConfig, "refine": RefineConfig, "augment": AugmentConfig,
            "train": TrainConfig, "eval": EvalConfig, "fetch": FetchConfig}


def _recipe(args: argparse.Namespace) -> C.Recipe:
    """The --config recipe, every section checked against its settings class."""
    return C.load_recipe(args.config, recipe_schema())


def _section(cls: type, recipe: C.Recipe, section: str, overrides: dict[str, Any] | None = None):
    """A section's settings from the recipe alone (no flags of this command set it)."""
    return C.build(cls, recipe.get(section), overrides, name=section, source=recipe.path)


def _seeds(recipe: C.Recipe):
    from webinstruct.pipeline.recall.rounds import SeedsConfig

    return _section(SeedsConfig, recipe, "seeds")


def _shown(cfg: Any) -> Any:
    """Settings as printed: secrets masked."""
    if dataclasses.is_dataclass(cfg) and getattr(cfg, "api_key", "EMPTY") not in ("", "EMPTY"):
        return dataclasses.replace(cfg, api_key="***")
    return cfg


def _print_config(args: argparse.Namespace, sections: dict[str, Any], note: str = "") -> bool:
    """With --print-config: print `sections` (recipe section -> settings) as YAML and say so."""
    if not getattr(args, "print_config", False):
        return False
    recipe = getattr(args, "config", None) or "(none)"
    head = f"# webinstruct {args.command}: merged settings (default < recipe {recipe} < flags)"
    print(head + (f"\n# {note}" if note else ""))
    print(C.to_yaml({name: _shown(cfg) for name, cfg in sections.items()}), end="")
    return True


def ensure_classifier(path: str, recipe: dict[str, Any]) -> None:
    """Train the default classifier from the bundled seed text when it does not exist yet, and
    finish a calibration that an earlier run was stopped before (the model is saved first)."""
    from webinstruct.core import io
    from webinstruct.pipeline.recall.classifier import ClassifierConfig, load_texts, meta_path, train_classifier

    recipe = recipe if isinstance(recipe, C.Recipe) else C.Recipe(recipe)
    if io.exists(path):
        meta = io.read_json(meta_path(path)) if io.exists(meta_path(path)) else {}
        if meta.get("config", {}).get("calibrate_warc") and "calibration" not in meta:
            log.info("%s was saved but its threshold not yet calibrated (a stopped run): calibrating now", path)
            cfg = ClassifierConfig(**meta["config"])
            _print_classifier(_calibrate(meta, path, cfg, recipe), path)
        return
    seeds = _seeds(recipe)
    log.info("no classifier at %s: training one from the bundled seeds (%s vs %s)", path, seeds.positives,
             seeds.negatives)
    cfg = _section(ClassifierConfig, recipe, "classifier")
    meta = train_classifier(load_texts(seeds.positives), load_texts(seeds.negatives), path, cfg)
    meta = _calibrate(meta, path, cfg, recipe)
    _print_classifier(meta, path)


def _calibrate(meta: dict[str, Any], path: str, cfg: Any, recipe: Any) -> dict[str, Any]:
    """Choose the threshold on the recipe's labelled crawl sample (classifier.calibrate_warc and
    calibrate_labels) when it has one; the seed split's threshold stays when the sample is absent."""
    if not cfg.calibrate_warc:
        return meta
    from webinstruct.core import io
    from webinstruct.core.resources import bundled
    from webinstruct.pipeline.recall import calibrate
    from webinstruct.pipeline.recall.config import RecallConfig

    if not cfg.calibrate_labels or not any(io.glob(bundled(g)) for g in cfg.calibrate_warc) \
            or not io.exists(bundled(cfg.calibrate_labels)):
        log.warning("no calibration sample at %s / %s: the threshold stays the seed split's (%.4f), which keeps "
                    "far more non-math pages on a real crawl", cfg.calibrate_warc, cfg.calibrate_labels or "(no labels)",
                    meta["threshold"])
        return meta
    rc = _section(RecallConfig, recipe if isinstance(recipe, C.Recipe) else C.Recipe(recipe), "recall")
    return calibrate.calibrate(path, cfg.calibrate_warc, cfg.calibrate_labels, rc.page_settings(), cfg.base_rate,
                               cfg.crawl_precision, meta)


def _print_classifier(meta: dict[str, Any], path: str) -> None:
    m = meta.get("metrics", {})
    at = m.get("at_threshold", m)
    rule = meta.get("threshold_chosen_by") or meta.get("threshold_rule", "")
    seed = f" at the seed split's threshold {meta['seed_threshold']:.4f}:" if "seed_threshold" in meta else ""
    print(f"classifier -> {path}: threshold {meta.get('threshold'):.4f} ({rule}); held-out{seed} "
          f"precision {at.get('precision', float('nan')):.3f} recall {at.get('recall', float('nan')):.3f} "
          f"F1 {at.get('f1', float('nan')):.3f}")
    cal = meta.get("calibration")
    if cal:
        from webinstruct.pipeline.recall.calibrate import kept_summary

        print(f"  threshold chosen on the crawl sample ({cal['pages']} labelled pages): {kept_summary(cal)}")


def cmd_recall(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.config import RecallConfig

    from webinstruct.pipeline.runners import for_workers

    recipe = _recipe(args)
    cfg = for_workers(C.from_args(RecallConfig, args, recipe, "recall"))
    if cfg.crawl and "recall.warc" in vars(args):
        raise C.ConfigError("--warc and --crawl both given: --crawl reads the crawl's WARC list (--files selects "
                            "from it), --warc reads the files named; give one")
    if not cfg.crawl:
        _check_warc_paths(args, recipe, cfg.warc)
    if _print_config(args, {"recall": cfg, "classifier": _section(ClassifierConfig, recipe, "classifier"),
                            "seeds": _seeds(recipe)},
                     "classifier and seeds: used when the recall classifier has to be trained first"):
        return 0
    from webinstruct.pipeline.recall import job

    if not cfg.classifier:
        ensure_classifier(cfg.classifier_path(), recipe)
    stats = job.run(cfg)
    print(job.summary(stats, cfg.out_dir()))
    return 0


def _check_warc_paths(args: argparse.Namespace, recipe: C.Recipe, warc: list[str]) -> None:
    """A directory given as a WARC path is an error (not a file read as one, nor expanded silently):
    the message shows the glob that names the WARC files in it."""
    from webinstruct.core import io

    for path in warc:
        if not any(c in path for c in "*?[") and not io.is_remote(path) and io.isdir(path):
            where = "--warc" if "recall.warc" in vars(args) else f"{recipe.path or 'default'}: recall.warc"
            raise C.ConfigError(f"{where}: {path} is a directory, not a WARC file; give the WARC files in it, "
                                f"e.g. --warc '{path.rstrip('/')}/*.warc.gz'")


def _llm_config(args: argparse.Namespace, recipe: dict[str, Any]):
    """The `llm` recipe section, overridden by --llm-* flags, then by LLM_URL / LLM_MODEL / LLM_API_KEY."""
    from webinstruct.pipeline.llm.config import LLMConfig

    return LLMConfig.from_env(C.from_args(LLMConfig, args, recipe, "llm", prefix="llm-"))


def _run_llm_stage(args: argparse.Namespace, job_module: str, cfg_cls: type, section: str):
    """Build the stage's config and the LLM config from recipe + flags, run the stage, print its stats.
    Returns None when --print-config only printed them."""
    import importlib

    from webinstruct.pipeline.runners import for_workers

    recipe = _recipe(args)
    cfg = for_workers(C.from_args(cfg_cls, args, recipe, section))
    llm = _llm_config(args, recipe)
    if _print_config(args, {section: cfg, "llm": llm}):
        return None
    job = importlib.import_module(job_module)
    stats = job.run(cfg, llm, recipe)
    print(job.summary(stats, cfg.out_dir()))
    return cfg


def cmd_extract(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.extract.config import ExtractConfig

    _run_llm_stage(args, "webinstruct.pipeline.extract.job", ExtractConfig, "extract")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.refine.config import RefineConfig

    cfg = _run_llm_stage(args, "webinstruct.pipeline.refine.job", RefineConfig, "refine")
    if cfg is not None:
        print(f"dataset card: {cfg.out_dir()}/README.md; exports: {cfg.out_dir()}/export/; report: {cfg.run}/report.md")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.augment.config import AugmentConfig

    _run_llm_stage(args, "webinstruct.pipeline.augment.job", AugmentConfig, "augment")
    return 0


def _flags(overrides: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in overrides.items():
        flag = "--run-dir" if name == "run" else "--" + name.replace("_", "-")  # torchrun owns --run
        out += [flag] + ([str(v) for v in value] if isinstance(value, list) else [str(value).lower()
                                                                                 if isinstance(value, bool) else str(value)])
    return out


def cmd_train(args: argparse.Namespace) -> int:
    import subprocess

    from webinstruct.training.config import TrainConfig, check_learning_rates, default_recipe, load_train_config

    overrides = C.section_values(args, "train")
    recipe = overrides.pop("recipe", "") or default_recipe(overrides.get("model") or TrainConfig.model)
    cfg = load_train_config(recipe, flags=C.given_flags(overrides), **overrides)
    if _print_config(args, {"train": cfg}, f"recipe: {recipe}; launch: --gpus {args.gpus} --nodes {args.nodes}"
                                          + (" --dry-run" if args.dry_run else "")):
        return 0
    if args.dry_run:
        from webinstruct.training.dry_run import report

        print(report(cfg, args.gpus, args.nodes))
        check_learning_rates(cfg)  # the plan is printed; a launch would stop here, so the dry run does too
        return 0
    if args.prepare:  # tokenise once into RUN/train/<model>/data/<key>/ (training/prepared.py), then stop
        from webinstruct.training.prepared import prepare_and_describe

        print(prepare_and_describe(cfg))
        return 0
    from webinstruct.core.registry import resolve

    check_learning_rates(cfg)  # before any weights are looked for or loaded, on any rank
    resolve(cfg.model, cfg.model_path)  # no weights: the message says where to put them, before anything starts
    if args.nodes > 1:
        raise ValueError("several nodes: launch with DeepSpeed's launcher and a hostfile, e.g. `deepspeed --hostfile "
                         "hosts --num_gpus 8 --module webinstruct.training.trainer --config RECIPE ...` (see README, "
                         "Training)")
    if args.gpus > 1:
        forwarded = {k: getattr(cfg, k) for k in overrides}
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.gpus}", "-m",
               "webinstruct.training.trainer", "--config", recipe] + _flags(forwarded)
        log.info("launching: %s", " ".join(cmd))
        return subprocess.call(cmd)
    from webinstruct.training.trainer import train_stages

    train_stages(cfg)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from webinstruct.evaluation import benchmarks
    from webinstruct.evaluation.config import EvalConfig

    recipe = _recipe(args)
    cfg = C.from_args(EvalConfig, args, recipe, "eval")
    try:
        benchmarks.names(cfg.benchmarks)
    except ValueError as err:
        where = "--benchmarks" if "eval.benchmarks" in vars(args) else f"{recipe.path or 'default'}: eval.benchmarks"
        raise C.ConfigError(f"{where}: {err}") from err
    if _print_config(args, {"eval": cfg}):
        return 0
    from webinstruct.evaluation.run import evaluate

    results = evaluate(cfg)
    _print_results(results, cfg.eval_dir())
    return 0


def cmd_eval_rescore(args: argparse.Namespace) -> int:
    from webinstruct.evaluation.run import rescore

    eval_dir = args.dir or f"{args.run.rstrip('/')}/eval"
    results = rescore(eval_dir, workers=args.workers, timeout=args.timeout)
    _print_results(results, eval_dir)
    kept = results["settings"]["rescored"]
    if kept.get("skipped_unreadable"):
        print(f"skipped_unreadable: {kept['skipped_unreadable']} line(s) that are not gradable predictions were kept "
              f"as they are, not graded ({', '.join(f'{b} {n}' for b, n in kept['skipped_unreadable_by_benchmark'].items())})")
    return 0


def _print_results(results: dict[str, Any], eval_dir: str) -> None:
    print(f"{'benchmark':<16} {'n':>5} {'seed':>7} {'robust':>7} {'disagree':>8}")
    for name, r in results["benchmarks"].items():
        print(f"{name:<16} {r['n']:>5} {100 * r['seed']:>6.1f}% {100 * r['robust']:>6.1f}% {r['disagree']:>8}")
    print(f"results: {eval_dir}/results.md, results.json, results.png; predictions: {eval_dir}/predictions/")


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.classifier import ClassifierConfig

    recipe = _recipe(args)
    cfg = C.from_args(ClassifierConfig, args, recipe, "classifier")
    seeds = _seeds(recipe)
    seeds = dataclasses.replace(seeds, positives=args.positives or seeds.positives,
                                negatives=args.negatives or seeds.negatives)
    out = args.out or f"{args.run.rstrip('/')}/classifier/classifier.bin"
    if _print_config(args, {"classifier": cfg, "seeds": seeds}, f"model: {out}"):
        return 0
    from webinstruct.pipeline.recall.classifier import load_texts, train_classifier

    meta = train_classifier(load_texts(seeds.positives), load_texts(seeds.negatives), out, cfg)
    meta = _calibrate(meta, out, cfg, recipe)
    _print_classifier(meta, out)
    return 0


def cmd_classifier_score(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.config import RecallConfig

    recipe = _recipe(args)
    # The model and threshold the recall stage would use: flags < recipe section `recall` < defaults.
    given = {"run": args.run, "classifier": args.classifier, "threshold": args.threshold}
    recall = C.build(RecallConfig, recipe.get("recall"), given, name="recall", source=recipe.path,
                     flags={"run": "--run", "classifier": "--classifier", "threshold": "--threshold"})
    sources = list(args.files) or ([] if args.text else ["-"])
    from webinstruct.pipeline.recall import scoring
    from webinstruct.pipeline.recall.classifier import Classifier

    scoring.check_inputs(sources)
    clf = Classifier.load(recall.classifier_path())
    docs = [(t, {}) for t in args.text or ()]
    docs_iter = iter(docs) if not sources else _chain(docs, scoring.read_documents(sources, args.plain))
    if args.normalized:
        lines = scoring.normalized_lines(clf, docs_iter)
    else:
        threshold = recall.threshold if recall.threshold >= 0 else None  # -1: the saved one
        lines = scoring.json_lines(scoring.score_records(clf, docs_iter, threshold))
    try:
        scoring.write_lines(lines)
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_classifier_report(args: argparse.Namespace) -> int:
    """The model's numbers on its seed split beside its numbers on a labelled crawl sample."""
    from webinstruct.pipeline.recall import calibrate
    from webinstruct.pipeline.recall.classifier import Classifier
    from webinstruct.pipeline.recall.config import RecallConfig

    recipe = _recipe(args)
    given = {"run": args.run, "classifier": args.classifier}
    recall = C.build(RecallConfig, recipe.get("recall"), given, name="recall", source=recipe.path,
                     flags={"run": "--run", "classifier": "--classifier"})
    path = recall.classifier_path()
    clf = Classifier.load(path)
    scored = calibrate.score_pages(path, args.warc, calibrate.read_labels(args.labels), recall.page_settings())
    if not scored:
        from webinstruct.core.shards import MissingInput

        raise MissingInput(f"no page of {' '.join(args.warc)} is listed in {args.labels}")
    seed = clf.meta.get("metrics", {}).get("at_threshold", {})
    chosen = clf.meta.get("threshold_chosen_by", clf.meta.get("threshold_rule", ""))
    print(f"classifier {path}: threshold {clf.threshold:.4f} (chosen by {chosen})")
    print(f"  seed split (held out, 1:1): precision {seed.get('precision', float('nan')):.3f} "
          f"recall {seed.get('recall', float('nan')):.3f}")
    for name, threshold in (("at the model's threshold", clf.threshold),
                            ("at the threshold this sample would choose",
                             calibrate.choose(scored, args.base_rate, args.crawl_precision)[0])):
        print(f"  {args.labels} {name} ({threshold:.4f}): "
              f"{calibrate.kept_summary(calibrate.metrics(scored, threshold, args.base_rate))}")
    dropped: dict[str, int] = {}
    for s in scored:
        if s.reason:
            dropped[s.reason] = dropped.get(s.reason, 0) + 1
    if dropped:
        print("  dropped before the final score: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return 0


def _chain(first, rest):
    yield from first
    yield from rest


def cmd_domains_table(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.rounds import read_table

    rows = read_table(args.recall or f"{args.run.rstrip('/')}/recall")
    print(f"{'domain':<36} {'seen':>6} {'recalled':>8} {'share':>6} {'score':>6}  top paths")
    for r in rows[: args.top]:
        paths = ", ".join(f"{p} ({n})" for p, n in r["top_paths"][:3])
        print(f"{r['domain'][:36]:<36} {r['pages_seen']:>6} {r['pages_recalled']:>8} "
              f"{r['recalled_share']:>6.2f} {r['mean_score']:>6.2f}  {paths}")
    return 0


def cmd_domains_select(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.rounds import DomainsConfig

    recipe = _recipe(args)
    cfg = C.from_args(DomainsConfig, args, recipe, "domains")
    llm = _llm_config(args, recipe)
    if _print_config(args, {"domains": cfg, "llm": llm}):
        return 0
    from webinstruct.pipeline.recall.rounds import select

    report = select(cfg, llm)
    print(f"domains -> {cfg.domains_dir()}/selected.json: {len(report['selected'])} selected "
          f"{report['verdict_counts']}: {', '.join(report['selected'][:20])}")
    for domain, label in report.get("labels", {}).items():
        verdict = label.get("error") or f"{label['category']}, {'educational' if label['educational'] else 'not educational'}: {label['reason']}"
        print(f"  {domain}: {verdict}")
    return 0


def cmd_domains_round(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.config import RecallConfig
    from webinstruct.pipeline.recall.rounds import DomainsConfig

    from webinstruct.pipeline.runners import for_workers

    recipe = _recipe(args)
    cfg = C.from_args(DomainsConfig, args, recipe, "domains")
    recall_cfg = _section(RecallConfig, recipe, "recall", {"run": cfg.run})
    cfg, recall_cfg = for_workers(cfg, recall_cfg), for_workers(recall_cfg)
    clf_cfg = _section(ClassifierConfig, recipe, "classifier")
    llm = _llm_config(args, recipe)
    if _print_config(args, {"domains": cfg, "recall": recall_cfg, "classifier": clf_cfg, "llm": llm}):
        return 0
    from webinstruct.pipeline.recall.rounds import run_round

    result = run_round(cfg, recall_cfg, clf_cfg, llm)
    _print_round(result, cfg.round_dir())
    return 0


def _print_round(result: dict[str, Any], round_dir: str) -> None:
    ov = result["overlap"]
    print(f"round {result['round']} -> {round_dir}: recalled {result['inputs']['previous']} WARC files of the previous "
          f"round + {result['inputs']['fetched']} fetched; trained on {result['training']}")
    print(f"  previous round recalled {ov['previous']} pages, this round {ov['current']}; "
          f"both {ov['both']}; {100 * ov['share_of_current_already_found']:.1f}% of this round already found; "
          f"Jaccard {ov['jaccard']:.3f}")


def cmd_domains_fetch(args: argparse.Namespace) -> int:
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.config import RecallConfig
    from webinstruct.pipeline.recall.domain_fetch import FetchConfig
    from webinstruct.pipeline.recall.rounds import DomainsConfig

    from webinstruct.pipeline.runners import for_workers

    recipe = _recipe(args)
    cfg = C.from_args(DomainsConfig, args, recipe, "domains")
    fetch_cfg = C.from_args(FetchConfig, args, recipe, "fetch")
    recall_cfg = _section(RecallConfig, recipe, "recall", {"run": cfg.run})
    cfg, recall_cfg = for_workers(cfg, recall_cfg), for_workers(recall_cfg)
    clf_cfg = _section(ClassifierConfig, recipe, "classifier")
    llm = _llm_config(args, recipe)
    sections = {"domains": cfg, "fetch": fetch_cfg, "llm": llm}
    if not args.fetch_only:
        sections.update(recall=recall_cfg, classifier=clf_cfg)
    if _print_config(args, sections):
        return 0
    if not fetch_cfg.index:
        raise C.ConfigError(f"--index: no index given (nor fetch.index in {recipe.path or 'a recipe'}): the Parquet "
                            "files of Common Crawl's columnar index, e.g. --index 'cc-index/*.parquet'")
    from webinstruct.pipeline.recall.domain_fetch import fetched_dir, run_fetch
    from webinstruct.pipeline.recall.rounds import run_round, selection

    report = run_fetch(cfg, fetch_cfg, selection(cfg, llm)["selected"])
    st = report["stats"]
    failed = {k[len("failed_"):]: v for k, v in st.items() if k.startswith("failed_")}
    skipped = {k[len("skipped_"):]: v for k, v in st.items() if k.startswith("skipped_")}
    print(f"fetch -> {fetched_dir(cfg.round_dir())}: {st.get('rows_matched', 0)} index rows of "
          f"{report['selected_domains']} selected domains; {st.get('records_fetched', 0)} records fetched "
          f"({st.get('bytes_fetched', 0)} bytes, {len(report['files'])} WARC files); skipped {skipped or 0}; "
          f"failed {failed or 0}")
    if args.fetch_only:
        return 0
    _print_round(run_round(cfg, recall_cfg, clf_cfg, llm), cfg.round_dir())
    return 0


def parser() -> argparse.ArgumentParser:
    from webinstruct.pipeline.augment.config import AugmentConfig
    from webinstruct.pipeline.extract.config import ExtractConfig
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.config import RecallConfig
    from webinstruct.pipeline.recall.rounds import DomainsConfig
    from webinstruct.pipeline.refine.config import RefineConfig
    from webinstruct.training.config import TrainConfig

    top = C.ConfigParser(prog="webinstruct", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--debug", action="store_true", default=False,
                     help="show the traceback of an error instead of its one-line message")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("recall", help="WARC files -> math/science documents (Beam job)",
                       description="Read WARCs, extract math-aware text, score with fastText, dedup, write shards.")
    _common(p)
    C.add_arguments(p, RecallConfig, section="recall")
    p.set_defaults(func=cmd_recall)

    for name, cfg_cls, func, help_text, description in (
            ("extract", ExtractConfig, cmd_extract, "recalled documents -> question-answer pairs (Beam job, LLM)",
             "Find the question-answer pairs in recalled documents: from schema.org markup where pages declare "
             "them, else with an LLM on an OpenAI-compatible server (started locally when --llm-url / LLM_URL "
             "is not given)."),
            ("refine", RefineConfig, cmd_refine, "question-answer pairs -> WebInstruct shards (Beam job, LLM)",
             "Rewrite extracted pairs with one or more refiner LLMs, check them, drop pairs sharing a 10-gram "
             "with an evaluation benchmark, dedup (exact and MinHash), write WebInstruct shards, Parquet/JSON-"
             "lines exports, a dataset card and the run report. Refiner entries are set in the recipe (section "
             "`refine`)."),
            ("augment", AugmentConfig, cmd_augment, "questions with final answers -> MetaMathQA shards (Beam job, LLM)",
             "MetaMath's question bootstrapping: sample solutions (AnsAug), rephrase and re-solve (Rephrasing), mask a "
             "number as x and solve backwards (Self-Verification, FOBAR); keep what reaches the gold answer; write "
             "MetaMathQA-format shards (type, query, original_question, response) with per-type counts and "
             "acceptance rates. Inputs: GSM8K-style or MATH-style JSON lines, or WebInstruct shards.")):
        p = sub.add_parser(name, help=help_text, description=description)
        _common(p)
        C.add_arguments(p, cfg_cls, section=name)
        C.add_arguments(p, LLMConfig, section="llm", prefix="llm-")
        p.set_defaults(func=func)

    p = sub.add_parser("train", help="fine-tune a model with DeepSpeed on WebInstruct / MetaMathQA shards",
                       description="Train MODEL (a registry name or a model folder) with the recipe's settings "
                                   "(infra/recipes/train/<recipe>.yaml); flags override the recipe. --dry-run "
                                   "prints the plan (parameters, memory per GPU per ZeRO stage, steps) without weights.")
    _base(p)
    _print_config_flag(p)
    p.add_argument("--dry-run", action="store_true", help="plan only: no weights, no training (DRY_RUN=1)")
    p.add_argument("--prepare", action="store_true",
                   help="only tokenise the data into RUN/train/<model>/data/<key>/ (memory-mapped arrays every "
                        "rank maps; reused when there) and exit; training does it on rank 0 when missing")
    p.add_argument("--gpus", type=C.checked(int, 1), default=1,
                   help="processes (GPUs) per node; >1 launches torchrun")
    p.add_argument("--nodes", type=C.checked(int, 1), default=1,
                   help="nodes (the plan; training on several uses DeepSpeed's launcher)")
    C.add_arguments(p, TrainConfig, section="train")
    p.set_defaults(func=cmd_train)

    from webinstruct.evaluation.config import EvalConfig

    p = sub.add_parser("eval", help="evaluate a model on the MAmmoTH2 and MetaMath benchmarks (vLLM)",
                       description="Generate answers (greedy) with the protocol's prompts, grade each with the seed "
                                   "grader (the paper's scorer) and the robust grader (symbolic), write "
                                   "RUN/eval/{predictions/*.jsonl, results.json, results.md, results.png}. An "
                                   "interrupted run resumes where it stopped. `eval rescore` re-grades saved "
                                   "predictions.")
    _common(p)
    C.add_arguments(p, EvalConfig, section="eval")
    p.set_defaults(func=cmd_eval)
    ev_sub = p.add_subparsers(dest="action", required=False, metavar="ACTION")
    rp = ev_sub.add_parser("rescore", help="re-grade saved predictions without generating",
                           description="Re-grade RUN/eval/predictions with both graders and rewrite the results.")
    _base(rp)
    rp.add_argument("--run", default="runs/sample", help="run directory (default: runs/sample)")
    rp.add_argument("--dir", default="", help="evaluation folder (default: RUN/eval)")
    rp.add_argument("--workers", type=C.checked(int, 1), default=2, help="robust-grader processes")
    rp.add_argument("--timeout", type=C.checked(float, 0, strict=True), default=5.0,
                    help="seconds per answer for symbolic checks")
    rp.set_defaults(func=cmd_eval_rescore)

    llm = sub.add_parser("llm", help="start or stop the local OpenAI-compatible LLM server (vLLM)")
    llm_sub = llm.add_subparsers(dest="action", required=True, metavar="ACTION")
    from webinstruct.pipeline.llm import server as llm_server

    serve_p = llm_sub.add_parser("serve", help="start the local server (SmolLM2 on vLLM's CPU build by default)",
                                 description="Start vLLM's OpenAI-compatible server on 127.0.0.1 and print its URL.")
    stop_p = llm_sub.add_parser("stop", help="stop the server started with `llm serve --detach`")
    for p in (serve_p, stop_p):
        _base(p)
    llm_server.add_arguments(serve_p, stop_p)

    clf = sub.add_parser("classifier", help="train or try the fastText recall classifier")
    clf_sub = clf.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = clf_sub.add_parser("train", help="train from positive and negative JSON-lines text",
                           description="Train fastText; choose the threshold on a held-out split; save model + metadata.")
    _common(p)
    p.add_argument("--positives", nargs="+", help="positive JSON-lines files, field `text` (.gz ok)")
    p.add_argument("--negatives", nargs="+", help="negative JSON-lines files, field `text` (.gz ok)")
    p.add_argument("--run", default="runs/sample", help="run directory (model goes to RUN/classifier/)")
    p.add_argument("--out", default="", help="model path (default RUN/classifier/classifier.bin)")
    C.add_arguments(p, ClassifierConfig, section="classifier")
    p.set_defaults(func=cmd_classifier_train)
    p = clf_sub.add_parser(
        "score", help="score documents (JSON lines or plain text) as recall does; --normalized: the fastText input",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Score documents with the recall classifier exactly as the recall stage scores pages:
normalised by normalize_for_classifier (with the model's max_chars), then P(__label__pos) from fastText.

Input: FILE ... (local, s3://, https://, .gz or .xz; `-` or none: standard input), JSON lines with a
string field `text` (a line that is not stops the command with its file and line); with --plain each
file (or standard input) is one document, whole. --text TEXT adds a document given on the command line.

Output (standard output), one line per document in input order:
  {"score": P(__label__pos), "keep": true or false, "id": ..., "url": ...}
`keep` is score >= the threshold (--threshold, else recall.threshold of the --config recipe when set,
else the threshold saved in classifier.json); `id` and `url` are copied from the input when present
(with --plain: `file`). --normalized prints instead the normalised text fastText is given, one line
per document, to score the model in another tool (classifier.json's "normalization" describes the
steps).

The model: --classifier PATH (a file, or a folder holding classifier.bin), else
RUN/classifier/classifier.bin with --run RUN (recipe recall.classifier / recall.run, default
runs/sample), the one `webinstruct recall` would use.

Examples:
  webinstruct classifier score --run runs/sample docs.jsonl.gz > scores.jsonl
  zcat docs.jsonl.gz | webinstruct classifier score --classifier model/classifier.bin -
  webinstruct classifier score --plain --threshold 0.5 page1.txt page2.txt
  webinstruct classifier score --normalized docs.jsonl > fasttext-input.txt""")
    p.add_argument("--config", default=None,
                   help="YAML recipe: its `recall` section names the model (classifier, run) and threshold")
    _base(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--classifier", default=None, metavar="PATH",
                       help="fastText model file, or a folder holding classifier.bin")
    where.add_argument("--run", default=None, metavar="RUN",
                       help="run directory: the model is RUN/classifier/classifier.bin (default runs/sample)")
    p.add_argument("--threshold", default=None,
                   help="`keep` when score >= this (default: recipe recall.threshold if set, else the "
                        "threshold saved with the model; -1 also means the saved one)")
    p.add_argument("--plain", action="store_true",
                   help="inputs are plain text: each file (or standard input) is one document")
    p.add_argument("--text", action="append", default=[], metavar="TEXT",
                   help="a document given on the command line (repeatable; scored before the files)")
    p.add_argument("--normalized", action="store_true",
                   help="print the normalised fastText input line of each document instead of its score")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="input files; `-` is standard input (the default when no FILE and no --text)")
    p.set_defaults(func=cmd_classifier_score)

    p = clf_sub.add_parser(
        "report", help="precision and recall on a labelled crawl sample, beside the seed split's",
        description="Score every labelled page of WARC files through the recall stage's own path (language, "
                    "cheap pass, extraction, fastText) and print pages kept per label, recall, false-positive "
                    "rate and precision (also at a crawl's base rate), at the model's threshold and at the "
                    "threshold the sample itself would choose. Example: webinstruct classifier report --run "
                    "runs/mix --warc '../shared/web/mix/*.warc.gz' --labels ../shared/web/mix/labels.tsv")
    p.add_argument("--config", default=None, help="YAML recipe: its `recall` section (model, languages, prefilter)")
    _base(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--classifier", default=None, metavar="PATH", help="fastText model file or folder")
    where.add_argument("--run", default=None, metavar="RUN", help="run directory: RUN/classifier/classifier.bin")
    p.add_argument("--warc", nargs="+", required=True, help="WARC files or globs of the labelled sample")
    p.add_argument("--labels", required=True, help="tab-separated labels: columns url and label (math / general / ...)")
    p.add_argument("--base-rate", type=C.checked(float, 0, strict=True), default=0.01,
                   help="share of math pages in the crawl the precision is reported for (default 0.01)")
    p.add_argument("--crawl-precision", type=C.checked(float, 0, strict=True), default=0.3,
                   help="precision at the base rate the sample's own threshold must reach (default 0.3)")
    p.set_defaults(func=cmd_classifier_report)

    d = sub.add_parser("domains", help="domain table, selection and domain rounds")
    d_sub = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = d_sub.add_parser("table", help="print the domain table of a recall run")
    _common(p, print_config=False)
    p.add_argument("--run", default="runs/sample")
    p.add_argument("--recall", default="", help="recall directory (default RUN/recall)")
    p.add_argument("--top", type=C.checked(int, 1), default=25)
    p.set_defaults(func=cmd_domains_table)
    for name, fn, text in (("select", cmd_domains_select, "mark domains by rule (and labeler)"),
                           ("round", cmd_domains_round, "retrain on selected domains, recall again, report overlap")):
        p = d_sub.add_parser(name, help=text, description=text)
        _common(p)
        C.add_arguments(p, DomainsConfig, section="domains")
        C.add_arguments(p, LLMConfig, section="llm", prefix="llm-")
        p.set_defaults(func=fn)
    from webinstruct.pipeline.recall.domain_fetch import FetchConfig

    text = ("fetch the selected domains' pages from Common Crawl's columnar index, then run the round on them "
            "(with the previous round's WARCs)")
    p = d_sub.add_parser("fetch", help=text, description=(
        "Scan the index (--index: Parquet files, globs or URIs) for the domains in RUN/domains/selected.json "
        "(made by `domains select`, or now by its rules), skip rows that are not HTML 200 captures or that the "
        "previous round already recalled or read, fetch each record with an HTTP range request from --cc-base "
        "(resumed after dropped connections) into RUN/domains/round-N/fetched/part-NNNNN.warc.gz with "
        "fetched.json (rows matched, records and bytes fetched, skips and failures by reason), then run "
        "`domains round`: retrain, recall the previous round's WARCs plus the fetched ones into "
        "RUN/domains/round-N/recall/ and report the overlap. --fetch-only stops after the fetch; a later "
        "`domains round` picks the fetched files up."))
    _common(p)
    p.add_argument("--fetch-only", action="store_true", help="fetch the records, do not run the round")
    C.add_arguments(p, DomainsConfig, section="domains")
    C.add_arguments(p, FetchConfig, section="fetch")
    C.add_arguments(p, LLMConfig, section="llm", prefix="llm-")
    p.set_defaults(func=cmd_domains_fetch)
    return top


def parse_args(argv: list[str]) -> argparse.Namespace:
    """argv -> the namespace `main` runs (pass-through options such as --runner-options included)."""
    return parser().parse_args(argv)


def _is_llm_fault(err: BaseException) -> bool:
    # Any exception class the LLM layer defines is a server/setup fault, not a bug in the caller.
    return type(err).__module__.startswith("webinstruct.pipeline.llm.")


def _user_error(err: BaseException) -> BaseException | None:
    """The exception to report in one line: `err` or one it wraps (Beam re-raises a worker's error
    inside its own), when it is a user error or an infrastructure fault; None for a bug."""
    from webinstruct.core.shards import MissingInput

    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e = _worker_error(e) or e
        if _is_llm_fault(e) or isinstance(e, (MissingInput, FileNotFoundError, ValueError, ConnectionError)):
            return e
        e = e.__cause__
    return None


def _worker_error(err: BaseException) -> BaseException | None:
    """The exception a worker process raised, which Beam's multiprocess runner hands back only as
    the text of a RuntimeError whose last line is `module.Class: message`: rebuilt when the class is
    webinstruct's or a builtin one, so it is reported like the same error on the local runner."""
    if type(err) is not RuntimeError or err.__cause__ is not None:
        return None
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    found = re.match(r"([A-Za-z_][\w.]*)(?:: (.*))?$", lines[-1]) if lines else None
    if found is None:
        return None
    module, _, name = found.group(1).rpartition(".")
    if module and not module.startswith("webinstruct."):
        return None
    import importlib

    try:
        rebuilt = getattr(importlib.import_module(module or "builtins"), name)(found.group(2) or "")
    except Exception:  # not importable, or a constructor that wants other arguments: report as it is
        return None
    return rebuilt if isinstance(rebuilt, BaseException) else None


class _DropAsyncioShutdownNoise(logging.Filter):
    # When a stage stops on a fault, the LLM client's loop still holds requests in flight: asyncio
    # then logs "Task was destroyed but it is pending" and "Task exception was never retrieved"
    # (client has been closed) with tracebacks, after or around the one line that matters. Those
    # requests' outcomes are already counted by the client; -v or --debug keeps the records.
    NOISE = ("Task was destroyed but it is pending", "exception was never retrieved", "Unclosed")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


def _quiet_shutdown() -> None:
    """After a fault: no "Exception ignored in ..." lines from coroutines collected at exit."""
    sys.unraisablehook = lambda unraisable: None


def _one_line(err: BaseException) -> str:
    text = re.sub(r" \[while running '[^']*'\]$", "", " ".join(str(err).split())) or type(err).__name__
    from webinstruct.pipeline.llm.client import LLMUnavailable

    if _is_llm_fault(err) and not isinstance(err, LLMUnavailable) and "rerun" not in text:
        text += "; finished replies are cached, rerun to resume"
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _setup_logging("-v" in argv or "--verbose" in argv, "--debug" in argv)
    args = parse_args(argv)
    try:
        # Beam's --s3_* options among --runner-options reach s3fs as the AWS variables.
        fio.use_beam_s3_options(t for k, v in vars(args).items() if k.endswith("runner_options") for t in v or ())
        return args.func(args)
    except Exception as err:
        found = _user_error(err)
        if found is None or args.debug:
            raise
        if _is_llm_fault(found):
            _quiet_shutdown()
        print(f"webinstruct {args.command}: error: {_one_line(found)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
