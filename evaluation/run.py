"""`webinstruct eval`: generate answers to the benchmarks, grade them twice, write the report.

For each benchmark: load the questions (a seeded LIMIT sample), skip those already in
RUN/eval/predictions/<benchmark>.jsonl, render the rest with the protocol and generate them in
chunks: 512 questions per vLLM replica at a time (vLLM schedules best with many prompts at once,
and `LLM.generate` returns only at the end, so a crash loses at most a chunk), `batch_size` for
the hf and openai backends. While the backend generates chunk k+1, a grading thread grades chunk k
with the seed and robust graders (the robust grader's processes are started once for the whole
run) and appends it to the predictions file, chunks in order. Then `webinstruct.evaluation.report`
writes results.json, results.md and results.png. `rescore` re-grades saved predictions without
generating (after a grader change, or to grade another run's files).

Engines: `webinstruct.evaluation.placement` decides the GPUs per engine (tp) and the engine
replicas (dp); dp > 1 runs `backends.replicas.ReplicaBackend`, one process per replica.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from webinstruct.evaluation import benchmarks as B
from webinstruct.evaluation import predictions as P
from webinstruct.evaluation.config import EvalConfig
from webinstruct.evaluation.grading import grade_all, grading_pool
from webinstruct.evaluation.placement import Placement
from webinstruct.evaluation.protocols import Protocol
from webinstruct.core import io as fio

log = logging.getLogger(__name__)
# Settings that change what a prediction is: a rerun with other values must not mix into old files.
IDENTITY = ("model_path", "protocol", "form", "exemplars", "shots", "max_new_tokens", "seed", "backend")
CPU_CONTEXT = 8192


def trained_model(run: str) -> Path | None:
    """The newest model `make train` exported under RUN/train/*/final, if any."""
    finals = [p.parent for p in Path(run, "train").glob("*/final/config.json")]
    return max(finals, key=lambda p: p.stat().st_mtime) if finals else None


def pick_model(cfg: EvalConfig) -> tuple[str, str]:
    """(name, local folder) of the model to evaluate."""
    from webinstruct.core.registry import EMBEDDED_MODEL, resolve

    name = cfg.model
    if not name:
        final = trained_model(cfg.run)
        if final is not None:
            return f"{final.parent.name} (trained)", str(final)
        name = EMBEDDED_MODEL
    if (Path(name) / "config.json").is_file():
        return Path(name.rstrip("/")).name, str(name)
    resolved = resolve(name, cfg.model_path)
    return resolved.name, resolved.path


def _chat_template(model_dir: str):
    from transformers import AutoTokenizer

    from webinstruct.core.formatting import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(model_dir)
    ensure_chat_template(tok)
    return lambda messages: tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def make_protocol(cfg: EvalConfig, model_dir: str) -> Protocol:
    template = _chat_template(model_dir) if cfg.protocol == "chat" else None
    return Protocol(cfg.protocol, cfg.form, cfg.exemplars, cfg.max_new_tokens or None,
                    None if cfg.shots < 0 else cfg.shots, template)


def _settings(cfg: EvalConfig, name: str, model_dir: str, protocol: Protocol) -> dict[str, Any]:
    return {"model": name, "model_path": model_dir, "backend": cfg.backend, "benchmarks": B.names(cfg.benchmarks),
            "limit": cfg.limit or None, "seed": cfg.seed, **protocol.settings()}


def _check_identity(eval_dir: Path, settings: dict[str, Any], fresh: bool) -> None:
    run_file = eval_dir / "run.json"
    if fresh and eval_dir.exists():
        shutil.rmtree(eval_dir / "predictions", ignore_errors=True)
        run_file.unlink(missing_ok=True)
    if not run_file.is_file():
        return
    old = json.loads(run_file.read_text())
    changed = {k: (old.get(k), settings.get(k)) for k in IDENTITY if old.get(k) != settings.get(k)}
    if changed and any((eval_dir / "predictions").glob("*.jsonl")):
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{eval_dir} holds predictions made with other settings ({detail}); pass --fresh true "
                         f"to replace them or --out for a new folder")


def _write_json(path: Path, data: dict) -> None:
    fio.write_json(path, data, sort_keys=False)


def plan_placement(cfg: EvalConfig, model_dir: str) -> tuple[Placement, list[str]]:
    """Where the vllm or hf backend's engines run, and the GPUs in use (CUDA_VISIBLE_DEVICES
    entries; empty on a CPU). Raises ValueError for impossible --gpus/--tp/--dp before any load."""
    from webinstruct.evaluation.placement import choose, gpu_inventory, model_estimate

    visible, gpu_bytes = gpu_inventory()
    if cfg.gpus > len(visible):
        raise ValueError(f"--gpus {cfg.gpus}: {len(visible)} GPU(s) visible")
    used = visible[:cfg.gpus] if cfg.gpus else visible
    if not used:
        return choose(0, 0, 1, 1, 0, tp=cfg.tp, dp=cfg.dp), []
    est = model_estimate(model_dir)
    placement = choose(len(used), gpu_bytes, est.heads, est.kv_heads, est.weight_bytes, est.headroom,
                       tp=cfg.tp, dp=cfg.dp, head_rule=cfg.backend == "vllm")
    return placement, used


def _replica_setup(placement: Placement, gpus: list[str]) -> tuple[list[dict[str, str]], list[list[int]] | None]:
    """Each replica's added environment and CPU cores: its GPUs, or on a CPU its share of the cores."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": ",".join(d)} for d in placement.devices(gpus)], None
    from webinstruct.evaluation.backends.replicas import split

    cores = sorted(os.sched_getaffinity(0))
    cpus = [cores[a:b] or cores for a, b in split(len(cores), placement.dp)]  # more replicas than cores: share
    return [{"OMP_NUM_THREADS": str(len(c))} for c in cpus], cpus


def _backend(cfg: EvalConfig, model_dir: str, stack, placement: Placement | None = None, gpus: list[str] = ()):
    """The generation backend; `placement` and `gpus` from `plan_placement` (vllm and hf)."""
    from webinstruct.evaluation.backends import make_backend

    if cfg.backend != "openai":
        max_len = cfg.max_model_len
        if cfg.backend == "vllm" and not max_len:
            from webinstruct.core.registry import get_spec
            max_len = 0 if gpus else min(get_spec(model_dir).max_positions, CPU_CONTEXT)
        placement = placement or Placement(1, 1, "")
        kwargs = {"tp": placement.tp, "max_model_len": max_len}
        # One engine on the CPU or on every GPU this process sees: in process. Otherwise replica
        # processes, each seeing only its own GPUs.
        if placement.dp == 1 and (not gpus or (placement.tp == len(gpus) and not cfg.gpus)):
            return make_backend(cfg.backend, model_dir, **kwargs)
        from webinstruct.evaluation.backends.replicas import ReplicaBackend

        envs, cpus = _replica_setup(placement, list(gpus))
        return ReplicaBackend(make_backend, (cfg.backend, model_dir), kwargs, envs, cpus)
    url = cfg.llm_url or os.environ.get("LLM_URL", "")
    served = cfg.llm_model or os.environ.get("LLM_MODEL", "")
    if not url:
        from webinstruct.pipeline.llm.server import LocalLLMServer
        server = stack.enter_context(LocalLLMServer(model_dir, max_model_len=cfg.max_model_len or CPU_CONTEXT))
        url, served = server.url, server.model
    return make_backend("openai", model_dir, url=url, served_model=served)


def generate_and_grade(backend, todo: dict[str, list], protocol: Protocol, eval_dir: Path, chunk: int, pool,
                       on_saved=None, on_benchmark=None) -> Counter:
    """Generate every benchmark's remaining questions `chunk` at a time and grade each chunk in a
    background thread (robust grader on `pool`) while the next one generates; each graded chunk is
    appended to its predictions file, in order. `on_saved(n)` after each append (grading thread),
    `on_benchmark(name)` when a benchmark's generation starts. Generation runs at most one chunk
    ahead of grading; an error in either stops the run, chunks already generated being graded and
    saved first. Returns generation statistics."""
    stats: Counter = Counter(generated=0, completion_tokens=0)

    def grade_and_save(path: Path, batch: list, requests: list, gens: list) -> None:
        verdicts = grade_all([(it, g.text) for it, g in zip(batch, gens)], protocol.name, pool=pool)
        P.append(path, [P.record(it, rq.prompt, g.text, g.finish, g.tokens, v)
                        for it, rq, g, v in zip(batch, requests, gens, verdicts)])
        if on_saved:
            on_saved(len(batch))

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="eval-grade") as grader:  # one thread: appends keep their order
        for name, items in todo.items():
            path = eval_dir / "predictions" / f"{name}.jsonl"
            if items and on_benchmark:
                on_benchmark(name)
            for start in range(0, len(items), chunk):
                batch = items[start:start + chunk]
                requests = [protocol.render(it) for it in batch]
                gens = backend.generate(requests)
                stats.update("finish_" + g.finish for g in gens)
                stats["completion_tokens"] += sum(g.tokens for g in gens)
                stats["generated"] += len(batch)
                pending.append(grader.submit(grade_and_save, path, batch, requests, gens))
                while pending and (pending[0].done() or len(pending) > 1):
                    pending.popleft().result()  # a grading or writing error surfaces here
        while pending:
            pending.popleft().result()
    return stats


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the evaluation; returns results.json's content."""
    from contextlib import ExitStack

    from tqdm import tqdm

    from webinstruct.evaluation.report import write_results

    names = B.names(cfg.benchmarks)
    model_name, model_dir = pick_model(cfg)
    if cfg.backend == "openai":
        if cfg.tp or cfg.dp:
            raise ValueError("--tp/--dp place the vllm and hf backends' engines; the openai backend sends to a server")
        placement, gpus = None, []
    else:
        placement, gpus = plan_placement(cfg, model_dir)
    protocol = make_protocol(cfg, model_dir)
    settings = _settings(cfg, model_name, model_dir, protocol)
    eval_dir = Path(cfg.eval_dir())
    _check_identity(eval_dir, settings, cfg.fresh)
    (eval_dir / "predictions").mkdir(parents=True, exist_ok=True)
    _write_json(eval_dir / "run.json", settings)

    todo: dict[str, list] = {}
    for name in names:
        path = eval_dir / "predictions" / f"{name}.jsonl"
        P.repair(path)
        done = {r.get("id") for r in P.read(path)}
        todo[name] = [it for it in B.load(name, cfg.limit or None, cfg.seed) if it.id not in done]
    total = sum(len(v) for v in todo.values())
    stats: Counter = Counter(generated=0, completion_tokens=0)
    started = time.monotonic()
    if total:
        if placement is not None:
            print(f"placement: {placement.reason}", flush=True)
        with ExitStack() as stack:
            backend = _backend(cfg, model_dir, stack, placement, gpus)
            stack.callback(backend.close)
            # Started after the model is loaded: an in-process vLLM may fork, better before the pool's thread.
            pool = stack.enter_context(grading_pool(cfg.grade_workers, cfg.grade_timeout))
            bar = stack.enter_context(tqdm(total=total, desc="eval", unit="q", dynamic_ncols=True))
            chunk = max(getattr(backend, "chunk", 0), cfg.batch_size)
            stats = generate_and_grade(backend, todo, protocol, eval_dir, chunk, pool, on_saved=bar.update,
                                       on_benchmark=lambda name: bar.set_description(f"eval {name}"))
    seconds = time.monotonic() - started
    settings["generation"] = {**stats, "seconds": round(seconds, 1),
                              "questions_per_s": round(stats["generated"] / seconds, 3) if stats["generated"] else None}
    if placement is not None and stats["generated"]:
        settings["generation"]["placement"] = {"tp": placement.tp, "dp": placement.dp, "reason": placement.reason}
    return write_results(eval_dir, settings)


def rescore(eval_dir: str, workers: int = 2, timeout: float = 5.0) -> dict[str, Any]:
    """Re-grade every saved prediction in `eval_dir` (no generation) and rewrite the report."""
    from webinstruct.evaluation.report import write_results

    eval_dir_p = Path(eval_dir)
    run_file = eval_dir_p / "run.json"
    if not run_file.is_file():
        raise FileNotFoundError(f"{run_file} is missing: is {eval_dir} an evaluation folder (RUN/eval)?")
    settings = json.loads(run_file.read_text())
    files = sorted((eval_dir_p / "predictions").glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no predictions under {eval_dir_p / 'predictions'}")
    changed = 0
    unreadable: dict[str, int] = {}
    with grading_pool(workers, timeout) as pool:  # started once, for every file
        for path in files:
            lines = P.scan(path)
            graded = []
            for _, _, r in lines:
                try:
                    graded.append((r, P.item_of(r)) if r is not None else None)
                except (KeyError, TypeError, ValueError):
                    graded.append(None)
            bad = [lineno for (lineno, _, _), g in zip(lines, graded) if g is None]
            if bad:
                unreadable[path.stem] = len(bad)
                log.warning("%s: %d line(s) are not predictions that can be graded (line %s); kept as they are, "
                            "not graded", path, len(bad), ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else ""))
            good = [g for g in graded if g is not None]
            verdicts = grade_all([(item, r["output"]) for r, item in good], settings["protocol"], pool=pool)
            for (r, _), v in zip(good, verdicts):
                new = {k: x.to_dict() for k, x in v.items()}
                changed += new != r.get("verdicts")
                r["verdicts"] = new
            # Lines that could not be read stay where they were, byte for byte: rescoring deletes nothing.
            P.rewrite_lines(path, [raw if g is None else g[0] for (_, raw, _), g in zip(lines, graded)])
    settings["rescored"] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "verdicts_changed": changed,
                            "skipped_unreadable": sum(unreadable.values()),
                            "skipped_unreadable_by_benchmark": unreadable}
    _write_json(run_file, settings)
    return write_results(eval_dir_p, settings)
